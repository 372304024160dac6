// Log replication: proposals, APPEND / HEARTBEAT / SNAPSHOT on both sides, flow control
// and the commit rule (Raft §5.3, §5.4.2, thesis §3.5, §3.10, §5).
#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/check.h"
#include "base/status_macros.h"
#include "raft/progress.h"
#include "raft/raft.h"
#include "raft/raft_log.h"

namespace stead::raft {

absl::Status Raft::Propose(std::string data) {
  if (role_ != Role::kLeader) {
    return absl::UnavailableError(absl::StrCat("not leader; leader is ", leader_));
  }
  if (lead_transferee_ != kNoNode) {
    // Transient: the caller retries and finds the new leader.
    return absl::UnavailableError(
        absl::StrCat("leadership transfer to ", lead_transferee_, " in progress"));
  }
  // A single oversized proposal is still accepted when nothing is pending, so a large
  // entry cannot be refused forever.
  if (uncommitted_bytes_ > 0 && uncommitted_bytes_ + data.size() > config_.max_uncommitted_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat("too many uncommitted proposal bytes (",
                                                     uncommitted_bytes_, "); retry later"));
  }
  uncommitted_bytes_ += data.size();
  pb::Entry entry;
  entry.set_type(pb::ENTRY_TYPE_NORMAL);
  entry.set_data(std::move(data));
  std::vector<pb::Entry> entries;
  entries.push_back(std::move(entry));
  AppendEntries(std::move(entries));
  return absl::OkStatus();
}

void Raft::AppendEntries(std::vector<pb::Entry> entries) {
  STEAD_CHECK(role_ == Role::kLeader);
  const Index last = log_->LastIndex();
  for (size_t i = 0; i < entries.size(); ++i) {
    entries[i].set_term(term_);
    entries[i].set_index(last + 1 + i);
  }
  log_->Append(entries);
  TrackConfChanges(entries);
  // The leader's own match advances only once the entries are durable (OnPersisted);
  // the APPENDs go out when the Ready is taken, batching every proposal made meanwhile.
  broadcast_pending_ = true;
}

bool Raft::SendAppend(NodeId to, bool send_if_empty) {
  STEAD_CHECK(role_ == Role::kLeader) << "only a leader sends APPEND";
  Progress* progress = progress_->Find(to);
  if (progress == nullptr || to == id_ || progress->IsPaused()) return false;
  const Index prev_index = progress->next - 1;
  absl::StatusOr<Term> prev_term = log_->TermAt(prev_index);
  if (!prev_term.ok()) {
    if (prev_index < log_->FirstIndex()) return SendSnapshot(to);
    STEAD_LOG(logger_, Error) << "term=" << term_ << " cannot read term at " << prev_index
                              << " for " << to << ": " << prev_term.status();
    return false;
  }
  std::vector<pb::Entry> entries;
  if (progress->next <= log_->LastIndex()) {
    absl::StatusOr<std::vector<pb::Entry>> read =
        log_->Entries(progress->next, log_->LastIndex() + 1, config_.max_message_bytes);
    if (!read.ok()) {
      if (progress->next < log_->FirstIndex()) return SendSnapshot(to);
      STEAD_LOG(logger_, Error) << "term=" << term_ << " cannot read entries from "
                                << progress->next << " for " << to << ": " << read.status();
      return false;
    }
    entries = *std::move(read);
  }
  if (entries.empty() && !send_if_empty) return false;
  uint64_t bytes = 0;
  for (const pb::Entry& entry : entries) bytes += entry.ByteSizeLong();
  const Index last_sent = entries.empty() ? prev_index : entries.back().index();
  pb::Message message;
  message.set_type(pb::MESSAGE_TYPE_APPEND);
  message.set_to(to);
  message.set_index(prev_index);
  message.set_log_term(*prev_term);
  message.set_commit(log_->committed());
  for (pb::Entry& entry : entries) *message.add_entries() = std::move(entry);
  progress->SentEntries(last_sent, bytes);
  Send(std::move(message));
  return true;
}

