// The seeded simulation suite: every profile over a fixed seed range, with zero
// violations, plus the simulator's own tests: replay determinism, and planted bugs
// (an unsafe commit rule, acknowledging before persisting, stale reads, a dropped
// apply), each of which must be reported by the check meant to catch it.
//
// Each TEST covers one profile and one seed range so ctest runs them in parallel; the
// ranges add up to 1,175 seeds (plus the coverage, determinism and self-test runs).
// Failing seeds print the full report (replay with `raft_sim --profile=P --seed=N`).
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "gtest/gtest.h"
#include "tests/sim/profile.h"
#include "tests/sim/simulator.h"

namespace stead::sim {
namespace {

// At most this many seeds of each range, from STEAD_SIM_SEEDS_PER_RANGE. The asan
// preset sets it: the dev preset runs every seed for the Raft checks, and a sanitizer
// needs fewer to find a memory error in the same code.
uint64_t SeedsPerRange(uint64_t count) {
  const char* limit = std::getenv("STEAD_SIM_SEEDS_PER_RANGE");
  uint64_t parsed = 0;
  if (limit == nullptr || !absl::SimpleAtoi(limit, &parsed) || parsed == 0) return count;
  if (parsed < count) {
    std::cout << "STEAD_SIM_SEEDS_PER_RANGE=" << parsed << ": " << parsed << " of " << count
              << " seeds" << std::endl;
  }
  return std::min(count, parsed);
}

// Runs `count` seeds of `profile_name` from `first_seed` and expects no violation.
void RunSeeds(const std::string& profile_name, uint64_t first_seed, uint64_t count,
              uint64_t steps = 0) {
  count = SeedsPerRange(count);
  SimStats total;
  uint64_t failures = 0;
  for (uint64_t seed = first_seed; seed < first_seed + count; ++seed) {
    absl::StatusOr<Profile> profile = MakeProfile(profile_name, seed);
    ASSERT_TRUE(profile.ok()) << profile.status();
    if (steps > 0) profile->steps = steps;
    const SimResult result = RunSimulation(*profile, seed);
    Accumulate(result.stats, total);
    if (!result.ok()) {
      ++failures;
      ADD_FAILURE() << result.report;
      if (failures >= 3) break;  // the first reports are the useful ones
    }
  }
  std::cout << SummaryLine(count, total) << " profile=" << profile_name
            << " first_seed=" << first_seed << std::endl;
  EXPECT_EQ(total.violations, 0u);
  // The runs did real work: guard against a simulator that silently does nothing.
  EXPECT_GT(total.elections, count);
  EXPECT_GT(total.commits, count * 10);
  // Crashes lost unflushed state machine tails, which had to be applied again.
  EXPECT_GT(total.state_rollbacks, 0u);
}

TEST(SimVoters3, Seeds1To150) { RunSeeds("voters3", 1, 150); }
TEST(SimVoters5, Seeds1To125) { RunSeeds("voters5", 1, 125); }
TEST(SimLearners, Seeds1To125) { RunSeeds("learners", 1, 125); }
TEST(SimMembership, Seeds1To125) { RunSeeds("membership", 1, 125); }
TEST(SimMembership, Seeds126To250) { RunSeeds("membership", 126, 125); }
TEST(SimSnapshots, Seeds1To125) { RunSeeds("snapshots", 1, 125); }
TEST(SimSnapshots, Seeds126To250) { RunSeeds("snapshots", 126, 125); }
TEST(SimDurability, Seeds1To100) { RunSeeds("durability", 1, 100); }
TEST(SimLease, Seeds1To75) { RunSeeds("lease", 1, 75); }
TEST(SimChaos, Seeds1To100) { RunSeeds("chaos", 1, 100); }

TEST(SimSnapshotsCoverage, SnapshotsAreActuallyInstalled) {
  // Goal: the snapshot profile must exercise snapshot sending and installation, not
  // just compaction; otherwise its seeds prove little about that path.
  SimStats total;
  for (uint64_t seed = 1000; seed < 1020; ++seed) {
    absl::StatusOr<Profile> profile = MakeProfile("snapshots", seed);
    ASSERT_TRUE(profile.ok());
    const SimResult result = RunSimulation(*profile, seed);
    ASSERT_TRUE(result.ok()) << result.report;
    Accumulate(result.stats, total);
  }
  EXPECT_GT(total.snapshots, 0u);
  EXPECT_GT(total.crashes, 0u);
  EXPECT_GT(total.partitions, 0u);
}

TEST(SimFollowerReadsCoverage, FollowersAndLearnersServeReads) {
  // Goal: worlds with follower reads must really answer reads on followers and learners
  // (through the leader's read index), so the linearizability check covers them.
  SimStats total;
  uint64_t worlds = 0;
  for (uint64_t seed = 3000; seed < 3030; ++seed) {
    absl::StatusOr<Profile> profile = MakeProfile("learners", seed);
    ASSERT_TRUE(profile.ok());
    if (profile->follower_read_probability == 0) continue;
    ++worlds;
    const SimResult result = RunSimulation(*profile, seed);
    ASSERT_TRUE(result.ok()) << result.report;
    Accumulate(result.stats, total);
  }
  ASSERT_GT(worlds, 0u);
  EXPECT_GT(total.follower_reads_done, worlds * 2);
}

TEST(SimMembershipCoverage, ConfChangesAndTransfersHappen) {
  SimStats total;
  for (uint64_t seed = 2000; seed < 2020; ++seed) {
    absl::StatusOr<Profile> profile = MakeProfile("membership", seed);
    ASSERT_TRUE(profile.ok());
    const SimResult result = RunSimulation(*profile, seed);
    ASSERT_TRUE(result.ok()) << result.report;
    Accumulate(result.stats, total);
  }
  // Bootstrap entries count as conf changes too; demand more than those.
  EXPECT_GT(total.conf_changes, 20u * 5);
  EXPECT_GT(total.transfers, 0u);
}

TEST(SimDeterminism, SameSeedReplaysBitForBit) {
  // Goal: `--seed=N` reproduces a run exactly. Method: run seeds of the busiest profile
  // twice and compare the fingerprint of the full event trace and every counter; a
  // different seed must give a different trace.
  for (uint64_t seed : {7u, 8u, 9u}) {
    SCOPED_TRACE(seed);
    absl::StatusOr<Profile> profile = MakeProfile("chaos", seed);
    ASSERT_TRUE(profile.ok());
    const SimResult first = RunSimulation(*profile, seed);
    const SimResult second = RunSimulation(*profile, seed);
    EXPECT_EQ(first.trace_hash, second.trace_hash);
    EXPECT_EQ(first.stats.steps, second.stats.steps);
    EXPECT_EQ(first.stats.elections, second.stats.elections);
    EXPECT_EQ(first.stats.commits, second.stats.commits);
    EXPECT_EQ(first.stats.messages, second.stats.messages);
    EXPECT_EQ(first.report, second.report);
    const SimResult other = RunSimulation(*profile, seed + 100);
    EXPECT_NE(first.trace_hash, other.trace_hash);
  }
}

TEST(SimSelfTest, UnsafeOldTermCommitIsCaught) {
  // Goal: prove the simulator can fail, through the right check. Method: turn on the
  // core's test-only switch that lets a leader commit an entry of an earlier term by
  // counting replicas (the Figure 8 bug of the Raft paper, §5.4.2) and run the figure8
  // profile, whose leaders crash right after replicating to a minority. Some seed must
  // report a violation, Leader Completeness must be what reports it (the next leader
  // lacks the entry the unsafe rule committed), and the report must name the seed so
  // it can be replayed.
  uint64_t caught = 0;
  std::string first_report;
  for (uint64_t seed = 1; seed <= 300 && caught < 2; ++seed) {
    absl::StatusOr<Profile> profile = MakeProfile("figure8", seed);
    ASSERT_TRUE(profile.ok());
    profile->unsafe_commit_previous_term_entries = true;
    const SimResult result = RunSimulation(*profile, seed);
    if (!result.ok()) {
      ++caught;
      if (first_report.empty()) first_report = result.report;
      EXPECT_EQ(result.check, Check::kLeaderCompleteness) << result.report;
      EXPECT_NE(result.report.find(": leader completeness: "), std::string::npos);
      EXPECT_NE(result.report.find("seed=" + std::to_string(seed)), std::string::npos);
      EXPECT_NE(result.report.find("--seed=" + std::to_string(seed)), std::string::npos);
    }
  }
  ASSERT_GT(caught, 0u) << "the simulator never noticed the unsafe commit rule";
  std::cout << "first violation caught with the unsafe switch:\n"
            << first_report.substr(0, first_report.find("trace tail")) << std::endl;
}

TEST(SimSelfTest, AckBeforePersistIsCaught) {
  // Goal: the simulator catches a reordering in the Ready pipeline that production and
  // the simulator share: votes and append acknowledgements sent before the write that
  // covers them is durable (etcd#14370). Method: the durability profile (slow disks,
  // crashes of up to all but one node) with raft::PipelineOptions'
  // unsafe_send_before_persist_for_testing; a crash then loses state a quorum was told
  // is durable, which must show as two leaders in a term or a committed entry lost.
  // The seeds run with the bug must all pass without it, so the switch is the cause.
  // Bounded: at most 40 seeds (about 1-2 s each in Debug), stopping at the first catch.
  std::vector<uint64_t> caught;
  uint64_t last_seed = 0;
  for (uint64_t seed = 1; seed <= 40 && caught.empty(); ++seed) {
    last_seed = seed;
    absl::StatusOr<Profile> profile = MakeProfile("durability", seed);
    ASSERT_TRUE(profile.ok());
    profile->unsafe_send_before_persist = true;
    const SimResult result = RunSimulation(*profile, seed);
    if (result.ok()) continue;
    caught.push_back(seed);
    const std::string first_line = result.report.substr(0, result.report.find('\n'));
    std::cout << first_line << std::endl;
    EXPECT_NE(result.report.find("--seed=" + std::to_string(seed)), std::string::npos);
    // A vote lost in the crash shows as two leaders of one term (Election Safety); a lost
    // append acknowledgement as a committed entry missing from a later leader's log
    // (Leader Completeness) or replaced by another one (State Machine Safety).
    EXPECT_TRUE(result.check == Check::kElectionSafety ||
                result.check == Check::kLeaderCompleteness ||
                result.check == Check::kStateMachineSafety)
        << "not a lost-durability violation: " << result.check << "\n"
        << result.report;
  }
  ASSERT_FALSE(caught.empty()) << "acknowledging before persisting went unnoticed";
  for (uint64_t seed = 1; seed <= last_seed; ++seed) {
    absl::StatusOr<Profile> profile = MakeProfile("durability", seed);
    ASSERT_TRUE(profile.ok());
    const SimResult result = RunSimulation(*profile, seed);
    EXPECT_TRUE(result.ok()) << "seed " << seed << " fails without the bug too:\n" << result.report;
  }
}

TEST(SimSelfTest, Figure8ProfileIsCleanWithTheSafeRule) {
  // The same worlds with the correct rule: no violation, so the self-test above fails
  // because of the switch and not because of the profile.
  for (uint64_t seed = 1; seed <= 40; ++seed) {
    absl::StatusOr<Profile> profile = MakeProfile("figure8", seed);
    ASSERT_TRUE(profile.ok());
    const SimResult result = RunSimulation(*profile, seed);
    ASSERT_TRUE(result.ok()) << result.report;
  }
}

// A voters3 world where only a partition can depose a leader: no crashes, no lost or
// long-delayed messages, equal clock rates, and CheckQuorum off so that a leader cut off
// from the others keeps believing it leads for the whole partition (with it on, the
// overlap with its successor lasts a few ticks). Clients stick to the leader they know
// and some move on to the new one, on few keys, so the old leader is asked for keys the
// new one has since written.
Profile StaleLeaderWorld(uint64_t seed, double partition_probability) {
  absl::StatusOr<Profile> profile = MakeProfile("voters3", seed);
  EXPECT_TRUE(profile.ok());
  profile->crash_probability = 0;
  profile->drop_probability = 0;
  profile->long_delay_probability = 0;
  profile->tick_skew_percent = 0;
  profile->check_quorum = false;
  profile->partition_probability = partition_probability;
  profile->partition_ticks = 120;
  profile->clients = 6;
  profile->keys = 2;
  profile->write_probability = 0.5;
  profile->read_probability = 0.8;
  return *profile;
}

TEST(SimSelfTest, StaleReadIsCaught) {
  // Goal: the linearizability checker catches a leader that serves reads without a
  // read index round: a leader partitioned away answers from its own state after a
  // new leader committed writes on the other side. Method: the planted bug
  // (Profile::unsafe_local_reads) in worlds whose leaders are deposed only by
  // partitions; a seed must fail through the linearizability check with reads answered
  // by a deposed leader. The same seeds must pass without partitions (the bug is then
  // harmless: nobody is deposed) and without the bug (ReadIndex keeps deposed leaders
  // from answering), so the partitioned old leader and the bug together are the cause.
  // Bounded: at most 30 seeds, stopping at the first catch.
  uint64_t caught = 0;
  uint64_t last_seed = 0;
  for (uint64_t seed = 1; seed <= 30 && caught == 0; ++seed) {
    last_seed = seed;
    Profile profile = StaleLeaderWorld(seed, /*partition_probability=*/0.05);
    profile.unsafe_local_reads = true;
    const SimResult result = RunSimulation(profile, seed);
    if (result.ok()) continue;
    caught = seed;
    std::cout << result.report.substr(0, result.report.find("  replay:")) << std::endl;
    EXPECT_EQ(result.check, Check::kLinearizability) << result.report;
    EXPECT_GT(result.stats.partitions, 0u);
    EXPECT_GT(result.stats.deposed_leader_reads, 0u) << "no read was served by a deposed leader";
  }
  ASSERT_NE(caught, 0u) << "stale reads of a partitioned old leader went unnoticed";
  for (uint64_t seed = 1; seed <= last_seed; ++seed) {
    SCOPED_TRACE(seed);
    Profile without_partitions = StaleLeaderWorld(seed, 0);
    without_partitions.unsafe_local_reads = true;
    const SimResult unpartitioned = RunSimulation(without_partitions, seed);
    EXPECT_TRUE(unpartitioned.ok()) << unpartitioned.report;
    EXPECT_EQ(unpartitioned.stats.deposed_leader_reads, 0u);
    const SimResult safe = RunSimulation(StaleLeaderWorld(seed, 0.05), seed);
    EXPECT_TRUE(safe.ok()) << "seed fails without the bug too:\n" << safe.report;
  }
}

TEST(SimSelfTest, DroppedApplyIsCaught) {
  // Goal: the state machine content check catches an applier that loses a write on one
  // member while every Raft invariant holds (same entries, same order, same applied
  // index and prefix hash; the command is even recorded as applied, so the
  // exactly-once and acknowledged-write checks see nothing). Method: the planted bug
  // (Profile::unsafe_drop_apply) in voters3 worlds; every seed must fail through
  // State Machine Content, and pass without the bug. Bounded: 5 seeds.
  for (uint64_t seed = 1; seed <= 5; ++seed) {
    SCOPED_TRACE(seed);
    absl::StatusOr<Profile> profile = MakeProfile("voters3", seed);
    ASSERT_TRUE(profile.ok());
    const SimResult safe = RunSimulation(*profile, seed);
    EXPECT_TRUE(safe.ok()) << safe.report;
    profile->unsafe_drop_apply = true;
    const SimResult result = RunSimulation(*profile, seed);
    EXPECT_EQ(result.check, Check::kStateMachineContent) << result.report;
    EXPECT_NE(result.report.find("planted bug: drops the write"), std::string::npos);
    if (seed == 1) std::cout << result.report.substr(0, result.report.find('\n')) << std::endl;
  }
}

TEST(SimStateMachineCoverage, CrashesRollBackUnflushedState) {
  // Goal: crashes really lose the unflushed tail of state machines (which the nodes then
  // apply again from the log, compared index by index with what was applied first), in
  // worlds with and without snapshots, and the runs stay clean.
  for (const char* name : {"durability", "snapshots"}) {
    SCOPED_TRACE(name);
    SimStats total;
    for (uint64_t seed = 4000; seed < 4010; ++seed) {
      absl::StatusOr<Profile> profile = MakeProfile(name, seed);
      ASSERT_TRUE(profile.ok());
      const SimResult result = RunSimulation(*profile, seed);
      ASSERT_TRUE(result.ok()) << result.report;
      Accumulate(result.stats, total);
    }
    EXPECT_GT(total.state_rollbacks, 0u);
  }
}

}  // namespace
}  // namespace stead::sim
