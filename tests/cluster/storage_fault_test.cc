// Real `stead` processes on loopback whose data volume fails them: a volume too small
// for the leader's snapshot (a tmpfs of our own, grown while the member runs), and a
// state machine whose SST files fail their checksums. The member must fail cleanly
// (exit 1 at worst, never a signal), serve nothing it cannot vouch for, and come back
// by the documented steps. Every loop is bounded in time; only processes started here
// are signalled, and only mounts made here are unmounted.
#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "storage/checkpoint.h"
#include "storage/state_machine.h"
#include "storage/state_machine_testing.h"
#include "tests/testing/kv_test_client.h"
#include "tests/testing/process_cluster.h"
#include "tests/testing/status_matchers.h"

namespace stead {
namespace {

using ::testing::HasSubstr;
using testing::Eventually;
using testing::ExitStatus;
using testing::KvGetOptions;
using testing::KvTestClient;
using storage::testing::TmpfsMount;

constexpr absl::Duration kTimeout = testing::kClusterTimeout;

class ProcessCluster : public testing::ProcessCluster {
 public:
  explicit ProcessCluster(int initial_size)
      : testing::ProcessCluster(initial_size, testing::ClusterTestRoot("storage_fault_test"),
                                STEAD_BINARY) {}
};

// `count` values of `bytes` random letters each under "<prefix>-<n>", through `client`.
std::map<std::string, std::string> WriteRandom(KvTestClient& client, const std::string& prefix,
                                               int count, size_t bytes) {
  std::mt19937_64 random(11);
  std::map<std::string, std::string> written;
  for (int i = 0; i < count; ++i) {
    std::string value(bytes, '\0');
    for (char& c : value) c = static_cast<char>('a' + random() % 26);
    const std::string key = absl::StrCat(prefix, "-", i);
    EXPECT_OK(client.PutWithRetry(key, value, kTimeout));
    written[key] = value;
  }
  return written;
}

// Expects that the member did not end by a signal (an abort) so far.
void ExpectNoSignal(ProcessCluster& cluster, int ordinal) {
  const std::optional<ExitStatus> ended = cluster.ExitStatusOf(ordinal);
  EXPECT_FALSE(ended.has_value() && ended->signaled())
      << cluster.Name(ordinal) << " " << ended->ToString() << "\n" << cluster.Log(ordinal);
}

// The names in `dir` (empty if it does not exist).
std::vector<std::string> Entries(const std::string& dir) {
  std::vector<std::string> names;
  if (!std::filesystem::is_directory(dir)) return names;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    names.push_back(entry.path().filename().string());
  }
  return names;
}

// The lines of `log` logged at error level that contain `part`.
size_t ErrorLines(const std::string& log, absl::string_view part) {
  size_t count = 0;
  for (absl::string_view line : absl::StrSplit(log, '\n')) {
    if (absl::StrContains(line, " E ") && absl::StrContains(line, part)) ++count;
  }
  return count;
}

// Goal: a follower whose data volume is smaller than the leader's snapshot fails each
// transfer cleanly (no abort, partial files removed, a log line that says the volume is
// full), is offered the snapshot less and less often, is never ready meanwhile, and
// once the volume is grown enough catches up to the leader's content hash.
// Method: the follower's data dir is a 20 MiB tmpfs; while it is down the leader takes
// about 30 MB of state in over 1,000 entries and compacts its log, so the follower
// needs a snapshot. The
// tmpfs is then grown to 24 MiB (still too small) and to 256 MiB.
TEST(StorageFaultTest, FollowerWhoseDataVolumeIsTooSmallForTheSnapshotCatchesUpOnceGrown) {
  if (::geteuid() != 0) GTEST_SKIP() << "mounting a tmpfs as the data volume needs root";
  ProcessCluster cluster(3);
  cluster.set_extra_flags({"--snapshot-entries=20"});
  // Any member may end up the follower: the leader is elected after the start.
  std::vector<std::unique_ptr<TmpfsMount>> volumes;
  for (int i : {0, 1, 2}) {
    volumes.push_back(std::make_unique<TmpfsMount>(cluster.DataDir(i), "20m"));
    ASSERT_TRUE(volumes.back()->mounted()) << "mount a tmpfs on " << cluster.DataDir(i);
  }
  const int leader = cluster.StartAndWaitForLeader({0, 1, 2});
  ASSERT_GE(leader, 0);
  const int follower = (leader + 1) % 3;
  cluster.Kill(follower);
  for (int i : {0, 1, 2}) {
    if (i != follower) {
      ASSERT_TRUE(volumes[i]->Resize("512m"));
    }
  }

  KvTestClient client({cluster.ClientAddress(leader), cluster.ClientAddress((leader + 2) % 3)});
  const std::map<std::string, std::string> written = WriteRandom(client, "big", 120, 250000);
  // And more entries than a ready member may lag behind (applied vs the leader's commit).
  WriteRandom(client, "small", 1100, 10);
  ASSERT_TRUE(Eventually([&] {
    return cluster.Metric(leader, "stead_raft_log_first_index").value_or(0) > 60;
  })) << "the leader compacts its log behind its checkpoints";

  cluster.Start(follower);
  const std::string incoming = cluster.DataDir(follower) + "/checkpoints/incoming";
  // Each failed transfer must leave no partial file behind: only the manifest, the
  // record of the snapshot awaited.
  auto expect_failed_transfers = [&](int at_least) {
    bool ever_ready = false;
    const bool failed = Eventually([&] {
      ExpectNoSignal(cluster, follower);
      ever_ready = ever_ready || cluster.Ready(follower);
      return cluster.Metric(leader, "stead_snapshot_sends_failed").value_or(0) >= at_least;
    }, absl::Seconds(40));
    EXPECT_TRUE(failed) << "transfers failed: fewer than " << at_least;
    EXPECT_FALSE(ever_ready) << "ready while it waits for the snapshot";
    EXPECT_THAT(Entries(incoming), ::testing::Each(std::string(storage::kManifestFileName)));
    EXPECT_TRUE(cluster.Running(follower)) << cluster.Log(follower);
  };
  expect_failed_transfers(2);
  EXPECT_GE(ErrorLines(cluster.Log(follower), "the data volume is full"), 2u);
  EXPECT_THAT(cluster.Log(follower), HasSubstr("Grow the data volume"));
  EXPECT_THAT(cluster.Log(leader), HasSubstr("offering it again in 2s"))
      << "the second failure in a row doubles the wait";

  ASSERT_TRUE(volumes[follower]->Resize("24m"));
  const double failed_before = cluster.Metric(leader, "stead_snapshot_sends_failed").value_or(0);
  expect_failed_transfers(static_cast<int>(failed_before) + 1);

  ASSERT_TRUE(volumes[follower]->Resize("256m"));
  ASSERT_TRUE(Eventually([&] {
    ExpectNoSignal(cluster, follower);
    return cluster.Metric(follower, "stead_snapshots_installed").value_or(0) >= 1;
  }, absl::Seconds(60))) << cluster.Log(follower);
  ASSERT_TRUE(cluster.WaitReady({follower}));
  EXPECT_TRUE(cluster.WaitHashesEqual({0, 1, 2})) << "the follower caught up";
  EXPECT_LE(cluster.Metric(leader, "stead_snapshot_sends_failed").value_or(0), 8)
      << "offers are spaced out, not repeated at once";
  KvTestClient local({cluster.ClientAddress(follower)});
  KvGetOptions serializable;
  serializable.serializable = true;
  EXPECT_THAT(local.Get("big-119", serializable, kTimeout),
              testing::IsOkAndHolds(std::optional<std::string>(written.at("big-119"))));
  cluster.Kill(follower);  // before its volume is detached
}

// Complements bytes in the data blocks of every SST of member `ordinal`'s live
// database, in place (the running member reads the damaged bytes).
void DamageStateMachine(const ProcessCluster& cluster, int ordinal) {
  const std::vector<std::string> ssts = storage::testing::LiveSstFiles(cluster.DataDir(ordinal));
  ASSERT_FALSE(ssts.empty()) << "the member flushed its state into SST files";
  int damaged = 0;
  for (const std::string& sst : ssts) {
    // The member runs: a compaction may have removed the file since it was listed.
    std::error_code error;
    const uint64_t size = std::filesystem::file_size(sst, error);
    if (error) continue;
    for (uint64_t offset = 100; offset < size / 2; offset += 2048) {
      storage::testing::FlipByteInPlace(sst, offset);
    }
    ++damaged;
  }
  ASSERT_GT(damaged, 0) << "every SST file was compacted away while being damaged";
}

// Goal: a follower whose state machine fails its checksums serves nothing — every read
// (serializable too) and /readyz refuse with the advice, which its log says at error
// level — stops at its next apply rather than apply onto damaged state, finds the
// damage again when started on that volume, and after the runbook (wipe both volumes, start)
// rejoins under a new id and catches up.
TEST(StorageFaultTest, FollowerWithADamagedStateMachineServesNothingAndRejoinsAfterAWipe) {
  ProcessCluster cluster(3);
  // Checkpoints flush the state machines, so every member holds SST files.
  cluster.set_extra_flags({"--snapshot-entries=50"});
  const int leader = cluster.StartAndWaitForLeader({0, 1, 2});
  ASSERT_GE(leader, 0);
  const int follower = (leader + 1) % 3;
  KvTestClient client({cluster.ClientAddress(leader)});
  const std::map<std::string, std::string> written = WriteRandom(client, "key", 200, 1000);
  ASSERT_TRUE(cluster.WaitHashesEqual({0, 1, 2}));
  ASSERT_TRUE(Eventually([&] {
    return cluster.Metric(follower, "stead_raft_log_first_index").value_or(0) > 100;
  })) << "the follower took checkpoints";

  // While it runs: the first read of a damaged block finds it; then nothing is served.
  // The other members are paused meanwhile, so no entry reaches the follower (the next
  // one it applies stops it).
  for (int i : {0, 1, 2}) {
    if (i != follower) cluster.Signal(i, SIGSTOP);
  }
  DamageStateMachine(cluster, follower);
  KvTestClient local({cluster.ClientAddress(follower)});
  KvGetOptions serializable;
  serializable.serializable = true;
  for (const auto& [key, value] : written) {
    if (!local.Get(key, serializable, kTimeout).ok()) break;
  }
  // Linearizable reads are the leader's to serve (a follower forwards them); those this
  // member would answer from its own state are refused.
  EXPECT_THAT(local.Get(written.begin()->first, serializable, kTimeout),
              testing::StatusIs(absl::StatusCode::kUnavailable, storage::kCorruptStateAdvice));
  absl::StatusOr<testing::HttpResponse> readyz =
      testing::HttpGet("127.0.0.1", cluster.http_port(follower), "/readyz", kTimeout);
  ASSERT_OK(readyz.status());
  EXPECT_EQ(readyz->status_code, 503);
  EXPECT_THAT(readyz->body, HasSubstr(storage::kCorruptStateAdvice));
  EXPECT_EQ(ErrorLines(cluster.Log(follower), storage::kCorruptStateAdvice), 1u)
      << "said once, at error level";
  EXPECT_TRUE(cluster.Running(follower));
  for (int i : {0, 1, 2}) {
    if (i != follower) cluster.Signal(i, SIGCONT);
  }

  // The next entry it would apply stops it: exit 1, never a signal.
  ASSERT_OK(client.PutWithRetry("after-damage", "x", kTimeout));
  std::optional<ExitStatus> ended;
  ASSERT_TRUE(Eventually([&] { return (ended = cluster.ExitStatusOf(follower)).has_value(); }))
      << "the damaged follower applies nothing more";
  EXPECT_EQ(ended->exit_code, 1) << ended->ToString();

  // A restart on the damaged volume finds the damage (opening it, or verifying every
  // block before serving reads), is never ready, and stops at its next apply.
  const size_t log_before = cluster.Log(follower).size();
  cluster.Start(follower);
  ASSERT_TRUE(Eventually([&] {
    EXPECT_FALSE(cluster.Ready(follower));
    return absl::StrContains(cluster.Log(follower).substr(log_before),
                             storage::kCorruptStateAdvice);
  })) << "the damage is found at the start";
  EXPECT_FALSE(cluster.Ready(follower));
  ASSERT_OK(client.PutWithRetry("after-restart", "y", kTimeout));
  ASSERT_TRUE(Eventually([&] { return (ended = cluster.ExitStatusOf(follower)).has_value(); }));
  EXPECT_EQ(ended->exit_code, 1) << ended->ToString();

  // The runbook (docs/lost-volume.md): wipe both volumes and start it.
  cluster.Wipe(follower);
  cluster.Start(follower);
  ASSERT_TRUE(cluster.WaitReady({follower}, absl::Seconds(60))) << cluster.Log(follower);
  EXPECT_TRUE(cluster.WaitHashesEqual({0, 1, 2})) << "the rejoined member caught up";
  EXPECT_THAT(KvTestClient({cluster.ClientAddress(follower)})
                  .Get("after-damage", serializable, kTimeout),
              testing::IsOkAndHolds(std::optional<std::string>("x")));
}

}  // namespace
}  // namespace stead
