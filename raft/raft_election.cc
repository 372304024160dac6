// Leader election: role transitions, (pre-)campaigns and votes (Raft §5.2, thesis §3.4,
// §4.2.3, §9.6).
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/check.h"
#include "raft/conf_change.h"
#include "raft/progress.h"
#include "raft/raft.h"
#include "raft/raft_log.h"
#include "raft/read_only.h"

namespace stead::raft {

void Raft::ResetRandomizedElectionTimeout() {
  // Raft §5.2: randomized timeouts make split votes rare. The draw comes from the seeded
  // generator only, so a simulation replays bit for bit.
  const auto base = static_cast<uint64_t>(config_.election_timeout_ticks);
  randomized_election_timeout_ = static_cast<int>(base + random_() % base);
}

void Raft::ResetForTerm(Term term) {
  STEAD_CHECK_GE(term, term_) << "terms only increase";
  if (term_ != term) {
    term_ = term;
    voted_for_ = kNoNode;
  }
  leader_ = kNoNode;
  leader_commit_ = 0;
  election_elapsed_ = 0;
  heartbeat_elapsed_ = 0;
  ResetRandomizedElectionTimeout();
  lead_transferee_ = kNoNode;
  leader_ticks_ = 0;
  lease_acks_.clear();
  sent_timeout_now_ = false;
  progress_->ResetVotes();
  progress_->ResetAll(log_->LastIndex());
  // Reads in progress are never answered by a node that lost (or never had) leadership
  // in this term; the client's deadline expires and it retries on the new leader.
  read_only_->Reset();
  reads_waiting_for_commit_.clear();
  uncommitted_bytes_ = 0;
  broadcast_pending_ = false;
}

void Raft::BecomeFollower(Term term, NodeId leader) {
  ResetForTerm(term);
  role_ = Role::kFollower;
  leader_ = leader;
  STEAD_LOG(logger_, Info) << "term=" << term_ << " became follower leader=" << leader_;
}

void Raft::BecomePreCandidate() {
  STEAD_CHECK(role_ != Role::kLeader);
  // PreVote (thesis §9.6) changes neither the term nor the vote: a node that cannot win
  // does not disturb the cluster when it rejoins.
  role_ = Role::kPreCandidate;
  leader_ = kNoNode;
  progress_->ResetVotes();
  STEAD_LOG(logger_, Info) << "term=" << term_ << " became pre-candidate";
}

void Raft::BecomeCandidate() {
  STEAD_CHECK(role_ != Role::kLeader);
  ResetForTerm(term_ + 1);
  voted_for_ = id_;
  role_ = Role::kCandidate;
  STEAD_LOG(logger_, Info) << "term=" << term_ << " became candidate";
}

void Raft::BecomeLeader() {
  STEAD_CHECK(role_ == Role::kCandidate) << "role=" << RoleName(role_);
  ResetForTerm(term_);
  role_ = Role::kLeader;
  leader_ = id_;
  Progress* self = progress_->Find(id_);
  STEAD_CHECK(self != nullptr) << "a leader must be a member";
  self->BecomeReplicate();
  self->MaybeUpdate(log_->PersistedIndex());
  self->recent_active = true;
  STEAD_LOG(logger_, Info) << "term=" << term_ << " became leader last_index=" << log_->LastIndex()
                           << " commit=" << log_->committed();
  // Thesis §3.6.2 / Figure 3.7: a leader only commits entries of its own term by counting
  // replicas, so it appends an empty entry now to commit everything before it promptly.
  pb::Entry noop;
  noop.set_type(pb::ENTRY_TYPE_NORMAL);
  std::vector<pb::Entry> entries;
  entries.push_back(std::move(noop));
  AppendEntries(std::move(entries));
}

bool Raft::InLeaderLease() const {
  if (!config_.check_quorum) return false;
  // Lease reads rely on every node that acknowledged the leader refusing votes for an
  // election timeout; a restart must not cut that short.
  const bool starting = config_.read_only_mode == ReadOnlyMode::kLeaseBased &&
                        startup_ticks_ < config_.election_timeout_ticks;
  return (leader_ != kNoNode && election_elapsed_ < config_.election_timeout_ticks) || starting;
}

absl::Status Raft::Campaign() {
  if (role_ == Role::kLeader) {
    return absl::FailedPreconditionError(absl::StrCat("raft node ", id_, " is already leader"));
  }
  if (!Promotable()) {
    return absl::FailedPreconditionError(
        absl::StrCat("raft node ", id_, " is not a voter and cannot campaign"));
  }
  Hup(/*transfer=*/false);
  CheckInvariants();
  return absl::OkStatus();
}

void Raft::Hup(bool transfer) {
  if (role_ == Role::kLeader || !Promotable()) return;
  CampaignWith(config_.pre_vote && !transfer, transfer);
}

void Raft::CampaignWith(bool pre_vote, bool transfer) {
  Term vote_term = 0;
  if (pre_vote) {
    BecomePreCandidate();
    vote_term = term_ + 1;  // the term a real campaign would use
  } else {
    BecomeCandidate();
    vote_term = term_;
  }
  if (progress_->RecordVote(id_, true) == VoteResult::kWon) {
    // A single voter wins by itself.
    if (pre_vote) {
      CampaignWith(false, transfer);
    } else {
      BecomeLeader();
    }
    return;
  }
  for (NodeId voter : progress_->voters()) {
    if (voter == id_) continue;
    pb::Message request;
    request.set_type(pre_vote ? pb::MESSAGE_TYPE_PRE_VOTE : pb::MESSAGE_TYPE_VOTE);
    request.set_to(voter);
    request.set_term(vote_term);
    request.set_index(log_->LastIndex());
    request.set_log_term(log_->LastTerm());
    request.set_transfer(transfer);
    if (pre_vote) {
      Send(std::move(request));
    } else {
      // The candidate's new term and its vote for itself must be durable before anyone
      // counts on them: otherwise a crash could let it vote again in this term.
      SendAfterPersist(std::move(request));
    }
  }
}

void Raft::HandleVoteRequest(const pb::Message& message) {
  const bool pre_vote = message.type() == pb::MESSAGE_TYPE_PRE_VOTE;
  // Raft §5.2: one vote per term, first come first served; a pre-vote for a future term
  // commits to nothing.
  const bool can_vote = voted_for_ == message.from() ||
                        (voted_for_ == kNoNode && leader_ == kNoNode) ||
                        (pre_vote && message.term() > term_);
  // Raft §5.4.1: only a candidate whose log is at least as up-to-date as ours.
  const bool granted = can_vote && log_->IsUpToDate(message.index(), message.log_term());
  pb::Message response;
  response.set_type(pre_vote ? pb::MESSAGE_TYPE_PRE_VOTE_RESPONSE : pb::MESSAGE_TYPE_VOTE_RESPONSE);
  response.set_to(message.from());
  response.set_reject(!granted);
  if (granted) {
    // A granted pre-vote answers in the candidate's future term so it can count it.
    response.set_term(message.term());
    if (!pre_vote) {
      election_elapsed_ = 0;
      voted_for_ = message.from();
    }
  }
  STEAD_LOG(logger_, Debug) << "term=" << term_ << (granted ? " granted " : " rejected ")
                            << pb::MessageType_Name(message.type()) << " from " << message.from()
                            << " term=" << message.term();
  SendAfterPersist(std::move(response));
}

void Raft::HandleVoteResponse(const pb::Message& message) {
  const bool pre_vote = message.type() == pb::MESSAGE_TYPE_PRE_VOTE_RESPONSE;
  if (pre_vote != (role_ == Role::kPreCandidate)) return;  // from an earlier campaign
  if (pre_vote) {
    // Grants carry our next term; rejections our current one (higher terms were handled
    // by StepTerm). Anything else is from an older campaign.
    const Term expected = message.reject() ? term_ : term_ + 1;
    if (message.term() != expected) return;
  } else if (message.term() != term_) {
    return;
  }
  switch (progress_->RecordVote(message.from(), !message.reject())) {
    case VoteResult::kWon:
      if (pre_vote) {
        CampaignWith(/*pre_vote=*/false, /*transfer=*/false);
      } else {
        BecomeLeader();
      }
      break;
    case VoteResult::kLost:
      BecomeFollower(term_, kNoNode);
      break;
    case VoteResult::kPending:
      break;
  }
}

}  // namespace stead::raft
