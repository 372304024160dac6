// The read-only view of the persisted Raft log that the core needs from outside.
//
// The core keeps entries it has handed out in a Ready but that were not yet reported
// persisted (OnPersisted) in memory itself, and reads everything older through this
// interface. storage/ implements it over the WAL; tests/sim fakes it in memory.
#ifndef STEAD_RAFT_LOG_STORAGE_H_
#define STEAD_RAFT_LOG_STORAGE_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "proto/raft.pb.h"
#include "raft/types.h"

namespace stead::raft {

// What a node starts from after a restart: all durable.
struct PersistedState {
  pb::HardState hard_state;
  // Membership as of the latest snapshot; conf changes in the log after it are
  // replayed by the core.
  pb::SnapshotMetadata snapshot;
};

// Thread-safety: implementations must be safe to call from the raft strand while the
// WAL writer appends on another thread (the core only reads indexes it was told are
// persisted, but the log's bounds may move underneath it).
class LogStorage {
 public:
  virtual ~LogStorage() = default;

  // The hard state and snapshot metadata persisted at the time of the call.
  virtual PersistedState InitialState() const = 0;

  // Index of the first entry still in the log: snapshot index + 1. Entries below it
  // were compacted into the snapshot.
  virtual Index FirstIndex() const = 0;
  // Index of the last persisted entry; FirstIndex() - 1 when the log is empty.
  virtual Index LastIndex() const = 0;

  // Term of the entry at `index`, for index in [FirstIndex() - 1, LastIndex()] (the
  // term of FirstIndex() - 1 is the snapshot's). Errors: OutOfRange when the index is
  // outside that range (compacted or not yet written); DataLoss or Internal when the
  // log cannot be read.
  virtual absl::StatusOr<Term> TermAt(Index index) const = 0;

  // Entries in [low, high), low >= FirstIndex(), high <= LastIndex() + 1, stopping
  // early once their total serialized size would exceed `max_bytes` (at least one
  // entry is returned when low < high). Errors as for TermAt.
  virtual absl::StatusOr<std::vector<pb::Entry>> Entries(Index low, Index high,
                                                         uint64_t max_bytes) const = 0;

  // Metadata of the latest snapshot (checkpoint) this node holds; what the leader
  // sends to a follower that needs compacted entries. Index 0 when there is none.
  virtual pb::SnapshotMetadata LatestSnapshot() const = 0;
};

}  // namespace stead::raft

#endif  // STEAD_RAFT_LOG_STORAGE_H_
