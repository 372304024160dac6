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
#include "absl/time/time.h"
#include "raft/types.h"
#include "server/peer_transport.h"
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

// When the leader last heard from each member. Raft's recent_active says only "within
// the last election timeout"; replacing a member under its name needs "silent for
// longer than a configured time", so the leader samples it (the supervisor, every
// 200 ms) and remembers.
//
// Thread-compatible: the caller serialises access.
class ContactTracker {
 public:
  // Records what `status`, taken at `now`, says of each member. A status that is not
  // a leader's forgets everything: a new leader counts afresh from its election.
  void Observe(const RaftNodeStatus& status, absl::Time now);
  // How long member `id` has been silent to this leader as of `now`: since it was last
  // seen recently active, or since this node became leader if it never was. Zero when
  // this node is not the leader (it knows nothing).
  absl::Duration SilentFor(raft::NodeId id, absl::Time now) const;

 private:
  absl::Time leading_since_ = absl::InfiniteFuture();
  std::map<raft::NodeId, absl::Time> last_heard_;
};

// OK when a member asking to join as `name` may replace `running`, the member of that
// name in the configuration under another id, which has been silent to the leader for
// `silent_for`: only once that reaches `replace_after` (its volumes were lost and it
// came back empty, so its old id never answers again). FailedPrecondition otherwise,
// saying that a member of that name runs and how an operator replaces it.
absl::Status CheckReplacement(const std::string& name, raft::NodeId running,
                              absl::Duration silent_for, absl::Duration replace_after);

// The cluster a member's peers say they belong to when that shows this member's own
// volumes are stale (a removed member's, or another cluster's): no peer accepts its
// hello, and a majority of the other voters of its configuration (`conf`; `self` is
// this member) answer from one other cluster. 0 otherwise: one peer of another cluster
// says only that one of the two is misplaced, and peers that are down say nothing.
uint64_t StaleVolumesEvidence(const std::map<raft::NodeId, PeerState>& peers,
                              const pb::ConfState& conf, raft::NodeId self);

}  // namespace stead::server

#endif  // STEAD_SERVER_MEMBER_ADMIN_H_
