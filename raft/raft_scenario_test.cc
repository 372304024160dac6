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

pb::ConfChange Change(pb::ConfChangeType type, NodeId id) {
  pb::ConfChange change;
  change.set_type(type);
  change.set_node_id(id);
  return change;
}

// Expects every node in `ids` to hold the same log as `reference` from the first index
// both still have.
void ExpectSameLogs(TestNetwork& net, const std::vector<NodeId>& ids, NodeId reference) {
  const std::vector<pb::Entry> want = net.node(reference).storage->AllEntries();
  for (NodeId id : ids) {
    SCOPED_TRACE(id);
    const std::vector<pb::Entry> got = net.node(id).storage->AllEntries();
    EXPECT_EQ(net.node(id).storage->LastIndex(), net.node(reference).storage->LastIndex());
    for (const pb::Entry& entry : got) {
      for (const pb::Entry& other : want) {
        if (other.index() != entry.index()) continue;
        EXPECT_EQ(other.term(), entry.term()) << "index " << entry.index();
        EXPECT_EQ(other.data(), entry.data()) << "index " << entry.index();
      }
    }
  }
}

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

TEST(RaftScenario, PreVotePartitionedNodeRejoinsWithoutDisruption) {
  // Goal: thesis §9.6. A follower cut off from the others times out again and again; with
  // PreVote it never wins a pre-vote, so its term stays put, and when the partition heals
  // the leader keeps its leadership and term.
  TestNetwork net({1, 2, 3});
  net.Elect(1);
  const Term term = net.raft(1).term();
  net.Isolate(3);
  net.TickAll(100);
  EXPECT_EQ(net.raft(3).term(), term) << "PreVote must not raise the term";
  EXPECT_NE(net.raft(3).role(), Role::kLeader);
  net.Heal();
  net.TickAll(5);
  EXPECT_EQ(net.raft(1).role(), Role::kLeader);
  EXPECT_EQ(net.raft(1).term(), term);
  EXPECT_EQ(net.raft(3).leader(), 1u);
}

TEST(RaftScenario, WithoutPreVoteRejoiningNodeRaisesTheTerm) {
  // Goal: the control experiment for the test above, proving it can fail: without PreVote
  // the isolated node inflates its term, and its return deposes the leader.
  TestNetwork net({1, 2, 3}, [](Config& config) { config.pre_vote = false; });
  net.Elect(1);
  const Term term = net.raft(1).term();
  net.Isolate(3);
  net.TickAll(100);
  EXPECT_GT(net.raft(3).term(), term);
  net.Heal();
  net.TickAll(60);
  EXPECT_GT(net.raft(net.Leader()).term(), term + 1);
}

TEST(RaftScenario, CheckQuorumLeaderStepsDown) {
  // Goal: thesis §6.2. A leader that hears from no quorum for an election timeout steps
  // down; the majority side elects a new leader meanwhile.
  TestNetwork net({1, 2, 3});
  net.Elect(1);
  net.Isolate(1);
  net.TickAll(25);
  EXPECT_NE(net.raft(1).role(), Role::kLeader);
  const NodeId leader = net.Leader();
  ASSERT_TRUE(leader == 2 || leader == 3) << leader;
  net.Heal();
  net.TickAll(3);
  EXPECT_EQ(net.raft(1).leader(), leader);
}

TEST(RaftScenario, LeaderStickinessIgnoresVotesWhileLeaderIsLive) {
  // Goal: thesis §4.2.3. A vote request for a higher term is ignored by followers that
  // heard from the leader within the election timeout.
  TestNetwork net({1, 2, 3});
  net.Elect(1);
  const Term term = net.raft(1).term();
  pb::Message vote;
  vote.set_type(pb::MESSAGE_TYPE_VOTE);
  vote.set_from(3);
  vote.set_to(2);
  vote.set_term(term + 5);
  vote.set_index(net.raft(3).last_index() + 10);
  vote.set_log_term(term);
  ASSERT_OK(net.raft(2).Step(vote));
  EXPECT_EQ(net.raft(2).term(), term);
  EXPECT_FALSE(net.raft(2).HasReady()) << "no response, no state change";
  vote.set_transfer(true);
  ASSERT_OK(net.raft(2).Step(vote));
  EXPECT_EQ(net.raft(2).term(), term + 5) << "a transfer vote bypasses the lease";
}

