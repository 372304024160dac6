// Real `stead` processes on loopback facing an operator's slips about identity: a
// second process started under a running member's name, and a member started on
// another cluster's volumes. Neither may evict a healthy member or serve data that is
// not its cluster's; both say what is wrong. Only processes started here are signalled.
#include <filesystem>
#include <map>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/kv_test_client.h"
#include "tests/testing/process_cluster.h"
#include "tests/testing/status_matchers.h"

namespace stead {
namespace {

using testing::Eventually;
using testing::KvGetOptions;
using testing::KvTestClient;
using testing::MembersByName;
using testing::StatusIs;

constexpr absl::Duration kTimeout = testing::kClusterTimeout;
// What a member on stale volumes says (server/peer_transport.h, kStaleVolumesAdvice).
constexpr char kStaleVolumes[] = "this member's volumes are stale";

class ProcessCluster : public testing::ProcessCluster {
 public:
  ProcessCluster(int initial_size, std::string root)
      : testing::ProcessCluster(initial_size, std::move(root), STEAD_BINARY) {}
};

std::string TestRoot() { return testing::ClusterTestRoot("identity_test"); }

// Goal: a second process started by mistake under the name of a running voter (empty
// volumes, other ports) never evicts it: the leader refuses it for as long as the
// running one answers, and says why on both sides; only once the running one has
// been silent for --replace-silent-member-after does the newcomer take the name over,
// as a member whose volumes were lost would.
TEST(IdentityTest, ASecondProcessUnderARunningMembersNameIsRefused) {
  ProcessCluster cluster(3, TestRoot());
  cluster.set_extra_flags({"--replace-silent-member-after=3s"});
  for (int i : {0, 1, 2}) cluster.Start(i);
  ASSERT_TRUE(cluster.WaitReady({0, 1, 2}));
  KvTestClient client(cluster.ClientEndpoints(3));
  std::map<std::string, pb::Member> members;
  ASSERT_TRUE(Eventually([&] { return (members = MembersByName(client)).size() == 3; }));
  const uint64_t running_id = members.at("stead-1").id();

  cluster.StartUnderName(4, "stead-1");  // the ports and volumes of slot 4
  ASSERT_TRUE(Eventually([&] {
    return absl::StrContains(cluster.Log(4), "refuses this member");
  })) << "the newcomer never heard why it is refused";
  // Well past the replacement time: the running member keeps its place.
  const absl::Time until = absl::Now() + absl::Seconds(8);
  while (absl::Now() < until) {
    members = MembersByName(client);
    if (!members.empty()) {
      ASSERT_EQ(members.size(), 3u);
      ASSERT_EQ(members.at("stead-1").id(), running_id) << "the running stead-1 was evicted";
    }
    absl::SleepFor(absl::Milliseconds(200));
  }
  EXPECT_TRUE(cluster.Ready(1));
  EXPECT_FALSE(cluster.Ready(4));
  const int leader = cluster.WaitForLeader({0, 1, 2});
  ASSERT_GE(leader, 0);
  EXPECT_TRUE(absl::StrContains(cluster.Log(leader), "a member named stead-1 is already in the cluster"));
  EXPECT_TRUE(absl::StrContains(cluster.Log(4), "two members cannot share a name"));
  ASSERT_OK(client.PutWithRetry("still", "serving", kTimeout));

  // The running one stops for good: once silent for 3 s it is replaced by the newcomer.
  cluster.Kill(1);
  ASSERT_TRUE(Eventually([&] {
    members = MembersByName(client);
    return members.size() == 3 && members.contains("stead-1") &&
           members.at("stead-1").id() != running_id && !members.at("stead-1").is_learner();
  }, absl::Seconds(60))) << "the newcomer did not take the name over";
  ASSERT_TRUE(cluster.WaitReady({4}));
  // The newcomer under stead-1's name holds what the cluster acknowledged before.
  EXPECT_OK(cluster.CheckEveryMemberHas({0, 2, 4}, {{"still", "serving"}}));
}

// Goal: a member started on volumes of another cluster (here: an earlier cluster on
// the same addresses, as a retained PersistentVolume would be in Kubernetes) serves
// nothing of that data, not even serializable reads, and says its volumes are stale;
// the healthy members never call their own volumes stale and keep serving.
TEST(IdentityTest, AMemberOnAnotherClustersVolumesServesNothing) {
  ProcessCluster cluster(3, TestRoot());
  for (int i : {0, 1, 2}) cluster.Start(i);
  ASSERT_TRUE(cluster.WaitReady({0, 1, 2}));
  {
    KvTestClient old_client(cluster.ClientEndpoints(3));
    ASSERT_OK(old_client.PutWithRetry("old-cluster-only", "secret", kTimeout));
  }
  for (int i : {0, 1, 2}) ASSERT_TRUE(cluster.Terminate(i).has_value());
  // Keep stead-0's volumes of the old cluster, and form a new cluster on the same ports.
  const std::string kept = TestRoot() + "-kept";
  std::filesystem::remove_all(kept);
  std::filesystem::create_directories(kept);
  std::filesystem::rename(cluster.DataDir(0), kept + "/data");
  std::filesystem::rename(cluster.WalDir(0), kept + "/wal");
  for (int i : {0, 1, 2}) cluster.Wipe(i);
  for (int i : {0, 1, 2}) cluster.Start(i);
  ASSERT_TRUE(cluster.WaitReady({0, 1, 2}));
  KvTestClient client(cluster.ClientEndpoints(3));
  ASSERT_OK(client.PutWithRetry("new-cluster", "yes", kTimeout));

  // stead-0 is restarted on the old cluster's volumes.
  cluster.Kill(0);
  cluster.Wipe(0);
  std::filesystem::rename(kept + "/data", cluster.DataDir(0));
  std::filesystem::rename(kept + "/wal", cluster.WalDir(0));
  cluster.Start(0);
  ASSERT_TRUE(Eventually([&] {
    return absl::StrContains(cluster.Log(0), kStaleVolumes);
  })) << "stead-0 never said its volumes are stale";

  KvTestClient stale({cluster.ClientAddress(0)});
  KvGetOptions serializable;
  serializable.serializable = true;
  EXPECT_THAT(stale.Get("old-cluster-only", serializable, absl::Seconds(2)),
              StatusIs(absl::StatusCode::kUnavailable, "volumes are stale"));
  EXPECT_THAT(stale.Get("old-cluster-only", KvGetOptions(), absl::Seconds(2)),
              StatusIs(absl::StatusCode::kUnavailable, "volumes are stale"));
  EXPECT_THAT(stale.Put("k", "v", absl::Seconds(2)),
              StatusIs(absl::StatusCode::kUnavailable, "volumes are stale"));
  pb::ClientRequest watch;
  watch.mutable_watch()->set_key("old");
  absl::StatusOr<pb::ClientResponse> watched = stale.Call(watch, absl::Seconds(2));
  ASSERT_OK(watched.status());
  EXPECT_EQ(watched->error().code(), static_cast<int>(absl::StatusCode::kUnavailable));
  EXPECT_THAT(watched->error().message(), ::testing::HasSubstr("volumes are stale"));
  EXPECT_FALSE(cluster.Ready(0));
  EXPECT_TRUE(cluster.Running(0));

  // The healthy members keep serving and never blame their own volumes; a client that
  // tries the stale member first moves on.
  ASSERT_OK(client.PutWithRetry("after", "yes", kTimeout));
  for (int i : {1, 2}) {
    EXPECT_TRUE(cluster.Ready(i));
    EXPECT_FALSE(absl::StrContains(cluster.Log(i), kStaleVolumes)) << cluster.Name(i);
  }
  EXPECT_OK(cluster.CheckEveryMemberHas({1, 2}, {{"new-cluster", "yes"}, {"after", "yes"}}));
  std::filesystem::remove_all(kept);
}

}  // namespace
}  // namespace stead
