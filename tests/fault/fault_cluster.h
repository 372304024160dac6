// FaultCluster: real `stead` members as the pods of a StatefulSet, each in a network
// namespace of tests/tools/netns_cluster.sh, for the fault runner (stead-fault).
//
// Member I is the pod kv-I at <subnet>.(10+I), dialing its peers by their
// headless-Service names (kv-J.kv-headless.default.svc.cluster.local) as in
// Kubernetes; its data and WAL volumes and its log live under the run folder and
// survive Kill and Restart. Network faults are the script's commands (partition, heal,
// delay, loss), process faults are signals to the member's own PID.
//
//   FaultClusterOptions options{.stead_binary = ..., .netns_script = ..., .run_dir = ...};
//   ASSIGN_OR_RETURN(std::unique_ptr<FaultCluster> cluster, FaultCluster::Up(options));
//   RETURN_IF_ERROR(cluster->StartAll());
//   int leader = cluster->WaitForLeader(absl::Seconds(30));
//   cluster->Kill(leader); ... cluster->Restart(leader);
//
// Needs root. Only the processes it started are ever signalled; the destructor kills
// them by PID and takes the namespaces down.
//
// Thread-safety: every method may be called from any thread (one mutex guards the
// processes); the script commands themselves run one at a time.
#ifndef STEAD_TESTS_FAULT_FAULT_CLUSTER_H_
#define STEAD_TESTS_FAULT_FAULT_CLUSTER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "base/mutex.h"
#include "tests/testing/subprocess.h"

namespace stead::fault {

struct FaultClusterOptions {
  int members = 3;
  std::string stead_binary;  // path of `stead`. Required.
  std::string netns_script;  // path of tests/tools/netns_cluster.sh. Required.
  // Volumes, logs and scratch files go here (created if missing). Required.
  std::string run_dir;
  // The namespaces are <prefix>-I on <subnet> (a.b.c.0/24); nothing else may use them.
  std::string prefix = "frun";
  std::string subnet = "10.79.10.0/24";
  // The StatefulSet's and headless Service's names: pods are <sts>-I.
  std::string sts = "kv";
  std::string service = "kv-headless";
  // Raft tick of the members: elections after 10-20 ticks.
  absl::Duration tick = absl::Milliseconds(50);
  // Flags added to every member's command line.
  std::vector<std::string> extra_flags = {};
  // "NAME=value" entries for the script and the members (NETNS_NFQ_DELAY for the
  // delay fault, STEAD_FAILPOINTS for a planted bug).
  std::vector<std::string> env = {};
  // When > 0, each member's WAL directory is a tmpfs of this many MiB, mounted by Up
  // (on an empty directory) and unmounted by the destructor: FillWal can then fill it.
  // At least kMinWalTmpfsMb, since the WAL preallocates two 64 MiB segments. 0: off.
  int wal_tmpfs_mb = 0;
  // Likewise for each member's data directory (its RocksDB state machine and its
  // checkpoints), so that FillVolume can fill that too. At least kMinDataTmpfsMb. 0: off.
  int data_tmpfs_mb = 0;
};

// Room for the two preallocated WAL segments a member needs (docs/resize-volumes.md),
// and a little for its lock file.
inline constexpr int kMinWalTmpfsMb = 130;
// Room for a new member's empty database and its first checkpoints.
inline constexpr int kMinDataTmpfsMb = 16;

// A member's volumes, as the disk faults name them.
enum class Volume { kWal, kData };
// "wal", "data".
std::string VolumeName(Volume volume);
// The volumes that `options` puts on a tmpfs, which the disk faults can fill: the WAL
// first, then the data volume.
std::vector<Volume> TmpfsVolumes(const FaultClusterOptions& options);

// The ports every member listens on (each in its own namespace, so all alike).
inline constexpr uint16_t kClientPort = 2479;
inline constexpr uint16_t kPeerPort = 2480;
inline constexpr uint16_t kHttpPort = 2481;

class FaultCluster {
 public:
  // Brings the namespaces up (`netns_cluster.sh up`). FailedPrecondition when not root
  // or the script refuses (the prefix or subnet is in use: its message says which);
  // InvalidArgument for missing options.
  static absl::StatusOr<std::unique_ptr<FaultCluster>> Up(FaultClusterOptions options);

