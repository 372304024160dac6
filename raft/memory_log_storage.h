// An in-memory LogStorage for tests and the simulator.
//
// It holds what a real node would have made durable: the hard state, the latest
// snapshot metadata and the entries after it. The owner plays the runtime: it applies
// each Ready's hard_state / snapshot / entries with the mutators below, then calls
// Raft::OnPersisted. A crash in a simulation is modelled by keeping this object and
// dropping the Raft object (anything not written here is lost).
//
// Thread-safety: thread-safe; every method takes an internal mutex.
#ifndef STEAD_RAFT_MEMORY_LOG_STORAGE_H_
#define STEAD_RAFT_MEMORY_LOG_STORAGE_H_

#include <cstdint>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "proto/raft.pb.h"
#include "raft/log_storage.h"
#include "raft/types.h"

namespace stead::raft {

class MemoryLogStorage final : public LogStorage {
 public:
  MemoryLogStorage() = default;
  MemoryLogStorage(const MemoryLogStorage&) = delete;
  MemoryLogStorage& operator=(const MemoryLogStorage&) = delete;

  // LogStorage.
  PersistedState InitialState() const override;
  Index FirstIndex() const override;
  Index LastIndex() const override;
  absl::StatusOr<Term> TermAt(Index index) const override;
  absl::StatusOr<std::vector<pb::Entry>> Entries(Index low, Index high,
                                                 uint64_t max_bytes) const override;
  pb::SnapshotMetadata LatestSnapshot() const override;

  // Replaces the persisted hard state.
  void SetHardState(const pb::HardState& hard_state);
  pb::HardState hard_state() const;

  // Appends `entries` (consecutive indexes). If entries[0].index <= LastIndex(), the
  // stored suffix from there is dropped first. Entries at or below the snapshot index
  // are skipped. Errors: InvalidArgument when the entries are not consecutive or would
  // leave a gap after LastIndex().
  absl::Status Append(const std::vector<pb::Entry>& entries);

  // Installs a received snapshot: every entry is dropped (the snapshot replaces the log,
  // even entries after its index, since they may conflict) and `metadata` becomes the
  // latest snapshot. Errors: FailedPrecondition when it is older than the current one.
  absl::Status ApplySnapshot(const pb::SnapshotMetadata& metadata);

  // Log compaction after a local checkpoint at `index` (which must be persisted):
  // drops entries <= index and records snapshot metadata {index, TermAt(index),
  // conf_state}. Errors: OutOfRange when index is not in [FirstIndex(), LastIndex()];
  // compacting at or below the current snapshot is a no-op.
  absl::Status Compact(Index index, const pb::ConfState& conf_state);

  // Every stored entry, for invariant checks in tests.
  std::vector<pb::Entry> AllEntries() const;

 private:
  Index LastIndexLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  pb::HardState hard_state_ ABSL_GUARDED_BY(mu_);
  pb::SnapshotMetadata snapshot_ ABSL_GUARDED_BY(mu_);
  // entries_[i] has index snapshot_.index() + 1 + i.
  std::vector<pb::Entry> entries_ ABSL_GUARDED_BY(mu_);
};

}  // namespace stead::raft

#endif  // STEAD_RAFT_MEMORY_LOG_STORAGE_H_
