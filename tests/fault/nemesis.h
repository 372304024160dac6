// Nemesis: the faults of a fault run, one episode after another on a schedule drawn
// from the run's seed: pick a kind and a target, inject, hold a few seconds, heal, let
// the cluster settle, repeat until stopped.
//
//   Nemesis nemesis(&cluster, {.seed = 7, .kinds = {FaultKind::kKill, FaultKind::kStop}});
//   nemesis.Start();  ...  nemesis.StopAndHeal();
//   for (const FaultEvent& event : nemesis.Log()) ...
//
// Every choice (kind, target rule, hold and settle times, delay, loss) comes from one
// std::mt19937_64 seeded with `seed`, so a seed replays the same schedule; which member
// is the leader at a moment still depends on the run.
//
// Thread-safety: Start, StopAndHeal and the accessors are for one controlling thread;
// the episodes run on the nemesis's own thread.
#ifndef STEAD_TESTS_FAULT_NEMESIS_H_
#define STEAD_TESTS_FAULT_NEMESIS_H_

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "base/mutex.h"
#include "tests/fault/fault_cluster.h"
#include "tests/testing/subprocess.h"

namespace stead::fault {

enum class FaultKind {
  kPartitionLeader,  // cut the leader off from everyone
  kPartitionRandom,  // cut a random member off from everyone
  kBridge,           // two sides that see only a bridge member in the middle
  kKill,             // SIGKILL a member, restart it on its volumes at the heal
  kStop,             // SIGSTOP a member longer than an election timeout, then SIGCONT
  kDelay,            // delay a member's packets
  kLoss,             // drop a share of a member's packets
  kTransfer,         // hand leadership to another member (no heal)
  // Remove a follower from the configuration, kill it and wipe its volumes; the heal
  // starts it again on empty volumes under the same pod name, and it must join as a
  // learner and be promoted to a voter (docs/lost-volume.md) within the hold and
  // settle bounds.
  kMembership,
  // Fill a member's WAL or data tmpfs (whichever of the two are tmpfs, by the seed)
  // with a ballast file; the heal deletes it and starts the member again if the full
  // volume stopped it.
  kDiskFull,
};

// "partition-leader", "partition-random", "bridge", "kill", "stop", "delay", "loss",
// "transfer", "membership", "disk-full".
std::string FaultKindName(FaultKind kind);
// Every kind.
std::vector<FaultKind> AllFaultKinds();
// Parses "kill,stop,..." (or "all"); InvalidArgument naming an unknown kind.
absl::StatusOr<std::vector<FaultKind>> ParseFaultKinds(const std::string& text);
// The kinds of `text` (ParseFaultKinds) that a cluster with `options` can run: "all"
// leaves disk-full out when neither the WAL nor the data volumes are on a tmpfs; naming
// disk-full then is InvalidArgument.
absl::StatusOr<std::vector<FaultKind>> FaultKindsFor(const std::string& text,
                                                     const FaultClusterOptions& options);

// A member as a membership episode sees the configuration.
struct MemberView {
  std::string name;
  bool learner = false;
  bool leader = false;
};
// The member a membership episode removes: the first name of `preference` that is a
// voter and does not lead. FailedPrecondition when the configuration still has a
// learner (an earlier member still joining) or fewer than 3 voters (removing one
// would leave a cluster without a spare voter, or none), or no candidate.
absl::StatusOr<std::string> PickMemberToReplace(const std::vector<MemberView>& members,
                                                const std::vector<std::string>& preference);

// The volume a disk-full episode fills: one of TmpfsVolumes(options), by `draw` (any
// number the seed gave). FailedPrecondition when no volume is a tmpfs.
absl::StatusOr<Volume> PickVolumeToFill(const FaultClusterOptions& options, uint64_t draw);

// Why a member stopped itself, from its log since the fault: the status code of its
// last "this member cannot continue: CODE: ..." line (its fatal status), else of its
// first "stopping this member: CODE: ..." line, as "ResourceExhausted"; empty when
// there is none.
std::string StopReason(absl::string_view log);

// What a disk-full heal found, for the fault log: "data volume: the member stopped
// (ResourceExhausted), restarted", "wal volume: the member kept running (ready)",
// "data volume: the member died (killed by signal 6 (Aborted)), restarted".
// `exited`: how the member ended, nullopt when it still runs; `reason`: StopReason.
std::string DiskFullHealNote(Volume volume, const std::optional<testing::ExitStatus>& exited,
                             absl::string_view reason, bool ready);

// One episode, as the fault log keeps it.
struct FaultEvent {
  int64_t inject_ns = 0;  // on the run's clock (since `start` of NemesisOptions)
  int64_t heal_ns = -1;   // -1 when never healed (the injection failed)
  FaultKind kind = FaultKind::kKill;
  std::string target;     // e.g. "kv-1", "kv-0|kv-2 via kv-1", "kv-2 delay 200ms"
  bool injected = false;  // the injection succeeded
  bool healed = false;    // the heal succeeded
  std::string error;      // why the injection or heal failed
  std::string note;       // what the heal had to do, e.g. "kv-1 had stopped: restarted"
};

struct NemesisOptions {
  uint64_t seed = 1;
  std::vector<FaultKind> kinds = AllFaultKinds();
  // Each episode holds its fault for [hold_min, hold_max], then settles for
  // [settle_min, settle_max].
  absl::Duration hold_min = absl::Seconds(2);
  absl::Duration hold_max = absl::Seconds(5);
  absl::Duration settle_min = absl::Seconds(1);
  absl::Duration settle_max = absl::Seconds(3);
  // Before the first episode: the workload gets going on a healthy cluster.
  absl::Duration initial_quiet = absl::Seconds(2);
  // The run's clock zero (FaultEvent times are nanoseconds since it).
  std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
  // The fault log, one line per event as it happens (empty: none).
  std::string log_path = {};
};

class Nemesis {
 public:
  // `cluster` must outlive the Nemesis.
  Nemesis(FaultCluster* cluster, NemesisOptions options);
  Nemesis(const Nemesis&) = delete;
  Nemesis& operator=(const Nemesis&) = delete;
  // StopAndHeal.
  ~Nemesis();

  // Starts the episodes on a thread of their own.
  void Start();
  // Ends the episode in progress early (healing it) and joins the thread. Idempotent.
  void StopAndHeal();

  std::vector<FaultEvent> Log() const;
  // Injected episodes by kind name.
  std::map<std::string, int> CountsByKind() const;
  // "partition-leader:2,kill:1" in kind order; "none" when nothing was injected.
  std::string Summary() const;

 private:
  void Run();
  // One episode of `kind`; appends its event.
  void Episode(FaultKind kind);
  // Sleeps `duration` or until stopped; whether it slept it all.
  bool Sleep(absl::Duration duration);
  absl::Duration Between(absl::Duration low, absl::Duration high);
  int64_t NowNs() const;
  // Logs the injection or the heal of `event` and keeps it as its episode's entry.
  void Record(const FaultEvent& event, bool healing);
  // The membership episode's steps (see FaultKind::kMembership).
  absl::Status RemoveAndWipe(const std::vector<int>& order, int* target);
  absl::Status WaitVoter(int target, absl::Duration timeout, std::string* note);

  FaultCluster* const cluster_;
  const NemesisOptions options_;
  std::mt19937_64 rng_;  // only the nemesis thread draws from it
  std::thread thread_;
  mutable Mutex mu_;
  CondVar stopped_cv_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<FaultEvent> log_ ABSL_GUARDED_BY(mu_);
};

}  // namespace stead::fault

#endif  // STEAD_TESTS_FAULT_NEMESIS_H_