TEST(RaftScenario, ConflictingSuffixIsOverwrittenWithFastBackOff) {
  // Goal: Raft §5.3 and fast back-off. An isolated leader appends entries that never
  // commit; the majority elects a new leader that writes other entries. On healing, the
  // old leader's suffix is replaced, and the back-off needs one rejection per divergent
  // term, not one per entry.
  TestNetwork net({1, 2, 3});
  net.Elect(1);
  net.Isolate(1);
  for (int i = 0; i < 50; ++i) ASSERT_OK(net.raft(1).Propose("lost" + std::to_string(i)));
  net.Stabilize();
  // Followers ignore votes until their leader lease expires (leader stickiness).
  net.Tick(2, 10);
  net.Tick(3, 10);
  net.Elect(2);
  ASSERT_EQ(net.raft(2).role(), Role::kLeader);
  for (int i = 0; i < 5; ++i) ASSERT_OK(net.raft(2).Propose("kept" + std::to_string(i)));
  net.Stabilize();
  // Hand leadership to 3: a fresh leader starts probing node 1 just past its own last
  // index (11), far beyond where the logs agree (4).
  ASSERT_OK(net.raft(2).TransferLeadership(3));
  net.Stabilize();
  ASSERT_EQ(net.raft(3).role(), Role::kLeader);
  net.Heal();
  net.Tick(3);
  int rejections = 0;
  for (int round = 0; round < 100 && !net.queue().empty(); ++round) {
    for (const pb::Message& m : net.queue()) {
      if (m.type() == pb::MESSAGE_TYPE_APPEND_RESPONSE && m.reject()) ++rejections;
    }
    net.DeliverOnce();
  }
  net.TickAll(3);
  EXPECT_EQ(net.raft(1).role(), Role::kFollower);
  ExpectSameLogs(net, {1, 2}, 3);
  EXPECT_THAT(AppliedData(net, 1), ElementsAre("kept0", "kept1", "kept2", "kept3", "kept4"));
  // The hint skips all of term 2 at once; one rejection per entry would need seven.
  EXPECT_EQ(rejections, 1);
}

TEST(RaftScenario, SnapshotInstallForLaggingFollower) {
  // Goal: a follower that missed entries the leader compacted receives a snapshot, installs
  // it and then catches up by APPEND.
  TestNetwork net({1, 2, 3});
  net.Elect(1);
  net.Isolate(3);
  for (int i = 0; i < 20; ++i) ASSERT_OK(net.raft(1).Propose("v" + std::to_string(i)));
  net.Stabilize();
  net.Compact(1, net.node(1).applied_index);
  net.Heal();
  ASSERT_OK(net.raft(1).Propose("after"));
  net.TickAll(3);
  EXPECT_GT(net.node(3).installed_snapshot_index, 0u);
  EXPECT_EQ(net.node(3).applied_index, net.node(1).applied_index);
  EXPECT_EQ(AppliedData(net, 3), AppliedData(net, 1));
  EXPECT_EQ(net.raft(3).commit_index(), net.raft(1).commit_index());
  EXPECT_TRUE(net.step_errors().empty());
}

