// raft_sim: runs the deterministic Raft simulator over any number of seeds.
//
//   raft_sim --profile=chaos --seeds=10000 --first-seed=1   # soak
//   raft_sim --profile=snapshots --seed=4242                 # replay one seed
//   raft_sim --profile=all --seeds=100                       # every profile
//
// Prints one "SIM ..." summary line per profile; on a violation prints the report (seed,
// step, trace tail) and exits 1. --steps=N and --tick-skew=PERCENT override the
// profile's step count and clock-rate skew; --unsafe
// turns on Config::unsafe_commit_previous_term_entries_for_testing; --unsafe-runtime
// makes the shared Ready pipeline acknowledge before persisting; --unsafe-reads makes
// leaders serve reads without a read index round; --unsafe-apply makes one member's
// applier drop a write; --keep-going runs the remaining seeds after a violation;
// --trace prints every simulator event.
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/string_view.h"
#include "tests/sim/profile.h"
#include "tests/sim/simulator.h"

namespace {

bool ParseFlag(absl::string_view arg, absl::string_view name, std::string* value) {
  const std::string prefix = std::string("--") + std::string(name) + "=";
  if (!absl::StartsWith(arg, prefix)) return false;
  *value = std::string(arg.substr(prefix.size()));
  return true;
}

int Usage(const char* message) {
  std::fprintf(
      stderr,
      "raft_sim: %s\nusage: raft_sim [--profile=NAME|all] [--seeds=N] "
      "[--first-seed=S] [--seed=S] [--steps=N] [--tick-skew=PERCENT] [--unsafe] [--unsafe-runtime] "
      "[--unsafe-reads] [--unsafe-apply] [--keep-going] [--trace]\n",
      message);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string profile_name = "all";
  uint64_t seeds = 100;
  uint64_t first_seed = 1;
  uint64_t steps = 0;
  int64_t tick_skew = -1;
  bool unsafe = false;
  bool keep_going = false;
  bool trace = false;
  bool unsafe_runtime = false;
  bool unsafe_reads = false;
  bool unsafe_apply = false;
  for (int i = 1; i < argc; ++i) {
    const absl::string_view arg = argv[i];
    std::string value;
    if (ParseFlag(arg, "profile", &value)) {
      profile_name = value;
    } else if (ParseFlag(arg, "seeds", &value)) {
      if (!absl::SimpleAtoi(value, &seeds)) return Usage("--seeds needs a number");
    } else if (ParseFlag(arg, "first-seed", &value)) {
      if (!absl::SimpleAtoi(value, &first_seed)) return Usage("--first-seed needs a number");
    } else if (ParseFlag(arg, "seed", &value)) {
      if (!absl::SimpleAtoi(value, &first_seed)) return Usage("--seed needs a number");
      seeds = 1;
    } else if (ParseFlag(arg, "tick-skew", &value)) {
      if (!absl::SimpleAtoi(value, &tick_skew)) return Usage("--tick-skew needs a number");
    } else if (ParseFlag(arg, "steps", &value)) {
      if (!absl::SimpleAtoi(value, &steps)) return Usage("--steps needs a number");
    } else if (arg == "--unsafe") {
      unsafe = true;
    } else if (arg == "--unsafe-runtime") {
      unsafe_runtime = true;
    } else if (arg == "--unsafe-reads") {
      unsafe_reads = true;
    } else if (arg == "--unsafe-apply") {
      unsafe_apply = true;
    } else if (arg == "--trace") {
      trace = true;
    } else if (arg == "--keep-going") {
      keep_going = true;
    } else {
      return Usage("unknown flag");
    }
  }
  std::vector<std::string> profiles;
  if (profile_name == "all") {
    for (const std::string& name : stead::sim::ProfileNames()) {
      if (name != "figure8") profiles.push_back(name);
    }
  } else {
    profiles.push_back(profile_name);
  }
  int exit_code = 0;
  for (const std::string& name : profiles) {
    stead::sim::SimStats total;
    uint64_t ran = 0;
    for (uint64_t seed = first_seed; seed < first_seed + seeds; ++seed) {
      absl::StatusOr<stead::sim::Profile> profile = stead::sim::MakeProfile(name, seed);
      if (!profile.ok()) return Usage(std::string(profile.status().message()).c_str());
      if (steps > 0) profile->steps = steps;
      if (tick_skew >= 0) profile->tick_skew_percent = static_cast<uint64_t>(tick_skew);
      profile->unsafe_commit_previous_term_entries = unsafe;
      profile->unsafe_send_before_persist = unsafe_runtime;
      profile->unsafe_local_reads = unsafe_reads;
      profile->unsafe_drop_apply = unsafe_apply;
      const stead::sim::SimResult result = stead::sim::RunSimulation(*profile, seed, trace);
      stead::sim::Accumulate(result.stats, total);
      ++ran;
      if (seeds == 1) {
        std::printf("seed=%llu trace_hash=%016llx\n", static_cast<unsigned long long>(seed),
                    static_cast<unsigned long long>(result.trace_hash));
      }
      if (!result.ok()) {
        std::fputs(result.report.c_str(), stdout);
        exit_code = 1;
        if (!keep_going) break;
      }
    }
    std::printf("%s profile=%s first_seed=%llu\n", stead::sim::SummaryLine(ran, total).c_str(),
                name.c_str(), static_cast<unsigned long long>(first_seed));
    std::fflush(stdout);
    if (exit_code != 0 && !keep_going) break;
  }
  return exit_code;
}
