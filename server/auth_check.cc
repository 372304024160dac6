#include "server/auth_check.h"

#include <optional>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "server/auth_store.h"
#include "server/auth_token.h"

namespace stead::server {
namespace {

// A half-open key range [start, end); no end: every key >= start.
struct Span {
  std::string start;
  std::optional<std::string> end;
};

// The keys a (key, range_end) pair names, with RangeRequest's rules.
Span SpanOf(const std::string& key, const std::string& range_end) {
  if (range_end.empty()) return Span{key, key + std::string(1, '\0')};
  if (range_end == std::string(1, '\0')) return Span{key, std::nullopt};
  return Span{key, range_end};
}

// Whether the union of `have` covers every key of `want`.
bool Covered(const std::vector<Span>& have, const Span& want) {
  std::string cursor = want.start;
  // Each round moves the cursor to the end of one span: at most have.size() rounds.
  for (size_t round = 0; round <= have.size(); ++round) {
    if (want.end && cursor >= *want.end) return true;
    const Span* best = nullptr;
    for (const Span& span : have) {
      if (span.start > cursor || (span.end && *span.end <= cursor)) continue;
      if (best == nullptr || !span.end || (best->end && *span.end > *best->end)) best = &span;
    }
    if (best == nullptr) return false;
    if (!best->end) return true;
    cursor = *best->end;
  }
  return false;
}

class Checker {
 public:
  explicit Checker(const Grants& grants) {
    for (const pb::Permission& permission : grants.permissions) {
      Span span = SpanOf(permission.key(), permission.range_end());
      if (permission.type() == pb::Permission::TYPE_READWRITE) write_.push_back(span);
      read_.push_back(std::move(span));
    }
  }
  absl::Status Read(const std::string& key, const std::string& range_end) const {
    if (Covered(read_, SpanOf(key, range_end))) return absl::OkStatus();
    return Denied("read", key, range_end);
  }
  absl::Status Write(const std::string& key, const std::string& range_end) const {
    if (Covered(write_, SpanOf(key, range_end))) return absl::OkStatus();
    return Denied("write", key, range_end);
  }
  absl::Status Ops(const google::protobuf::RepeatedPtrField<pb::RequestOp>& ops) const {
    for (const pb::RequestOp& op : ops) {
      switch (op.request_case()) {
        case pb::RequestOp::kRange:
          STEAD_RETURN_IF_ERROR(Read(op.range().key(), op.range().range_end()));
          break;
        case pb::RequestOp::kPut:
          STEAD_RETURN_IF_ERROR(Write(op.put().key(), ""));
          break;
        case pb::RequestOp::kDeleteRange:
          STEAD_RETURN_IF_ERROR(Write(op.delete_range().key(), op.delete_range().range_end()));
          break;
        default:
          break;  // refused by validation
      }
    }
    return absl::OkStatus();
  }

