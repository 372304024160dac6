#include "server/auth_store.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace stead::server {
namespace {

constexpr char kMetaKey[] = "meta";
constexpr char kUserPrefix[] = "user/";
constexpr char kRolePrefix[] = "role/";

std::string UserKey(absl::string_view name) { return absl::StrCat(kUserPrefix, name); }
std::string RoleKey(absl::string_view name) { return absl::StrCat(kRolePrefix, name); }

template <typename Message>
absl::StatusOr<std::optional<Message>> ReadRecord(const storage::StateReader& state,
                                                  const std::string& key) {
  STEAD_ASSIGN_OR_RETURN(std::optional<std::string> stored, state.Get(kAuthKeyspace, key));
  if (!stored) return std::nullopt;
  Message message;
  if (!message.ParseFromString(*stored)) {
    return absl::DataLossError(absl::StrCat("auth record ", key, " does not decode"));
  }
  return message;
}

template <typename Message>
absl::StatusOr<std::vector<Message>> ScanRecords(const storage::StateReader& state,
                                                 absl::string_view prefix, size_t max) {
  storage::ScanOptions scan;
  scan.keyspace = kAuthKeyspace;
  scan.start_key = std::string(prefix);
  scan.end_key = std::string(prefix);
  scan.end_key.back() += 1;  // the prefixes end in '/'
  scan.limit = max;
  STEAD_ASSIGN_OR_RETURN(storage::ScanResult stored, state.Scan(scan));
  std::vector<Message> records;
  for (const storage::KeyValue& pair : stored.pairs) {
    Message& message = records.emplace_back();
    if (!message.ParseFromString(pair.value)) {
      return absl::DataLossError(absl::StrCat("auth record ", pair.key, " does not decode"));
    }
  }
  return records;
}

absl::Status ValidateName(absl::string_view what, absl::string_view name) {
  if (name.empty() || name.size() > kMaxAuthNameBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("a ", what, " name must have 1 to ", kMaxAuthNameBytes, " bytes"));
  }
  return absl::OkStatus();
}

absl::Status ValidateRange(absl::string_view key, absl::string_view range_end) {
  if (key.empty() && range_end != absl::string_view("\0", 1)) {
    return absl::InvalidArgumentError("a permission needs a key (or key \"\" with range end \\0)");
  }
  if (!range_end.empty() && range_end != absl::string_view("\0", 1) && range_end <= key) {
    return absl::InvalidArgumentError("a permission's range end must sort after its key");
  }
  return absl::OkStatus();
}

absl::Status ValidateHash(const pb::PasswordHash& hash, absl::string_view password) {
  if (!password.empty()) {
    return absl::InvalidArgumentError("a password reaches the log only as its hash");
  }
  if (hash.ByteSizeLong() != 0 && (hash.salt().empty() || hash.hash().empty() ||
                                    hash.iterations() == 0)) {
    return absl::InvalidArgumentError("incomplete password hash");
  }
  return absl::OkStatus();
}

absl::Status NoUser(absl::string_view name) {
  return absl::FailedPreconditionError(absl::StrCat("no user ", name));
}
absl::Status NoRole(absl::string_view name) {
  return absl::FailedPreconditionError(absl::StrCat("no role ", name));
}

bool IsRootRole(absl::string_view role) { return role == kRootRole; }

bool HoldsRoot(const pb::AuthUser& user) {
  return std::find(user.roles().begin(), user.roles().end(), kRootRole) != user.roles().end();
}

// The changes of one command, staged so that the command reads what it wrote.
class AuthChange {
 public:
  AuthChange(const storage::StateReader& state, std::vector<storage::Mutation>* mutations)
      : state_(state), mutations_(mutations) {}

  void PutUser(const pb::AuthUser& user) {
    mutations_->push_back(
        storage::Mutation::Put(kAuthKeyspace, UserKey(user.name()), user.SerializeAsString()));
  }
  void PutRole(const pb::AuthRole& role) {
    mutations_->push_back(
        storage::Mutation::Put(kAuthKeyspace, RoleKey(role.name()), role.SerializeAsString()));
  }
  void DeleteUser(absl::string_view name) {
    mutations_->push_back(storage::Mutation::Delete(kAuthKeyspace, UserKey(name)));
  }
  void DeleteRole(absl::string_view name) {
    mutations_->push_back(storage::Mutation::Delete(kAuthKeyspace, RoleKey(name)));
  }
  absl::StatusOr<pb::AuthUser> ExistingUser(absl::string_view name) const {
    STEAD_ASSIGN_OR_RETURN(std::optional<pb::AuthUser> user, ReadAuthUser(state_, name));
    if (!user) return NoUser(name);
    return *user;
  }
  absl::StatusOr<pb::AuthRole> ExistingRole(absl::string_view name) const {
    if (IsRootRole(name)) {
      return absl::FailedPreconditionError(
          "the root role is built in: it holds every permission and cannot be changed");
    }
    STEAD_ASSIGN_OR_RETURN(std::optional<pb::AuthRole> role, ReadAuthRole(state_, name));
    if (!role) return NoRole(name);
    return *role;
  }

