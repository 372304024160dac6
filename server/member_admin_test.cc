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

}  // namespace
}  // namespace stead::server
