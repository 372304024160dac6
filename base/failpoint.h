// Failpoints: deliberate bugs that the fault suite (tests/fault) plants in real members
// to prove that its checkers catch what they must. A member turns on the failpoints
// named in the environment variable STEAD_FAILPOINTS (comma-separated) when it starts,
// logs each one as a warning, and refuses to start on a name it does not know. None is
// on unless named; never set STEAD_FAILPOINTS outside tests.
//
//   STEAD_FAILPOINTS=unsafe-local-reads stead ...
//
// Thread-safety: the variable is read once, on first use; every function is safe to
// call from any thread.
#ifndef STEAD_BASE_FAILPOINT_H_
#define STEAD_BASE_FAILPOINT_H_

#include <algorithm>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/str_split.h"

namespace stead {

// Linearizable reads served from the member's own state without a read barrier: a
// deposed or lagging member answers with stale data.
inline constexpr std::string_view kFailpointUnsafeLocalReads = "unsafe-local-reads";

inline constexpr std::string_view kKnownFailpoints[] = {kFailpointUnsafeLocalReads};

// The names in STEAD_FAILPOINTS, as given (empty entries dropped).
inline const std::vector<std::string>& NamedFailpoints() {
  static const std::vector<std::string> named = [] {
    const char* spec = std::getenv("STEAD_FAILPOINTS");
    return spec == nullptr ? std::vector<std::string>()
                           : std::vector<std::string>(absl::StrSplit(spec, ',', absl::SkipEmpty()));
  }();
  return named;
}

inline bool FailpointEnabled(std::string_view name) {
  const std::vector<std::string>& named = NamedFailpoints();
  return std::find(named.begin(), named.end(), name) != named.end();
}

inline bool IsKnownFailpoint(std::string_view name) {
  return std::find(std::begin(kKnownFailpoints), std::end(kKnownFailpoints), name) !=
         std::end(kKnownFailpoints);
}

}  // namespace stead

#endif  // STEAD_BASE_FAILPOINT_H_
