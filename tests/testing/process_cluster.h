// ProcessCluster: up to kMaxMembers real `stead` processes on loopback, named
// stead-0.., each with its own data and WAL directories, client, peer and HTTP ports,
// and a log file under `root`. Only the processes it started are ever signalled.
//
//   testing::ProcessCluster cluster(3, root, STEAD_BINARY);
//   for (int i : {0, 1, 2}) cluster.Start(i);
//   ASSERT_TRUE(cluster.WaitReady({0, 1, 2}));
//   const int leader = cluster.WaitForLeader({0, 1, 2});
//   cluster.Kill(leader);
//
//   ...
//   EXPECT_OK(cluster.CheckEveryMemberHas({0, 1, 2}, acknowledged));
//
// Raft timing of the processes: 50 ms ticks, elections after 0.5-1 s.
//
// Not thread-safe: use from the test's main thread.
#ifndef STEAD_TESTS_TESTING_PROCESS_CLUSTER_H_
#define STEAD_TESTS_TESTING_PROCESS_CLUSTER_H_

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "tests/testing/subprocess.h"

namespace stead::testing {

// How long the helpers below wait by default for readiness or a leader.
inline constexpr absl::Duration kClusterTimeout = absl::Seconds(30);
// The --tick-interval the processes run with.
inline constexpr int kClusterTickMs = 50;

// A root directory for the current test's cluster: "<gtest TempDir>/<suite>_<pid>_<test>".
std::string ClusterTestRoot(const std::string& suite);

// Polls `condition` every 20 ms until it holds or `timeout` passes; its last value.
template <typename Condition>
bool Eventually(Condition condition, absl::Duration timeout = kClusterTimeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    if (condition()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return condition();
}

class ProcessCluster {
 public:
  static constexpr int kMaxMembers = 5;

  // Empties `root` and picks free loopback ports for every possible member; members
  // with an ordinal below `initial_size` form the first voter set. `binary` is the
  // path of the `stead` executable.
  ProcessCluster(int initial_size, std::string root, std::string binary);
  ProcessCluster(const ProcessCluster&) = delete;
  ProcessCluster& operator=(const ProcessCluster&) = delete;
  // SIGKILLs and reaps what still runs; removes `root` unless the test failed.
  ~ProcessCluster();

  std::string Name(int ordinal) const;
  std::string LogPath(int ordinal) const;
  // The member's data and WAL directories (its two volumes).
  std::string DataDir(int ordinal) const;
  std::string WalDir(int ordinal) const;
  std::string ClientAddress(int ordinal) const;
  uint16_t peer_port(int ordinal) const { return peer_[ordinal]; }
  uint16_t client_port(int ordinal) const { return client_[ordinal]; }
  uint16_t http_port(int ordinal) const { return http_[ordinal]; }
  // Client addresses of members 0..count-1.
  std::vector<std::string> ClientEndpoints(int count) const;

  // Starts member `ordinal` (a gtest assertion fails if it cannot be started).
  void Start(int ordinal);
  // Starts a process on the ports and directories of `ordinal` but named `name`: an
  // operator's slip that runs two processes under one member's name.
  void StartUnderName(int ordinal, const std::string& name);
  // `stead` flags added to those above for every member started from now on, e.g.
  // {"--promote-learners=manual"}.
  void set_extra_flags(std::vector<std::string> flags) { extra_flags_ = std::move(flags); }
  void Signal(int ordinal, int signal);
  // SIGKILL and reap.
  void Kill(int ordinal);
  // Removes the data and WAL directories of a member that is not running: its volumes
  // are lost.
  void Wipe(int ordinal);
  // SIGTERM, then the exit status within `timeout` (nullopt if it did not exit).
  std::optional<ExitStatus> Terminate(int ordinal, absl::Duration timeout = kClusterTimeout);
  bool Running(int ordinal);
  // How member `ordinal` ended, once it exited (on its own or signalled); nullopt while it
  // runs or if it was never started.
  std::optional<ExitStatus> ExitStatusOf(int ordinal);

  // HTTP status of GET `path` on the member's HTTP port; 0 if unreachable.
  int HttpStatus(int ordinal, const std::string& path) const;
  bool Ready(int ordinal) const { return HttpStatus(ordinal, "/readyz") == 200; }
  // Bytes sent to the member's client port that it has not read yet (the kernel's
  // receive queues of the connections, from /proc/net/tcp): a request waiting for a
  // member stopped with SIGSTOP.
  int64_t UnreadClientBytes(int ordinal) const;
  // A metric of member `ordinal` (first series of that name); nullopt if unreachable.
  std::optional<double> Metric(int ordinal, const std::string& name) const;
  // The ordinal among `members` that reports itself leader; -1 if none does.
  int Leader(const std::vector<int>& members) const;
  int WaitForLeader(const std::vector<int>& members, absl::Duration timeout = kClusterTimeout) const;
  bool WaitReady(const std::vector<int>& members, absl::Duration timeout = kClusterTimeout) const;
  // Starts `members`, waits until every one is ready and one of them leads; the
  // leader's ordinal, or -1 if that did not happen within kClusterTimeout each.
  int StartAndWaitForLeader(const std::vector<int>& members);
  // Waits until every member in `members` answers the same content hash at the same
  // applied index (writes must have stopped); whether they did.
  bool WaitHashesEqual(const std::vector<int>& members,
                       absl::Duration timeout = kClusterTimeout) const;
  // Whether every member in `members` holds `expected` (key -> value, e.g. a test's
  // acknowledged writes), checked member by member so that a lagging or diverged
  // member cannot hide behind the leader: waits as WaitHashesEqual, then reads every
  // key of `expected` from each member's own state (serializable ranges sent to that
  // member only, paging through [first key, last key]). Call it once writes stopped.
  // OK, or an error whose message names, per member, the keys missing or holding
  // another value (the first few, and their counts) or why it could not be read:
  // FailedPrecondition when the hashes never agreed within `timeout` (with each
  // member's last answer), DataLoss when they did but a member lacks a pair.
  absl::Status CheckEveryMemberHas(const std::vector<int>& members,
                                   const std::map<std::string, std::string>& expected,
                                   absl::Duration timeout = kClusterTimeout) const;
  // The member's log so far.
  std::string Log(int ordinal) const;

 private:
  // One round of WaitHashesEqual: whether every member answered the same hash at the
  // same applied index, and a line per member of what it answered.
  bool HashesEqualNow(const std::vector<int>& members, std::string* answers) const;
  // What member `ordinal`'s own state lacks of `expected`: empty when it holds every
  // pair, else one line of the report. Reads until `deadline` (at least once per page).
  std::string MissingFrom(int ordinal, const std::map<std::string, std::string>& expected,
                          absl::Time deadline) const;
  const int initial_size_;
  const std::string root_;
  const std::string binary_;
  std::vector<std::string> extra_flags_;
  uint16_t client_[kMaxMembers] = {};
  uint16_t peer_[kMaxMembers] = {};
  uint16_t http_[kMaxMembers] = {};
  std::map<int, std::unique_ptr<Subprocess>> processes_;
};

}  // namespace stead::testing

#endif  // STEAD_TESTS_TESTING_PROCESS_CLUSTER_H_
