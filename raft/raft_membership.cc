// Membership changes one server at a time (thesis §4.1, §4.2.2) and leadership transfer
// (thesis §3.10).
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/check.h"
#include "base/status_macros.h"
#include "raft/conf_change.h"
#include "raft/progress.h"
#include "raft/raft.h"
#include "raft/raft_log.h"

namespace stead::raft {

absl::Status Raft::ProposeConfChange(const pb::ConfChange& change) {
  if (role_ != Role::kLeader) {
    return absl::UnavailableError(absl::StrCat("not leader; leader is ", leader_));
  }
  if (lead_transferee_ != kNoNode) {
    // Transient: the caller retries and finds the new leader.
    return absl::UnavailableError(
        absl::StrCat("leadership transfer to ", lead_transferee_, " in progress"));
  }
  // One change at a time: the next one may only be based on a committed configuration,
  // so any two configurations in use differ by one server and their majorities overlap.
  if (!uncommitted_conf_changes_.empty()) {
    return absl::FailedPreconditionError(absl::StrCat("membership change at index ",
                                                      uncommitted_conf_changes_.begin()->first,
                                                      " is not committed yet"));
  }
  // The single-server change bug (Ongaro, raft-dev 2015): two changes proposed in
  // different terms from the same committed parent can both commit with disjoint
  // majorities. A leader that committed an entry of its own term has every earlier
  // change committed, which rules that out.
  if (!CommittedInCurrentTerm()) {
    return absl::FailedPreconditionError(
        "the leader has not committed an entry of its term yet; retry shortly");
  }
  STEAD_RETURN_IF_ERROR(ValidateConfChange(conf_state_, change));
  pb::Entry entry;
  entry.set_type(pb::ENTRY_TYPE_CONF_CHANGE);
  entry.set_data(change.SerializeAsString());
  std::vector<pb::Entry> entries;
  entries.push_back(std::move(entry));
  AppendEntries(std::move(entries));
  STEAD_LOG(logger_, Info) << "term=" << term_ << " proposed membership change "
                           << pb::ConfChangeType_Name(change.type()) << " node=" << change.node_id()
                           << " at index " << log_->LastIndex();
  return absl::OkStatus();
}

void Raft::TrackConfChanges(const std::vector<pb::Entry>& entries) {
  if (entries.empty()) return;
  // The entries replaced the log from their first index on: changes there are gone.
  uncommitted_conf_changes_.erase(uncommitted_conf_changes_.lower_bound(entries.front().index()),
                                  uncommitted_conf_changes_.end());
  for (const pb::Entry& entry : entries) {
    if (entry.type() != pb::ENTRY_TYPE_CONF_CHANGE) continue;
    pb::ConfChange change;
    if (!change.ParseFromString(entry.data())) {
      // Every node reads the same bytes and skips them alike.
      STEAD_LOG(logger_, Error) << "term=" << term_ << " unreadable membership change at index "
                                << entry.index() << "; ignored";
      continue;
    }
    uncommitted_conf_changes_[entry.index()] = std::move(change);
  }
}

void Raft::ApplyCommittedConfChanges() {
  while (!uncommitted_conf_changes_.empty() &&
         uncommitted_conf_changes_.begin()->first <= log_->committed()) {
    const Index index = uncommitted_conf_changes_.begin()->first;
    const pb::ConfChange change = std::move(uncommitted_conf_changes_.begin()->second);
    uncommitted_conf_changes_.erase(uncommitted_conf_changes_.begin());
    if (absl::Status valid = ValidateConfChange(conf_state_, change); !valid.ok()) {
      // Validated when proposed, so only reachable through a misbehaving peer; every node
      // skips it alike.
      STEAD_LOG(logger_, Warning) << "term=" << term_ << " skipping committed membership "
                                  << "change at index " << index << ": " << valid;
      continue;
    }
    STEAD_LOG(logger_, Info) << "term=" << term_ << " membership change at index " << index
                             << " committed: " << pb::ConfChangeType_Name(change.type())
                             << " node=" << change.node_id();
    // A removed follower simply stops campaigning (Promotable()).
    ApplyConfState(ApplyConfChange(conf_state_, change));
  }
}

void Raft::ApplyConfState(const pb::ConfState& conf_state) {
  conf_state_ = conf_state;
  progress_->ApplyConf(conf_state_, log_->LastIndex());
  if (role_ != Role::kLeader) return;
  if (!progress_->IsVoter(id_)) {
    // Thesis §4.2.2: a leader removed from the configuration steps down once the change
    // is committed. It first tells the others the new commit index so one of them can
    // take over without waiting for a heartbeat that will never come.
    STEAD_LOG(logger_, Info) << "term=" << term_ << " removed from the voters; stepping down";
    BroadcastAppend();
    BecomeFollower(term_, kNoNode);
    return;
  }
  if (lead_transferee_ != kNoNode && !progress_->IsVoter(lead_transferee_)) AbortLeaderTransfer();
  // A smaller quorum may commit more now.
  if (MaybeCommit()) BroadcastAppend();
}

absl::Status Raft::TransferLeadership(NodeId target) {
  if (role_ != Role::kLeader) {
    return absl::UnavailableError(absl::StrCat("not leader; leader is ", leader_));
  }
  if (target == id_) return absl::OkStatus();
  if (!progress_->IsVoter(target)) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot transfer leadership to ", target, ": not a voter"));
  }
  if (lead_transferee_ == target) return absl::OkStatus();
  lead_transferee_ = target;
  // The transfer must finish within an election timeout (TickHeartbeat aborts it).
  election_elapsed_ = 0;
  STEAD_LOG(logger_, Info) << "term=" << term_ << " transferring leadership to " << target;
  Progress* progress = progress_->Find(target);
  STEAD_CHECK(progress != nullptr);
  if (progress->match == log_->LastIndex()) {
    SendTimeoutNow(target);
  } else {
    SendAppend(target, /*send_if_empty=*/true);
  }
  return absl::OkStatus();
}

void Raft::SendTimeoutNow(NodeId to) {
  sent_timeout_now_ = true;
  pb::Message timeout_now;
  timeout_now.set_type(pb::MESSAGE_TYPE_TIMEOUT_NOW);
  timeout_now.set_to(to);
  Send(std::move(timeout_now));
}

void Raft::AbortLeaderTransfer() {
  if (lead_transferee_ == kNoNode) return;
  STEAD_LOG(logger_, Info) << "term=" << term_ << " leadership transfer to " << lead_transferee_
                           << " abandoned";
  lead_transferee_ = kNoNode;
}

void Raft::HandleTimeoutNow(const pb::Message& message) {
  if (!Promotable()) {
    STEAD_LOG(logger_, Info) << "term=" << term_ << " ignoring TIMEOUT_NOW from " << message.from()
                             << ": not a voter";
    return;
  }
  STEAD_LOG(logger_, Info) << "term=" << term_ << " TIMEOUT_NOW from " << message.from()
                           << ": campaigning for the transfer";
  // Skip PreVote and the leader lease: the leader asked for this election.
  Hup(/*transfer=*/true);
}

}  // namespace stead::raft
