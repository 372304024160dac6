// The rules of the membership admin calls on hand-built leader statuses: resolving a
// member by id or name, choosing whom leadership goes to, and when a learner may be
// promoted or a member may take over.
#include "server/member_admin.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace stead::server {
namespace {

using testing::StatusIs;

raft::PeerStatus Peer(raft::NodeId id, raft::Index match, bool active = true,
                      bool learner = false) {
  raft::PeerStatus peer;
  peer.id = id;
  peer.match = match;
  peer.recent_active = active;
  peer.is_learner = learner;
  return peer;
}

// Leader 1 with last index 1000; voters 1, 2, 3 and learner 4 unless `peers` says
// otherwise about who is a learner.
RaftNodeStatus LeaderStatus(std::vector<raft::PeerStatus> peers) {
  RaftNodeStatus status;
  status.id = 1;
  status.role = raft::Role::kLeader;
  status.leader = 1;
  status.last_index = 1000;
  for (const raft::PeerStatus& peer : peers) {
    if (peer.is_learner) {
      status.conf_state.add_learners(peer.id);
    } else {
      status.conf_state.add_voters(peer.id);
    }
  }
  status.peers = std::move(peers);
  return status;
}

TEST(MemberAdminTest, ResolveMemberByIdOrName) {
  const RaftNodeStatus status =
      LeaderStatus({Peer(1, 1000), Peer(2, 1000), Peer(4, 10, true, true)});
  // Id 9 is an earlier life of stead-2 that is no longer in the configuration.
  const std::map<raft::NodeId, std::string> names = {
      {1, "stead-0"}, {2, "stead-2"}, {4, "stead-4"}, {9, "stead-2"}};
  const struct {
    const char* name;
    uint64_t id;
    std::string member_name;
    absl::StatusOr<raft::NodeId> want;
  } cases[] = {
      {"by id", 2, "", 2},
      {"id wins over name", 4, "stead-0", 4},
      {"by name", 0, "stead-0", 1},
      {"learner by name", 0, "stead-4", 4},
      {"the id in the configuration", 0, "stead-2", 2},
      {"unknown id", 7, "", absl::NotFoundError("no member 7")},
      {"id not in the configuration", 9, "", absl::NotFoundError("no member 9")},
      {"unknown name", 0, "stead-7", absl::NotFoundError("no member stead-7")},
      {"no name", 0, "", absl::NotFoundError("no member ")},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_EQ(ResolveMember(c.id, c.member_name, names, status.conf_state), c.want);
  }
}

TEST(MemberAdminTest, MostCaughtUpVoterIsActiveAndNotTheLeader) {
  const struct {
    const char* name;
    std::vector<raft::PeerStatus> peers;
    raft::NodeId want;
  } cases[] = {
      {"highest match", {Peer(1, 1000), Peer(2, 900), Peer(3, 950)}, 3},
      {"lowest id among equals", {Peer(1, 1000), Peer(2, 950), Peer(3, 950)}, 2},
      {"inactive skipped", {Peer(1, 1000), Peer(2, 400), Peer(3, 1000, false)}, 2},
      {"learner skipped", {Peer(1, 1000), Peer(2, 10), Peer(4, 1000, true, true)}, 2},
      {"nobody", {Peer(1, 1000), Peer(2, 1000, false), Peer(4, 1000, true, true)}, raft::kNoNode},
      {"alone", {Peer(1, 1000)}, raft::kNoNode},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_EQ(MostCaughtUpVoter(LeaderStatus(c.peers)), c.want);
  }
}

TEST(MemberAdminTest, TransferTargetMustBeAnActiveVoter) {
  const RaftNodeStatus status =
      LeaderStatus({Peer(1, 1000), Peer(2, 3), Peer(3, 1000, false), Peer(4, 1000, true, true)});
  // A voter far behind may still take over: the leader catches it up first.
  EXPECT_OK(CheckTransferTarget(status, 2, "stead-2"));
  EXPECT_THAT(CheckTransferTarget(status, 3, "stead-3"),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       "stead-3 has not answered the leader recently"));
  EXPECT_THAT(CheckTransferTarget(status, 4, "stead-4"),
              StatusIs(absl::StatusCode::kFailedPrecondition, "stead-4 is a learner"));
}

TEST(MemberAdminTest, PromotionNeedsACaughtUpActiveLearner) {
  const RaftNodeStatus status =
      LeaderStatus({Peer(1, 1000), Peer(4, 900, true, true), Peer(5, 899, true, true),
                    Peer(6, 1000, false, true)});
  EXPECT_OK(CheckPromotion(status, 4, "stead-4"));  // exactly kPromotionLag behind
  EXPECT_THAT(CheckPromotion(status, 5, "stead-5"),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       "stead-5 is not caught up: its log reaches index 899 of 1000 (101 "
                       "entries behind"));
  EXPECT_THAT(CheckPromotion(status, 6, "stead-6"),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       "stead-6 has not answered the leader recently"));
  EXPECT_THAT(CheckPromotion(status, 8, "stead-8"),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_TRUE(IsCaughtUp(*FindPeer(status, 4), status.last_index));
  EXPECT_FALSE(IsCaughtUp(*FindPeer(status, 5), status.last_index));
  EXPECT_EQ(FindPeer(status, 8), nullptr);
}