bool Raft::SendSnapshot(NodeId to) {
  Progress* progress = progress_->Find(to);
  STEAD_CHECK(progress != nullptr);
  const pb::SnapshotMetadata snapshot = storage_->LatestSnapshot();
  if (snapshot.index() == 0 || snapshot.index() < log_->FirstIndex() - 1) {
    STEAD_LOG(logger_, Warning) << "term=" << term_ << " " << to
                                << " needs compacted entries but no snapshot is available";
    return false;
  }
  STEAD_LOG(logger_, Info) << "term=" << term_ << " sending snapshot index=" << snapshot.index()
                           << " term=" << snapshot.term() << " to " << to << " ("
                           << progress->DebugString() << ")";
  progress->BecomeSnapshot(snapshot.index());
  pb::Message message;
  message.set_type(pb::MESSAGE_TYPE_SNAPSHOT);
  message.set_to(to);
  *message.mutable_snapshot() = snapshot;
  Send(std::move(message));
  return true;
}

void Raft::BroadcastAppend() {
  // Callers may have just lost leadership (a committed removal of the leader itself).
  if (role_ != Role::kLeader) return;
  for (const auto& [peer, progress] : progress_->all()) {
    if (peer != id_) SendAppend(peer, /*send_if_empty=*/true);
  }
}

void Raft::SendHeartbeat(NodeId to, const std::string& context) {
  STEAD_CHECK(role_ == Role::kLeader) << "only a leader sends HEARTBEAT";
  const Progress* progress = progress_->Find(to);
  STEAD_CHECK(progress != nullptr);
  pb::Message message;
  message.set_type(pb::MESSAGE_TYPE_HEARTBEAT);
  message.set_to(to);
  // The follower may not have the leader's whole committed prefix yet; never tell it to
  // commit beyond what it is known to hold.
  message.set_commit(std::min(progress->match, log_->committed()));
  message.set_index(log_->committed());  // informational: see raft.proto
  message.set_context(context);
  Send(std::move(message));
}

void Raft::BroadcastHeartbeat(const std::string& context) {
  for (const auto& [peer, progress] : progress_->all()) {
    if (peer != id_) SendHeartbeat(peer, context);
  }
}

bool Raft::MaybeCommit() {
  const Index quorum_index = progress_->QuorumCommitted();
  if (quorum_index <= log_->committed()) return false;
  // Raft §5.4.2 / Figure 8: an entry of an earlier term is not committed merely by being
  // on a majority; it is committed when an entry of the current term after it is.
  absl::StatusOr<Term> term = log_->TermAt(quorum_index);
  if (!term.ok()) return false;
  if (*term != term_ && !config_.unsafe_commit_previous_term_entries_for_testing) return false;
  AdvanceCommit(quorum_index);
  return true;
}

void Raft::AdvanceCommit(Index index) {
  if (index <= log_->committed()) return;
  log_->CommitTo(index);
  ApplyCommittedConfChanges();
  if (role_ == Role::kLeader && !reads_waiting_for_commit_.empty() && CommittedInCurrentTerm()) {
    ServePendingReads();
  }
}