 private:
  static absl::Status Denied(absl::string_view what, const std::string& key,
                             const std::string& range_end) {
    return absl::PermissionDeniedError(absl::StrCat(
        "no ", what, " permission on ", range_end.empty() ? "key " : "the range from ",
        absl::CHexEscape(key)));
  }
  std::vector<Span> read_, write_;
};

absl::Status RootOnly(const Grants& grants, absl::string_view what) {
  if (grants.root) return absl::OkStatus();
  return absl::PermissionDeniedError(absl::StrCat(what, " needs the root role"));
}

absl::Status Unauthenticated() {
  return absl::UnauthenticatedError(
      "authentication failed: unknown user, wrong password, or an invalid or expired token");
}

}  // namespace

absl::StatusOr<Grants> GrantsOf(const pb::AuthUser& user, const storage::StateReader& state) {
  Grants grants;
  for (const std::string& name : user.roles()) {
    if (name == kRootRole) {
      grants.root = true;
      continue;
    }
    STEAD_ASSIGN_OR_RETURN(std::optional<pb::AuthRole> role, ReadAuthRole(state, name));
    if (!role) continue;
    for (const pb::Permission& permission : role->permissions()) {
      grants.permissions.push_back(permission);
    }
  }
  return grants;
}

absl::Status CheckPermission(const Grants& grants, const pb::ClientRequest& request) {
  if (grants.root) return absl::OkStatus();
  const Checker checker(grants);
  switch (request.request_case()) {
    case pb::ClientRequest::kRange:
      return checker.Read(request.range().key(), request.range().range_end());
    case pb::ClientRequest::kPut:
      return checker.Write(request.put().key(), "");
    case pb::ClientRequest::kDeleteRange:
      return checker.Write(request.delete_range().key(), request.delete_range().range_end());
    case pb::ClientRequest::kTxn: {
      for (const pb::Compare& compare : request.txn().compare()) {
        STEAD_RETURN_IF_ERROR(checker.Read(compare.key(), compare.range_end()));
      }
      STEAD_RETURN_IF_ERROR(checker.Ops(request.txn().success()));
      return checker.Ops(request.txn().failure());
    }
    case pb::ClientRequest::kWatch:
      return checker.Read(request.watch().key(), request.watch().range_end());
    case pb::ClientRequest::kWatchCancel:
    case pb::ClientRequest::kAuthenticate:
    case pb::ClientRequest::REQUEST_NOT_SET:
      return absl::OkStatus();
    case pb::ClientRequest::kMemberList:
      return RootOnly(grants, "member list");
    case pb::ClientRequest::kMemberRemove:
      return RootOnly(grants, "member remove");
    case pb::ClientRequest::kMemberPromote:
      return RootOnly(grants, "member promote");
    case pb::ClientRequest::kLeaderTransfer:
      return RootOnly(grants, "leader transfer");
    case pb::ClientRequest::kHash:
      return RootOnly(grants, "hash");
    case pb::ClientRequest::kSnapshotSave:
      return RootOnly(grants, "snapshot save");
    case pb::ClientRequest::kAuth:
      return RootOnly(grants, "auth management");
  }
  return absl::PermissionDeniedError("unknown request");
}

std::string CertificateUser(const wire::PeerIdentity& identity) {
  if (!identity.common_name.empty()) return identity.common_name;
  if (!identity.dns_names.empty()) return identity.dns_names.front();
  return "";
}

Authorizer::Authorizer(AuthorizerOptions options, const storage::StateMachine* state)
    : options_(std::move(options)), state_(state) {}

Authorizer::~Authorizer() { Stop(); }

void Authorizer::Enqueue(std::function<void(absl::Status)> job) const {
  bool stopped = false;
  {
    MutexLock lock(&mu_);
    stopped = stopped_;
    if (!stopped && jobs_.size() < kMaxPendingHashes) {
      jobs_.push_back(std::move(job));
      if (!worker_.joinable()) worker_ = std::thread([this] { RunJobs(); });
      wake_.Signal();
      return;
    }
  }
  job(stopped ? absl::UnavailableError("this member is stopping")
              : absl::ResourceExhaustedError(
                    "too many password checks waiting on this member: retry"));
}

void Authorizer::RunJobs() const {
  for (;;) {
    std::function<void(absl::Status)> job;
    absl::Status run;
    {
      MutexLock lock(&mu_);
      while (jobs_.empty() && !stopped_) wake_.Wait(&mu_);
      if (jobs_.empty()) return;
      job = std::move(jobs_.front());
      jobs_.pop_front();
      if (stopped_) run = absl::UnavailableError("this member is stopping");
    }
    job(run);
  }
}

void Authorizer::Stop() const {
  {
    MutexLock lock(&mu_);
    stopped_ = true;
    wake_.SignalAll();
  }
  // Only the owner calls Stop, never a job: joining here cannot be from the worker.
  if (worker_.joinable()) worker_.join();
}

void Authorizer::AuthenticateAsync(
    pb::AuthenticateRequest request,
    std::function<void(absl::StatusOr<pb::AuthenticateResponse>)> done) const {
  Enqueue([this, request = std::move(request), done = std::move(done)](absl::Status run) {
    if (!run.ok()) return done(run);
    done(Authenticate(request));
  });
}

void Authorizer::PrepareChangeAsync(
    pb::AuthRequest request, std::function<void(absl::StatusOr<pb::AuthRequest>)> done) const {
  Enqueue([this, request = std::move(request), done = std::move(done)](absl::Status run) mutable {
    if (!run.ok()) return done(run);
    if (absl::Status ready = PrepareChange(&request); !ready.ok()) return done(ready);
    done(std::move(request));
  });
}

absl::Status Authorizer::Check(pb::ClientRequest* request, const std::string& certificate_user,
                               bool ongoing) const {
  STEAD_ASSIGN_OR_RETURN(std::unique_ptr<storage::StateSnapshot> snapshot, state_->NewSnapshot());
  STEAD_ASSIGN_OR_RETURN(pb::AuthMeta meta, ReadAuthMeta(*snapshot));
  if (!meta.enabled() || request->has_authenticate()) return absl::OkStatus();
  const absl::Time now = options_.clock();
  std::optional<pb::AuthUser> user;
  if (!request->auth_token().empty()) {
    absl::StatusOr<pb::AuthTokenBody> body =
        VerifyToken(request->auth_token(), meta.token_secret(), ongoing ? absl::InfinitePast() : now);
    if (!body.ok()) return body.status();
    STEAD_ASSIGN_OR_RETURN(user, ReadAuthUser(*snapshot, body->user()));
    if (!user || user->generation() != body->generation()) return Unauthenticated();
  } else if (!certificate_user.empty()) {
    STEAD_ASSIGN_OR_RETURN(user, ReadAuthUser(*snapshot, certificate_user));
    if (!user) return Unauthenticated();
    pb::AuthTokenBody body;
    body.set_user(user->name());
    body.set_generation(user->generation());
    body.set_expires_unix_ms(absl::ToUnixMillis(now + options_.token_ttl));
    request->set_auth_token(SignToken(body, meta.token_secret()));
  } else {
    return absl::UnauthenticatedError(
        "auth is enabled: authenticate with a user name and password, or a client certificate");
  }
  STEAD_ASSIGN_OR_RETURN(Grants grants, GrantsOf(*user, *snapshot));
  return CheckPermission(grants, *request);
}

absl::Status Authorizer::AttachRootToken(pb::ClientRequest* request) const {
  STEAD_ASSIGN_OR_RETURN(std::unique_ptr<storage::StateSnapshot> snapshot, state_->NewSnapshot());
  STEAD_ASSIGN_OR_RETURN(pb::AuthMeta meta, ReadAuthMeta(*snapshot));
  if (!meta.enabled()) return absl::OkStatus();
  // Enabled auth always has a root user holding the root role (auth_store.h).
  STEAD_ASSIGN_OR_RETURN(std::optional<pb::AuthUser> root, ReadAuthUser(*snapshot, kRootUser));
  if (!root) return absl::InternalError("auth is enabled without a root user");
  pb::AuthTokenBody body;
  body.set_user(root->name());
  body.set_generation(root->generation());
  body.set_expires_unix_ms(absl::ToUnixMillis(options_.clock() + options_.token_ttl));
  request->set_auth_token(SignToken(body, meta.token_secret()));
  return absl::OkStatus();
}

absl::StatusOr<pb::AuthenticateResponse> Authorizer::Authenticate(
    const pb::AuthenticateRequest& request) const {
  STEAD_ASSIGN_OR_RETURN(std::unique_ptr<storage::StateSnapshot> snapshot, state_->NewSnapshot());
  STEAD_ASSIGN_OR_RETURN(pb::AuthMeta meta, ReadAuthMeta(*snapshot));
  if (!meta.enabled()) {
    return absl::FailedPreconditionError("auth is not enabled: no token is needed");
  }
  const absl::Time now = options_.clock();
  STEAD_RETURN_IF_ERROR(throttle_.Admit(request.name(), now));
  STEAD_ASSIGN_OR_RETURN(std::optional<pb::AuthUser> user, ReadAuthUser(*snapshot, request.name()));
  // An unknown user costs a hash too, so timing does not tell it from a wrong password.
  static const pb::PasswordHash* const kDecoy = [] {
    auto* hash = new pb::PasswordHash(*HashPassword("", kDefaultPasswordIterations));
    return hash;
  }();
  const pb::PasswordHash& hash = user && user->has_password() ? user->password() : *kDecoy;
  const bool verified = VerifyPassword(request.password(), hash) && user && user->has_password();
  throttle_.Record(request.name(), verified, now);
  if (!verified) return Unauthenticated();
  pb::AuthTokenBody body;
  body.set_user(user->name());
  body.set_generation(user->generation());
  body.set_expires_unix_ms(absl::ToUnixMillis(now + options_.token_ttl));
  pb::AuthenticateResponse response;
  response.set_token(SignToken(body, meta.token_secret()));
  response.set_expires_unix_ms(body.expires_unix_ms());
  return response;
}

absl::Status Authorizer::PrepareChange(pb::AuthRequest* request) const {
  auto hash = [this](std::string* password, pb::PasswordHash* out, bool has_password) {
    if (!has_password) return absl::OkStatus();
    absl::StatusOr<pb::PasswordHash> hashed = HashPassword(*password, options_.password_iterations);
    if (!hashed.ok()) return hashed.status();
    *out = *std::move(hashed);
    password->clear();
    return absl::OkStatus();
  };
  if (request->has_user_add()) {
    auto* add = request->mutable_user_add();
    add->clear_hash();
    return hash(add->mutable_password(), add->mutable_hash(), !add->password().empty());
  }
  if (request->has_user_change_password()) {
    auto* set = request->mutable_user_change_password();
    set->clear_hash();
    return hash(set->mutable_password(), set->mutable_hash(), !set->password().empty());
  }
  if (request->has_enable()) {
    STEAD_ASSIGN_OR_RETURN(std::string secret, RandomBytes(32));
    request->mutable_enable()->set_token_secret(std::move(secret));
  }
  return absl::OkStatus();
}

}  // namespace stead::server
