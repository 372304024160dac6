#include "raft/raft_log.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "base/check.h"
#include "base/status_macros.h"

namespace stead::raft {

RaftLog::RaftLog(const LogStorage* storage) : storage_(storage) {}

absl::StatusOr<RaftLog> RaftLog::Open(const LogStorage* storage, const pb::HardState& hard_state,
                                      Index applied) {
  RaftLog log(storage);
  const Index first = storage->FirstIndex();
  const Index last = storage->LastIndex();
  if (last + 1 < first) {
    return absl::DataLossError(
        absl::StrCat("log storage reports last index ", last, " below first index ", first));
  }
  log.unstable_offset_ = last + 1;
  log.unsent_from_ = last + 1;
  const Index snapshot_index = first - 1;
  if (hard_state.commit() > last) {
    return absl::DataLossError(absl::StrCat("persisted commit index ", hard_state.commit(),
                                            " is beyond the last log index ", last));
  }
  log.committed_ = std::max<Index>(hard_state.commit(), snapshot_index);
  if (applied > last) {
    return absl::DataLossError(
        absl::StrCat("applied index ", applied, " is beyond the last log index ", last));
  }
  // Only committed entries are ever applied, so an applied index above the persisted
  // commit (the state machine got ahead of the hard state before a crash) is committed.
  log.committed_ = std::max(log.committed_, applied);
  log.applied_ = std::max(applied, snapshot_index);
  log.applying_ = log.applied_;
  log.CheckInvariants();
  return log;
}

void RaftLog::CheckInvariants() const {
  STEAD_CHECK_LE(committed_, LastIndex());
  STEAD_CHECK_LE(applied_, applying_);
  STEAD_CHECK_LE(applying_, committed_);
  STEAD_CHECK_LE(unsent_from_, unstable_offset_ + unstable_.size());
  STEAD_CHECK_GE(unsent_from_, unstable_offset_);
  if (unstable_snapshot_) STEAD_CHECK_EQ(unstable_offset_, unstable_snapshot_->index() + 1);
}

Index RaftLog::FirstIndex() const {
  if (unstable_snapshot_) return unstable_snapshot_->index() + 1;
  return storage_->FirstIndex();
}

Index RaftLog::LastIndex() const { return unstable_offset_ + unstable_.size() - 1; }

Term RaftLog::LastTerm() const {
  absl::StatusOr<Term> term = TermAt(LastIndex());
  STEAD_CHECK_OK(term.status()) << "the last entry must be readable";
  return *term;
}

const pb::Entry* RaftLog::UnstableAt(Index index) const {
  if (index < unstable_offset_ || index >= unstable_offset_ + unstable_.size()) return nullptr;
  return &unstable_[static_cast<size_t>(index - unstable_offset_)];
}

absl::StatusOr<Term> RaftLog::TermAt(Index index) const {
  if (const pb::Entry* entry = UnstableAt(index)) return entry->term();
  if (index > LastIndex()) {
    return absl::OutOfRangeError(absl::StrCat("index ", index, " beyond last index ", LastIndex()));
  }
  if (unstable_snapshot_) {
    if (index == unstable_snapshot_->index()) return unstable_snapshot_->term();
    return absl::OutOfRangeError(
        absl::StrCat("index ", index, " is below the snapshot at ", unstable_snapshot_->index()));
  }
  return storage_->TermAt(index);
}

bool RaftLog::MatchTerm(Index index, Term term) const {
  absl::StatusOr<Term> actual = TermAt(index);
  return actual.ok() && *actual == term;
}

bool RaftLog::IsUpToDate(Index last_index, Term last_term) const {
  const Term my_last_term = LastTerm();
  return last_term > my_last_term || (last_term == my_last_term && last_index >= LastIndex());
}

absl::StatusOr<std::vector<pb::Entry>> RaftLog::Entries(Index low, Index high,
                                                        uint64_t max_bytes) const {
  if (low < FirstIndex() || high > LastIndex() + 1 || low > high) {
    return absl::OutOfRangeError(absl::StrCat("entries [", low, ", ", high, ") outside the log [",
                                              FirstIndex(), ", ", LastIndex() + 1, ")"));
  }
  std::vector<pb::Entry> out;
  if (low == high) return out;
  uint64_t total_bytes = 0;
  if (low < unstable_offset_) {
    const Index stored_high = std::min(high, unstable_offset_);
    STEAD_ASSIGN_OR_RETURN(out, storage_->Entries(low, stored_high, max_bytes));
    if (out.empty() || out.back().index() + 1 != stored_high) {
      return out;  // the byte limit was reached inside storage
    }
    for (const pb::Entry& entry : out) total_bytes += entry.ByteSizeLong();
  }
  for (Index index = std::max(low, unstable_offset_); index < high; ++index) {
    const pb::Entry* entry = UnstableAt(index);
    STEAD_CHECK(entry != nullptr) << "index=" << index;
    const uint64_t entry_bytes = entry->ByteSizeLong();
    if (!out.empty() && total_bytes + entry_bytes > max_bytes) break;
    total_bytes += entry_bytes;
    out.push_back(*entry);
  }
  return out;
}

std::pair<Index, Term> RaftLog::FindConflictByTerm(Index index, Term term) const {
  // Terms never decrease along the log, so the walk stops at the first term <= `term`.
  // It is bounded by the log length.
  for (Index j = std::min(index, LastIndex());; --j) {
    absl::StatusOr<Term> actual = TermAt(j);
    if (!actual.ok()) return {j, 0};
    if (*actual <= term || j == 0) return {j, *actual};
  }
}

absl::StatusOr<std::optional<RaftLog::AppendResult>> RaftLog::MaybeAppend(
    Index prev_index, Term prev_term, const std::vector<pb::Entry>& entries) {
  if (!MatchTerm(prev_index, prev_term)) return std::optional<AppendResult>();
  AppendResult result;
  result.last_new_index = prev_index + entries.size();
  // Raft §5.3: delete an existing entry only if it conflicts with a new one. A
  // duplicated or reordered APPEND whose entries we already hold must not truncate the
  // entries after them (LogCabin handleAppendEntries makes the same point).
  size_t first_new = entries.size();
  for (size_t i = 0; i < entries.size(); ++i) {
    if (!MatchTerm(entries[i].index(), entries[i].term())) {
      first_new = i;
      break;
    }
  }
  if (first_new < entries.size()) {
    const Index conflict = entries[first_new].index();
    if (conflict <= committed_) {
      return absl::InternalError(absl::StrCat("entry at index ", conflict,
                                              " conflicts with the committed prefix through ",
                                              committed_));
    }
    TruncateAndAppend(std::vector<pb::Entry>(
        entries.begin() + static_cast<std::ptrdiff_t>(first_new), entries.end()));
    result.first_written_index = conflict;
  }
  return std::optional<AppendResult>(result);
}

void RaftLog::Append(const std::vector<pb::Entry>& entries) {
  if (entries.empty()) return;
  STEAD_CHECK_GT(entries.front().index(), committed_);
  STEAD_CHECK_LE(entries.front().index(), LastIndex() + 1);
  TruncateAndAppend(entries);
}

void RaftLog::TruncateAndAppend(const std::vector<pb::Entry>& entries) {
  const Index first = entries.front().index();
  STEAD_CHECK_GT(first, committed_) << "never truncate committed entries";
  STEAD_CHECK_LE(first, LastIndex() + 1);
  if (first <= unstable_offset_) {
    // Conflicts reach into the persisted log: the whole unstable part is replaced and the
    // persisted suffix from `first` is truncated when this is handed out.
    unstable_.clear();
    unstable_offset_ = first;
  } else {
    unstable_.resize(static_cast<size_t>(first - unstable_offset_));
  }
  for (const pb::Entry& entry : entries) {
    STEAD_CHECK_EQ(entry.index(), LastIndex() + 1);
    unstable_.push_back(entry);
  }
  unsent_from_ = std::min(unsent_from_, first);
  CheckInvariants();
}

void RaftLog::CommitTo(Index index) {
  if (index <= committed_) return;
  STEAD_CHECK_LE(index, LastIndex()) << "commit beyond the log";
  committed_ = index;
}

void RaftLog::RestoreSnapshot(const pb::SnapshotMetadata& snapshot) {
  STEAD_CHECK_GT(snapshot.index(), committed_);
  unstable_.clear();
  unstable_offset_ = snapshot.index() + 1;
  unsent_from_ = unstable_offset_;
  unstable_snapshot_ = snapshot;
  snapshot_sent_ = false;
  committed_ = snapshot.index();
  CheckInvariants();
}

std::optional<pb::SnapshotMetadata> RaftLog::TakeUnsentSnapshot() {
  if (!HasUnsentSnapshot()) return std::nullopt;
  snapshot_sent_ = true;
  // The snapshot replaces the state machine: everything it covers counts as handed out
  // for applying (nothing before it is handed out again).
  applying_ = std::max(applying_, unstable_snapshot_->index());
  return unstable_snapshot_;
}

bool RaftLog::HasUnsentEntries() const { return unsent_from_ <= LastIndex(); }

std::vector<pb::Entry> RaftLog::TakeUnsentEntries() {
  std::vector<pb::Entry> out;
  for (Index index = unsent_from_; index <= LastIndex(); ++index) out.push_back(*UnstableAt(index));
  unsent_from_ = LastIndex() + 1;
  return out;
}

Index RaftLog::PersistedIndex() const {
  // While a snapshot is pending nothing after it is durable, and nothing before it may
  // be applied any more.
  if (unstable_snapshot_) return 0;
  return unstable_offset_ - 1;
}

bool RaftLog::HasNextCommittedEntries() const {
  return applying_ < std::min(committed_, PersistedIndex());
}

absl::StatusOr<std::vector<pb::Entry>> RaftLog::TakeNextCommittedEntries() {
  const Index high = std::min(committed_, PersistedIndex());
  if (applying_ >= high) return std::vector<pb::Entry>();
  STEAD_ASSIGN_OR_RETURN(std::vector<pb::Entry> entries,
                         Entries(applying_ + 1, high + 1, kMaxCommittedBytesPerReady));
  if (!entries.empty()) {
    STEAD_CHECK_EQ(entries.front().index(), applying_ + 1);
    applying_ = entries.back().index();
  }
  CheckInvariants();
  return entries;
}

bool RaftLog::StableTo(Index index, Term term) {
  if (unstable_snapshot_ && snapshot_sent_ && index == unstable_snapshot_->index() &&
      term == unstable_snapshot_->term()) {
    unstable_snapshot_.reset();
    snapshot_sent_ = false;
    applied_ = std::max(applied_, index);
    return true;
  }
  const pb::Entry* entry = UnstableAt(index);
  // A stale acknowledgement: the entry was truncated and replaced since, or was never
  // handed out.
  if (entry == nullptr || entry->term() != term || index >= unsent_from_) return false;
  if (unstable_snapshot_) {
    // Entries after the snapshot were handed out after it, so it is durable too.
    STEAD_CHECK(snapshot_sent_);
    applied_ = std::max(applied_, unstable_snapshot_->index());
    unstable_snapshot_.reset();
    snapshot_sent_ = false;
  }
  const size_t drop_count = static_cast<size_t>(index + 1 - unstable_offset_);
  unstable_.erase(unstable_.begin(), unstable_.begin() + static_cast<std::ptrdiff_t>(drop_count));
  unstable_offset_ = index + 1;
  CheckInvariants();
  return true;
}

void RaftLog::AppliedTo(Index index) {
  if (index <= applied_) return;
  STEAD_CHECK_LE(index, applying_) << "applied an entry that was not handed out";
  applied_ = index;
}

}  // namespace stead::raft
