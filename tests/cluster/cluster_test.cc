// Real `stead` processes on loopback under real faults: start orders, SIGKILL and
// SIGSTOP of the leader, a full restart, members joining and leaving, a rolling
// restart with SIGTERM under load, and bad input. Every acknowledged write must
// survive; every loop is bounded in time; only processes started here are signalled.
#include <signal.h>
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "base/asio.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proto/peer.pb.h"
#include "server/frame.h"
#include "tests/testing/kv_test_client.h"
#include "tests/testing/process_cluster.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/subprocess.h"

namespace stead {
namespace {

using testing::HttpGet;
using testing::IsOkAndHolds;
using testing::KvGetOptions;
using testing::KvTestClient;
using testing::LeaderHintOf;
using testing::MembersByName;
using testing::StatusIs;
using testing::Subprocess;

constexpr absl::Duration kTimeout = testing::kClusterTimeout;
using testing::Eventually;

// The shared helper (tests/testing/process_cluster.h) running this build's `stead`.
class ProcessCluster : public testing::ProcessCluster {
 public:
  ProcessCluster(int initial_size, std::string root)
      : testing::ProcessCluster(initial_size, std::move(root), STEAD_BINARY) {}
};

std::string TestRoot() { return testing::ClusterTestRoot("cluster_test"); }

std::vector<int> Ordinals(int count) {
  std::vector<int> ordinals;
  for (int i = 0; i < count; ++i) ordinals.push_back(i);
  return ordinals;
}

// Writes key-<n> = <n> from one thread until stopped, keeping what was acknowledged.
class Writer {
 public:
  explicit Writer(std::vector<std::string> endpoints, std::string prefix = "w")
      : client_(std::move(endpoints)), prefix_(std::move(prefix)) {
    thread_ = std::thread([this] { Run(); });
  }
  ~Writer() { Stop(); }

  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  const std::vector<std::string>& acknowledged() const { return acknowledged_; }
  int failures() const { return failures_; }

 private:
  void Run() {
    for (int n = 0; !stop_ && n < 100000; ++n) {
      const std::string key = absl::StrCat(prefix_, "-", n);
      if (client_.PutWithRetry(key, key, absl::Seconds(5), absl::Milliseconds(500)).ok()) {
        acknowledged_.push_back(key);
      } else {
        ++failures_;
      }
    }
  }

