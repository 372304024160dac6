#include "raft/progress.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "base/check.h"

namespace stead::raft {

Progress::Progress(Index next_index, size_t max_inflight_messages, bool learner)
    : next(next_index), is_learner(learner), inflights(max_inflight_messages, 0) {
  STEAD_CHECK_GE(next, 1u);
}

void Progress::BecomeProbe() {
  // After a snapshot, the member holds at least the snapshot: resume right after it.
  if (state == ProgressState::kSnapshot) {
    next = std::max(match + 1, pending_snapshot + 1);
  } else {
    next = match + 1;
  }
  state = ProgressState::kProbe;
  pending_snapshot = 0;
  probe_sent = false;
  inflights.Reset();
}

void Progress::BecomeReplicate() {
  state = ProgressState::kReplicate;
  next = match + 1;
  pending_snapshot = 0;
  probe_sent = false;
  inflights.Reset();
}

void Progress::BecomeSnapshot(Index snapshot_index) {
  STEAD_CHECK_GT(snapshot_index, 0u);
  state = ProgressState::kSnapshot;
  pending_snapshot = snapshot_index;
  probe_sent = false;
  inflights.Reset();
}

bool Progress::MaybeUpdate(Index index) {
  bool updated = false;
  if (match < index) {
    match = index;
    updated = true;
    probe_sent = false;
  }
  next = std::max(next, index + 1);
  return updated;
}

void Progress::SentEntries(Index last_index, uint64_t bytes) {
  switch (state) {
    case ProgressState::kReplicate:
      if (last_index >= next) {
        inflights.Add(last_index, bytes);
        next = last_index + 1;
      }
      break;
    case ProgressState::kProbe:
      probe_sent = true;
      break;
    case ProgressState::kSnapshot:
      STEAD_CHECK(false) << "sending entries to a member in snapshot state";
  }
}

bool Progress::MaybeDecreaseTo(Index rejected, Index hint_index) {
  if (state == ProgressState::kReplicate) {
    // A rejection at or below match is a reordered answer to an older APPEND.
    if (rejected <= match) return false;
    // Entries after match were sent optimistically; go back to just after match and
    // let the caller switch to probing.
    next = match + 1;
    return true;
  }
  // Probing sends one APPEND at a time, preceded by entry next - 1; any other rejection
  // answers an older message.
  if (next == 0 || next - 1 != rejected) return false;
  next = std::max(std::min(rejected, hint_index + 1), match + 1);
  probe_sent = false;
  return true;
}

bool Progress::IsPaused() const {
  switch (state) {
    case ProgressState::kProbe:
      return probe_sent;
    case ProgressState::kReplicate:
      return inflights.Full();
    case ProgressState::kSnapshot:
      return true;
  }
  return true;
}

std::string Progress::DebugString() const {
  return absl::StrCat(
      ProgressStateName(state), " match=", match, " next=", next, is_learner ? " learner" : "",
      state == ProgressState::kSnapshot ? absl::StrCat(" pending_snapshot=", pending_snapshot) : "",
      " inflight=", inflights.count());
}

ProgressTracker::ProgressTracker(size_t max_inflight_messages)
    : max_inflight_messages_(max_inflight_messages) {}

void ProgressTracker::ApplyConf(const pb::ConfState& conf_state, Index last_index) {
  voters_.assign(conf_state.voters().begin(), conf_state.voters().end());
  learners_.assign(conf_state.learners().begin(), conf_state.learners().end());
  std::sort(voters_.begin(), voters_.end());
  std::sort(learners_.begin(), learners_.end());
  // Update in place: pointers to the progress of members that stay remain valid.
  for (auto it = progress_.begin(); it != progress_.end();) {
    const bool voter = std::binary_search(voters_.begin(), voters_.end(), it->first);
    const bool learner = std::binary_search(learners_.begin(), learners_.end(), it->first);
    if (!voter && !learner) {
      it = progress_.erase(it);
    } else {
      it->second.is_learner = learner;
      ++it;
    }
  }
  for (NodeId id : voters_) {
    progress_.try_emplace(id, last_index + 1, max_inflight_messages_, false);
  }
  for (NodeId id : learners_) {
    progress_.try_emplace(id, last_index + 1, max_inflight_messages_, true);
  }
}

void ProgressTracker::ResetAll(Index last_index) {
  for (auto& [id, progress] : progress_) {
    progress = Progress(last_index + 1, max_inflight_messages_, progress.is_learner);
  }
}

bool ProgressTracker::IsVoter(NodeId id) const {
  return std::binary_search(voters_.begin(), voters_.end(), id);
}

Progress* ProgressTracker::Find(NodeId id) {
  auto it = progress_.find(id);
  return it == progress_.end() ? nullptr : &it->second;
}

const Progress* ProgressTracker::Find(NodeId id) const {
  auto it = progress_.find(id);
  return it == progress_.end() ? nullptr : &it->second;
}

Index ProgressTracker::QuorumCommitted() const {
  std::vector<Index> match_indexes;
  match_indexes.reserve(voters_.size());
  for (NodeId id : voters_) match_indexes.push_back(progress_.at(id).match);
  return QuorumCommittedIndex(std::move(match_indexes));
}

bool ProgressTracker::QuorumActive(NodeId self) const {
  if (voters_.empty()) return false;
  size_t active = 0;
  for (NodeId id : voters_) {
    if (id == self || progress_.at(id).recent_active) ++active;
  }
  return active >= MajoritySize(voters_.size());
}

void ProgressTracker::ClearRecentActive() {
  for (auto& [id, progress] : progress_) {
    progress.active_last_round = progress.recent_active;
    progress.recent_active = false;
  }
}

VoteResult ProgressTracker::RecordVote(NodeId id, bool granted) {
  votes_.emplace(id, granted);
  return TallyVotes();
}

VoteResult ProgressTracker::TallyVotes() const { return raft::TallyVotes(voters_, votes_); }

}  // namespace stead::raft