absl::Status Raft::HandleAppend(const pb::Message& message) {
  // An APPEND carries the leader's commit index as it is, whether or not our log can
  // take its entries.
  leader_commit_ = std::max(leader_commit_, message.commit());
  pb::Message response;
  response.set_type(pb::MESSAGE_TYPE_APPEND_RESPONSE);
  response.set_to(message.from());
  if (message.index() < log_->committed()) {
    // Everything through our commit index matches the leader (Leader Completeness); say
    // so, and the leader continues from there.
    response.set_index(log_->committed());
    SendAfterPersist(std::move(response));
    return absl::OkStatus();
  }
  std::vector<pb::Entry> entries(message.entries().begin(), message.entries().end());
  STEAD_ASSIGN_OR_RETURN(
      std::optional<RaftLog::AppendResult> appended,
      Annotate(log_->MaybeAppend(message.index(), message.log_term(), entries),
               absl::StrCat("raft node ", id_, " APPEND from ", message.from())));
  if (appended) {
    if (appended->first_written_index != 0) {
      const Index first_offset = appended->first_written_index - message.index() - 1;
      TrackConfChanges(std::vector<pb::Entry>(
          entries.begin() + static_cast<std::ptrdiff_t>(first_offset), entries.end()));
    }
    AdvanceCommit(std::min(message.commit(), appended->last_new_index));
    response.set_index(appended->last_new_index);
    SendAfterPersist(std::move(response));
    return absl::OkStatus();
  }
  // Fast back-off (thesis §5.4, etcd-io/raft findConflictByTerm): point the leader at
  // the last entry of ours that can match, skipping whole terms that cannot.
  const Index probe_index = std::min(message.index(), log_->LastIndex());
  const auto [hint_index, hint_term] = log_->FindConflictByTerm(probe_index, message.log_term());
  STEAD_LOG(logger_, Debug) << "term=" << term_ << " rejected APPEND at index=" << message.index()
                            << " log_term=" << message.log_term() << " hint=" << hint_index << "/"
                            << hint_term;
  response.set_index(message.index());
  response.set_reject(true);
  response.set_reject_hint(hint_index);
  response.set_reject_hint_term(hint_term);
  SendAfterPersist(std::move(response));
  return absl::OkStatus();
}

absl::Status Raft::HandleHeartbeat(const pb::Message& message) {
  leader_commit_ = std::max(leader_commit_, message.index());
  // The leader caps the commit index at our match; anything beyond our log is a bad
  // message, not a reason to crash.
  if (message.commit() <= log_->LastIndex()) {
    AdvanceCommit(message.commit());
  } else {
    STEAD_LOG(logger_, Warning) << "term=" << term_ << " HEARTBEAT from " << message.from()
                                << " commits " << message.commit() << " beyond last index "
                                << log_->LastIndex();
  }
  pb::Message response;
  response.set_type(pb::MESSAGE_TYPE_HEARTBEAT_RESPONSE);
  response.set_to(message.from());
  response.set_context(message.context());
  SendAfterPersist(std::move(response));
  return absl::OkStatus();
}

absl::Status Raft::HandleSnapshot(const pb::Message& message) {
  const pb::SnapshotMetadata& snapshot = message.snapshot();
  leader_commit_ = std::max(leader_commit_, snapshot.index());
  pb::Message response;
  response.set_type(pb::MESSAGE_TYPE_APPEND_RESPONSE);
  response.set_to(message.from());
  if (snapshot.index() <= log_->committed()) {
    // A stale snapshot (duplicated, or overtaken by appends): installing it would roll
    // the state machine back (openraft PR #560). Tell the leader where we are.
    STEAD_LOG(logger_, Info) << "term=" << term_
                             << " ignoring stale snapshot index=" << snapshot.index()
                             << " commit=" << log_->committed();
    response.set_index(log_->committed());
    SendAfterPersist(std::move(response));
    return absl::OkStatus();
  }
  if (log_->MatchTerm(snapshot.index(), snapshot.term())) {
    // We already hold the snapshot's last entry, hence (Log Matching) everything before
    // it: fast-forward the commit index instead of discarding the log.
    AdvanceCommit(snapshot.index());
  } else {
    STEAD_LOG(logger_, Info) << "term=" << term_
                             << " installing snapshot index=" << snapshot.index()
                             << " term=" << snapshot.term();
    log_->RestoreSnapshot(snapshot);
    uncommitted_conf_changes_.clear();
    ApplyConfState(snapshot.conf_state());
  }
  response.set_index(snapshot.index());
  SendAfterPersist(std::move(response));
  return absl::OkStatus();
}