  KvTestClient client_;
  const std::string prefix_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::vector<std::string> acknowledged_;  // read after Stop()
  int failures_ = 0;
};

// Every key in `keys` reads back (linearizably, through the leader) with itself as value.
void ExpectAllPresent(KvTestClient& client, const std::vector<std::string>& keys) {
  int missing = 0;
  for (const std::string& key : keys) {
    absl::StatusOr<std::optional<std::string>> value =
        client.GetWithRetry(key, KvGetOptions(), absl::Seconds(10));
    if (!value.ok() || *value != std::optional<std::string>(key)) {
      if (++missing <= 5) ADD_FAILURE() << "acknowledged write " << key << " reads as "
                                        << (value.ok() ? value->value_or("<absent>")
                                                       : value.status().ToString());
    }
  }
  EXPECT_EQ(missing, 0) << "of " << keys.size() << " acknowledged writes";
}

// `keys` as the pairs they were written as: each key with itself as value.
std::map<std::string, std::string> SelfValued(const std::vector<std::string>& keys) {
  std::map<std::string, std::string> pairs;
  for (const std::string& key : keys) pairs[key] = key;
  return pairs;
}

// Goal: 3 and 5 members bootstrap whatever the start order; one leader; a write
// through any member is readable linearizably through every member's endpoint.
TEST(ClusterTest, BootstrapInAnyOrderAndServeThroughEveryMember) {
  for (const std::vector<int>& order : {std::vector<int>{2, 0, 1}, std::vector<int>{4, 3, 1, 0, 2}}) {
    const int size = static_cast<int>(order.size());
    ProcessCluster cluster(size, absl::StrCat(TestRoot(), "_", size));
    for (int ordinal : order) {
      cluster.Start(ordinal);
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    ASSERT_TRUE(cluster.WaitReady(Ordinals(size))) << size << " members never became ready";
    ASSERT_GE(cluster.WaitForLeader(Ordinals(size)), 0);
    int leaders = 0;
    for (int i = 0; i < size; ++i) leaders += cluster.Metric(i, "stead_raft_is_leader") == 1.0;
    EXPECT_EQ(leaders, 1);

    // Each client knows one member only: followers forward to the leader.
    for (int writer = 0; writer < size; ++writer) {
      KvTestClient through({cluster.ClientAddress(writer)});
      const std::string key = absl::StrCat("written-through-", writer);
      ASSERT_OK(through.PutWithRetry(key, "yes", absl::Seconds(10)));
      for (int reader = 0; reader < size; ++reader) {
        KvTestClient read({cluster.ClientAddress(reader)});
        EXPECT_THAT(read.Get(key, KvGetOptions(), absl::Seconds(5)),
                    IsOkAndHolds(std::optional<std::string>("yes")))
            << "through stead-" << reader;
      }
    }
  }
}

// Goal: SIGKILL of the leader under continuous writes: a new leader soon, and every
// acknowledged write is present after the old leader restarts and catches up.
TEST(ClusterTest, LeaderKilledUnderWritesLosesNoAcknowledgedWrite) {
  ProcessCluster cluster(3, TestRoot());
  const int leader = cluster.StartAndWaitForLeader({0, 1, 2});
  ASSERT_GE(leader, 0);

  Writer writer(cluster.ClientEndpoints(3));
  std::this_thread::sleep_for(std::chrono::seconds(1));
  cluster.Kill(leader);
  const absl::Time killed = absl::Now();
  std::vector<int> survivors;
  for (int i : {0, 1, 2}) {
    if (i != leader) survivors.push_back(i);
  }
  const int next = cluster.WaitForLeader(survivors);
  ASSERT_GE(next, 0);
  const absl::Duration failover = absl::Now() - killed;
  std::cout << "failover after SIGKILL of the leader: " << absl::FormatDuration(failover) << "\n";
  EXPECT_LT(failover, absl::Seconds(10));
  std::this_thread::sleep_for(std::chrono::seconds(1));
  cluster.Start(leader);
  std::this_thread::sleep_for(std::chrono::seconds(1));
  writer.Stop();
  ASSERT_GT(writer.acknowledged().size(), 10u);

  ASSERT_TRUE(cluster.WaitReady({0, 1, 2}));
  KvTestClient client(cluster.ClientEndpoints(3));
  ExpectAllPresent(client, writer.acknowledged());
  // Each member holds them in its own state: the restarted leader and the third member
  // as much as the new leader.
  EXPECT_OK(cluster.CheckEveryMemberHas({0, 1, 2}, SelfValued(writer.acknowledged())));
}

// Goal: a leader paused (SIGSTOP) past the election timeout serves no stale
// linearizable read when it resumes, then steps down and catches up.
TEST(ClusterTest, PausedLeaderServesNoStaleRead) {
  ProcessCluster cluster(3, TestRoot());
  const int leader = cluster.StartAndWaitForLeader({0, 1, 2});
  ASSERT_GE(leader, 0);
  KvTestClient client(cluster.ClientEndpoints(3));
  ASSERT_OK(client.PutWithRetry("k", "old", absl::Seconds(10)));

  cluster.Signal(leader, SIGSTOP);
  std::vector<int> others;
  for (int i : {0, 1, 2}) {
    if (i != leader) others.push_back(i);
  }
  ASSERT_GE(cluster.WaitForLeader(others), 0);
  KvTestClient others_client({cluster.ClientAddress(others[0]), cluster.ClientAddress(others[1])});
  ASSERT_OK(others_client.PutWithRetry("k", "new", absl::Seconds(10)));

  // The read is sent while the old leader is paused: the kernel accepts the connection
  // and queues the request, which is there when the process resumes.
  std::optional<absl::StatusOr<std::optional<std::string>>> read;
  const int64_t unread_before = cluster.UnreadClientBytes(leader);
  std::thread reader([&] {
    KvTestClient paused({cluster.ClientAddress(leader)});
    read = paused.Get("k", KvGetOptions(), absl::Seconds(5));
  });
  const bool queued = Eventually([&] { return cluster.UnreadClientBytes(leader) > unread_before; },
                                 absl::Seconds(5));
  cluster.Signal(leader, SIGCONT);
  reader.join();
  ASSERT_TRUE(queued) << "the read never reached the paused leader's socket";
  ASSERT_TRUE(read.has_value());
  // The contract (server/README.md, Reads): a linearizable read is served only after a
  // read index the current leader confirmed, so with the new value, whether the resumed
  // member serves it itself or passes it to the leader it knows. Only a member that
  // knows no leader may refuse it: UNAVAILABLE at once, without a leader hint.
  if (read->ok()) {
    EXPECT_EQ(**read, std::optional<std::string>("new"))
        << "the deposed leader served a stale read";
  } else {
    EXPECT_TRUE(absl::IsUnavailable(read->status()) && !LeaderHintOf(read->status()))
        << "the read failed although a leader could serve it: " << read->status();
    std::cout << "the resumed leader knew no leader yet: " << read->status() << "\n";
  }
  EXPECT_TRUE(Eventually([&] { return cluster.Metric(leader, "stead_raft_is_leader") == 0.0; }));
  // Once it follows the new leader, it serves the read itself.
  KvTestClient resumed({cluster.ClientAddress(leader)});
  EXPECT_THAT(resumed.GetWithRetry("k", KvGetOptions(), absl::Seconds(10)),
              IsOkAndHolds(std::optional<std::string>("new")));
  EXPECT_OK(cluster.CheckEveryMemberHas({0, 1, 2}, {{"k", "new"}}));
}

// Goal: every member killed and restarted: the state is intact and the cluster serves.
TEST(ClusterTest, FullRestartKeepsState) {
  ProcessCluster cluster(3, TestRoot());
  for (int i : {0, 1, 2}) cluster.Start(i);
  ASSERT_TRUE(cluster.WaitReady({0, 1, 2}));
  std::vector<std::string> keys;
  // A write with a client id and sequence number, retried after the restart of every
  // member: answered with the first result, applied once.
  pb::ClientRequest once;
  once.set_client_id(0xfeedface);
  once.set_sequence(1);
  once.mutable_put()->set_key("once");
  once.mutable_put()->set_value("first");
  int64_t once_revision = 0;
  {
    KvTestClient client(cluster.ClientEndpoints(3));
    for (int i = 0; i < 100; ++i) {
      keys.push_back(absl::StrCat("key-", i));
      ASSERT_OK(client.PutWithRetry(keys.back(), keys.back(), absl::Seconds(10)));
    }
    absl::StatusOr<pb::ClientResponse> applied = client.Call(once, absl::Seconds(10));
    ASSERT_OK(applied.status());
    ASSERT_FALSE(applied->has_error()) << applied->error().message();
    once_revision = applied->header().revision();
  }
  for (int i : {0, 1, 2}) cluster.Kill(i);
  for (int i : {1, 2, 0}) cluster.Start(i);
  ASSERT_TRUE(cluster.WaitReady({0, 1, 2}));
  KvTestClient client(cluster.ClientEndpoints(3));
  ExpectAllPresent(client, keys);
  once.mutable_put()->set_value("retried");
  absl::StatusOr<pb::ClientResponse> retried;
  ASSERT_TRUE(Eventually([&] {
    retried = client.Call(once, absl::Seconds(2));
    return retried.ok() && !retried->has_error();
  }));
  EXPECT_EQ(retried->header().revision(), once_revision) << "the first answer, from the table";
  EXPECT_THAT(client.GetWithRetry("once", {}, absl::Seconds(10)),
              IsOkAndHolds(std::optional<std::string>("first")));
  ASSERT_OK(client.PutWithRetry("after-restart", "ok", absl::Seconds(10)));
  std::map<std::string, std::string> expected = SelfValued(keys);
  expected["once"] = "first";
  expected["after-restart"] = "ok";
  EXPECT_OK(cluster.CheckEveryMemberHas({0, 1, 2}, expected));
}

// Goal: a follower that was down while the leader compacted its log catches up through
// a snapshot; SIGKILLed in the middle of that transfer and restarted, it resumes the
// staged transfer, installs the snapshot, serves every acknowledged write from its own
// state and keeps replicating.
TEST(ClusterTest, FollowerKilledDuringASnapshotTransferCatchesUpAfterRestart) {
  ProcessCluster cluster(3, TestRoot());
  // A short compaction interval, and a slow transfer (1 MB/s) so the kill lands in it.
  cluster.set_extra_flags({"--snapshot-entries=100", "--snapshot-send-rate=1"});
  const int leader = cluster.StartAndWaitForLeader({0, 1, 2});
  ASSERT_GE(leader, 0);
  const int follower = (leader + 1) % 3;
  cluster.Kill(follower);

  // About 3 MB of incompressible state, so the transfer takes a few seconds.
  KvTestClient client({cluster.ClientAddress(leader), cluster.ClientAddress((leader + 2) % 3)});
  std::mt19937_64 random(7);
  std::map<std::string, std::string> written;
  for (int i = 0; i < 300; ++i) {
    std::string value(10000, '\0');
    for (char& c : value) c = static_cast<char>('a' + random() % 26);
    const std::string key = absl::StrCat("snap-", i);
    ASSERT_OK(client.PutWithRetry(key, value, kTimeout));
    written[key] = value;
  }
  ASSERT_TRUE(Eventually([&] {
    const std::optional<double> first = cluster.Metric(leader, "stead_raft_log_first_index");
    return first.has_value() && *first > 150;
  })) << "the leader compacts its log behind its checkpoints";

  cluster.Start(follower);
  ASSERT_TRUE(Eventually([&] {
    const std::optional<double> bytes = cluster.Metric(follower, "stead_snapshot_bytes_received");
    return bytes.has_value() && *bytes > 200000;
  })) << "the follower receives the leader's checkpoint";
  cluster.Kill(follower);
  cluster.Start(follower);
  ASSERT_TRUE(Eventually([&] {
    const std::optional<double> installed = cluster.Metric(follower, "stead_snapshots_installed");
    return installed.has_value() && *installed >= 1;
  }, absl::Seconds(60)));
  EXPECT_EQ(cluster.Metric(follower, "stead_snapshot_receives_resumed"), 1.0)
      << "the restarted follower continued the transfer it had staged";
  // The snapshot is the checkpoint the leader's log starts after; the entries after it
  // follow from the log.
  const double commit = cluster.Metric(leader, "stead_raft_commit_index").value_or(0);
  ASSERT_TRUE(Eventually([&] {
    return cluster.Metric(follower, "stead_raft_applied_index").value_or(0) >= commit;
  }));

  // The log after the snapshot reaches the follower too; then its own state, like
  // every member's, holds every write.
  ASSERT_OK(client.PutWithRetry("after-snapshot", "yes", kTimeout));
  written["after-snapshot"] = "yes";
  EXPECT_OK(cluster.CheckEveryMemberHas({0, 1, 2}, written));
}

// Goal: a member whose volumes are lost (killed, both directories wiped) comes back
// under its name: it rejoins by itself under a new id, its earlier id is removed from
// the configuration (it can never vote again), and it receives the compacted state as
// a snapshot and serves every acknowledged write.
TEST(ClusterTest, MemberWithLostVolumesRejoinsUnderANewId) {
  ProcessCluster cluster(3, TestRoot());
  // The earlier id is replaced once the leader has not heard from it for 2 s.
  cluster.set_extra_flags({"--snapshot-entries=50", "--replace-silent-member-after=2s"});
  const int leader = cluster.StartAndWaitForLeader({0, 1, 2});
  ASSERT_GE(leader, 0);
  KvTestClient client(cluster.ClientEndpoints(3));
  std::vector<std::string> keys;
  for (int i = 0; i < 200; ++i) {
    keys.push_back(absl::StrCat("lost-", i));
    ASSERT_OK(client.PutWithRetry(keys.back(), keys.back(), kTimeout));
  }
  const int victim = (leader + 1) % 3;
  const std::string name = cluster.Name(victim);
  std::map<std::string, pb::Member> before;
  ASSERT_TRUE(Eventually([&] {
    before = MembersByName(client);
    return before.size() == 3;
  }));
  const uint64_t old_id = before.at(name).id();

  cluster.Kill(victim);
  cluster.Wipe(victim);
  cluster.Start(victim);
  std::map<std::string, pb::Member> after;
  ASSERT_TRUE(Eventually([&] {
    after = MembersByName(client);
    return after.size() == 3 && after.contains(name) && after.at(name).id() != old_id &&
           !after.at(name).is_learner();
  }, absl::Seconds(60))) << "the member is back as a voter under a new id";
  for (const auto& [member_name, member] : after) EXPECT_NE(member.id(), old_id) << member_name;
  EXPECT_GE(cluster.Metric(victim, "stead_snapshots_installed").value_or(0), 1.0)
      << "the compacted state arrived as a snapshot";
  EXPECT_OK(cluster.CheckEveryMemberHas({0, 1, 2}, SelfValued(keys)));
}

// The cluster id member `ordinal` answers under (the header of its own content hash);
// 0 when it does not answer.
uint64_t ClusterIdOf(ProcessCluster& cluster, int ordinal) {
  KvTestClient client({cluster.ClientAddress(ordinal)});
  pb::ClientRequest request;
  request.mutable_hash();
  absl::StatusOr<pb::ClientResponse> response = client.Call(request, absl::Seconds(2));
  if (!response.ok() || response->has_error()) return 0;
  return response->header().cluster_id();
}

size_t Occurrences(const std::string& text, const std::string& part) {
  size_t count = 0;
  for (size_t at = text.find(part); at != std::string::npos; at = text.find(part, at + 1)) ++count;
  return count;
}

// Goal: a clone whose first member starts on a copy of a source member's volumes (what
// a VolumeSnapshot gives) and whose every member runs with --new-cluster-identity is
// a NEW cluster holding every key: the copy is re-identified (another cluster id, the
// copied data), the empty members join it and receive its state as a Raft snapshot,
// the two clusters never see each other, a restart with the same token is an ordinary
// one, and a member with volumes of another token is refused.
TEST(ClusterTest, CloneFromCopiedVolumesIsANewClusterWithEveryKey) {
  ProcessCluster source(3, TestRoot() + "_source");
  for (int i : {0, 1, 2}) source.Start(i);
  ASSERT_TRUE(source.WaitReady({0, 1, 2}));
  KvTestClient source_client(source.ClientEndpoints(3));
  std::vector<std::string> keys;
  for (int i = 0; i < 200; ++i) {
    keys.push_back(absl::StrCat("cloned-", i));
    ASSERT_OK(source_client.PutWithRetry(keys.back(), keys.back(), kTimeout));
  }
  ASSERT_TRUE(source.WaitHashesEqual({0, 1, 2})) << "stead-1 applied every key";
  const uint64_t source_cluster = ClusterIdOf(source, 0);
  ASSERT_NE(source_cluster, 0u);
  std::map<std::string, pb::Member> source_members;
  ASSERT_TRUE(Eventually([&] { return (source_members = MembersByName(source_client)).size() == 3; }));

  // The "VolumeSnapshot": stead-1 stopped cleanly, both its directories copied.
  const std::optional<testing::ExitStatus> stopped = source.Terminate(1);
  ASSERT_TRUE(stopped.has_value() && stopped->exited() && stopped->exit_code == 0);
  ProcessCluster clone(3, TestRoot() + "_clone");
  std::filesystem::create_directories(clone.DataDir(0) + "/..");
  std::filesystem::copy(source.DataDir(1), clone.DataDir(0), std::filesystem::copy_options::recursive);
  std::filesystem::copy(source.WalDir(1), clone.WalDir(0), std::filesystem::copy_options::recursive);
  source.Start(1);

  clone.set_extra_flags({"--new-cluster-identity=clone1"});
  for (int i : {2, 1, 0}) clone.Start(i);
  ASSERT_TRUE(clone.WaitReady({0, 1, 2}, absl::Seconds(60))) << "the clone never became ready";
  const uint64_t clone_cluster = ClusterIdOf(clone, 0);
  EXPECT_NE(clone_cluster, 0u);
  EXPECT_NE(clone_cluster, source_cluster);
  EXPECT_THAT(clone.Log(0), ::testing::HasSubstr(absl::StrCat(
                                "re-identified cluster ", absl::Hex(source_cluster), " -> ",
                                absl::Hex(clone_cluster))));
  for (int i : {1, 2}) {
    EXPECT_EQ(ClusterIdOf(clone, i), clone_cluster) << "stead-" << i;
    EXPECT_GE(clone.Metric(i, "stead_snapshots_installed").value_or(0), 1.0)
        << "stead-" << i << " received the copied state as a snapshot";
  }
  KvTestClient clone_client(clone.ClientEndpoints(3));
  ExpectAllPresent(clone_client, keys);
  std::map<std::string, pb::Member> clone_members;
  ASSERT_TRUE(Eventually([&] {
    clone_members = MembersByName(clone_client);
    return clone_members.size() == 3 &&
           std::none_of(clone_members.begin(), clone_members.end(),
                        [](const auto& member) { return member.second.is_learner(); });
  })) << "the clone has its own three voters";
  for (const auto& [name, member] : clone_members) {
    for (const auto& [source_name, source_member] : source_members) {
      EXPECT_NE(member.id(), source_member.id()) << name << " has the id of " << source_name;
    }
  }
  EXPECT_TRUE(clone.WaitHashesEqual({0, 1, 2})) << "the clone's state machines hash equal";

  // The source carries on as it was and never hears of the clone.
  ASSERT_TRUE(source.WaitReady({0, 1, 2}));
  std::map<std::string, pb::Member> source_after;
  ASSERT_TRUE(Eventually([&] { return (source_after = MembersByName(source_client)).size() == 3; }));
  for (const auto& [name, member] : source_members) {
    EXPECT_EQ(source_after[name].id(), member.id()) << name;
  }
  ASSERT_OK(source_client.PutWithRetry("source-only", "s", kTimeout));
  ASSERT_OK(clone_client.PutWithRetry("clone-only", "c", kTimeout));
  EXPECT_THAT(source_client.GetWithRetry("clone-only", {}, kTimeout),
              IsOkAndHolds(std::optional<std::string>()));
  EXPECT_THAT(clone_client.GetWithRetry("source-only", {}, kTimeout),
              IsOkAndHolds(std::optional<std::string>()));
  for (int i : {0, 1, 2}) {
    EXPECT_EQ(ClusterIdOf(source, i), source_cluster) << "source stead-" << i;
    EXPECT_THAT(source.Log(i), ::testing::Not(::testing::HasSubstr(
                                   absl::StrCat(absl::Hex(clone_cluster)))));
  }

  // A restart under the same token is an ordinary one.
  const std::optional<testing::ExitStatus> restarted = clone.Terminate(0);
  ASSERT_TRUE(restarted.has_value() && restarted->exited() && restarted->exit_code == 0);
  clone.Start(0);
  ASSERT_TRUE(clone.WaitReady({0, 1, 2}));
  EXPECT_EQ(ClusterIdOf(clone, 0), clone_cluster);
  EXPECT_EQ(Occurrences(clone.Log(0), "re-identifying"), 1u) << "only at the first start";
  ExpectAllPresent(clone_client, keys);
  EXPECT_THAT(clone_client.GetWithRetry("clone-only", {}, kTimeout),
              IsOkAndHolds(std::optional<std::string>("c")));

  // Another token on a member that is not the first is refused: its volumes are kept.
  ASSERT_TRUE(clone.Terminate(2).has_value());
  clone.set_extra_flags({"--new-cluster-identity=clone2"});
  clone.Start(2);
  EXPECT_TRUE(Eventually([&] { return !clone.Running(2); })) << "stead-2 started under clone2";
  EXPECT_THAT(clone.Log(2), ::testing::HasSubstr("recorded under token clone1"));
  clone.set_extra_flags({"--new-cluster-identity=clone1"});
  clone.Start(2);
  ASSERT_TRUE(clone.WaitReady({0, 1, 2}));
  EXPECT_EQ(ClusterIdOf(clone, 2), clone_cluster);

  // Every member of each cluster holds the copied keys and only its own later write.
  std::map<std::string, std::string> in_clone = SelfValued(keys);
  in_clone["clone-only"] = "c";
  EXPECT_OK(clone.CheckEveryMemberHas({0, 1, 2}, in_clone));
  std::map<std::string, std::string> in_source = SelfValued(keys);
  in_source["source-only"] = "s";
  EXPECT_OK(source.CheckEveryMemberHas({0, 1, 2}, in_source));
}

// Goal: a 4th and 5th member started later join as learners and become voters by
// themselves; `member remove` shrinks the cluster and the removed process, still
// running, does not disrupt it.
TEST(ClusterTest, LaterMembersJoinAndRemovedMemberCannotDisrupt) {
  ProcessCluster cluster(3, TestRoot());
  for (int i : {0, 1, 2}) cluster.Start(i);
  ASSERT_TRUE(cluster.WaitReady({0, 1, 2}));
  KvTestClient client(cluster.ClientEndpoints(5));
  std::map<std::string, std::string> written;
  for (int i = 0; i < 50; ++i) {
    written[absl::StrCat("k", i)] = absl::StrCat("v", i);
    ASSERT_OK(client.PutWithRetry(absl::StrCat("k", i), absl::StrCat("v", i), absl::Seconds(10)));
  }

  cluster.Start(3);
  cluster.Start(4);
  ASSERT_TRUE(cluster.WaitReady({0, 1, 2, 3, 4})) << "the new members never became ready voters";
  for (int i : {3, 4}) {
    EXPECT_EQ(cluster.Metric(i, "stead_raft_is_voter"), 1.0) << "stead-" << i;
    EXPECT_NE(cluster.Log(i).find("waits to be added by the leader"), std::string::npos);
  }

  // Remove stead-4 through the client port of the leader.
  pb::ClientRequest remove;
  remove.mutable_member_remove()->set_name("stead-4");
  bool removed = false;
  Eventually([&] {
    const int leader = cluster.Leader({0, 1, 2, 3, 4});
    if (leader < 0) return false;
    absl::StatusOr<pb::ClientResponse> response =
        client.Call(remove, absl::Seconds(5), static_cast<size_t>(leader));
    removed = response.ok() && !response->has_error();
    return removed;
  });
  ASSERT_TRUE(removed);
  EXPECT_TRUE(Eventually([&] { return cluster.HttpStatus(4, "/readyz") == 503 && !cluster.Ready(4); }));
  EXPECT_TRUE(cluster.Running(4)) << "the removed member should stay up, idle";

  const int leader = cluster.WaitForLeader({0, 1, 2, 3});
  ASSERT_GE(leader, 0);
  const std::optional<double> term = cluster.Metric(leader, "stead_raft_term");
  std::this_thread::sleep_for(std::chrono::seconds(3));  // several election timeouts
  ASSERT_OK(client.PutWithRetry("after-removal", "ok", absl::Seconds(10)));
  EXPECT_EQ(cluster.Leader({0, 1, 2, 3}), leader) << "the removed member disrupted the leader";
  EXPECT_EQ(cluster.Metric(leader, "stead_raft_term"), term);

  // The members, the two that joined included, hold every write.
  written["after-removal"] = "ok";
  EXPECT_OK(cluster.CheckEveryMemberHas({0, 1, 2, 3}, written));
  // The check can fail: it names a value no member holds, member by member, and the
  // removed member, which serves nothing from its stale state.
  std::map<std::string, std::string> wrong = written;
  wrong["k7"] = "v8";
  EXPECT_THAT(cluster.CheckEveryMemberHas({0, 1, 2, 3}, wrong),
              StatusIs(absl::StatusCode::kDataLoss,
                       "stead-3: of 51 pairs, 1 wrong (\"k7\" = \"v7\", want \"v8\")"));
  EXPECT_THAT(cluster.CheckEveryMemberHas({0, 1, 2, 3, 4}, written, absl::Seconds(1)),
              StatusIs(absl::StatusCode::kFailedPrecondition, "stead-4: unreadable"));
}

// Goal: a rolling restart with SIGTERM, one member at a time, under writes: a member
// leads before each step, leadership moves by transfer when its leader stops, every
// SIGTERM ends in exit 0, writes keep succeeding and every member holds them all.
TEST(ClusterTest, RollingRestartWithSigtermUnderLoad) {
  ProcessCluster cluster(3, TestRoot());
  for (int i : {0, 1, 2}) cluster.Start(i);
  ASSERT_TRUE(cluster.WaitReady({0, 1, 2}));
  Writer writer(cluster.ClientEndpoints(3));
  // Highest ordinal first, as a StatefulSet rolls.
  std::vector<int> order = {2, 1, 0};
  int leaders_restarted = 0;
  for (size_t step = 0; step < order.size(); ++step) {
    const int i = order[step];
    const int leader = cluster.WaitForLeader({0, 1, 2});
    ASSERT_GE(leader, 0) << "no member led before stead-" << i << " was stopped";
    const std::optional<testing::ExitStatus> exit = cluster.Terminate(i, absl::Seconds(15));
    ASSERT_TRUE(exit.has_value()) << "stead-" << i << " did not exit after SIGTERM";
    EXPECT_TRUE(exit->exited() && exit->exit_code == 0) << exit->ToString();
    if (leader == i) {
      ++leaders_restarted;
      EXPECT_NE(cluster.Log(i).find("leadership handed over"), std::string::npos)
          << "stead-" << i << " was leader and did not transfer leadership";
      std::vector<int> others;
      for (int j : {0, 1, 2}) {
        if (j != i) others.push_back(j);
      }
      EXPECT_GE(cluster.WaitForLeader(others), 0)
          << "leadership did not move when its leader stead-" << i << " stopped";
    }
    cluster.Start(i);
    ASSERT_TRUE(cluster.WaitReady({0, 1, 2})) << "after restarting stead-" << i;
    // Leadership may have moved by itself onto a member restarted already: the run
    // restarts the leader once more, so that a leader's restart is always part of it.
    if (step + 1 == order.size() && leaders_restarted == 0 && order.size() < 5) {
      order.push_back(cluster.WaitForLeader({0, 1, 2}));
      std::cout << "leadership moved onto a restarted member; restarting stead-" << order.back()
                << " too\n";
    }
  }
  EXPECT_GE(leaders_restarted, 1);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  writer.Stop();
  EXPECT_EQ(writer.failures(), 0) << "writes failed even with retries";
  ASSERT_GT(writer.acknowledged().size(), 10u);
  KvTestClient client(cluster.ClientEndpoints(3));
  ExpectAllPresent(client, writer.acknowledged());
  EXPECT_OK(cluster.CheckEveryMemberHas({0, 1, 2}, SelfValued(writer.acknowledged())));
}

// Goal: a client sending random bytes and a peer of another cluster are refused and
// logged; the cluster keeps serving.
TEST(ClusterTest, RandomBytesAndForeignPeersAreRefused) {
  ProcessCluster cluster(3, TestRoot());
  for (int i : {0, 1, 2}) cluster.Start(i);
  ASSERT_TRUE(cluster.WaitReady({0, 1, 2}));
  boost::asio::io_context io;
  {
    boost::asio::ip::tcp::socket socket(io);
    socket.connect({boost::asio::ip::make_address("127.0.0.1"), cluster.client_port(0)});
    std::string noise(4096, '\0');
    for (size_t i = 0; i < noise.size(); ++i) noise[i] = static_cast<char>((i * 2654435761u) >> 13);
    boost::system::error_code ec;
    boost::asio::write(socket, boost::asio::buffer(noise), ec);
    char byte;
    socket.read_some(boost::asio::buffer(&byte, 1), ec);
    EXPECT_TRUE(ec) << "the garbage connection stayed open";
  }
  {
    boost::asio::ip::tcp::socket socket(io);
    socket.connect({boost::asio::ip::make_address("127.0.0.1"), cluster.peer_port(1)});
    pb::PeerFrame hello;
    hello.mutable_hello()->set_protocol_version(1);
    hello.mutable_hello()->set_cluster_id(0xbadc0ffee);
    hello.mutable_hello()->set_from_id(42);
    hello.mutable_hello()->set_from_name("intruder-0");
    hello.mutable_hello()->set_to_id(1);
    std::string bytes;
    ASSERT_OK(server::AppendFrame(hello, 1 << 20, &bytes));
    boost::asio::write(socket, boost::asio::buffer(bytes));
    std::string answer(256, '\0');
    boost::system::error_code ec;
    const size_t n = socket.read_some(boost::asio::buffer(answer), ec);
    server::FrameReader reader(1 << 20);
    reader.Append(absl::string_view(answer.data(), n));
    absl::StatusOr<std::optional<absl::string_view>> payload = reader.Next();
    ASSERT_TRUE(payload.ok() && payload->has_value());
    pb::PeerFrame response;
    ASSERT_TRUE(response.ParseFromArray(payload->value().data(), static_cast<int>(payload->value().size())));
    EXPECT_FALSE(response.hello_response().accepted());
    EXPECT_THAT(response.hello_response().reason(), ::testing::HasSubstr("cluster"));
  }
  EXPECT_TRUE(Eventually([&] {
    return absl::StrContains(cluster.Log(0), "closing client connection") &&
           absl::StrContains(cluster.Log(1), "intruder-0");
  }, absl::Seconds(5))) << "the refusals were not logged";
  KvTestClient client(cluster.ClientEndpoints(3));
  ASSERT_OK(client.PutWithRetry("still", "serving", absl::Seconds(10)));
  for (int i : {0, 1, 2}) EXPECT_TRUE(cluster.Running(i));
}

// Lets this process open as many sockets as its hard limit allows; false (with a
// gtest failure) if that is fewer than `needed`.
bool RaiseOwnFileLimit(uint64_t needed) {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return false;
  limit.rlim_cur = limit.rlim_max;
  if (::setrlimit(RLIMIT_NOFILE, &limit) != 0) return false;
  EXPECT_GE(limit.rlim_cur, needed) << "the hard limit on open files is too low for this test";
  return limit.rlim_cur >= needed;
}

// Opens `count` TCP connections to 127.0.0.1:`port` that never send a byte.
std::vector<boost::asio::ip::tcp::socket> OpenIdleConnections(boost::asio::io_context& io,
                                                               uint16_t port, int count) {
  std::vector<boost::asio::ip::tcp::socket> sockets;
  for (int i = 0; i < count; ++i) {
    boost::asio::ip::tcp::socket socket(io);
    boost::system::error_code ec;
    socket.connect({boost::asio::ip::make_address("127.0.0.1"), port}, ec);
    if (!ec) sockets.push_back(std::move(socket));
  }
  return sockets;
}

// Goal: idle connections far beyond the client port's cap (or the file limit) lock
// out neither new clients nor the followers forwarding to the leader. Method: 2,000
// idle connections to the leader's client port, capped at 300; then a client of the
// leader and a client of a follower only (whose write is forwarded) both write.
TEST(ClusterTest, TwoThousandIdleClientConnectionsLockOutNobody) {
  ASSERT_TRUE(RaiseOwnFileLimit(2200));
  ProcessCluster cluster(3, TestRoot());
  cluster.set_extra_flags({"--max-client-connections=300"});
  const int leader = cluster.StartAndWaitForLeader({0, 1, 2});
  ASSERT_GE(leader, 0);
  const int follower = (leader + 1) % 3;
  boost::asio::io_context io;
  const std::vector<boost::asio::ip::tcp::socket> idle =
      OpenIdleConnections(io, cluster.client_port(leader), 2000);
  EXPECT_EQ(idle.size(), 2000u) << "the kernel refused connections";

  KvTestClient direct({cluster.ClientAddress(leader)});
  EXPECT_OK(direct.Put("direct", "1", absl::Seconds(10)));
  KvTestClient forwarded({cluster.ClientAddress(follower)});
  EXPECT_OK(forwarded.Put("forwarded", "1", absl::Seconds(10)));
  EXPECT_THAT(direct.Get("forwarded", KvGetOptions(), absl::Seconds(10)),
              IsOkAndHolds(std::optional<std::string>("1")));
  EXPECT_TRUE(cluster.Ready(leader));
  EXPECT_TRUE(absl::StrContains(cluster.Log(leader), "port full (300 connections)"))
      << "the leader logged no eviction";
}

// Goal: a flood of silent sockets on every peer port neither delays a follower that
// restarts meanwhile nor fills the logs. Method: a follower is killed; a thread keeps
// 300 silent sockets open to each member's peer port (reopening those the members
// close) while the follower restarts; it must be ready well before the flood ends, and
// the members log only a handful of warnings for the whole flood.
TEST(ClusterTest, PeerPortFloodDoesNotDelayARestartedFollower) {
  ASSERT_TRUE(RaiseOwnFileLimit(1200));
  ProcessCluster cluster(3, TestRoot());
  const int leader = cluster.StartAndWaitForLeader({0, 1, 2});
  ASSERT_GE(leader, 0);
  const int follower = (leader + 1) % 3;
  cluster.Kill(follower);
  // A write the follower misses while it is down, to catch up on after its restart.
  KvTestClient client({cluster.ClientAddress(leader)});
  ASSERT_OK(client.PutWithRetry("while-down", "1", kTimeout));
  std::map<int, size_t> log_before;
  for (int i : {0, 1, 2}) log_before[i] = cluster.Log(i).size();

  constexpr absl::Duration kFlood = absl::Seconds(15);
  std::atomic<bool> stop{false};
  std::thread flood([&] {
    boost::asio::io_context io;
    std::map<int, std::vector<boost::asio::ip::tcp::socket>> sockets;
    const absl::Time end = absl::Now() + kFlood;
    while (!stop && absl::Now() < end) {
      for (int i : {0, 1, 2}) {
        // Keep 300 open: drop those the member closed, open new ones in their place.
        std::vector<boost::asio::ip::tcp::socket>& open = sockets[i];
        std::erase_if(open, [](boost::asio::ip::tcp::socket& socket) {
          char byte;
          const ssize_t n = ::recv(socket.native_handle(), &byte, 1, MSG_DONTWAIT | MSG_PEEK);
          return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
        });
        std::vector<boost::asio::ip::tcp::socket> more = OpenIdleConnections(
            io, cluster.peer_port(i), 300 - static_cast<int>(std::min<size_t>(open.size(), 300)));
        for (auto& socket : more) open.push_back(std::move(socket));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  });
  std::this_thread::sleep_for(std::chrono::seconds(1));  // the flood is on
  const absl::Time restarted = absl::Now();
  cluster.Start(follower);
  const bool ready = cluster.WaitReady({follower}, absl::Seconds(10));
  const absl::Duration took = absl::Now() - restarted;
  flood.join();  // it ends on its own: the flood lasts its whole length either way
  ASSERT_TRUE(ready) << "the restarted follower was not ready within 10 s of the flood";
  std::cout << "restarted follower ready after " << absl::FormatDuration(took)
            << " under a peer-port flood\n";
  for (int i : {0, 1, 2}) {
    const std::string log = cluster.Log(i).substr(log_before[i]);
    int warnings = 0;
    for (absl::string_view line : absl::StrSplit(log, '\n')) {
      warnings += absl::StrContains(line, " W ") || absl::StrContains(line, " E ");
    }
    std::cout << "stead-" << i << ": " << warnings << " warning lines during the flood\n";
    EXPECT_LE(warnings, 12) << "stead-" << i << " logged " << warnings
                            << " warnings during a " << absl::FormatDuration(kFlood)
                            << " flood";
  }
  EXPECT_OK(cluster.CheckEveryMemberHas({0, 1, 2}, {{"while-down", "1"}}));
}

// Goal: the binary documents its flags, and a configuration mistake exits 2 with a
// message naming the flag, before anything is created on disk.
TEST(StandaloneBinaryTest, HelpAndConfigurationErrors) {
  const std::string root = TestRoot();
  std::filesystem::create_directories(root);
  auto run = [&](std::vector<std::string> args, const std::string& log,
                 std::vector<std::string> env = {}) {
    args.insert(args.begin(), STEAD_BINARY);
    absl::StatusOr<std::unique_ptr<Subprocess>> process =
        Subprocess::Start(std::move(args), std::move(env), root + "/" + log);
    EXPECT_TRUE(process.ok()) << process.status();
    std::optional<testing::ExitStatus> status = (*process)->WaitFor(absl::Seconds(10));
    EXPECT_TRUE(status.has_value());
    return std::make_pair(status.value_or(testing::ExitStatus()),
                          testing::ReadFileToString(root + "/" + log).value_or(""));
  };
  auto [help, usage] = run({"--help"}, "help.log");
  EXPECT_EQ(help.exit_code, 0);
  for (const char* flag : {"--name", "--data-dir", "--wal-dir", "--peers", "--peer-service",
                           "--initial-cluster-size", "--shutdown-timeout", "--new-cluster-identity",
                           "STEAD_DATA_DIR"}) {
    EXPECT_THAT(usage, ::testing::HasSubstr(flag));
  }
  auto [unknown, unknown_log] = run({"--name=stead-0", "--no-such-flag=1"}, "unknown.log");
  EXPECT_EQ(unknown.exit_code, 2);
  EXPECT_THAT(unknown_log, ::testing::HasSubstr("no-such-flag"));
  auto [same_dirs, same_log] =
      run({"--name=stead-0", "--data-dir=" + root + "/d", "--wal-dir=" + root + "/d",
           "--peers=stead-0=127.0.0.1:1"},
          "same.log");
  EXPECT_EQ(same_dirs.exit_code, 2);
  EXPECT_THAT(same_log, ::testing::HasSubstr("--wal-dir"));
  EXPECT_FALSE(std::filesystem::exists(root + "/d"));
  // The placeholder of k8s/components/clone, left in place by an overlay.
  auto [placeholder, placeholder_log] =
      run({"--name=stead-0", "--data-dir=" + root + "/d", "--wal-dir=" + root + "/w",
           "--peers=stead-0=127.0.0.1:1",
           "--new-cluster-identity=<set-the-clone-token-in-your-overlay>"},
          "placeholder.log");
  EXPECT_EQ(placeholder.exit_code, 2);
  EXPECT_THAT(placeholder_log, ::testing::HasSubstr("--new-cluster-identity: '<set-the"));
  EXPECT_FALSE(std::filesystem::exists(root + "/d"));
  // Volumes a re-identification left half cleared start only with the flag again.
  std::filesystem::create_directories(root + "/half/checkpoints/reidentify");
  std::ofstream(root + "/half/checkpoints/reidentify/CLEARING") << "clearing\n";
  auto [half, half_log] =
      run({"--name=stead-0", "--data-dir=" + root + "/half", "--wal-dir=" + root + "/w",
           absl::StrCat("--peers=stead-0=127.0.0.1:", testing::FreeLoopbackPort().value()),
           "--initial-cluster-size=1",
           absl::StrCat("--client-addr=127.0.0.1:", testing::FreeLoopbackPort().value()),
           absl::StrCat("--http-addr=127.0.0.1:", testing::FreeLoopbackPort().value())},
          "half.log");
  EXPECT_EQ(half.exit_code, 1);
  EXPECT_THAT(half_log, ::testing::HasSubstr("start again with the same --new-cluster-identity"));
  EXPECT_TRUE(std::filesystem::exists(root + "/half/checkpoints/reidentify/CLEARING"));
  // A failpoint name it does not know (base/failpoint.h) stops the start before the
  // volumes are touched: a typo cannot pass for a planted bug.
  auto [failpoint, failpoint_log] =
      run({"--name=stead-0", "--data-dir=" + root + "/fp", "--wal-dir=" + root + "/fpw",
           "--peers=stead-0=127.0.0.1:1", "--initial-cluster-size=1"},
          "failpoint.log", {"STEAD_FAILPOINTS=unsafe-local-reads,no-such-failpoint"});
  EXPECT_EQ(failpoint.exit_code, 1);
  EXPECT_THAT(failpoint_log, ::testing::HasSubstr("unknown failpoint 'no-such-failpoint'"));
  EXPECT_FALSE(std::filesystem::exists(root + "/fp"));
  std::filesystem::remove_all(root);
}

}  // namespace
}  // namespace stead