 private:
  const storage::StateReader& state_;
  std::vector<storage::Mutation>* const mutations_;
};

// Applies `request` given `meta` before it (meta.revision already advanced).
absl::Status ApplyChange(const pb::AuthRequest& request, const storage::StateReader& state,
                         pb::AuthMeta* meta, AuthChange& change) {
  switch (request.change_case()) {
    case pb::AuthRequest::kUserAdd: {
      const auto& add = request.user_add();
      STEAD_ASSIGN_OR_RETURN(std::optional<pb::AuthUser> existing, ReadAuthUser(state, add.name()));
      if (existing) return absl::FailedPreconditionError(absl::StrCat("user ", add.name(), " exists"));
      STEAD_ASSIGN_OR_RETURN(std::vector<pb::AuthUser> users, ListAuthUsers(state));
      if (users.size() >= kMaxAuthUsers) {
        return absl::FailedPreconditionError(absl::StrCat("at most ", kMaxAuthUsers, " users"));
      }
      pb::AuthUser user;
      user.set_name(add.name());
      if (add.has_hash()) *user.mutable_password() = add.hash();
      user.set_generation(meta->revision());
      change.PutUser(user);
      return absl::OkStatus();
    }
    case pb::AuthRequest::kUserChangePassword: {
      const auto& set = request.user_change_password();
      STEAD_ASSIGN_OR_RETURN(pb::AuthUser user, change.ExistingUser(set.name()));
      if (set.has_hash()) {
        *user.mutable_password() = set.hash();
      } else {
        user.clear_password();
      }
      user.set_generation(meta->revision());  // its earlier tokens stop working
      change.PutUser(user);
      return absl::OkStatus();
    }
    case pb::AuthRequest::kUserDelete: {
      const std::string& name = request.user_delete().name();
      STEAD_ASSIGN_OR_RETURN(pb::AuthUser user, change.ExistingUser(name));
      if (meta->enabled() && name == kRootUser) {
        return absl::FailedPreconditionError("the root user cannot be deleted while auth is enabled");
      }
      change.DeleteUser(name);
      return absl::OkStatus();
    }
    case pb::AuthRequest::kUserGrantRole: {
      const auto& grant = request.user_grant_role();
      STEAD_ASSIGN_OR_RETURN(pb::AuthUser user, change.ExistingUser(grant.user()));
      if (!IsRootRole(grant.role())) {
        STEAD_ASSIGN_OR_RETURN(std::optional<pb::AuthRole> role, ReadAuthRole(state, grant.role()));
        if (!role) return NoRole(grant.role());
      }
      auto& roles = *user.mutable_roles();
      if (std::find(roles.begin(), roles.end(), grant.role()) != roles.end()) {
        return absl::FailedPreconditionError(
            absl::StrCat("user ", grant.user(), " holds role ", grant.role(), " already"));
      }
      if (static_cast<size_t>(roles.size()) >= kMaxRolesPerUser) {
        return absl::FailedPreconditionError(absl::StrCat("at most ", kMaxRolesPerUser, " roles per user"));
      }
      roles.Add(std::string(grant.role()));
      std::sort(roles.begin(), roles.end());
      change.PutUser(user);
      return absl::OkStatus();
    }
    case pb::AuthRequest::kUserRevokeRole: {
      const auto& revoke = request.user_revoke_role();
      STEAD_ASSIGN_OR_RETURN(pb::AuthUser user, change.ExistingUser(revoke.user()));
      auto& roles = *user.mutable_roles();
      auto found = std::find(roles.begin(), roles.end(), revoke.role());
      if (found == roles.end()) {
        return absl::FailedPreconditionError(
            absl::StrCat("user ", revoke.user(), " does not hold role ", revoke.role()));
      }
      if (meta->enabled() && revoke.user() == kRootUser && IsRootRole(revoke.role())) {
        return absl::FailedPreconditionError(
            "the root user keeps the root role while auth is enabled");
      }
      roles.erase(found);
      change.PutUser(user);
      return absl::OkStatus();
    }
    case pb::AuthRequest::kRoleAdd: {
      const std::string& name = request.role_add().name();
      STEAD_ASSIGN_OR_RETURN(std::optional<pb::AuthRole> existing, ReadAuthRole(state, name));
      if (existing || IsRootRole(name)) {
        return absl::FailedPreconditionError(absl::StrCat("role ", name, " exists"));
      }
      STEAD_ASSIGN_OR_RETURN(std::vector<pb::AuthRole> roles, ListAuthRoles(state));
      if (roles.size() >= kMaxAuthRoles) {
        return absl::FailedPreconditionError(absl::StrCat("at most ", kMaxAuthRoles, " roles"));
      }
      pb::AuthRole role;
      role.set_name(name);
      change.PutRole(role);
      return absl::OkStatus();
    }
    case pb::AuthRequest::kRoleDelete: {
      const std::string& name = request.role_delete().name();
      STEAD_RETURN_IF_ERROR(change.ExistingRole(name).status());
      change.DeleteRole(name);
      // Users keep no grant of a role that is gone (one added later under the same
      // name must be granted again).
      STEAD_ASSIGN_OR_RETURN(std::vector<pb::AuthUser> users, ScanRecords<pb::AuthUser>(
                                                                   state, kUserPrefix, kMaxAuthUsers));
      for (pb::AuthUser& user : users) {
        auto& roles = *user.mutable_roles();
        auto found = std::find(roles.begin(), roles.end(), name);
        if (found == roles.end()) continue;
        roles.erase(found);
        change.PutUser(user);
      }
      return absl::OkStatus();
    }
    case pb::AuthRequest::kRoleGrantPermission: {
      const auto& grant = request.role_grant_permission();
      STEAD_ASSIGN_OR_RETURN(pb::AuthRole role, change.ExistingRole(grant.role()));
      bool replaced = false;
      for (pb::Permission& permission : *role.mutable_permissions()) {
        if (permission.key() == grant.permission().key() &&
            permission.range_end() == grant.permission().range_end()) {
          permission.set_type(grant.permission().type());
          replaced = true;
        }
      }
      if (!replaced) {
        if (static_cast<size_t>(role.permissions_size()) >= kMaxPermissionsPerRole) {
          return absl::FailedPreconditionError(
              absl::StrCat("at most ", kMaxPermissionsPerRole, " permissions per role"));
        }
        *role.add_permissions() = grant.permission();
      }
      change.PutRole(role);
      return absl::OkStatus();
    }
    case pb::AuthRequest::kRoleRevokePermission: {
      const auto& revoke = request.role_revoke_permission();
      STEAD_ASSIGN_OR_RETURN(pb::AuthRole role, change.ExistingRole(revoke.role()));
      auto& permissions = *role.mutable_permissions();
      auto found = std::find_if(permissions.begin(), permissions.end(),
                                [&](const pb::Permission& permission) {
                                  return permission.key() == revoke.key() &&
                                         permission.range_end() == revoke.range_end();
                                });
      if (found == permissions.end()) {
        return absl::FailedPreconditionError(
            absl::StrCat("role ", revoke.role(), " has no permission on that key or range"));
      }
      permissions.erase(found);
      change.PutRole(role);
      return absl::OkStatus();
    }
    case pb::AuthRequest::kEnable: {
      if (meta->enabled()) return absl::OkStatus();
      STEAD_ASSIGN_OR_RETURN(std::optional<pb::AuthUser> root, ReadAuthUser(state, kRootUser));
      if (!root || !HoldsRoot(*root)) {
        return absl::FailedPreconditionError(
            "auth needs a user root holding the role root before it is enabled");
      }
      meta->set_enabled(true);
      meta->set_token_secret(request.enable().token_secret());
      return absl::OkStatus();
    }
    case pb::AuthRequest::kDisable:
      meta->set_enabled(false);
      meta->clear_token_secret();
      return absl::OkStatus();
    default:
      return absl::InvalidArgumentError("not an auth change");
  }
}

}  // namespace

