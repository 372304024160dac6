// Simulation profiles: the knobs of one simulated world.
//
// A profile name picks the shape of the scenario (cluster size, which fault classes are
// on); the seed then draws every numeric knob within the profile's ranges, so each seed
// is a different world (swarm testing: some seeds drop many messages and never
// partition, others partition often over a perfect network, ...).
//
// Thread-safety: plain values and pure functions.
#ifndef STEAD_TESTS_SIM_PROFILE_H_
#define STEAD_TESTS_SIM_PROFILE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace stead::sim {

// Simulated time is counted in microticks: one Raft tick is kMicroticksPerTick.
inline constexpr uint64_t kMicroticksPerTick = 100;

struct Profile {
  std::string name;

  // Cluster shape. Initial voters are bootstrapped; learners are added by membership
  // changes once a leader exists.
  int voters = 3;
  int learners = 0;
  // Membership changes (add learner, promote, remove including the leader) keep the
  // voter count within [min_voters, max_voters].
  bool membership_changes = false;
  int min_voters = 3;
  int max_voters = 5;
  bool leadership_transfers = false;

  // Run length: simulation steps (processed events) of the faulty phase, then at most
  // settle_ticks of healing before the final checks.
  uint64_t steps = 5000;
  uint64_t settle_ticks = 400;

  // Network, per message. Delays are uniform in [min_delay, max_delay] microticks;
  // with long_delay_probability a message is held up to long_delay_ticks instead
  // (late, reordered deliveries of stale messages).
  double drop_probability = 0.0;
  double duplicate_probability = 0.0;
  uint64_t min_delay = 5;
  uint64_t max_delay = 60;
  double long_delay_probability = 0.0;
  uint64_t long_delay_ticks = 20;

  // Nemesis, evaluated once per tick: start a partition (symmetric split, one-way
  // links, bridge, or isolate the leader) lasting up to partition_ticks; crash a node
  // and restart it up to down_ticks later.
  double partition_probability = 0.0;
  uint64_t partition_ticks = 60;
  double crash_probability = 0.0;
  uint64_t down_ticks = 60;
  int max_crashed = 1;
  // A newly elected leader crashes within new_leader_crash_max_delay microticks.
  double new_leader_crash_probability = 0.0;
  uint64_t new_leader_crash_max_delay = 300;
  // A leader whose commit index moves onto an entry of an older term (only possible
  // with the unsafe commit rule) crashes at once.
  double crash_on_old_term_commit_probability = 0.0;
  // Replaces the random crashes by the scripted Figure 8 sequence (see
  // Simulator::Figure8Script); a phase that stalls this long starts over.
  bool figure8_script = false;
  uint64_t figure8_phase_ticks = 80;
  double conf_change_probability = 0.0;
  double transfer_probability = 0.0;

  // Storage: a Ready becomes durable 1..max_persist_delay microticks after it was taken
  // (in order). Log compaction once this many applied entries sit above the snapshot
  // (0: never).
  uint64_t max_persist_delay = 50;
  uint64_t compaction_threshold = 0;
  // The state machine's writes are not synced per apply (as in production, whose
  // RocksDB runs without its WAL): after each applied batch its state becomes durable
  // with this probability (a memtable flush); checkpoints and snapshot installs always
  // flush. A crash rolls the state machine back to its last flush and the node applies
  // the committed entries after it again. 1.0: every apply is durable.
  double state_flush_probability = 1.0;
  // Snapshot streaming takes up to this many ticks and fails with the drop rate.
  uint64_t snapshot_transfer_ticks = 10;

  // Client load: `clients` clients with one request outstanding each; per tick an idle
  // client issues a write with write_probability, else a ReadIndex read with
  // read_probability. Keys are written with unique values.
  int clients = 3;
  double write_probability = 0.5;
  double read_probability = 0.3;
  // A read goes to a random follower or learner (served through the leader's read
  // index) with this probability instead of the node the client believes leads.
  double follower_read_probability = 0.0;
  int keys = 5;

  // Each node's tick period is drawn within +/- this percentage of a tick (clock-rate
  // skew; ReadIndex reads must stay linearizable whatever the clocks do).
  uint64_t tick_skew_percent = 0;

  // Raft config knobs.
  int election_timeout_ticks = 10;
  int heartbeat_interval_ticks = 1;
  bool pre_vote = true;
  bool check_quorum = true;
  // Serve reads with ReadOnlyMode::kLeaseBased (requires check_quorum and equal clock
  // rates, tick_skew_percent = 0) instead of ReadIndex.
  bool lease_reads = false;
  uint64_t max_message_bytes = 1 << 20;
  uint64_t max_inflight_messages = 256;
  bool unsafe_commit_previous_term_entries = false;
  // Simulator self-test: every node's Ready pipeline sends messages_after_persist
  // (votes, append acknowledgements) before the write covering them is durable, the
  // "ack before fsync" bug (raft::PipelineOptions::unsafe_send_before_persist_for_testing).
  bool unsafe_send_before_persist = false;
  // Simulator self-test: a leader that has committed an entry of its term answers
  // linearizable reads at its own commit index without the heartbeat round of a read
  // index (nothing confirms it still leads), the stale-read bug of a deposed leader
  // that does not know it yet. Follower reads are unchanged.
  bool unsafe_local_reads = false;
  // Simulator self-test: the applier of the highest-numbered initial voter drops the
  // write of the first command it applies while recording the entry as applied (index,
  // prefix, exactly-once record), the "lost write batch" bug only a comparison of
  // state machine contents sees.
  bool unsafe_drop_apply = false;

  // One line, for the failure report.
  std::string Describe() const;
};

// The profiles the suite and the CLI know, by name.
std::vector<std::string> ProfileNames();

// Draws the knobs of profile `name` from `seed`. Errors: InvalidArgument for an unknown
// name.
absl::StatusOr<Profile> MakeProfile(absl::string_view name, uint64_t seed);

}  // namespace stead::sim

#endif  // STEAD_TESTS_SIM_PROFILE_H_
