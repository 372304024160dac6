// Scenario tests: several Raft nodes over the in-test network (test_network.h), each
// test one situation the issue lists, driven by hand and checked on its outcome.
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "raft/conf_change.h"
#include "raft/raft.h"
#include "raft/test_network.h"
#include "tests/testing/status_matchers.h"

namespace stead::raft {
namespace {

using ::stead::testing::StatusIs;
using ::testing::ElementsAre;
using testing::TestNetwork;

std::vector<std::string> AppliedData(TestNetwork& net, NodeId id) {
  std::vector<std::string> out;
  for (const auto& [index, data] : net.node(id).applied) out.push_back(data);
  return out;
}

TEST(RaftScenario, ThreeNodesElectAndReplicate) {
  // Goal: the basic cycle. Node 1 campaigns, wins, and a proposal is applied everywhere.
  TestNetwork net({1, 2, 3});
  net.Elect(1);
  ASSERT_EQ(net.raft(1).role(), Role::kLeader);
  EXPECT_EQ(net.raft(2).leader(), 1u);
  EXPECT_EQ(net.raft(3).leader(), 1u);
  ASSERT_OK(net.raft(1).Propose("a"));
  ASSERT_OK(net.raft(1).Propose("b"));
  net.Stabilize();
  for (NodeId id : {1, 2, 3}) {
    SCOPED_TRACE(id);
    EXPECT_THAT(AppliedData(net, id), ElementsAre("a", "b"));
    EXPECT_EQ(net.raft(id).commit_index(), net.raft(1).last_index());
  }
  EXPECT_TRUE(net.step_errors().empty());
}

TEST(RaftScenario, ElectionByTimeout) {
  // Goal: without any Campaign() call, ticks alone elect exactly one leader.
  TestNetwork net({1, 2, 3});
  net.TickAll(40);
  const NodeId leader = net.Leader();
  ASSERT_NE(leader, kNoNode);
  int leaders = 0;
  for (NodeId id : net.ids()) {
    if (net.raft(id).role() == Role::kLeader) ++leaders;
    EXPECT_EQ(net.raft(id).leader(), leader);
  }
  EXPECT_EQ(leaders, 1);
}

}  // namespace
}  // namespace stead::raft