TEST(RaftScenario, StaleSnapshotIsRefused) {
  // Goal: a snapshot at or below the commit index (duplicated or overtaken by appends)
  // must not roll the follower back (openraft PR #560).
  TestNetwork net({1, 2, 3});
  net.Elect(1);
  for (int i = 0; i < 5; ++i) ASSERT_OK(net.raft(1).Propose("v"));
  net.Stabilize();
  const Index commit = net.raft(2).commit_index();
  pb::Message snapshot;
  snapshot.set_type(pb::MESSAGE_TYPE_SNAPSHOT);
  snapshot.set_from(1);
  snapshot.set_to(2);
  snapshot.set_term(net.raft(1).term());
  snapshot.mutable_snapshot()->set_index(commit - 2);
  snapshot.mutable_snapshot()->set_term(net.raft(1).term());
  *snapshot.mutable_snapshot()->mutable_conf_state() = MakeConfState({1, 2, 3});
  ASSERT_OK(net.raft(2).Step(snapshot));
  Ready ready = net.raft(2).TakeReady();
  EXPECT_FALSE(ready.snapshot.has_value());
  ASSERT_EQ(ready.messages_after_persist.size(), 1u);
  EXPECT_EQ(ready.messages_after_persist[0].type(), pb::MESSAGE_TYPE_APPEND_RESPONSE);
  EXPECT_EQ(ready.messages_after_persist[0].index(), commit);
  EXPECT_EQ(net.raft(2).commit_index(), commit);
}

TEST(RaftScenario, LearnerCatchesUpAndIsPromoted) {
  // Goal: a new member joins as a learner (empty log, empty membership), replicates
  // without voting, and becomes a voter when promoted.
  TestNetwork net({1, 2, 3});
  net.Elect(1);
  ASSERT_OK(net.raft(1).Propose("before"));
  net.Stabilize();
  net.AddEmptyNode(4);
  ASSERT_OK(net.raft(1).ProposeConfChange(Change(pb::CONF_CHANGE_TYPE_ADD_LEARNER, 4)));
  net.Stabilize();
  net.TickAll(3);
  EXPECT_THAT(net.raft(1).conf_state().learners(), ElementsAre(4));
  EXPECT_THAT(net.raft(4).conf_state().learners(), ElementsAre(4));
  EXPECT_EQ(net.raft(4).commit_index(), net.raft(1).commit_index());
  EXPECT_THAT(AppliedData(net, 4), ElementsAre("before"));
  // A learner never campaigns.
  EXPECT_THAT(net.raft(4).Campaign(), StatusIs(absl::StatusCode::kFailedPrecondition));
  ASSERT_OK(net.raft(1).ProposeConfChange(Change(pb::CONF_CHANGE_TYPE_ADD_VOTER, 4)));
  net.Stabilize();
  net.TickAll(2);
  for (NodeId id : {1, 2, 3, 4}) {
    SCOPED_TRACE(id);
    EXPECT_THAT(net.raft(id).conf_state().voters(), ElementsAre(1, 2, 3, 4));
    EXPECT_TRUE(net.raft(id).conf_state().learners().empty());
  }
  // Four voters need three for a quorum: with two cut off nothing commits.
  net.Isolate(3);
  net.Isolate(4);
  const Index commit = net.raft(1).commit_index();
  ASSERT_OK(net.raft(1).Propose("stuck"));
  net.Stabilize();
  EXPECT_EQ(net.raft(1).commit_index(), commit);
}

