// The decisions behind the membership admin calls, as pure functions of the leader's
// RaftNodeStatus: which member a request names, whom leadership goes to, whether a
// learner is caught up enough to become a voter. node.cc serves the calls (and the
// leader's automatic promotions) with them; member_admin_test.cc pins each rule.
//
// Thread-safety: plain functions of their arguments.
#ifndef STEAD_SERVER_MEMBER_ADMIN_H_
#define STEAD_SERVER_MEMBER_ADMIN_H_

#include <cstdint>
#include <map>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "raft/types.h"
#include "server/raft_node.h"

namespace stead::server {

// A learner whose log is within this many entries of the leader's last index, and
// that answered the leader recently, is caught up: it may become a voter.
inline constexpr uint64_t kPromotionLag = 100;

// The member a request names: `id` when it is not 0, else the member called `name`
// (`names` maps every known member's id, this one's included, to its name). NotFound
// naming the member when it is not in `conf` as a voter or a learner.
absl::StatusOr<raft::NodeId> ResolveMember(uint64_t id, const std::string& name,
                                           const std::map<raft::NodeId, std::string>& names,
                                           const pb::ConfState& conf);

// What the leader knows of member `id`'s replication; nullptr when `status` (not a
// leader's, or without that member) has nothing.
const raft::PeerStatus* FindPeer(const RaftNodeStatus& status, raft::NodeId id);

// Whether `peer` is caught up (see kPromotionLag) with a leader whose last index is
// `last_index`.
bool IsCaughtUp(const raft::PeerStatus& peer, raft::Index last_index);

// The voter leadership goes to when no one is named: of the voters other than the
// leader that answered recently, the one with the highest match index (the lowest id
// among equals); kNoNode when there is none. `status` is the leader's.
raft::NodeId MostCaughtUpVoter(const RaftNodeStatus& status);

// OK when the leader (whose `status` this is) may hand leadership to `target`, a
// member of the configuration other than itself; FailedPrecondition saying why not
// (a learner, or not heard from recently) with `name` in the message.
absl::Status CheckTransferTarget(const RaftNodeStatus& status, raft::NodeId target,
                                 const std::string& name);

// OK when the learner `target` may be promoted now; FailedPrecondition naming `name`
// and its lag (or that the leader has not heard from it recently) otherwise.
absl::Status CheckPromotion(const RaftNodeStatus& status, raft::NodeId target,
                            const std::string& name);

}  // namespace stead::server

#endif  // STEAD_SERVER_MEMBER_ADMIN_H_
