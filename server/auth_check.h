// Who may do what: the permission check of every client request, and the Authorizer
// that identifies a request's user against the replicated auth state (auth_store.h).
//
// What each request needs once auth is enabled:
//   range                     read on the whole requested range
//   put                       write (readwrite) on the key
//   delete_range              write on the whole range
//   txn                       read on every compare's key or range and every range op,
//                             write on every put and delete, of both branches, all
//                             checked before anything is proposed
//   watch                     read on its range (when opened and again before each
//                             response with events: client_service.h)
//   watch_cancel, authenticate nothing (a watch belongs to its connection)
//   member_list, member_remove, member_promote, leader_transfer, hash, snapshot_save,
//   auth (every change and listing)
//                             the root role
// A range is covered when the union of the user's permissions of that kind covers every
// key of it; readwrite implies read. Denied: PERMISSION_DENIED.
//
// Identity, in this order: a token (ClientRequest.auth_token, from `authenticate` or
// minted by a forwarding member), else the user a verified client certificate names
// (with --client-cert-auth: its CN, or its first DNS SAN without a CN). Neither, a
// forged or expired token, a token of a deleted user or of an older password:
// UNAUTHENTICATED. Every check reads the current auth state, so a revoked role or a
// deleted user takes effect on the next request of connections already open.
//
// Thread-safety: thread-safe (reads snapshots of the state machine; hashing runs on a
// thread of its own).
#ifndef STEAD_SERVER_AUTH_CHECK_H_
#define STEAD_SERVER_AUTH_CHECK_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "base/mutex.h"
#include "proto/kv.pb.h"
#include "server/auth_throttle.h"
#include "storage/state_machine.h"
#include "wire/tls_verify.h"

namespace stead::server {

// What a user's roles grant.
struct Grants {
  bool root = false;
  std::vector<pb::Permission> permissions;
};

// The grants of `user` (its roles as stored now; roles deleted meanwhile grant nothing).
absl::StatusOr<Grants> GrantsOf(const pb::AuthUser& user, const storage::StateReader& state);

// OK if `grants` allow `request` (the table above); PermissionDenied otherwise.
absl::Status CheckPermission(const Grants& grants, const pb::ClientRequest& request);

// The user name a verified certificate stands for: its CN, else its first DNS SAN;
// empty with neither.
std::string CertificateUser(const wire::PeerIdentity& identity);

struct AuthorizerOptions {
  // Lifetime of a token from `authenticate`. Default: 5 min.
  absl::Duration token_ttl = absl::Minutes(5);
  // PBKDF2 rounds for passwords set through this member. Default:
  // kDefaultPasswordIterations.
  uint32_t password_iterations = 200000;
  // Default: absl::Now.
  std::function<absl::Time()> clock = [] { return absl::Now(); };
  // How failed `authenticate` calls for one name slow further ones (auth_throttle.h).
  GuessThrottleOptions guess_throttle = {};
};

class Authorizer {
 public:
  // Borrows `state`, which must outlive it.
  Authorizer(AuthorizerOptions options, const storage::StateMachine* state);
  ~Authorizer();  // Stop()
  Authorizer(const Authorizer&) = delete;
  Authorizer& operator=(const Authorizer&) = delete;

  // The work of Authenticate and PrepareChange (a PBKDF2 each: about 0.1 s of a core)
  // on this authorizer's own thread, one at a time, so that it never holds a network
  // thread and password guesses on one member run one after the other. At most
  // kMaxPendingHashes wait; more are refused with RESOURCE_EXHAUSTED. `done` runs
  // exactly once, on that thread (or at once when refused or stopped).
  static constexpr size_t kMaxPendingHashes = 64;
  void AuthenticateAsync(pb::AuthenticateRequest request,
                         std::function<void(absl::StatusOr<pb::AuthenticateResponse>)> done) const;
  void PrepareChangeAsync(pb::AuthRequest request,
                          std::function<void(absl::StatusOr<pb::AuthRequest>)> done) const;
  // Refuses the work still waiting (UNAVAILABLE) and joins the thread. Idempotent.
  void Stop() const;

  // Checks a request arriving on the client port from a caller whose verified
  // certificate names `certificate_user` (empty: none, or not used for identity).
  // With auth disabled everything is allowed. A request whose identity is the
  // certificate gets a token of that user in auth_token, so that the leader re-checks
  // it as the same user if the request is forwarded.
  // With `ongoing` (a watch opened earlier, checked again), a token's expiry is not
  // checked: its signature, its user's generation and the permission are.
  absl::Status Check(pb::ClientRequest* request, const std::string& certificate_user,
                     bool ongoing = false) const;

  // For a request of the embedded API (trusted, never checked here): with auth
  // enabled, a token of the root user, so that the leader serves it if it is
  // forwarded. Nothing while auth is disabled.
  absl::Status AttachRootToken(pb::ClientRequest* request) const;

  // Serves `authenticate`: a token for a correct name and password; UNAUTHENTICATED
  // with the same message for an unknown user and a wrong password (an unknown user
  // costs a hash too). FailedPrecondition while auth is disabled: no token is needed
  // then, and a client with credentials sends its requests without one.
  absl::StatusOr<pb::AuthenticateResponse> Authenticate(
      const pb::AuthenticateRequest& request) const;

  // Readies an auth change for the log: hashes a password (and clears it), chooses the
  // token secret of an enable.
  absl::Status PrepareChange(pb::AuthRequest* request) const;

 private:
  // A job gets OK to run, or the reason it will not.
  void Enqueue(std::function<void(absl::Status)> job) const;
  void RunJobs() const;

  const AuthorizerOptions options_;
  const storage::StateMachine* const state_;
  const GuessThrottle throttle_{options_.guess_throttle};
  mutable Mutex mu_;
  mutable CondVar wake_;
  mutable std::deque<std::function<void(absl::Status)>> jobs_ ABSL_GUARDED_BY(mu_);
  mutable bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  mutable std::thread worker_;  // started with the first job
};

}  // namespace stead::server

#endif  // STEAD_SERVER_AUTH_CHECK_H_