TEST(RaftScenario, OneMembershipChangeAtATime) {
  // Goal: thesis §4.1 and the single-server change fix. A leader refuses a change before
  // it committed an entry of its term and while another change is uncommitted.
  TestNetwork net({1, 2, 3});
  ASSERT_OK(net.raft(1).Campaign());
  net.ProcessReadys();
  // Elected but the no-op is not committed yet: deliver only the pre-vote and vote
  // rounds.
  for (int i = 0; i < 4; ++i) net.DeliverOnce();
  ASSERT_EQ(net.raft(1).role(), Role::kLeader);
  EXPECT_THAT(net.raft(1).ProposeConfChange(Change(pb::CONF_CHANGE_TYPE_ADD_LEARNER, 4)),
              StatusIs(absl::StatusCode::kFailedPrecondition, "entry of its term"));
  net.Stabilize();
  net.Isolate(1);
  ASSERT_OK(net.raft(1).ProposeConfChange(Change(pb::CONF_CHANGE_TYPE_ADD_LEARNER, 4)));
  EXPECT_THAT(net.raft(1).ProposeConfChange(Change(pb::CONF_CHANGE_TYPE_ADD_LEARNER, 5)),
              StatusIs(absl::StatusCode::kFailedPrecondition, "not committed"));
  EXPECT_THAT(net.raft(2).ProposeConfChange(Change(pb::CONF_CHANGE_TYPE_ADD_LEARNER, 5)),
              StatusIs(absl::StatusCode::kUnavailable));
}

TEST(RaftScenario, MembershipChangeUnderPartition) {
  // Goal: a change proposed by a leader cut off from the majority never commits; the
  // majority elects a leader that makes a different change; after healing every node
  // agrees on the membership of the majority side.
  TestNetwork net({1, 2, 3, 4, 5});
  net.Elect(1);
  net.Cut(1, 3);
  net.Cut(1, 4);
  net.Cut(1, 5);
  net.Cut(2, 3);
  net.Cut(2, 4);
  net.Cut(2, 5);
  ASSERT_OK(net.raft(1).ProposeConfChange(Change(pb::CONF_CHANGE_TYPE_REMOVE_NODE, 5)));
  net.Stabilize();
  EXPECT_THAT(net.raft(1).conf_state().voters(), ElementsAre(1, 2, 3, 4, 5))
      << "the minority cannot commit the change";
  for (NodeId id : {3, 4, 5}) net.Tick(id, 10);  // let the leader lease expire
  net.Elect(3);
  ASSERT_EQ(net.raft(3).role(), Role::kLeader);
  ASSERT_OK(net.raft(3).ProposeConfChange(Change(pb::CONF_CHANGE_TYPE_REMOVE_NODE, 2)));
  net.Stabilize();
  EXPECT_THAT(net.raft(3).conf_state().voters(), ElementsAre(1, 3, 4, 5));
  net.Heal();
  net.TickAll(30);
  for (NodeId id : {1, 3, 4, 5}) {
    SCOPED_TRACE(id);
    EXPECT_THAT(net.raft(id).conf_state().voters(), ElementsAre(1, 3, 4, 5));
  }
  EXPECT_TRUE(net.step_errors().empty());
}

TEST(RaftScenario, LeadershipTransferCatchesUpTheTarget) {
  // Goal: thesis §3.10. The leader brings a lagging target up to date, then sends
  // TIMEOUT_NOW; the target wins at once (bypassing PreVote and leader stickiness).
  TestNetwork net({1, 2, 3});
  net.Elect(1);
  net.Isolate(3);
  for (int i = 0; i < 10; ++i) ASSERT_OK(net.raft(1).Propose("v"));
  net.Stabilize();
  net.Heal();
  ASSERT_OK(net.raft(1).TransferLeadership(3));
  EXPECT_THAT(net.raft(1).Propose("refused"),
              StatusIs(absl::StatusCode::kUnavailable, "transfer"));
  net.Stabilize();
  net.TickAll(2);
  EXPECT_EQ(net.raft(3).role(), Role::kLeader);
  EXPECT_EQ(net.raft(1).leader(), 3u);
  EXPECT_EQ(net.raft(2).leader(), 3u);
  ASSERT_OK(net.raft(3).Propose("new leader"));
  net.Stabilize();
  EXPECT_EQ(AppliedData(net, 1).back(), "new leader");
}

