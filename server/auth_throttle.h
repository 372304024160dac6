// Slows password guessing: after a few failed `authenticate` calls for one user name, a
// member refuses further attempts for that name for a while, without hashing, and the
// wait doubles with each failure (up to a cap). A success clears the name.
//
// Names are counted whether or not the user exists, so the refusal tells an attacker
// nothing about which users exist. The state is per member and in memory only: a guesser
// spreading attempts over the members gets each member's allowance, and a restart
// forgets; the single hashing worker (Authorizer) bounds the rate on top.
//
// Thread-safe.
#ifndef STEAD_SERVER_AUTH_THROTTLE_H_
#define STEAD_SERVER_AUTH_THROTTLE_H_

#include <cstddef>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "base/mutex.h"

namespace stead::server {

struct GuessThrottleOptions {
  // Failures in a row a name may have before attempts wait. Default: 5.
  int free_failures = 5;
  // The wait after the first failure beyond free_failures; it doubles with each
  // further one, up to max_wait. Default: 1 s, 5 min.
  absl::Duration first_wait = absl::Seconds(1);
  absl::Duration max_wait = absl::Minutes(5);
  // Names remembered at most; the one idle longest is forgotten first. Default: 10,000.
  size_t max_names = 10000;
};

class GuessThrottle {
 public:
  explicit GuessThrottle(GuessThrottleOptions options = {}) : options_(options) {}

  // OK if `name` may try now; otherwise UNAUTHENTICATED saying how long to wait.
  absl::Status Admit(const std::string& name, absl::Time now) const;
  // The outcome of an attempt that Admit let through.
  void Record(const std::string& name, bool succeeded, absl::Time now) const;

 private:
  struct Failures {
    int count = 0;
    absl::Time last = absl::InfinitePast();
    absl::Time blocked_until = absl::InfinitePast();
  };

  const GuessThrottleOptions options_;
  mutable Mutex mu_;
  mutable absl::flat_hash_map<std::string, Failures> failures_ ABSL_GUARDED_BY(mu_);
};

}  // namespace stead::server

#endif  // STEAD_SERVER_AUTH_THROTTLE_H_
