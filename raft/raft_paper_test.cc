// Paper tests: one test per rule of the Raft paper (Ongaro & Ousterhout, USENIX ATC
// 2014, "§5.x") or the thesis (Ongaro 2014, "thesis §x"), driving a single Raft object by
// hand and checking exactly what it emits.
#include <algorithm>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "base/check.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "raft/memory_log_storage.h"
#include "raft/raft.h"
#include "tests/testing/status_matchers.h"

namespace stead::raft {
namespace {

using ::stead::testing::StatusIs;

// One node over its own storage, bootstrapped with `voters` plus `extra_terms` entries
// after the bootstrap entries, at persisted term `term`.
struct TestNode {
  MemoryLogStorage storage;
  std::unique_ptr<Raft> raft;
};

std::unique_ptr<TestNode> MakeNode(NodeId id, const std::vector<NodeId>& voters,
                                   const std::vector<Term>& extra_terms = {}, Term term = 1,
                                   void (*adjust)(Config&) = nullptr) {
  auto node = std::make_unique<TestNode>();
  std::vector<pb::Entry> entries = Raft::BootstrapEntries(voters);
  for (Term extra : extra_terms) {
    pb::Entry entry;
    entry.set_index(entries.size() + 1);
    entry.set_term(extra);
    entry.set_type(pb::ENTRY_TYPE_NORMAL);
    entry.set_data("x");
    entries.push_back(entry);
  }
  STEAD_CHECK_OK(node->storage.Append(entries));
  pb::HardState hard_state;
  hard_state.set_term(term);
  hard_state.set_commit(voters.size());
  node->storage.SetHardState(hard_state);
  Config config;
  config.id = id;
  config.random_seed = id;
  config.logger = Logger(LogLevel::kWarning);
  if (adjust != nullptr) adjust(config);
  absl::StatusOr<std::unique_ptr<Raft>> raft = Raft::Create(config, &node->storage);
  STEAD_CHECK_OK(raft.status());
  node->raft = *std::move(raft);
  // Hand out (and "apply") the committed bootstrap entries so tests see only their own
  // effects.
  Ready ready = node->raft->TakeReady();
  STEAD_CHECK_EQ(ready.committed_entries.size(), voters.size());
  node->raft->OnApplied(voters.size());
  return node;
}

void NoPreVote(Config& config) { config.pre_vote = false; }

pb::ConfState MakeConfStateForTest(const std::vector<NodeId>& voters) {
  pb::ConfState conf_state;
  for (NodeId id : voters) conf_state.add_voters(id);
  return conf_state;
}

// Persists a Ready into the node's storage and acknowledges it, as a runtime would;
// returns it for inspection.
Ready PersistReady(TestNode& node) {
  Ready ready = node.raft->TakeReady();
  if (ready.snapshot) STEAD_CHECK_OK(node.storage.ApplySnapshot(*ready.snapshot));
  STEAD_CHECK_OK(node.storage.Append(ready.entries));
  if (ready.hard_state) node.storage.SetHardState(*ready.hard_state);
  if (auto position = ready.PersistedPosition()) {
    node.raft->OnPersisted(position->first, position->second);
  }
  return ready;
}

pb::Message Msg(pb::MessageType type, NodeId from, NodeId to, Term term) {
  pb::Message message;
  message.set_type(type);
  message.set_from(from);
  message.set_to(to);
  message.set_term(term);
  return message;
}

// Makes node 1 of {1, 2, 3} leader by hand (no PreVote) and drains its Readys.
void MakeLeader(TestNode& node) {
  ASSERT_OK(node.raft->Campaign());
  PersistReady(node);
  ASSERT_OK(node.raft->Step(Msg(pb::MESSAGE_TYPE_VOTE_RESPONSE, 2, 1, node.raft->term())));
  ASSERT_EQ(node.raft->role(), Role::kLeader);
  PersistReady(node);
}

TEST(RaftPaper, StartsAsFollower) {
  // §5.2: "When servers start up, they begin as followers."
  auto node = MakeNode(1, {1, 2, 3});
  EXPECT_EQ(node->raft->role(), Role::kFollower);
  EXPECT_EQ(node->raft->term(), 1u);
  EXPECT_EQ(node->raft->commit_index(), 3u);
}

TEST(RaftPaper, FollowerAdoptsHigherTerm) {
  // §5.1: "If a server receives a request with a stale term ... if one server's current
  // term is smaller than the other's, then it updates its current term."
  auto node = MakeNode(2, {1, 2, 3});
  pb::Message append = Msg(pb::MESSAGE_TYPE_APPEND, 1, 2, 5);
  append.set_index(3);
  append.set_log_term(1);
  ASSERT_OK(node->raft->Step(append));
  EXPECT_EQ(node->raft->term(), 5u);
  EXPECT_EQ(node->raft->leader(), 1u);
  Ready ready = PersistReady(*node);
  ASSERT_TRUE(ready.hard_state.has_value());
  EXPECT_EQ(ready.hard_state->term(), 5u);
  EXPECT_EQ(ready.hard_state->vote(), kNoNode);
}

TEST(RaftPaper, LeaderStepsDownOnHigherTerm) {
  // §5.1: "If a candidate or leader discovers that its term is out of date, it
  // immediately reverts to follower state."
  auto node = MakeNode(1, {1, 2, 3}, {}, 1, NoPreVote);
  MakeLeader(*node);
  const Term term = node->raft->term();
  pb::Message response = Msg(pb::MESSAGE_TYPE_APPEND_RESPONSE, 2, 1, term + 1);
  ASSERT_OK(node->raft->Step(response));
  EXPECT_EQ(node->raft->role(), Role::kFollower);
  EXPECT_EQ(node->raft->term(), term + 1);
}

TEST(RaftPaper, StaleTermRequestIsAnsweredWithCurrentTerm) {
  // §5.1: a request with a stale term is rejected. With CheckQuorum the receiver answers
  // with its term so the stale leader steps down instead of being ignored forever.
  auto node = MakeNode(2, {1, 2, 3}, {}, 7);
  pb::Message append = Msg(pb::MESSAGE_TYPE_APPEND, 1, 2, 4);
  append.set_index(3);
  append.set_log_term(1);
  ASSERT_OK(node->raft->Step(append));
  EXPECT_EQ(node->raft->term(), 7u);
  Ready ready = PersistReady(*node);
  ASSERT_EQ(ready.messages_after_persist.size(), 1u);
  EXPECT_EQ(ready.messages_after_persist[0].type(), pb::MESSAGE_TYPE_APPEND_RESPONSE);
  EXPECT_EQ(ready.messages_after_persist[0].term(), 7u);
  EXPECT_TRUE(ready.entries.empty());
}

TEST(RaftPaper, FollowerStartsElectionOnTimeout) {
  // §5.2: a follower that hears nothing for an election timeout increments its term,
  // votes for itself and asks every other server for its vote. The requests wait for the
  // new term and vote to be durable.
  auto node = MakeNode(1, {1, 2, 3}, {}, 1, NoPreVote);
  for (int i = 0; i < 2 * 10 && node->raft->role() == Role::kFollower; ++i) node->raft->Tick();
  EXPECT_EQ(node->raft->role(), Role::kCandidate);
  EXPECT_EQ(node->raft->term(), 2u);
  Ready ready = PersistReady(*node);
  ASSERT_TRUE(ready.hard_state.has_value());
  EXPECT_EQ(ready.hard_state->vote(), 1u);
  EXPECT_TRUE(ready.messages.empty());
  std::set<NodeId> asked;
  for (const pb::Message& m : ready.messages_after_persist) {
    EXPECT_EQ(m.type(), pb::MESSAGE_TYPE_VOTE);
    EXPECT_EQ(m.term(), 2u);
    EXPECT_EQ(m.index(), 3u);
    EXPECT_EQ(m.log_term(), 1u);
    asked.insert(m.to());
  }
  EXPECT_EQ(asked, (std::set<NodeId>{2, 3}));
}

TEST(RaftPaper, ElectionTimeoutIsRandomized) {
  // §5.2: "election timeouts are chosen randomly from a fixed interval" -- here
  // [election_timeout_ticks, 2 * election_timeout_ticks), drawn from the seed.
  std::set<int> seen;
  for (uint64_t seed = 0; seed < 200; ++seed) {
    MemoryLogStorage storage;
    Config config;
    config.id = 1;
    config.random_seed = seed;
    config.logger = Logger(LogLevel::kWarning);
    ASSERT_OK_AND_ASSIGN(auto raft, Raft::Create(config, &storage));
    const int timeout = raft->RandomizedElectionTimeoutForTesting();
    EXPECT_GE(timeout, 10);
    EXPECT_LT(timeout, 20);
    seen.insert(timeout);
  }
  EXPECT_GE(seen.size(), 8u) << "the draw should cover most of the interval";
}

TEST(RaftPaper, VotesAtMostOncePerTerm) {
  // §5.2: "each server will vote for at most one candidate in a given term, on a
  // first-come-first-served basis."
  auto node = MakeNode(3, {1, 2, 3});
  pb::Message vote = Msg(pb::MESSAGE_TYPE_VOTE, 1, 3, 2);
  vote.set_index(3);
  vote.set_log_term(1);
  ASSERT_OK(node->raft->Step(vote));
  pb::Message other = vote;
  other.set_from(2);
  ASSERT_OK(node->raft->Step(other));
  ASSERT_OK(node->raft->Step(vote));  // a retry from the same candidate is granted again
  Ready ready = PersistReady(*node);
  ASSERT_EQ(ready.messages_after_persist.size(), 3u);
  EXPECT_FALSE(ready.messages_after_persist[0].reject());
  EXPECT_TRUE(ready.messages_after_persist[1].reject());
  EXPECT_FALSE(ready.messages_after_persist[2].reject());
  EXPECT_EQ(ready.hard_state->vote(), 1u);
}

TEST(RaftPaper, VoterRejectsLessUpToDateCandidate) {
  // §5.4.1: "the voter denies its vote if its own log is more up-to-date than that of
  // the candidate": compare last terms, then last indexes. Voter log: terms 1 1 1 2 2.
  const struct {
    std::string name;
    Term last_term;
    Index last_index;
    bool want_granted;
  } cases[] = {
      {"higher last term, shorter", 3, 2, true}, {"same term, longer", 2, 6, true},
      {"same term, same length", 2, 5, true},    {"same term, shorter", 2, 4, false},
      {"lower last term, longer", 1, 9, false},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    auto node = MakeNode(3, {1, 2, 3}, {2, 2}, 2);
    pb::Message vote = Msg(pb::MESSAGE_TYPE_VOTE, 1, 3, 4);
    vote.set_index(c.last_index);
    vote.set_log_term(c.last_term);
    ASSERT_OK(node->raft->Step(vote));
    Ready ready = PersistReady(*node);
    ASSERT_EQ(ready.messages_after_persist.size(), 1u);
    EXPECT_EQ(!ready.messages_after_persist[0].reject(), c.want_granted);
  }
}

TEST(RaftPaper, CandidateWinsWithMajorityAndLosesWithMajorityRejects) {
  // §5.2: a candidate wins with votes from a majority; a majority of rejections ends
  // the election (it returns to follower).
  auto winner = MakeNode(1, {1, 2, 3, 4, 5}, {}, 1, NoPreVote);
  ASSERT_OK(winner->raft->Campaign());
  const Term term = winner->raft->term();
  ASSERT_OK(winner->raft->Step(Msg(pb::MESSAGE_TYPE_VOTE_RESPONSE, 2, 1, term)));
  EXPECT_EQ(winner->raft->role(), Role::kCandidate);
  ASSERT_OK(winner->raft->Step(Msg(pb::MESSAGE_TYPE_VOTE_RESPONSE, 3, 1, term)));
  EXPECT_EQ(winner->raft->role(), Role::kLeader);

  auto loser = MakeNode(1, {1, 2, 3, 4, 5}, {}, 1, NoPreVote);
  ASSERT_OK(loser->raft->Campaign());
  for (NodeId from : {2, 3, 4}) {
    pb::Message reject = Msg(pb::MESSAGE_TYPE_VOTE_RESPONSE, from, 1, term);
    reject.set_reject(true);
    ASSERT_OK(loser->raft->Step(reject));
  }
  EXPECT_EQ(loser->raft->role(), Role::kFollower);
  EXPECT_EQ(loser->raft->term(), term);
}

TEST(RaftPaper, CandidateStepsDownOnAppendFromLeaderOfSameTerm) {
  // §5.2: "If the leader's term is at least as large as the candidate's current term,
  // then the candidate recognizes the leader as legitimate and returns to follower."
  auto node = MakeNode(1, {1, 2, 3}, {}, 1, NoPreVote);
  ASSERT_OK(node->raft->Campaign());
  const Term term = node->raft->term();
  pb::Message append = Msg(pb::MESSAGE_TYPE_APPEND, 2, 1, term);
  append.set_index(3);
  append.set_log_term(1);
  ASSERT_OK(node->raft->Step(append));
  EXPECT_EQ(node->raft->role(), Role::kFollower);
  EXPECT_EQ(node->raft->leader(), 2u);
}

TEST(RaftPaper, LeaderAppendsNoOpAndSendsHeartbeats) {
  // §8 / thesis §3.6.2: a new leader appends a no-op entry of its term; §5.2: it sends
  // heartbeats every heartbeat interval.
  auto node = MakeNode(1, {1, 2, 3}, {}, 1, NoPreVote);
  ASSERT_OK(node->raft->Campaign());
  PersistReady(*node);
  ASSERT_OK(node->raft->Step(Msg(pb::MESSAGE_TYPE_VOTE_RESPONSE, 2, 1, 2)));
  Ready ready = PersistReady(*node);
  ASSERT_EQ(ready.entries.size(), 1u);
  EXPECT_EQ(ready.entries[0].index(), 4u);
  EXPECT_EQ(ready.entries[0].term(), 2u);
  EXPECT_TRUE(ready.entries[0].data().empty());
  int appends = 0;
  for (const pb::Message& m : ready.messages) appends += m.type() == pb::MESSAGE_TYPE_APPEND;
  EXPECT_EQ(appends, 2);
  node->raft->Tick();
  ready = PersistReady(*node);
  int heartbeats = 0;
  for (const pb::Message& m : ready.messages) heartbeats += m.type() == pb::MESSAGE_TYPE_HEARTBEAT;
  EXPECT_EQ(heartbeats, 2);
}

TEST(RaftPaper, FollowerRejectsAppendThatDoesNotMatch) {
  // §5.3: "If a follower does not find an entry in its log with the same index and term,
  // then it refuses the new entries." The rejection carries the back-off hint.
  auto node = MakeNode(2, {1, 2, 3}, {1, 2, 2}, 2);  // terms 1 1 1 1 2 2 at 1..6
  pb::Message append = Msg(pb::MESSAGE_TYPE_APPEND, 1, 2, 3);
  append.set_index(6);
  append.set_log_term(3);
  pb::Entry* entry = append.add_entries();
  entry->set_index(7);
  entry->set_term(3);
  entry->set_type(pb::ENTRY_TYPE_NORMAL);
  ASSERT_OK(node->raft->Step(append));
  Ready ready = PersistReady(*node);
  EXPECT_TRUE(ready.entries.empty());
  ASSERT_EQ(ready.messages_after_persist.size(), 1u);
  const pb::Message& response = ready.messages_after_persist[0];
  EXPECT_TRUE(response.reject());
  EXPECT_EQ(response.index(), 6u);
  EXPECT_EQ(response.reject_hint(), 6u);
  EXPECT_EQ(response.reject_hint_term(), 2u);
  EXPECT_EQ(node->raft->last_index(), 6u);
}

TEST(RaftStatus, FollowerLearnsTheLeadersCommitFromMessagesItCannotFollowYet) {
  // A follower whose log lags cannot advance its own commit index, yet must be able to
  // tell how far behind it is (a runtime is not ready meanwhile): from the first
  // HEARTBEAT (its uncapped `index`; `commit` is capped at our match), and from every
  // APPEND, accepted or not.
  auto node = MakeNode(2, {1, 2, 3});  // log 1..3, term 1
  pb::Message heartbeat = Msg(pb::MESSAGE_TYPE_HEARTBEAT, 1, 2, 2);
  heartbeat.set_commit(3);
  ASSERT_OK(node->raft->Step(heartbeat));
  EXPECT_EQ(node->raft->Status().leader_commit, 0u) << "from an older leader: unknown";
  heartbeat.set_index(500);
  ASSERT_OK(node->raft->Step(heartbeat));
  EXPECT_EQ(node->raft->Status().leader_commit, 500u);
  EXPECT_EQ(node->raft->Status().commit, 3u);
  pb::Message append = Msg(pb::MESSAGE_TYPE_APPEND, 1, 2, 2);
  append.set_index(900);
  append.set_log_term(2);
  append.set_commit(1000);
  ASSERT_OK(node->raft->Step(append));
  PersistReady(*node);
  EXPECT_EQ(node->raft->Status().commit, 3u);
  EXPECT_EQ(node->raft->Status().leader_commit, 1000u) << "from the APPEND it rejected";
  append.set_commit(10);  // reordered: an older APPEND never lowers it
  ASSERT_OK(node->raft->Step(append));
  EXPECT_EQ(node->raft->Status().leader_commit, 1000u);
  ASSERT_OK(node->raft->Step(Msg(pb::MESSAGE_TYPE_APPEND_RESPONSE, 3, 2, 3)));
  EXPECT_EQ(node->raft->Status().leader_commit, 0u) << "a new term: unknown again";
}

TEST(RaftPaper, FollowerAcknowledgesOnlyAfterPersisting) {
  // §5.3 with thesis §10.2.1: a follower's acknowledgement vouches for durable entries,
  // so it is a message to send after persisting, and the new entries are in the same
  // Ready.
  auto node = MakeNode(2, {1, 2, 3});
  pb::Message append = Msg(pb::MESSAGE_TYPE_APPEND, 1, 2, 2);
  append.set_index(3);
  append.set_log_term(1);
  append.set_commit(4);
  pb::Entry* entry = append.add_entries();
  entry->set_index(4);
  entry->set_term(2);
  entry->set_type(pb::ENTRY_TYPE_NORMAL);
  ASSERT_OK(node->raft->Step(append));
  Ready ready = node->raft->TakeReady();
  ASSERT_EQ(ready.entries.size(), 1u);
  EXPECT_TRUE(ready.messages.empty());
  ASSERT_EQ(ready.messages_after_persist.size(), 1u);
  EXPECT_EQ(ready.messages_after_persist[0].index(), 4u);
  EXPECT_TRUE(ready.committed_entries.empty()) << "not applied before it is durable";
  ASSERT_OK(node->storage.Append(ready.entries));
  node->raft->OnPersisted(4, 2);
  ready = node->raft->TakeReady();
  ASSERT_EQ(ready.committed_entries.size(), 1u);
  EXPECT_EQ(ready.committed_entries[0].index(), 4u);
}

TEST(RaftPaper, LeaderDoesNotCommitEarlierTermEntryByCounting) {
  // §5.4.2 / Figure 8: an entry of an earlier term on a majority is not committed until
  // an entry of the current term is. The test-only switch restores the bug, proving the
  // check is what prevents it.
  for (bool unsafe : {false, true}) {
    SCOPED_TRACE(unsafe);
    auto node = MakeNode(1, {1, 2, 3}, {2}, 3, unsafe ? +[](Config& config) {
      config.pre_vote = false;
      config.unsafe_commit_previous_term_entries_for_testing = true;
    } : NoPreVote);
    MakeLeader(*node);  // term 4; no-op at index 5
    const Term term = node->raft->term();
    ASSERT_EQ(node->raft->last_index(), 5u);
    pb::Message ack = Msg(pb::MESSAGE_TYPE_APPEND_RESPONSE, 2, 1, term);
    ack.set_index(4);  // node 2 holds index 4 (term 2) but not the no-op
    ASSERT_OK(node->raft->Step(ack));
    EXPECT_EQ(node->raft->commit_index(), unsafe ? 4u : 3u);
    ack.set_index(5);
    ASSERT_OK(node->raft->Step(ack));
    EXPECT_EQ(node->raft->commit_index(), 5u);
  }
}

TEST(RaftPaper, PreVoteDoesNotIncrementTerm) {
  // Thesis §9.6: a pre-candidate asks for votes for term + 1 without changing its term
  // or vote; only after a majority of pre-votes does it start a real election.
  auto node = MakeNode(1, {1, 2, 3});
  ASSERT_OK(node->raft->Campaign());
  EXPECT_EQ(node->raft->role(), Role::kPreCandidate);
  EXPECT_EQ(node->raft->term(), 1u);
  Ready ready = PersistReady(*node);
  EXPECT_FALSE(ready.hard_state.has_value());
  ASSERT_EQ(ready.messages.size(), 2u);
  EXPECT_EQ(ready.messages[0].type(), pb::MESSAGE_TYPE_PRE_VOTE);
  EXPECT_EQ(ready.messages[0].term(), 2u);
  pb::Message grant = Msg(pb::MESSAGE_TYPE_PRE_VOTE_RESPONSE, 2, 1, 2);
  ASSERT_OK(node->raft->Step(grant));
  EXPECT_EQ(node->raft->role(), Role::kCandidate);
  EXPECT_EQ(node->raft->term(), 2u);
}

TEST(RaftPaper, PreVoteReceiverKeepsItsTerm) {
  // Thesis §9.6: granting a pre-vote changes nothing on the voter.
  auto node = MakeNode(3, {1, 2, 3});
  pb::Message pre_vote = Msg(pb::MESSAGE_TYPE_PRE_VOTE, 1, 3, 2);
  pre_vote.set_index(3);
  pre_vote.set_log_term(1);
  ASSERT_OK(node->raft->Step(pre_vote));
  EXPECT_EQ(node->raft->term(), 1u);
  Ready ready = PersistReady(*node);
  EXPECT_FALSE(ready.hard_state.has_value());
  ASSERT_EQ(ready.messages_after_persist.size(), 1u);
  EXPECT_FALSE(ready.messages_after_persist[0].reject());
  EXPECT_EQ(ready.messages_after_persist[0].term(), 2u);
}

TEST(RaftPaper, CheckQuorumStepsDownWithoutQuorum) {
  // Thesis §6.2: "a leader steps down if an election timeout elapses without a
  // successful round of heartbeats to a majority of its cluster."
  auto node = MakeNode(1, {1, 2, 3}, {}, 1, NoPreVote);
  MakeLeader(*node);
  ASSERT_OK(node->raft->Step(Msg(pb::MESSAGE_TYPE_HEARTBEAT_RESPONSE, 2, 1, node->raft->term())));
  for (int i = 0; i < 10; ++i) node->raft->Tick();
  EXPECT_EQ(node->raft->role(), Role::kLeader) << "node 2 answered: a quorum with itself";
  for (int i = 0; i < 10; ++i) node->raft->Tick();
  EXPECT_EQ(node->raft->role(), Role::kFollower);
}

TEST(RaftPaper, MalformedMessagesAreRefusedNotFatal) {
  // STYLE.md §4: input is validated. A bad message returns InvalidArgument and changes
  // nothing.
  auto node = MakeNode(2, {1, 2, 3});
  pb::Message bad = Msg(pb::MESSAGE_TYPE_APPEND, 1, 2, 9);
  bad.set_index(3);
  bad.set_log_term(1);
  pb::Entry* entry = bad.add_entries();
  entry->set_index(7);  // not consecutive
  entry->set_term(9);
  entry->set_type(pb::ENTRY_TYPE_NORMAL);
  EXPECT_THAT(node->raft->Step(bad), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(node->raft->term(), 1u);
  EXPECT_FALSE(node->raft->HasReady());
}

TEST(RaftCreate, RejectsBadConfig) {
  const struct {
    std::string name;
    void (*mutate)(Config&);
    std::string want_error;
  } cases[] = {
      {"id 0", [](Config& c) { c.id = kNoNode; }, "id"},
      {"heartbeat 0", [](Config& c) { c.heartbeat_interval_ticks = 0; }, "heartbeat"},
      {"election not above heartbeat", [](Config& c) { c.election_timeout_ticks = 1; },
       "greater than"},
      {"election huge", [](Config& c) { c.election_timeout_ticks = 1 << 30; }, "at most"},
      {"no inflight", [](Config& c) { c.max_inflight_messages = 0; }, "inflight"},
      {"no message bytes", [](Config& c) { c.max_message_bytes = 0; }, "message_bytes"},
      {"lease without check quorum",
       [](Config& c) {
         c.read_only_mode = ReadOnlyMode::kLeaseBased;
         c.check_quorum = false;
       },
       "check_quorum"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    MemoryLogStorage storage;
    Config config;
    config.id = 1;
    config.logger = Logger(LogLevel::kWarning);
    c.mutate(config);
    EXPECT_THAT(Raft::Create(config, &storage),
                StatusIs(absl::StatusCode::kInvalidArgument, c.want_error));
  }
}

TEST(RaftCreate, RebuildsMembershipFromSnapshotAndCommittedChanges) {
  // Goal: at restart, membership is the snapshot's conf_state plus the committed
  // CONF_CHANGE entries after it; an uncommitted change is not in effect yet and takes
  // effect when its commit becomes known.
  MemoryLogStorage storage;
  std::vector<pb::Entry> entries = Raft::BootstrapEntries({1, 2, 3});
  auto add_change = [&](pb::ConfChangeType type, NodeId id) {
    pb::ConfChange change;
    change.set_type(type);
    change.set_node_id(id);
    pb::Entry entry;
    entry.set_index(entries.size() + 1);
    entry.set_term(2);
    entry.set_type(pb::ENTRY_TYPE_CONF_CHANGE);
    entry.set_data(change.SerializeAsString());
    entries.push_back(entry);
  };
  add_change(pb::CONF_CHANGE_TYPE_ADD_LEARNER, 4);  // index 4, committed
  add_change(pb::CONF_CHANGE_TYPE_ADD_VOTER, 4);    // index 5, not committed
  ASSERT_OK(storage.Append(entries));
  ASSERT_OK(storage.Compact(2, MakeConfStateForTest({1, 2})));
  pb::HardState hard_state;
  hard_state.set_term(2);
  hard_state.set_commit(4);
  storage.SetHardState(hard_state);
  Config config;
  config.id = 1;
  config.logger = Logger(LogLevel::kWarning);
  config.applied = 2;
  ASSERT_OK_AND_ASSIGN(auto raft, Raft::Create(config, &storage));
  EXPECT_THAT(raft->conf_state().voters(), ::testing::ElementsAre(1, 2, 3));
  EXPECT_THAT(raft->conf_state().learners(), ::testing::ElementsAre(4));
  pb::Message heartbeat = Msg(pb::MESSAGE_TYPE_HEARTBEAT, 2, 1, 2);
  heartbeat.set_commit(5);
  ASSERT_OK(raft->Step(heartbeat));
  EXPECT_THAT(raft->conf_state().voters(), ::testing::ElementsAre(1, 2, 3, 4));
  EXPECT_TRUE(raft->conf_state().learners().empty());
}

}  // namespace
}  // namespace stead::raft