TEST(RaftScenario, LeadershipTransferToUnreachableTargetIsAbandoned) {
  // Goal: a transfer that cannot finish ends after an election timeout and the leader
  // accepts proposals again.
  TestNetwork net({1, 2, 3});
  net.Elect(1);
  net.Isolate(3);
  ASSERT_OK(net.raft(1).TransferLeadership(3));
  EXPECT_FALSE(net.raft(1).Propose("x").ok());
  net.TickAll(12);
  EXPECT_EQ(net.raft(1).role(), Role::kLeader);
  EXPECT_OK(net.raft(1).Propose("x"));
}

TEST(RaftScenario, ReadIndexConfirmsLeadership) {
  // Goal: thesis §6.4. A read is answered with the commit index after a heartbeat
  // quorum; a single-voter cluster answers at once.
  TestNetwork net({1, 2, 3});
  net.Elect(1);
  ASSERT_OK(net.raft(1).Propose("x"));
  net.Stabilize();
  ASSERT_OK(net.raft(1).ReadIndex("r1"));
  EXPECT_TRUE(net.node(1).read_states.empty()) << "must wait for the heartbeat round";
  net.Stabilize();
  ASSERT_EQ(net.node(1).read_states.size(), 1u);
  EXPECT_EQ(net.node(1).read_states[0].context, "r1");
  EXPECT_EQ(net.node(1).read_states[0].index, net.raft(1).commit_index());
  EXPECT_THAT(net.raft(1).ReadIndex(""), StatusIs(absl::StatusCode::kInvalidArgument));

  TestNetwork single({7});
  single.Elect(7);
  ASSERT_OK(single.raft(7).ReadIndex("solo"));
  single.ProcessReadys();
  ASSERT_EQ(single.node(7).read_states.size(), 1u);
  EXPECT_EQ(single.node(7).read_states[0].index, single.raft(7).commit_index());
}

TEST(RaftScenario, ReadIndexWaitsForCommitInTerm) {
  // Goal: thesis §6.4 step 1. A new leader answers no read before its no-op commits.
  TestNetwork net({1, 2, 3});
  ASSERT_OK(net.raft(1).Campaign());
  net.ProcessReadys();
  for (int i = 0; i < 4; ++i) net.DeliverOnce();
  ASSERT_EQ(net.raft(1).role(), Role::kLeader);
  ASSERT_OK(net.raft(1).ReadIndex("early"));
  net.DropAll();
  net.ProcessReadys();
  EXPECT_TRUE(net.node(1).read_states.empty());
  net.TickAll(3);
  ASSERT_EQ(net.node(1).read_states.size(), 1u);
  EXPECT_EQ(net.node(1).read_states[0].index, net.raft(1).commit_index());
}

TEST(RaftScenario, DeposedLeaderNeverAnswersReadIndex) {
  // Goal: the stale-read bug (etcd #741). A leader cut off from the majority is replaced;
  // a read it accepted before noticing must never be answered, even after it reconnects.
  TestNetwork net({1, 2, 3}, [](Config& config) { config.check_quorum = false; });
  net.Elect(1);
  net.Isolate(1);
  net.Tick(2, 10);
  net.Tick(3, 10);
  net.Elect(2);
  ASSERT_OK(net.raft(2).Propose("newer"));
  net.Stabilize();
  ASSERT_EQ(net.raft(1).role(), Role::kLeader) << "without CheckQuorum it has not noticed";
  ASSERT_OK(net.raft(1).ReadIndex("stale"));
  net.Stabilize();
  EXPECT_TRUE(net.node(1).read_states.empty());
  net.Heal();
  net.TickAll(5);
  EXPECT_EQ(net.raft(1).role(), Role::kFollower);
  EXPECT_TRUE(net.node(1).read_states.empty());
}

