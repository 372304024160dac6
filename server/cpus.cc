#include "server/cpus.h"

#include <sched.h>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"

namespace stead::server {

int CpusAllowedByQuota(absl::string_view cpu_max, int cpus) {
  const std::vector<absl::string_view> fields =
      absl::StrSplit(cpu_max, absl::ByAnyChar(" \n"), absl::SkipEmpty());
  int64_t quota = 0;
  int64_t period = 0;
  if (fields.size() != 2 || !absl::SimpleAtoi(fields[0], &quota) ||
      !absl::SimpleAtoi(fields[1], &period) || quota <= 0 || period <= 0) {
    return cpus;  // "max": no quota, or not a cpu.max line
  }
  const int64_t allowed = (quota + period - 1) / period;
  return static_cast<int>(std::clamp<int64_t>(allowed, 1, std::max(cpus, 1)));
}

int AvailableCpus() {
  int cpus = 1;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) cpus = std::max(CPU_COUNT(&set), 1);
  std::ifstream cpu_max("/sys/fs/cgroup/cpu.max");
  if (!cpu_max) return cpus;
  std::stringstream contents;
  contents << cpu_max.rdbuf();
  return CpusAllowedByQuota(contents.str(), cpus);
}

int DefaultIoThreads(int cpus) { return std::clamp(cpus / 2, 1, 8); }

}  // namespace stead::server
