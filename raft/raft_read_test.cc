// Reads served for followers and learners: the follower asks the leader (READ_INDEX),
// the leader confirms its commit index as for its own reads and answers
// (READ_INDEX_RESPONSE), and the follower hands the index out as a ReadState.
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "raft/raft.h"
#include "raft/test_network.h"
#include "tests/testing/status_matchers.h"

namespace stead::raft {
namespace {

using ::stead::testing::StatusIs;
using testing::TestNetwork;

std::vector<pb::MessageType> QueuedTypes(const TestNetwork& net) {
  std::vector<pb::MessageType> types;
  for (const pb::Message& message : net.queue()) types.push_back(message.type());
  return types;
}

TEST(RaftFollowerRead, FollowerGetsTheIndexTheLeaderConfirmed) {
  // Goal: a follower's read costs one request to the leader and its answer; the index is
  // the leader's commit index, handed out only after a heartbeat quorum; a context the
  // leader uses for a read of its own at the same time does not get mixed up with it.
  TestNetwork net({1, 2, 3});
  net.Elect(1);
  ASSERT_OK(net.raft(1).Propose("x"));
  net.Stabilize();
  ASSERT_OK(net.raft(2).ReadIndex("r"));
  net.ProcessReadys();
  ASSERT_EQ(net.queue().size(), 1u);
  const pb::Message& request = net.queue().front();
  EXPECT_EQ(request.type(), pb::MESSAGE_TYPE_READ_INDEX);
  EXPECT_EQ(request.from(), 2u);
  EXPECT_EQ(request.to(), 1u);
  EXPECT_EQ(request.context(), "r");

  net.DeliverOnce();  // the leader starts a heartbeat round for it
  ASSERT_OK(net.raft(1).ReadIndex("r"));
  net.ProcessReadys();
  EXPECT_THAT(QueuedTypes(net), ::testing::Each(pb::MESSAGE_TYPE_HEARTBEAT));
  EXPECT_TRUE(net.node(2).read_states.empty()) << "no answer before a quorum acknowledged";

  net.Stabilize();
  ASSERT_EQ(net.node(2).read_states.size(), 1u);
  EXPECT_EQ(net.node(2).read_states[0].context, "r");
  EXPECT_EQ(net.node(2).read_states[0].index, net.raft(1).commit_index());
  ASSERT_EQ(net.node(1).read_states.size(), 1u);
  EXPECT_EQ(net.node(1).read_states[0].context, "r");
  EXPECT_TRUE(net.node(3).read_states.empty());
  EXPECT_TRUE(net.step_errors().empty());
}

TEST(RaftFollowerRead, RefusedWithoutAKnownLeader) {
  // Goal: a follower that knows no leader, or a (pre-)candidate, refuses at once (the
  // runtime may then try elsewhere); contexts are validated on followers too.
  TestNetwork net({1, 2, 3});
  EXPECT_THAT(net.raft(2).ReadIndex("r"), StatusIs(absl::StatusCode::kUnavailable));
  net.Elect(1);
  EXPECT_THAT(net.raft(2).ReadIndex(""), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(net.raft(2).ReadIndex(std::string("\x01read:1:r")),
              StatusIs(absl::StatusCode::kInvalidArgument, "reserved"));
  net.Isolate(2);
  ASSERT_OK(net.raft(2).Campaign());
  EXPECT_THAT(net.raft(2).ReadIndex("r"), StatusIs(absl::StatusCode::kUnavailable));
}

TEST(RaftFollowerRead, WaitsForTheNewLeadersFirstCommit) {
  // Goal: thesis §6.4 step 1 for a follower's read: a new leader that has not committed
  // an entry of its term holds the request until it has, then answers with an index at
  // or above its no-op.
  TestNetwork net({1, 2, 3});
  ASSERT_OK(net.raft(1).Campaign());
  net.ProcessReadys();
  for (int i = 0; i < 5; ++i) net.DeliverOnce();  // pre-vote, vote, the no-op APPENDs
  ASSERT_EQ(net.raft(1).role(), Role::kLeader);
  ASSERT_EQ(net.raft(2).leader(), 1u);
  net.DropAll();  // the acknowledgements of the no-op are lost
  const Index noop = net.raft(1).last_index();
  ASSERT_LT(net.raft(1).commit_index(), noop);

  ASSERT_OK(net.raft(2).ReadIndex("early"));
  net.ProcessReadys();
  net.DeliverOnce();
  net.ProcessReadys();
  EXPECT_TRUE(net.queue().empty()) << "no heartbeat round before the no-op commits";
  net.Stabilize();
  EXPECT_TRUE(net.node(2).read_states.empty());
  net.TickAll(3);
  ASSERT_EQ(net.node(2).read_states.size(), 1u);
  EXPECT_GE(net.node(2).read_states[0].index, noop);
  EXPECT_EQ(net.node(2).read_states[0].index, net.raft(1).commit_index());
}

TEST(RaftFollowerRead, DeposedLeaderNeverAnswersAFollower) {
  // Goal: a leader cut off with a minority (no CheckQuorum, so it keeps believing it
  // leads) cannot confirm a follower's read: the follower on its side gets no answer,
  // also after the partition heals, while a read asked of the new leader is answered.
  TestNetwork net({1, 2, 3, 4, 5}, [](Config& config) { config.check_quorum = false; });
  net.Elect(1);
  for (NodeId a : {1, 2}) {
    for (NodeId b : {3, 4, 5}) net.Cut(a, b);
  }
  net.Tick(3, 20);
  net.Elect(3);
  ASSERT_EQ(net.raft(3).role(), Role::kLeader);
  ASSERT_OK(net.raft(3).Propose("newer"));
  net.Stabilize();
  ASSERT_EQ(net.raft(1).role(), Role::kLeader);
  ASSERT_EQ(net.raft(2).leader(), 1u);

  ASSERT_OK(net.raft(2).ReadIndex("stale"));
  net.Stabilize();
  EXPECT_TRUE(net.node(2).read_states.empty());
  net.Heal();
  net.TickAll(5);
  EXPECT_EQ(net.raft(2).leader(), 3u);
  EXPECT_TRUE(net.node(2).read_states.empty());

  ASSERT_OK(net.raft(2).ReadIndex("fresh"));
  net.Stabilize();
  ASSERT_EQ(net.node(2).read_states.size(), 1u);
  EXPECT_EQ(net.node(2).read_states[0].context, "fresh");
  EXPECT_EQ(net.node(2).read_states[0].index, net.raft(3).commit_index());
}

TEST(RaftFollowerRead, LeaseHolderAnswersWithoutAHeartbeatRound) {
  // Goal: in lease mode a leader holding its lease answers a follower's request at
  // once: the read costs the follower one round trip and the others nothing.
  TestNetwork net({1, 2, 3},
                  [](Config& config) { config.read_only_mode = ReadOnlyMode::kLeaseBased; });
  net.TickAll(40);
  const NodeId leader = net.Leader();
  ASSERT_NE(leader, kNoNode);
  net.TickAll(1);  // a heartbeat round
  const NodeId follower = leader % 3 + 1;
  ASSERT_EQ(net.raft(follower).leader(), leader);
  ASSERT_OK(net.raft(follower).ReadIndex("lf"));
  net.ProcessReadys();
  net.DeliverOnce();
  EXPECT_THAT(QueuedTypes(net), ::testing::ElementsAre(pb::MESSAGE_TYPE_READ_INDEX_RESPONSE));
  net.Stabilize();
  ASSERT_EQ(net.node(follower).read_states.size(), 1u);
  EXPECT_EQ(net.node(follower).read_states[0].index, net.raft(leader).commit_index());
}

TEST(RaftFollowerRead, LearnerOfASoleVoterIsAnsweredAtOnce) {
  // Goal: learners read through the leader too; a sole voter is its own quorum, so it
  // answers without a heartbeat round.
  TestNetwork net({1});
  net.Elect(1);
  net.AddEmptyNode(2);
  pb::ConfChange change;
  change.set_type(pb::CONF_CHANGE_TYPE_ADD_LEARNER);
  change.set_node_id(2);
  ASSERT_OK(net.raft(1).ProposeConfChange(change));
  net.Stabilize();
  net.TickAll(3);
  ASSERT_OK(net.raft(1).Propose("seen"));
  ASSERT_EQ(net.raft(2).leader(), 1u);

  ASSERT_OK(net.raft(2).ReadIndex("l"));
  net.ProcessReadys();
  net.DropIf([](const pb::Message& message) { return message.type() != pb::MESSAGE_TYPE_READ_INDEX; });
  net.DeliverOnce();
  EXPECT_THAT(QueuedTypes(net), ::testing::Contains(pb::MESSAGE_TYPE_READ_INDEX_RESPONSE));
  EXPECT_THAT(QueuedTypes(net), ::testing::Not(::testing::Contains(pb::MESSAGE_TYPE_HEARTBEAT)));
  net.Stabilize();
  ASSERT_EQ(net.node(2).read_states.size(), 1u);
  EXPECT_EQ(net.node(2).read_states[0].index, net.raft(1).commit_index());
  // The read index may be ahead of what the learner applied: the runtime waits for the
  // next heartbeat to carry the commit index before it reads.
  net.TickAll(2);
  EXPECT_GE(net.node(2).applied_index, net.node(2).read_states[0].index);
  EXPECT_EQ(net.node(2).applied.back().second, "seen");
}

}  // namespace
}  // namespace stead::raft
