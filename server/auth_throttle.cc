#include "server/auth_throttle.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace stead::server {

absl::Status GuessThrottle::Admit(const std::string& name, absl::Time now) const {
  MutexLock lock(&mu_);
  auto it = failures_.find(name);
  if (it == failures_.end() || now >= it->second.blocked_until) return absl::OkStatus();
  return absl::UnauthenticatedError(absl::StrCat(
      "too many failed attempts for this user: retry in ",
      absl::FormatDuration(absl::Ceil(it->second.blocked_until - now, absl::Seconds(1)))));
}

void GuessThrottle::Record(const std::string& name, bool succeeded, absl::Time now) const {
  MutexLock lock(&mu_);
  if (succeeded) {
    failures_.erase(name);
    return;
  }
  if (!failures_.contains(name) && failures_.size() >= options_.max_names) {
    auto idlest = std::min_element(failures_.begin(), failures_.end(), [](const auto& a,
                                                                          const auto& b) {
      return a.second.last < b.second.last;
    });
    failures_.erase(idlest);
  }
  Failures& entry = failures_[name];
  entry.count++;
  entry.last = now;
  const int beyond = entry.count - options_.free_failures;
  if (beyond <= 0) return;
  absl::Duration wait = options_.first_wait;
  for (int i = 1; i < beyond && wait < options_.max_wait; ++i) wait *= 2;
  entry.blocked_until = now + std::min(wait, options_.max_wait);
}

}  // namespace stead::server