  FaultCluster(const FaultCluster&) = delete;
  FaultCluster& operator=(const FaultCluster&) = delete;
  // SIGKILLs and reaps every member it started, then `netns_cluster.sh down`.
  ~FaultCluster();

  int size() const { return options_.members; }
  const FaultClusterOptions& options() const { return options_; }
  std::string PodName(int member) const;
  std::string Ip(int member) const;
  std::string LogPath(int member) const;
  // The member's volumes, under the run folder.
  std::string DataDir(int member) const;
  std::string WalDir(int member) const;
  // "ip:2479" of every member: what a client outside the namespaces dials.
  std::vector<std::string> ClientEndpoints() const;

  // Starts member `member` on its volumes (Internal if it is running already).
  absl::Status Start(int member);
  absl::Status StartAll();
  // SIGKILL and reap; a member not running is left alone (OK).
  absl::Status Kill(int member);
  // Kill (if running) and Start on the same volumes.
  absl::Status Restart(int member);
  // SIGSTOP / SIGCONT. FailedPrecondition when the member is not running.
  absl::Status Stop(int member);
  absl::Status Continue(int member);
  // Whether the member's process runs (stopped counts as running).
  bool Running(int member);
  // Deletes everything on the member's data and WAL volumes, as for a lost volume
  // (docs/lost-volume.md): started again, it joins as a new member. FailedPrecondition
  // while it runs.
  absl::Status Wipe(int member);

  std::string VolumeDir(int member, Volume volume) const;

  // Disk faults, on a volume that is a tmpfs (TmpfsVolumes; FailedPrecondition
  // otherwise). FillVolume writes a ballast file on the member's volume until the tmpfs
  // is full (ENOSPC): the bytes it wrote. RemoveBallast deletes it (OK when there is
  // none).
  absl::StatusOr<int64_t> FillVolume(int member, Volume volume);
  absl::Status RemoveBallast(int member, Volume volume);

  // How the member's process ended when it ended by itself (it stopped, or crashed)
  // and has not been started again; nullopt while it runs or after Kill.
  std::optional<testing::ExitStatus> Exited(int member);

  // Network faults, the script's commands of the same names. `Partition(i, {})` cuts
  // member i off from every other member and the host; otherwise from the listed
  // peers ("J" ordinals or "host").
  absl::Status Partition(int member, const std::vector<std::string>& from = {});
  absl::Status Heal(int member);
  absl::Status HealAll();
  absl::Status Delay(int member, int ms, int jitter_ms = 0);
  absl::Status Loss(int member, int percent);

  // HTTP status of GET `path` on the member's HTTP port from the host; 0 when
  // unreachable within `timeout`.
  int HttpStatus(int member, const std::string& path,
                 absl::Duration timeout = absl::Seconds(1)) const;
  // The member that reports itself leader (its stead_raft_is_leader metric); -1 if
  // none of those reachable does.
  int Leader() const;
  // Polls Leader() until one answers or `timeout` passes; -1 then.
  int WaitForLeader(absl::Duration timeout) const;
  // Polls /readyz of every member until all answer 200; whether they did in time.
  bool WaitReady(absl::Duration timeout) const;

  // Runs the script with `args` (bounded by `timeout`); its stdout, or Internal with its
  // stderr when it fails.
  absl::StatusOr<std::string> Script(const std::vector<std::string>& args,
                                     absl::Duration timeout = absl::Seconds(30)) const;

 private:
  explicit FaultCluster(FaultClusterOptions options);
  std::vector<std::string> ScriptEnv() const;
  std::vector<std::string> MemberArgv(int member) const;

  const FaultClusterOptions options_;
  std::string net_;  // a.b.c of the subnet
  bool up_ = false;
  std::vector<std::string> mounted_;  // the tmpfs mount points, to unmount
  mutable Mutex script_mu_;  // one script command at a time
  Mutex mu_;
  std::vector<std::unique_ptr<testing::Subprocess>> processes_ ABSL_GUARDED_BY(mu_);
};

}  // namespace stead::fault

#endif  // STEAD_TESTS_FAULT_FAULT_CLUSTER_H_
