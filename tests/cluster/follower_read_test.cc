// Real `stead` processes on loopback: a linearizable read sent to a follower is served
// by that follower (its read barrier asks the leader for the read index, then waits for
// its own state machine) instead of being forwarded, and sees every write the leader
// acknowledged before it. Only processes started here are signalled.
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/kv_test_client.h"
#include "tests/testing/process_cluster.h"
#include "tests/testing/status_matchers.h"

namespace stead {
namespace {

using testing::IsOkAndHolds;
using testing::KvGetOptions;
using testing::KvTestClient;

constexpr absl::Duration kAttempt = absl::Seconds(5);

class ProcessCluster : public testing::ProcessCluster {
 public:
  ProcessCluster(int initial_size, std::string root)
      : testing::ProcessCluster(initial_size, std::move(root), STEAD_BINARY) {}
};

std::string TestRoot() { return testing::ClusterTestRoot("follower_read_test"); }

// Goal: read-your-acknowledged-writes on every member. Each write is acknowledged by
// the leader and immediately read back, linearizably, from each follower; the
// followers answer themselves (nothing forwarded) and their metrics show the read
// rounds they asked the leader for.
TEST(FollowerReadTest, AWriteAcknowledgedByTheLeaderIsSeenByTheNextReadOnEachFollower) {
  ProcessCluster cluster(3, TestRoot());
  const int leader = cluster.StartAndWaitForLeader({0, 1, 2});
  ASSERT_GE(leader, 0);
  std::vector<int> followers;
  for (int i : {0, 1, 2}) {
    if (i != leader) followers.push_back(i);
  }
  KvTestClient client(cluster.ClientEndpoints(3));
  constexpr int kWrites = 20;
  for (int i = 0; i < kWrites; ++i) {
    const std::string key = absl::StrCat("k", i % 3);
    const std::string value = absl::StrCat("v", i);
    ASSERT_OK(client.Put(key, value, kAttempt, leader));
    for (int follower : followers) {
      EXPECT_THAT(client.Get(key, KvGetOptions(), kAttempt, follower),
                  IsOkAndHolds(std::optional<std::string>(value)))
          << "stead-" << follower << " after write " << i;
    }
  }
  for (int follower : followers) {
    SCOPED_TRACE(absl::StrCat("stead-", follower));
    EXPECT_EQ(cluster.Metric(follower, "stead_client_requests_forwarded_total"), 0.0)
        << "the follower served its reads itself";
    EXPECT_GE(cluster.Metric(follower, "stead_raft_reads").value_or(0), kWrites);
    EXPECT_GE(cluster.Metric(follower, "stead_raft_read_rounds").value_or(0), kWrites);
  }
  // Writes sent to a follower are still forwarded to the leader.
  ASSERT_OK(client.Put("via", "follower", kAttempt, followers[0]));
  EXPECT_EQ(cluster.Metric(followers[0], "stead_client_requests_forwarded_total"), 1.0);
  EXPECT_THAT(client.Get("via", KvGetOptions(), kAttempt, followers[1]),
              IsOkAndHolds(std::optional<std::string>("follower")));
}

}  // namespace
}  // namespace stead