TEST(MemberAdminTest, ContactTrackerCountsSilenceFromLastContactOrElection) {
  const absl::Time start = absl::FromUnixSeconds(1000);
  ContactTracker tracker;
  // Not a leader: it knows nothing, so nobody counts as silent.
  RaftNodeStatus follower;
  follower.role = raft::Role::kFollower;
  tracker.Observe(follower, start);
  EXPECT_EQ(tracker.SilentFor(2, start + absl::Hours(1)), absl::ZeroDuration());

  // Leader from `start`: 2 answers until start + 5 s, 3 never does.
  tracker.Observe(LeaderStatus({Peer(1, 1000), Peer(2, 1000), Peer(3, 0, false)}), start);
  tracker.Observe(LeaderStatus({Peer(1, 1000), Peer(2, 1000), Peer(3, 0, false)}),
                  start + absl::Seconds(5));
  tracker.Observe(LeaderStatus({Peer(1, 1000), Peer(2, 1000, false), Peer(3, 0, false)}),
                  start + absl::Seconds(20));
  EXPECT_EQ(tracker.SilentFor(2, start + absl::Seconds(20)), absl::Seconds(15));
  EXPECT_EQ(tracker.SilentFor(3, start + absl::Seconds(20)), absl::Seconds(20));
  EXPECT_EQ(tracker.SilentFor(1, start + absl::Seconds(20)), absl::ZeroDuration());
  // 2 answers again: its silence starts over.
  tracker.Observe(LeaderStatus({Peer(1, 1000), Peer(2, 1000), Peer(3, 0, false)}),
                  start + absl::Seconds(21));
  EXPECT_EQ(tracker.SilentFor(2, start + absl::Seconds(21)), absl::ZeroDuration());

  // Leadership lost and regained: the new term counts from its own election.
  tracker.Observe(follower, start + absl::Seconds(30));
  tracker.Observe(LeaderStatus({Peer(1, 1000), Peer(2, 1000), Peer(3, 0, false)}),
                  start + absl::Seconds(40));
  EXPECT_EQ(tracker.SilentFor(3, start + absl::Seconds(45)), absl::Seconds(5));
}

TEST(MemberAdminTest, ReplacementUnderANameWaitsForTheRunningMemberToFallSilent) {
  EXPECT_OK(CheckReplacement("stead-1", 0x2a, absl::Seconds(30), absl::Seconds(30)));
  EXPECT_OK(CheckReplacement("stead-1", 0x2a, absl::Minutes(5), absl::Seconds(30)));
  EXPECT_THAT(CheckReplacement("stead-1", 0x2a, absl::Milliseconds(200), absl::Seconds(30)),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       "a member named stead-1 is already in the cluster as node 2a and the "
                       "leader heard from it just now"));
  EXPECT_THAT(CheckReplacement("stead-1", 0x2a, absl::Seconds(12), absl::Seconds(30)),
              StatusIs(absl::StatusCode::kFailedPrecondition, "heard from it 12s ago"));
  EXPECT_THAT(CheckReplacement("stead-1", 0x2a, absl::Seconds(12), absl::Seconds(30)),
              StatusIs(absl::StatusCode::kFailedPrecondition, "steadctl member remove stead-1"));
}

TEST(MemberAdminTest, StaleVolumesNeedAMajorityOfOtherVotersFromOneOtherCluster) {
  pb::ConfState conf;
  for (raft::NodeId id : {1, 2, 3, 4, 5}) conf.add_voters(id);
  conf.add_learners(6);
  auto peers_with = [](std::map<raft::NodeId, uint64_t> other_cluster_of) {
    std::map<raft::NodeId, PeerState> peers;
    for (raft::NodeId id : {2, 3, 4, 5, 6}) peers[id] = PeerState();
    for (const auto& [id, cluster] : other_cluster_of) peers[id].other_cluster_id = cluster;
    return peers;
  };
  // Member 1 with four other voters: three of them from cluster 0xb is a majority.
  EXPECT_EQ(StaleVolumesEvidence(peers_with({{2, 0xb}, {3, 0xb}, {4, 0xb}}), conf, 1), 0xbu);
  // Two of four is not; nor are answers split between clusters, nor a learner's.
  EXPECT_EQ(StaleVolumesEvidence(peers_with({{2, 0xb}, {3, 0xb}}), conf, 1), 0u);
  EXPECT_EQ(StaleVolumesEvidence(peers_with({{2, 0xb}, {3, 0xb}, {4, 0xc}}), conf, 1), 0u);
  EXPECT_EQ(StaleVolumesEvidence(peers_with({{2, 0xb}, {3, 0xb}, {6, 0xb}}), conf, 1), 0u);
  // Any peer that accepts this member says its volumes belong here.
  std::map<raft::NodeId, PeerState> accepted = peers_with({{2, 0xb}, {3, 0xb}, {4, 0xb}});
  accepted[5].connected = true;
  EXPECT_EQ(StaleVolumesEvidence(accepted, conf, 1), 0u);
  // A healthy leader with one misplaced peer is not the stale one.
  EXPECT_EQ(StaleVolumesEvidence(peers_with({{2, 0xb}}), conf, 1), 0u);
  // Alone in its configuration, a member has no one to ask.
  pb::ConfState alone;
  alone.add_voters(1);
  EXPECT_EQ(StaleVolumesEvidence({}, alone, 1), 0u);
}

}  // namespace
}  // namespace stead::server
