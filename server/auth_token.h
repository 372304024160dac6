// The cryptography of stead's auth: salted password hashes and signed tokens.
//
// Passwords: PBKDF2-HMAC-SHA256 with a random 16-byte salt and `iterations` rounds
// (stored with the hash, so raising the default affects new passwords only). The member
// that receives a user add or password change hashes before proposing: the log and
// the state machine hold only the hash, and apply stays cheap and deterministic.
//
// Tokens: pb::AuthTokenBody (user, expiry, the user's generation) followed by its
// HMAC-SHA256 under the cluster's token secret (pb::AuthMeta.token_secret, replicated),
// so a token issued by one member is accepted by every member. A token is refused once
// expired, when its user's generation changed (new password, deleted and added again),
// or when auth was disabled and enabled again (a new secret).
//
// Thread-safety: pure functions.
#ifndef STEAD_SERVER_AUTH_TOKEN_H_
#define STEAD_SERVER_AUTH_TOKEN_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "proto/kv.pb.h"

namespace stead::server {

// Default rounds of PBKDF2 for new passwords: about 0.1 s of one core.
inline constexpr uint32_t kDefaultPasswordIterations = 200000;

// A new salted hash of `password`.
absl::StatusOr<pb::PasswordHash> HashPassword(absl::string_view password, uint32_t iterations);
// Whether `password` matches `hash` (compared in constant time).
bool VerifyPassword(absl::string_view password, const pb::PasswordHash& hash);

// `size` random bytes from the system's generator (a token secret, a salt).
absl::StatusOr<std::string> RandomBytes(size_t size);

// A token for `body` signed with `secret`.
std::string SignToken(const pb::AuthTokenBody& body, absl::string_view secret);
// The body of `token` if its signature under `secret` holds and it has not expired at
// `now`; Unauthenticated otherwise (one message for every reason a client could
// probe with).
absl::StatusOr<pb::AuthTokenBody> VerifyToken(absl::string_view token, absl::string_view secret,
                                              absl::Time now);

}  // namespace stead::server

#endif  // STEAD_SERVER_AUTH_TOKEN_H_
