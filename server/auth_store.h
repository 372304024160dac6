// The replicated auth state: users, roles and their permissions, the enabled flag, the
// auth revision and the token secret, in the `auth` keyspace of the state machine.
// Changed only by committed entries (a pb::ClientRequest carrying pb::AuthRequest),
// so every member holds the same state:
//   `auth`  "meta"        -> pb::AuthMeta
//           "user/<name>" -> pb::AuthUser (roles sorted; a salted PBKDF2 hash, never a
//                            password)
//           "role/<name>" -> pb::AuthRole
// The role `root` is built in: it exists without being added, holds every permission
// and the admin rights (membership, snapshot save, leader transfer, hash, auth
// changes), and cannot be deleted or given permissions. Auth is off until enabled;
// enabling needs a user `root` holding the role `root`, and while auth is enabled that
// user can neither be deleted nor lose the role. Every change bumps the auth revision.
//
// Thread-safety: pure functions of their arguments.
#ifndef STEAD_SERVER_AUTH_STORE_H_
#define STEAD_SERVER_AUTH_STORE_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "proto/kv.pb.h"
#include "server/kv_store.h"
#include "storage/state_machine.h"

namespace stead::server {

inline constexpr char kRootRole[] = "root";
inline constexpr char kRootUser[] = "root";
// Bounds that keep a listing one scan and a permission check cheap.
inline constexpr size_t kMaxAuthUsers = 1000;
inline constexpr size_t kMaxAuthRoles = 1000;
inline constexpr size_t kMaxRolesPerUser = 64;
inline constexpr size_t kMaxPermissionsPerRole = 256;
inline constexpr size_t kMaxAuthNameBytes = 128;

// The meta record; a default AuthMeta (disabled, revision 0) before the first change.
absl::StatusOr<pb::AuthMeta> ReadAuthMeta(const storage::StateReader& state);
absl::StatusOr<std::optional<pb::AuthUser>> ReadAuthUser(const storage::StateReader& state,
                                                         absl::string_view name);
// The role `name`; the built-in root role has no stored record (IsRootRole).
absl::StatusOr<std::optional<pb::AuthRole>> ReadAuthRole(const storage::StateReader& state,
                                                         absl::string_view name);
// Every user (password hashes removed) and every role, in name order.
absl::StatusOr<std::vector<pb::AuthUser>> ListAuthUsers(const storage::StateReader& state);
absl::StatusOr<std::vector<pb::AuthRole>> ListAuthRoles(const storage::StateReader& state);

// Whether `request` changes the auth state (through the log) rather than lists it.
bool IsAuthChange(const pb::AuthRequest& request);

// Stateless checks of a change, before proposing and again at apply: InvalidArgument
// naming the field. A change must carry no password (the proposer hashes it first).
absl::Status ValidateAuthChange(const pb::AuthRequest& request);

// Applies a change to the state read through `state`, appending its mutations, and
// returns the auth status afterwards. Deterministic. The request's own refusals are
// InvalidArgument or FailedPrecondition (no such user, already exists, enabling
// without root, ...) and change nothing; other errors come from reading the state.
absl::StatusOr<pb::AuthResponse> ApplyAuthChange(const pb::AuthRequest& request,
                                                 const storage::StateReader& state,
                                                 std::vector<storage::Mutation>* mutations);

// Serves a listing (user_list, role_list, status) from `state`.
absl::StatusOr<pb::AuthResponse> ReadAuth(const pb::AuthRequest& request,
                                          const storage::StateReader& state);

}  // namespace stead::server

#endif  // STEAD_SERVER_AUTH_STORE_H_