absl::StatusOr<pb::AuthMeta> ReadAuthMeta(const storage::StateReader& state) {
  STEAD_ASSIGN_OR_RETURN(std::optional<pb::AuthMeta> meta,
                         ReadRecord<pb::AuthMeta>(state, kMetaKey));
  return meta ? *meta : pb::AuthMeta();
}

absl::StatusOr<std::optional<pb::AuthUser>> ReadAuthUser(const storage::StateReader& state,
                                                         absl::string_view name) {
  return ReadRecord<pb::AuthUser>(state, UserKey(name));
}

absl::StatusOr<std::optional<pb::AuthRole>> ReadAuthRole(const storage::StateReader& state,
                                                         absl::string_view name) {
  return ReadRecord<pb::AuthRole>(state, RoleKey(name));
}

absl::StatusOr<std::vector<pb::AuthUser>> ListAuthUsers(const storage::StateReader& state) {
  STEAD_ASSIGN_OR_RETURN(std::vector<pb::AuthUser> users,
                         ScanRecords<pb::AuthUser>(state, kUserPrefix, kMaxAuthUsers));
  for (pb::AuthUser& user : users) user.clear_password();
  return users;
}

absl::StatusOr<std::vector<pb::AuthRole>> ListAuthRoles(const storage::StateReader& state) {
  return ScanRecords<pb::AuthRole>(state, kRolePrefix, kMaxAuthRoles);
}

