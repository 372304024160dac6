// The Raft log as the core sees it: the persisted log (read through LogStorage) plus
// the "unstable" suffix the core has appended but the runtime has not yet reported
// durable, plus a received snapshot not yet reported durable.
//
//   storage:   [FirstIndex() ............ unstable_offset_ - 1]
//   unstable:                              [unstable_offset_ ..... LastIndex()]
//
// Entries below unstable_offset_ are read from storage; storage may still hold a stale
// suffix at or above unstable_offset_ (a truncation handed out but not yet persisted),
// which is never read. While a received snapshot is pending, storage is not read at all:
// the log is the snapshot followed by the unstable entries.
//
// Invariants: committed_ <= LastIndex(); applied_ <= applying_ <= committed_; applying_
// never passes the persisted prefix; entries handed out (index < unsent_from_) are the
// only ones StableTo() can drop.
//
// Not thread-safe.
#ifndef STEAD_RAFT_RAFT_LOG_H_
#define STEAD_RAFT_RAFT_LOG_H_

#include <cstdint>
#include <deque>
#include <optional>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "base/log.h"
#include "proto/raft.pb.h"
#include "raft/log_storage.h"
#include "raft/types.h"

namespace stead::raft {

class RaftLog {
 public:
  // Committed entries handed out per Ready are capped at this many bytes (at least one
  // entry is handed out).
  static constexpr uint64_t kMaxCommittedBytesPerReady = 16 << 20;

  // Starts from the persisted log: committed = hard_state.commit (raised to `applied`,
  // which only ever covers committed entries), applied = `applied` (raised to the
  // snapshot index). Errors: DataLoss when commit or applied is beyond the log.
  static absl::StatusOr<RaftLog> Open(const LogStorage* storage, const pb::HardState& hard_state,
                                      Index applied);

  Index FirstIndex() const;
  Index LastIndex() const;
  Term LastTerm() const;
  // Term of the entry at `index` for index in [FirstIndex() - 1, LastIndex()].
  // Errors: OutOfRange outside that range; storage errors.
  absl::StatusOr<Term> TermAt(Index index) const;
  // Whether the entry at `index` has `term` (false for any index that cannot be read).
  bool MatchTerm(Index index, Term term) const;
  // Raft §5.4.1: whether a log ending at (last_index, last_term) is at least as
  // up-to-date as this one.
  bool IsUpToDate(Index last_index, Term last_term) const;
  // Entries in [low, high), at most max_bytes (at least one). Errors: OutOfRange when low
  // is compacted or high > LastIndex() + 1; storage errors.
  absl::StatusOr<std::vector<pb::Entry>> Entries(Index low, Index high, uint64_t max_bytes) const;

  // The largest index j <= index with TermAt(j) <= term, and its term; used for fast
  // back-off on a rejected APPEND. Returns (j, 0) if j falls below the readable log.
  std::pair<Index, Term> FindConflictByTerm(Index index, Term term) const;

  struct AppendResult {
    // The index of the last entry the message vouches for: prev_index + entry count.
    Index last_new_index = 0;
    // The first index actually written (entries from there on replaced the log), or 0
    // when every entry was already present.
    Index first_written_index = 0;
  };
  // Follower side of APPEND: if the entry at prev_index has prev_term, appends the
  // entries that are new (truncating from the first conflicting one, never because an
  // entry is merely absent from the message). nullopt when the log does not match at
  // prev_index. Errors: Internal when an entry would overwrite a committed one.
  absl::StatusOr<std::optional<AppendResult>> MaybeAppend(Index prev_index, Term prev_term,
                                                          const std::vector<pb::Entry>& entries);
  // Appends entries (the leader's own), truncating any suffix from entries[0].index.
  // Precondition: entries[0].index is in (committed, LastIndex() + 1].
  void Append(const std::vector<pb::Entry>& entries);

  Index committed() const { return committed_; }
  // Raises committed_ to `index`. Precondition: index <= LastIndex().
  void CommitTo(Index index);

  // Installs a received snapshot: the log becomes the snapshot; committed is raised to
  // its index. Precondition: snapshot.index() > committed().
  void RestoreSnapshot(const pb::SnapshotMetadata& snapshot);
  const std::optional<pb::SnapshotMetadata>& pending_snapshot() const { return unstable_snapshot_; }

  // --- Ready support ---
  bool HasUnsentSnapshot() const { return unstable_snapshot_.has_value() && !snapshot_sent_; }
  // Marks the pending snapshot as handed out; the state machine will hold it.
  std::optional<pb::SnapshotMetadata> TakeUnsentSnapshot();
  bool HasUnsentEntries() const;
  std::vector<pb::Entry> TakeUnsentEntries();
  // The index through which entries are durable and may be applied.
  Index PersistedIndex() const;
  bool HasNextCommittedEntries() const;
  // Committed, persisted entries after applying_; advances applying_.
  absl::StatusOr<std::vector<pb::Entry>> TakeNextCommittedEntries();
  // The runtime reports entries through (index, term) durable; see Raft::OnPersisted.
  // Returns true when something was recognised as newly persisted.
  bool StableTo(Index index, Term term);
  // Precondition: index <= applying_.
  void AppliedTo(Index index);
  Index applied() const { return applied_; }
  Index applying() const { return applying_; }

 private:
  explicit RaftLog(const LogStorage* storage);
  // Replaces unstable entries from entries[0].index on.
  void TruncateAndAppend(const std::vector<pb::Entry>& entries);
  const pb::Entry* UnstableAt(Index index) const;
  void CheckInvariants() const;

  const LogStorage* storage_;
  std::deque<pb::Entry> unstable_;  // unstable_[i] has index unstable_offset_ + i
  Index unstable_offset_ = 1;
  // Unstable entries below this index were handed out in a Ready.
  Index unsent_from_ = 1;
  std::optional<pb::SnapshotMetadata> unstable_snapshot_;
  bool snapshot_sent_ = false;
  Index committed_ = 0;  // only increases
  Index applying_ = 0;   // handed out for applying; only increases
  Index applied_ = 0;    // reported applied; only increases
};

}  // namespace stead::raft

#endif  // STEAD_RAFT_RAFT_LOG_H_
