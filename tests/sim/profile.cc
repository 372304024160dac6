#include "tests/sim/profile.h"

#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"

namespace stead::sim {
namespace {

// Draws knobs from a generator of its own, so adding a knob to the simulator's event
// stream never changes a profile (and the reverse).
class KnobDice {
 public:
  explicit KnobDice(uint64_t seed) : random_(seed ^ 0x5eedc0ffee123457ULL) {}
  uint64_t Range(uint64_t low, uint64_t high) {  // inclusive
    return low + random_() % (high - low + 1);
  }
  bool Coin(int percent) { return static_cast<int>(random_() % 100) < percent; }
  // One of the given probabilities: swarm testing wants some worlds with a fault class
  // entirely off and others with it frequent.
  double Pick(const std::vector<double>& choices) { return choices[random_() % choices.size()]; }
  uint64_t PickCount(const std::vector<uint64_t>& choices) {
    return choices[random_() % choices.size()];
  }

 private:
  std::mt19937_64 random_;
};

// The network and timing knobs every profile shares.
void DrawCommon(KnobDice& dice, Profile& p) {
  p.drop_probability = dice.Pick({0.0, 0.01, 0.05, 0.15});
  p.duplicate_probability = dice.Pick({0.0, 0.02, 0.1});
  p.min_delay = dice.Range(1, 10);
  p.max_delay = p.min_delay + dice.PickCount({10, 40, 100, 250});
  p.long_delay_probability = dice.Pick({0.0, 0.0, 0.01, 0.03});
  p.long_delay_ticks = dice.Range(5, 40);
  p.partition_probability = dice.Pick({0.0, 0.01, 0.03});
  p.partition_ticks = dice.Range(20, 120);
  p.crash_probability = dice.Pick({0.0, 0.005, 0.02});
  p.down_ticks = dice.Range(10, 100);
  p.max_persist_delay = dice.PickCount({1, 20, 80, 200});
  p.write_probability = dice.Pick({0.3, 0.7, 1.0});
  p.read_probability = dice.Pick({0.1, 0.4});
  p.keys = static_cast<int>(dice.Range(2, 8));
  p.clients = static_cast<int>(dice.Range(1, 6));
  p.tick_skew_percent = dice.PickCount({0, 2, 10, 30});
  p.election_timeout_ticks = static_cast<int>(dice.Range(8, 16));
  p.heartbeat_interval_ticks = static_cast<int>(dice.Range(1, 3));
  // Safety must not depend on the liveness helpers: some worlds run without them.
  p.pre_vote = dice.Coin(80);
  p.check_quorum = dice.Coin(80);
  p.max_message_bytes = dice.PickCount({64, 512, 1 << 20});
  p.max_inflight_messages = dice.PickCount({1, 4, 256});
}

}  // namespace

std::string Profile::Describe() const {
  return absl::StrCat(
      "profile=", name, " voters=", voters, " learners=", learners,
      " membership=", membership_changes, " transfers=", leadership_transfers, " steps=", steps,
      " clients=", clients, " drop=", drop_probability, " dup=", duplicate_probability,
      " delay=", min_delay, "..", max_delay, " long_delay=", long_delay_probability,
      " partition=", partition_probability, " crash=", crash_probability,
      " leader_crash=", new_leader_crash_probability, " persist_delay<=", max_persist_delay,
      " compaction=", compaction_threshold, " tick_skew%=", tick_skew_percent,
      " election_timeout=", election_timeout_ticks, " heartbeat=", heartbeat_interval_ticks,
      " pre_vote=", pre_vote, " check_quorum=", check_quorum, " lease_reads=", lease_reads,
      " follower_reads=", follower_read_probability, " max_message_bytes=", max_message_bytes,
      " inflight=", max_inflight_messages, " state_flush=", state_flush_probability,
      " unsafe_commit=", unsafe_commit_previous_term_entries,
      " unsafe_send_before_persist=", unsafe_send_before_persist,
      " unsafe_local_reads=", unsafe_local_reads, " unsafe_drop_apply=", unsafe_drop_apply);
}

std::vector<std::string> ProfileNames() {
  return {"voters3",    "voters5", "learners", "membership", "snapshots",
          "durability", "lease",   "chaos",    "figure8"};
}

absl::StatusOr<Profile> MakeProfile(absl::string_view name, uint64_t seed) {
  KnobDice dice(seed);
  Profile p;
  p.name = std::string(name);
  DrawCommon(dice, p);
  if (name == "voters3") {
    p.voters = 3;
  } else if (name == "voters5") {
    p.voters = 5;
    p.max_crashed = 2;
  } else if (name == "learners") {
    p.voters = 3;
    p.learners = static_cast<int>(dice.Range(1, 2));
  } else if (name == "membership") {
    p.voters = static_cast<int>(dice.Range(3, 5));
    p.membership_changes = true;
    p.min_voters = 3;
    p.max_voters = 5;
    p.learners = static_cast<int>(dice.Range(0, 1));
    p.conf_change_probability = dice.Pick({0.02, 0.05});
    p.leadership_transfers = true;
    p.transfer_probability = dice.Pick({0.0, 0.01, 0.03});
  } else if (name == "snapshots") {
    p.voters = static_cast<int>(dice.Range(3, 5));
    p.learners = static_cast<int>(dice.Range(0, 1));
    p.compaction_threshold = dice.Range(5, 40);
    p.partition_probability = dice.Pick({0.02, 0.04});
    p.crash_probability = dice.Pick({0.005, 0.02});
    p.write_probability = 0.8;
    p.snapshot_transfer_ticks = dice.Range(1, 20);
  } else if (name == "chaos") {
    p.voters = static_cast<int>(dice.Range(3, 7));
    p.max_crashed = (p.voters - 1) / 2;
    p.learners = static_cast<int>(dice.Range(0, 2));
    p.membership_changes = true;
    p.min_voters = 3;
    p.max_voters = 7;
    p.conf_change_probability = dice.Pick({0.01, 0.04});
    p.leadership_transfers = true;
    p.transfer_probability = dice.Pick({0.005, 0.02});
    p.compaction_threshold = dice.Coin(60) ? dice.Range(10, 60) : 0;
    p.partition_probability = dice.Pick({0.01, 0.03, 0.05});
    p.crash_probability = dice.Pick({0.005, 0.02, 0.04});
  } else if (name == "durability") {
    // Slow disks and crashes of up to all but one node at once (a whole-cluster power
    // loss when the last one goes too): whatever was not durable is lost, so votes and
    // acknowledgements sent before their Ready was durable would break safety.
    p.voters = dice.Coin(60) ? 3 : 5;
    p.max_crashed = p.voters - static_cast<int>(dice.Range(0, 1));
    p.crash_probability = dice.Pick({0.03, 0.06});
    p.down_ticks = dice.Range(2, 30);
    p.max_persist_delay = dice.PickCount({100, 400, 1000});
    p.partition_probability = dice.Pick({0.0, 0.01});
  } else if (name == "lease") {
    // Lease-based reads: safe only with CheckQuorum and clocks that run at the same
    // rate, which this world grants (message delays and crashes stay arbitrary).
    p.voters = dice.Coin(60) ? 3 : 5;
    p.max_crashed = (p.voters - 1) / 2;
    p.lease_reads = true;
    p.check_quorum = true;
    p.tick_skew_percent = 0;
    p.read_probability = dice.Pick({0.4, 0.7});
    p.leadership_transfers = true;
    p.transfer_probability = dice.Pick({0.0, 0.02});
  } else if (name == "figure8") {
    // Raft §5.4.2 / Figure 8, scripted with seeded timings: a leader's entry reaches
    // nobody, the next leader appends a different entry at that index, both die, and
    // the first comes back, replicates its old entry to a majority and dies before its
    // own term's entry spreads. Only the unsafe commit rule treats the old entry as
    // committed there; with the safe rule the profile is an ordinary crash-heavy world.
    p.voters = 3;
    p.max_crashed = 2;
    p.figure8_script = true;
    p.figure8_phase_ticks = dice.Range(60, 120);
    p.crash_probability = 0.0;
    p.partition_probability = 0.0;
    p.max_message_bytes = 1;
    p.max_inflight_messages = 1;
    p.max_persist_delay = dice.PickCount({1, 10, 30});
    p.crash_on_old_term_commit_probability = 1.0;
    p.write_probability = 0.8;
    p.drop_probability = dice.Pick({0.0, 0.02});
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown profile '", name,
                     "': use voters3, voters5, learners, membership, snapshots, durability, lease, "
                     "chaos or figure8"));
  }
  // Drawn last, so that every other knob of a seed stays what it was before they
  // existed.
  p.follower_read_probability = dice.Pick({0.0, 0.3, 0.7});
  // Some worlds flush the state machine after every apply, some rarely, and some only
  // at checkpoints and snapshot installs (a crash then replays everything after them).
  p.state_flush_probability = dice.Pick({0.0, 0.02, 0.2, 1.0});
  return p;
}

}  // namespace stead::sim