bool IsAuthChange(const pb::AuthRequest& request) {
  switch (request.change_case()) {
    case pb::AuthRequest::kUserList:
    case pb::AuthRequest::kRoleList:
    case pb::AuthRequest::kStatus:
    case pb::AuthRequest::CHANGE_NOT_SET:
      return false;
    default:
      return true;
  }
}

absl::Status ValidateAuthChange(const pb::AuthRequest& request) {
  switch (request.change_case()) {
    case pb::AuthRequest::kUserAdd:
      STEAD_RETURN_IF_ERROR(ValidateName("user", request.user_add().name()));
      return ValidateHash(request.user_add().hash(), request.user_add().password());
    case pb::AuthRequest::kUserChangePassword:
      STEAD_RETURN_IF_ERROR(ValidateName("user", request.user_change_password().name()));
      return ValidateHash(request.user_change_password().hash(),
                          request.user_change_password().password());
    case pb::AuthRequest::kUserDelete:
      return ValidateName("user", request.user_delete().name());
    case pb::AuthRequest::kUserGrantRole:
    case pb::AuthRequest::kUserRevokeRole: {
      const auto& pair = request.has_user_grant_role() ? request.user_grant_role()
                                                       : request.user_revoke_role();
      STEAD_RETURN_IF_ERROR(ValidateName("user", pair.user()));
      return ValidateName("role", pair.role());
    }
    case pb::AuthRequest::kRoleAdd:
      return ValidateName("role", request.role_add().name());
    case pb::AuthRequest::kRoleDelete:
      return ValidateName("role", request.role_delete().name());
    case pb::AuthRequest::kRoleGrantPermission: {
      const auto& grant = request.role_grant_permission();
      STEAD_RETURN_IF_ERROR(ValidateName("role", grant.role()));
      if (grant.permission().type() != pb::Permission::TYPE_READ &&
          grant.permission().type() != pb::Permission::TYPE_READWRITE) {
        return absl::InvalidArgumentError("a permission is read or readwrite");
      }
      return ValidateRange(grant.permission().key(), grant.permission().range_end());
    }
    case pb::AuthRequest::kRoleRevokePermission:
      return ValidateName("role", request.role_revoke_permission().role());
    case pb::AuthRequest::kEnable:
      if (request.enable().token_secret().size() < 32) {
        return absl::InvalidArgumentError("enable needs a token secret of at least 32 bytes");
      }
      return absl::OkStatus();
    case pb::AuthRequest::kDisable:
      return absl::OkStatus();
    default:
      return absl::InvalidArgumentError("not an auth change");
  }
}

absl::StatusOr<pb::AuthResponse> ApplyAuthChange(const pb::AuthRequest& request,
                                                 const storage::StateReader& state,
                                                 std::vector<storage::Mutation>* mutations) {
  STEAD_RETURN_IF_ERROR(ValidateAuthChange(request));
  STEAD_ASSIGN_OR_RETURN(pb::AuthMeta meta, ReadAuthMeta(state));
  meta.set_revision(meta.revision() + 1);
  std::vector<storage::Mutation> staged;
  AuthChange change(state, &staged);
  STEAD_RETURN_IF_ERROR(ApplyChange(request, state, &meta, change));
  staged.push_back(storage::Mutation::Put(kAuthKeyspace, kMetaKey, meta.SerializeAsString()));
  for (storage::Mutation& mutation : staged) mutations->push_back(std::move(mutation));
  pb::AuthResponse response;
  response.mutable_status()->set_enabled(meta.enabled());
  response.mutable_status()->set_revision(meta.revision());
  return response;
}

absl::StatusOr<pb::AuthResponse> ReadAuth(const pb::AuthRequest& request,
                                          const storage::StateReader& state) {
  pb::AuthResponse response;
  STEAD_ASSIGN_OR_RETURN(pb::AuthMeta meta, ReadAuthMeta(state));
  response.mutable_status()->set_enabled(meta.enabled());
  response.mutable_status()->set_revision(meta.revision());
  switch (request.change_case()) {
    case pb::AuthRequest::kUserList: {
      STEAD_ASSIGN_OR_RETURN(std::vector<pb::AuthUser> users, ListAuthUsers(state));
      for (pb::AuthUser& user : users) *response.add_users() = std::move(user);
      return response;
    }
    case pb::AuthRequest::kRoleList: {
      STEAD_ASSIGN_OR_RETURN(std::vector<pb::AuthRole> roles, ListAuthRoles(state));
      for (pb::AuthRole& role : roles) *response.add_roles() = std::move(role);
      return response;
    }
    case pb::AuthRequest::kStatus:
      return response;
    default:
      return absl::InvalidArgumentError("not an auth listing");
  }
}

}  // namespace stead::server
