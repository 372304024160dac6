#include "raft/memory_log_storage.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/check.h"

namespace stead::raft {

PersistedState MemoryLogStorage::InitialState() const {
  absl::MutexLock lock(&mu_);
  PersistedState state;
  state.hard_state = hard_state_;
  state.snapshot = snapshot_;
  return state;
}

Index MemoryLogStorage::FirstIndex() const {
  absl::MutexLock lock(&mu_);
  return snapshot_.index() + 1;
}

Index MemoryLogStorage::LastIndex() const {
  absl::MutexLock lock(&mu_);
  return LastIndexLocked();
}

Index MemoryLogStorage::LastIndexLocked() const { return snapshot_.index() + entries_.size(); }

absl::StatusOr<Term> MemoryLogStorage::TermAt(Index index) const {
  absl::MutexLock lock(&mu_);
  if (index == snapshot_.index()) return snapshot_.term();
  if (index < snapshot_.index() || index > LastIndexLocked()) {
    return absl::OutOfRangeError(absl::StrCat("term of index ", index, " outside [",
                                              snapshot_.index(), ", ", LastIndexLocked(), "]"));
  }
  return entries_[index - snapshot_.index() - 1].term();
}

absl::StatusOr<std::vector<pb::Entry>> MemoryLogStorage::Entries(Index low, Index high,
                                                                 uint64_t max_bytes) const {
  absl::MutexLock lock(&mu_);
  if (low <= snapshot_.index() || high > LastIndexLocked() + 1 || low > high) {
    return absl::OutOfRangeError(absl::StrCat("entries [", low, ", ", high, ") outside [",
                                              snapshot_.index() + 1, ", ", LastIndexLocked() + 1,
                                              ")"));
  }
  std::vector<pb::Entry> out;
  uint64_t total_bytes = 0;
  for (Index index = low; index < high; ++index) {
    const pb::Entry& entry = entries_[index - snapshot_.index() - 1];
    const uint64_t entry_bytes = entry.ByteSizeLong();
    if (!out.empty() && total_bytes + entry_bytes > max_bytes) break;
    total_bytes += entry_bytes;
    out.push_back(entry);
  }
  return out;
}

pb::SnapshotMetadata MemoryLogStorage::LatestSnapshot() const {
  absl::MutexLock lock(&mu_);
  return snapshot_;
}

void MemoryLogStorage::SetHardState(const pb::HardState& hard_state) {
  absl::MutexLock lock(&mu_);
  hard_state_ = hard_state;
}

pb::HardState MemoryLogStorage::hard_state() const {
  absl::MutexLock lock(&mu_);
  return hard_state_;
}

absl::Status MemoryLogStorage::Append(const std::vector<pb::Entry>& entries) {
  if (entries.empty()) return absl::OkStatus();
  for (size_t i = 1; i < entries.size(); ++i) {
    if (entries[i].index() != entries[i - 1].index() + 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("entries not consecutive at index ", entries[i - 1].index()));
    }
  }
  absl::MutexLock lock(&mu_);
  const Index first = entries.front().index();
  if (first > LastIndexLocked() + 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("append at index ", first, " leaves a gap after ", LastIndexLocked()));
  }
  // Entries already covered by the snapshot are skipped: they are committed, so they
  // equal what the snapshot holds.
  size_t skip = 0;
  if (first <= snapshot_.index()) skip = static_cast<size_t>(snapshot_.index() + 1 - first);
  if (skip >= entries.size()) return absl::OkStatus();
  const Index start = first + skip;
  entries_.resize(static_cast<size_t>(start - snapshot_.index() - 1));
  entries_.insert(entries_.end(), entries.begin() + static_cast<std::ptrdiff_t>(skip),
                  entries.end());
  return absl::OkStatus();
}

absl::Status MemoryLogStorage::ApplySnapshot(const pb::SnapshotMetadata& metadata) {
  absl::MutexLock lock(&mu_);
  if (metadata.index() < snapshot_.index()) {
    return absl::FailedPreconditionError(absl::StrCat("snapshot at index ", metadata.index(),
                                                      " is older than the current one at ",
                                                      snapshot_.index()));
  }
  snapshot_ = metadata;
  entries_.clear();
  return absl::OkStatus();
}

absl::Status MemoryLogStorage::Compact(Index index, const pb::ConfState& conf_state) {
  absl::MutexLock lock(&mu_);
  if (index <= snapshot_.index()) return absl::OkStatus();
  if (index > LastIndexLocked()) {
    return absl::OutOfRangeError(
        absl::StrCat("compact at index ", index, " beyond last index ", LastIndexLocked()));
  }
  const size_t drop_count = static_cast<size_t>(index - snapshot_.index());
  const Term term = entries_[drop_count - 1].term();
  STEAD_CHECK_EQ(entries_[drop_count - 1].index(), index);
  entries_.erase(entries_.begin(), entries_.begin() + static_cast<std::ptrdiff_t>(drop_count));
  snapshot_.set_index(index);
  snapshot_.set_term(term);
  *snapshot_.mutable_conf_state() = conf_state;
  return absl::OkStatus();
}

std::vector<pb::Entry> MemoryLogStorage::AllEntries() const {
  absl::MutexLock lock(&mu_);
  return entries_;
}

}  // namespace stead::raft