void Raft::HandleAppendResponse(const pb::Message& message) {
  Progress* progress = progress_->Find(message.from());
  if (progress == nullptr) return;
  progress->recent_active = true;
  if (message.reject()) {
    Index next_probe = message.reject_hint();
    if (message.reject_hint_term() > 0) {
      next_probe =
          log_->FindConflictByTerm(message.reject_hint(), message.reject_hint_term()).first;
    }
    if (progress->MaybeDecreaseTo(message.index(), next_probe)) {
      STEAD_LOG(logger_, Debug) << "term=" << term_ << " " << message.from() << " rejected index "
                                << message.index() << "; now " << progress->DebugString();
      if (progress->state == ProgressState::kReplicate) progress->BecomeProbe();
      SendAppend(message.from(), /*send_if_empty=*/false);
    }
    return;
  }
  if (message.index() > log_->LastIndex()) {
    // Nobody can hold entries this leader never wrote in its term: a forged or corrupted
    // acknowledgement. Counting it would break the commit rule's input.
    STEAD_LOG(logger_, Warning) << "term=" << term_ << " " << message.from()
                                << " acknowledged index " << message.index()
                                << " beyond last index " << log_->LastIndex() << "; ignored";
    return;
  }
  const bool was_paused = progress->IsPaused();
  // A probe answered at the current match (the follower was already up to date, e.g.
  // after ReportUnreachable) also proves where the logs agree: resume replicating.
  const bool probe_confirmed =
      progress->state == ProgressState::kProbe && progress->match == message.index();
  if (!progress->MaybeUpdate(message.index()) && !probe_confirmed) return;
  switch (progress->state) {
    case ProgressState::kProbe:
      progress->BecomeReplicate();
      break;
    case ProgressState::kSnapshot:
      if (progress->match >= progress->pending_snapshot) {
        progress->BecomeProbe();
        progress->BecomeReplicate();
      }
      break;
    case ProgressState::kReplicate:
      progress->inflights.FreeLE(message.index());
      break;
  }
  if (MaybeCommit()) {
    BroadcastAppend();
    // A committed membership change may have removed the leader or this member.
    if (role_ != Role::kLeader) return;
    progress = progress_->Find(message.from());
    if (progress == nullptr) return;
  } else if (was_paused) {
    // The follower may have missed the commit index while paused (a probe answered
    // late): an APPEND, empty if need be, carries it.
    SendAppend(message.from(), /*send_if_empty=*/true);
  }
  // Refill the window: a lagging follower gets up to max_inflight_messages APPENDs of
  // max_message_bytes each per answer, never an unbounded burst.
  for (size_t sent = 0; sent < config_.max_inflight_messages; ++sent) {
    if (!SendAppend(message.from(), /*send_if_empty=*/false)) break;
  }
  if (message.from() == lead_transferee_ && progress->match == log_->LastIndex()) {
    SendTimeoutNow(message.from());
  }
}

void Raft::HandleHeartbeatResponse(const pb::Message& message) {
  Progress* progress = progress_->Find(message.from());
  if (progress == nullptr) return;
  progress->recent_active = true;
  progress->probe_sent = false;
  // A full window whose acknowledgements were lost would stall forever; let one more
  // APPEND out per heartbeat (a mismatch then sends the follower back to probing).
  if (progress->state == ProgressState::kReplicate && progress->inflights.Full()) {
    progress->inflights.FreeFirstOne();
  }
  // Also when everything was sent optimistically: an empty APPEND then probes whether the
  // follower really has it (it may have restarted and lost the messages in flight).
  // A member in probe state is probed even when up to date, so it returns to replicating.
  if (progress->match < log_->LastIndex() || progress->state == ProgressState::kProbe) {
    SendAppend(message.from(), /*send_if_empty=*/true);
  }
  if (!message.context().empty()) {
    HandleLeaseAck(message);
    HandleReadAck(message);
  }
}

}  // namespace stead::raft