TEST(RaftScenario, LeaseReadsHoldOnlyWhileTheLeaseDoes) {
  // Goal: thesis §6.4.1 (opt-in). A leader answers reads at once while a quorum
  // acknowledged a heartbeat recently enough that no other leader can have been elected,
  // and stops (falling back to a ReadIndex round) a margin before that; a restarted node
  // refuses votes for an election timeout so a restart cannot shorten the lease.
  TestNetwork net({1, 2, 3},
                  [](Config& config) { config.read_only_mode = ReadOnlyMode::kLeaseBased; });
  ASSERT_OK(net.raft(1).Campaign());
  net.Stabilize();
  EXPECT_NE(net.raft(1).role(), Role::kLeader) << "freshly started nodes refuse votes";
  net.TickAll(40);
  const NodeId leader = net.Leader();
  ASSERT_NE(leader, kNoNode);
  net.TickAll(1);  // a heartbeat round
  ASSERT_OK(net.raft(leader).ReadIndex("fresh"));
  net.ProcessReadys();  // no message delivered
  ASSERT_EQ(net.node(leader).read_states.size(), 1u);
  EXPECT_EQ(net.node(leader).read_states[0].index, net.raft(leader).commit_index());

  // Cut off, the leader keeps its lease for election timeout - margin - 1 ticks after
  // the last acknowledged heartbeat (10 - 1 - 1 = 8), then stops answering at once.
  net.Isolate(leader);
  net.Tick(leader, 8);
  ASSERT_OK(net.raft(leader).ReadIndex("within"));
  net.ProcessReadys();
  ASSERT_EQ(net.node(leader).read_states.size(), 2u);
  net.Tick(leader, 1);
  ASSERT_OK(net.raft(leader).ReadIndex("expired"));
  net.Stabilize();
  EXPECT_EQ(net.node(leader).read_states.size(), 2u);
  EXPECT_THAT(net.raft(leader).ReadIndex(std::string("\x01lease:3")),
              StatusIs(absl::StatusCode::kInvalidArgument, "reserved"));
}

TEST(RaftScenario, LeaderRemovesItself) {
  // Goal: thesis §4.2.2. The leader proposes its own removal, steps down once it
  // commits, and the remaining voters elect a leader among themselves.
  TestNetwork net({1, 2, 3});
  net.Elect(1);
  ASSERT_OK(net.raft(1).ProposeConfChange(Change(pb::CONF_CHANGE_TYPE_REMOVE_NODE, 1)));
  net.Stabilize();
  EXPECT_NE(net.raft(1).role(), Role::kLeader);
  for (NodeId id : {1, 2, 3}) {
    SCOPED_TRACE(id);
    EXPECT_THAT(net.raft(id).conf_state().voters(), ElementsAre(2, 3));
  }
  net.TickAll(40);
  const NodeId leader = net.Leader();
  ASSERT_TRUE(leader == 2 || leader == 3) << leader;
  EXPECT_THAT(net.raft(1).Campaign(), StatusIs(absl::StatusCode::kFailedPrecondition));
  ASSERT_OK(net.raft(leader).Propose("two voters"));
  net.Stabilize();
  EXPECT_EQ(AppliedData(net, 2).back(), "two voters");
  EXPECT_EQ(AppliedData(net, 3).back(), "two voters");
}

TEST(RaftScenario, CrashAndRestartKeepsCommittedEntries) {
  // Goal: a node restarted from its persisted state rebuilds term, vote, log and
  // membership, and the cluster keeps working.
  TestNetwork net({1, 2, 3});
  net.Elect(1);
  ASSERT_OK(net.raft(1).Propose("a"));
  net.Stabilize();
  const Term term = net.raft(2).term();
  net.Crash(2);
  ASSERT_OK(net.raft(1).Propose("b"));
  net.Stabilize();
  net.Restart(2);
  EXPECT_EQ(net.raft(2).term(), term);
  EXPECT_THAT(net.raft(2).conf_state().voters(), ElementsAre(1, 2, 3));
  net.TickAll(3);
  EXPECT_THAT(AppliedData(net, 2), ElementsAre("a", "b"));
}

