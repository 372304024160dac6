#include "server/member_admin.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "raft/conf_change.h"

namespace stead::server {

absl::StatusOr<raft::NodeId> ResolveMember(uint64_t id, const std::string& name,
                                           const std::map<raft::NodeId, std::string>& names,
                                           const pb::ConfState& conf) {
  raft::NodeId target = id;
  if (target == raft::kNoNode) {
    for (const auto& [member_id, member_name] : names) {
      // Among several ids of one name (a member that came back under a new id while the
      // old one is still being removed), the one in the configuration wins.
      if (member_name == name && (target == raft::kNoNode || raft::IsVoter(conf, member_id) ||
                                  raft::IsLearner(conf, member_id))) {
        target = member_id;
      }
    }
  }
  if (target == raft::kNoNode || (!raft::IsVoter(conf, target) && !raft::IsLearner(conf, target))) {
    return absl::NotFoundError(
        absl::StrCat("no member ", id != raft::kNoNode ? absl::StrCat(id) : name));
  }
  return target;
}

const raft::PeerStatus* FindPeer(const RaftNodeStatus& status, raft::NodeId id) {
  for (const raft::PeerStatus& peer : status.peers) {
    if (peer.id == id) return &peer;
  }
  return nullptr;
}

bool IsCaughtUp(const raft::PeerStatus& peer, raft::Index last_index) {
  return peer.recent_active && peer.match + kPromotionLag >= last_index;
}

raft::NodeId MostCaughtUpVoter(const RaftNodeStatus& status) {
  raft::NodeId best = raft::kNoNode;
  raft::Index best_match = 0;
  for (const raft::PeerStatus& peer : status.peers) {
    if (peer.id == status.id || peer.is_learner || !peer.recent_active) continue;
    // peers is sorted by id, so a strict comparison keeps the lowest id among equals.
    if (best == raft::kNoNode || peer.match > best_match) {
      best = peer.id;
      best_match = peer.match;
    }
  }
  return best;
}

absl::Status CheckTransferTarget(const RaftNodeStatus& status, raft::NodeId target,
                                 const std::string& name) {
  if (raft::IsLearner(status.conf_state, target)) {
    return absl::FailedPreconditionError(absl::StrCat(
        name, " is a learner and cannot lead; promote it first (steadctl member promote)"));
  }
  const raft::PeerStatus* peer = FindPeer(status, target);
  if (peer == nullptr || !peer->recent_active) {
    return absl::FailedPreconditionError(
        absl::StrCat(name, " has not answered the leader recently; it cannot take over now"));
  }
  return absl::OkStatus();
}

absl::Status CheckPromotion(const RaftNodeStatus& status, raft::NodeId target,
                            const std::string& name) {
  const raft::PeerStatus* peer = FindPeer(status, target);
  if (peer == nullptr || !peer->recent_active) {
    return absl::FailedPreconditionError(absl::StrCat(
        name, " has not answered the leader recently; a voter must be reachable to vote"));
  }
  if (!IsCaughtUp(*peer, status.last_index)) {
    return absl::FailedPreconditionError(
        absl::StrCat(name, " is not caught up: its log reaches index ", peer->match, " of ",
                     status.last_index, " (", status.last_index - peer->match,
                     " entries behind; a learner is promoted within ", kPromotionLag, ")"));
  }
  return absl::OkStatus();
}

void ContactTracker::Observe(const RaftNodeStatus& status, absl::Time now) {
  if (status.role != raft::Role::kLeader) {
    leading_since_ = absl::InfiniteFuture();
    last_heard_.clear();
    return;
  }
  leading_since_ = std::min(leading_since_, now);
  for (const raft::PeerStatus& peer : status.peers) {
    if (peer.recent_active || peer.id == status.id) last_heard_[peer.id] = now;
  }
}

absl::Duration ContactTracker::SilentFor(raft::NodeId id, absl::Time now) const {
  if (leading_since_ == absl::InfiniteFuture()) return absl::ZeroDuration();
  auto it = last_heard_.find(id);
  const absl::Time since = it == last_heard_.end() ? leading_since_ : it->second;
  return std::max(now - since, absl::ZeroDuration());
}

absl::Status CheckReplacement(const std::string& name, raft::NodeId running,
                              absl::Duration silent_for, absl::Duration replace_after) {
  if (silent_for >= replace_after) return absl::OkStatus();
  const std::string heard =
      silent_for < absl::Seconds(1)
          ? "just now"
          : absl::StrCat(absl::FormatDuration(absl::Trunc(silent_for, absl::Seconds(1))), " ago");
  return absl::FailedPreconditionError(absl::StrCat(
      "a member named ", name, " is already in the cluster as node ", absl::Hex(running),
      " and the leader heard from it ", heard, ": two members cannot share a name. Give this one another name; or, if it replaces "
      "that member (whose volumes were lost), stop the old one: it is replaced once silent "
      "for ", absl::FormatDuration(replace_after),
      " (--replace-silent-member-after), or at once after `steadctl member remove ", name, "`"));
}

uint64_t StaleVolumesEvidence(const std::map<raft::NodeId, PeerState>& peers,
                              const pb::ConfState& conf, raft::NodeId self) {
  std::map<uint64_t, int> answers_by_cluster;
  for (const auto& [id, peer] : peers) {
    if (peer.connected) return 0;
    if (peer.other_cluster_id != 0 && id != self && raft::IsVoter(conf, id)) {
      ++answers_by_cluster[peer.other_cluster_id];
    }
  }
  const int other_voters = conf.voters_size() - (raft::IsVoter(conf, self) ? 1 : 0);
  for (const auto& [cluster, answers] : answers_by_cluster) {
    if (2 * answers > other_voters) return cluster;
  }
  return 0;
}

}  // namespace stead::server
