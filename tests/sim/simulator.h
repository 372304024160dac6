// The deterministic Raft simulator: N Raft cores in one thread over a simulated network,
// simulated storage and a nemesis, with the Raft safety invariants checked after every
// step. The fault model is described in tests/sim/README.md.
//
//   SimResult result = RunSimulation(profile, seed);
//   if (!result.ok()) std::cerr << result.report;   // names --seed=N and the trace tail
//
// Everything is driven by one std::mt19937_64 seeded from the seed, an event queue
// ordered by (time, sequence number), and ordered containers only, so a seed replays bit
// for bit; SimResult::trace_hash fingerprints the whole event trace to prove it.
//
// Thread-safety: a Simulator is single-threaded; distinct simulators are independent.
#ifndef STEAD_TESTS_SIM_SIMULATOR_H_
#define STEAD_TESTS_SIM_SIMULATOR_H_

#include <cstdint>
#include <string>

#include "tests/sim/invariants.h"
#include "tests/sim/profile.h"

namespace stead::sim {

// What one run counted. `violations` is 0 for a correct run.
struct SimStats {
  uint64_t steps = 0;
  uint64_t elections = 0;  // distinct (term, leader) pairs observed
  uint64_t commits = 0;    // distinct log indexes applied somewhere
  uint64_t snapshots = 0;  // snapshots installed by followers
  uint64_t compactions = 0;
  uint64_t conf_changes = 0;  // membership changes applied (distinct indexes)
  uint64_t transfers = 0;     // leadership transfers started
  uint64_t crashes = 0;
  uint64_t partitions = 0;
  uint64_t messages = 0;  // messages delivered
  uint64_t writes_acked = 0;
  uint64_t reads_done = 0;
  uint64_t follower_reads_done = 0;  // of reads_done, asked of a follower or learner
  // Reads answered by a node that believed it led while a leader of a newer term had
  // been elected: a deposed leader cut off from the cluster (ReadIndex keeps these
  // linearizable; reads served without it are stale).
  uint64_t deposed_leader_reads = 0;
  // Crashes that rolled a state machine back to its last flush (losing applied
  // entries the core then handed out again).
  uint64_t state_rollbacks = 0;
  uint64_t violations = 0;
};

struct SimResult {
  uint64_t seed = 0;
  SimStats stats;
  // A fingerprint of every event of the run (FNV-1a); equal for equal seeds.
  uint64_t trace_hash = 0;
  // The check that reported the first violation (kNone for a clean run): tests of
  // planted bugs assert it.
  Check check = Check::kNone;
  // Empty when the run was clean; otherwise the first violation: which check, what, at
  // which step, how to replay, the profile and a readable tail of the trace.
  std::string report;
  bool ok() const { return stats.violations == 0; }
};

// Runs one seed of `profile` to the end (or to the first violation). With
// `print_trace`, every simulator event is also printed to stdout as it happens.
SimResult RunSimulation(const Profile& profile, uint64_t seed, bool print_trace = false);

// Adds `run` into `total` (for a multi-seed summary).
void Accumulate(const SimStats& run, SimStats& total);

// "SIM seeds=… steps=… elections=… commits=… snapshots=… conf_changes=… transfers=…
// crashes=… violations=…", the summary line printed per run.
std::string SummaryLine(uint64_t seeds, const SimStats& stats);

}  // namespace stead::sim

#endif  // STEAD_TESTS_SIM_SIMULATOR_H_