TEST(RaftScenario, ProposalsBatchIntoOneAppend) {
  // Goal: many proposals between two Readys travel in one APPEND per follower.
  TestNetwork net({1, 2, 3});
  net.Elect(1);
  for (int i = 0; i < 100; ++i) ASSERT_OK(net.raft(1).Propose("p"));
  Ready ready = net.raft(1).TakeReady();
  EXPECT_EQ(ready.entries.size(), 100u);
  int appends = 0;
  for (const pb::Message& m : ready.messages) {
    if (m.type() == pb::MESSAGE_TYPE_APPEND) {
      ++appends;
      EXPECT_EQ(m.entries_size(), 100);
    }
  }
  EXPECT_EQ(appends, 2);
}

TEST(RaftScenario, UncommittedBytesAreLimited) {
  // Goal: flow control on proposals: beyond max_uncommitted_bytes, ResourceExhausted.
  TestNetwork net({1, 2, 3}, [](Config& config) { config.max_uncommitted_bytes = 1000; });
  net.Elect(1);
  net.Isolate(1);
  ASSERT_OK(net.raft(1).Propose(std::string(600, 'x')));
  EXPECT_THAT(net.raft(1).Propose(std::string(600, 'y')),
              StatusIs(absl::StatusCode::kResourceExhausted));
}

TEST(RaftScenario, FlowControlRespectsWindowAndByteLimit) {
  // Goal: catching up a lagging follower is paced: never more than
  // max_inflight_messages APPENDs in flight to it, each within max_message_bytes (but at
  // least one entry).
  TestNetwork net({1, 2, 3}, [](Config& config) {
    config.max_inflight_messages = 3;
    config.max_message_bytes = 250;
  });
  net.Elect(1);
  net.Isolate(2);
  for (int i = 0; i < 40; ++i) ASSERT_OK(net.raft(1).Propose(std::string(100, 'x')));
  net.Stabilize();
  net.Heal();
  net.Tick(1);
  int rounds = 0;
  for (; rounds < 200 && !net.queue().empty(); ++rounds) {
    int appends_to_2 = 0;
    for (const pb::Message& m : net.queue()) {
      if (m.type() != pb::MESSAGE_TYPE_APPEND || m.to() != 2) continue;
      ++appends_to_2;
      EXPECT_LE(m.entries_size(), 2) << "250 bytes hold two 100-byte entries";
    }
    EXPECT_LE(appends_to_2, 3);
    net.DeliverOnce();
  }
  EXPECT_GT(rounds, 5) << "40 entries in batches of two take several round trips";
  EXPECT_EQ(net.raft(2).commit_index(), net.raft(1).commit_index());
  EXPECT_EQ(net.node(2).applied.size(), 40u);
}

TEST(RaftScenario, ReplicateWindowCapsMessagesInFlight) {
  // Goal: in the replicate state the leader has at most max_inflight_messages APPENDs
  // outstanding per follower, however many proposals arrive.
  TestNetwork net({1, 2, 3}, [](Config& config) {
    config.max_inflight_messages = 2;
    config.max_message_bytes = 1;  // one entry per message
  });
  net.Elect(1);
  for (int i = 0; i < 10; ++i) {
    ASSERT_OK(net.raft(1).Propose("p"));
    net.ProcessReadys();  // one Ready per proposal: no batching
  }
  int appends_to_2 = 0;
  for (const pb::Message& m : net.queue()) {
    if (m.type() == pb::MESSAGE_TYPE_APPEND && m.to() == 2) ++appends_to_2;
  }
  EXPECT_EQ(appends_to_2, 2);
  net.Stabilize();
  EXPECT_EQ(net.raft(2).commit_index(), net.raft(1).last_index());
}

TEST(RaftScenario, ReportUnreachableGoesBackToProbing) {
  // Goal: a failed send makes the leader probe the follower again; the next answer,
  // even at the same match index, resumes optimistic replication.
  TestNetwork net({1, 2, 3});
  net.Elect(1);
  auto state_of = [&](NodeId id) {
    for (const PeerStatus& peer : net.raft(1).Status().peers) {
      if (peer.id == id) return peer.state;
    }
    return ProgressState::kProbe;
  };
  ASSERT_EQ(state_of(2), ProgressState::kReplicate);
  net.raft(1).ReportUnreachable(2);
  EXPECT_EQ(state_of(2), ProgressState::kProbe);
  net.TickAll(2);
  EXPECT_EQ(state_of(2), ProgressState::kReplicate);
}

TEST(RaftScenario, PeersThatAnswerStayRecentlyActiveAcrossCheckQuorumRounds) {
  // Goal: the status a leader reports (what a leadership transfer and learner promotion
  // go by) does not drop to "nobody heard lately" at the start of each CheckQuorum
  // round, before the peers have had a chance to answer.
  TestNetwork net({1, 2, 3});
  net.Elect(1);
  for (int tick = 0; tick < 40; ++tick) {
    net.Tick(1);  // the leader's tick, before its heartbeats are delivered
    for (const PeerStatus& peer : net.raft(1).Status().peers) {
      if (peer.id == 1) continue;
      EXPECT_TRUE(peer.recent_active) << "peer " << peer.id << " after tick " << tick;
    }
    net.Stabilize();
  }
  ASSERT_EQ(net.raft(1).role(), Role::kLeader);
  // A peer that stops answering is reported inactive within two rounds.
  net.Isolate(3);
  net.TickAll(25);
  ASSERT_EQ(net.raft(1).role(), Role::kLeader);
  bool reported = false;
  for (const PeerStatus& peer : net.raft(1).Status().peers) {
    if (peer.id != 3) continue;
    reported = true;
    EXPECT_FALSE(peer.recent_active);
  }
  EXPECT_TRUE(reported);
}

TEST(RaftScenario, PipelinedReadysPersistInOrder) {
  // Goal: the runtime may take several Readys before persisting any. Entries commit only
  // once the leader's own copy is durable and a quorum acknowledged them.
  TestNetwork net({1, 2, 3});
  net.Elect(1);
  Raft& leader = net.raft(1);
  const Index commit = leader.commit_index();
  ASSERT_OK(leader.Propose("a"));
  Ready first = leader.TakeReady();
  ASSERT_OK(leader.Propose("b"));
  Ready second = leader.TakeReady();
  ASSERT_EQ(first.entries.size(), 1u);
  ASSERT_EQ(second.entries.size(), 1u);
  // Follower 2 acknowledges both before the leader persisted anything.
  for (const Ready* ready : {&first, &second}) {
    for (const pb::Message& m : ready->messages) {
      if (m.to() == 2) {
        ASSERT_OK(net.raft(2).Step(m));
      }
    }
  }
  Ready follower = net.raft(2).TakeReady();
  ASSERT_EQ(follower.entries.size(), 2u);
  ASSERT_OK(net.node(2).storage->Append(follower.entries));
  net.raft(2).OnPersisted(follower.entries.back().index(), follower.entries.back().term());
  for (const pb::Message& m : follower.messages_after_persist) ASSERT_OK(leader.Step(m));
  EXPECT_EQ(leader.commit_index(), commit) << "the leader's own copy is not durable yet";
  // The leader's Readys become durable in order.
  ASSERT_OK(net.node(1).storage->Append(first.entries));
  leader.OnPersisted(first.entries.back().index(), first.entries.back().term());
  EXPECT_EQ(leader.commit_index(), commit + 1);
  ASSERT_OK(net.node(1).storage->Append(second.entries));
  leader.OnPersisted(second.entries.back().index(), second.entries.back().term());
  EXPECT_EQ(leader.commit_index(), commit + 2);
  Ready third = leader.TakeReady();
  ASSERT_EQ(third.committed_entries.size(), 2u);
  EXPECT_EQ(third.committed_entries[1].data(), "b");
}

}  // namespace
}  // namespace stead::raft
