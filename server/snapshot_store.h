// SnapshotStore: the checkpoints one member keeps for Raft snapshots, on its data
// volume (so checkpoints hard-link the live SST files):
//
//   <data-dir>/checkpoints/raft/      checkpoints this member took to compact its log;
//                                     what it sends a follower that needs compacted
//                                     entries
//   <data-dir>/checkpoints/incoming/  the transfer a leader is streaming here; kept
//                                     across a broken connection or a restart, so an
//                                     offer of the same checkpoint resumes it
//   <data-dir>/checkpoints/received/  transfers complete and verified, until Raft
//                                     installs one (StateMachine::ReplaceWithCheckpoint)
//
// A checkpoint being sent or installed is pinned: nothing removes it meanwhile.
//
// A full data volume (ResourceExhausted) ends a transfer cleanly: the partial files are
// removed at once, so the rest of the member (its own database) keeps its space, and
// only the manifest stays in incoming/, as the record that this member waits for that
// snapshot (OfferedIndex, across a restart too). The error is logged with what to do;
// the leader offers the snapshot again after a backoff (RaftNode).
//
// Thread-safety: every method may be called from any thread.
#ifndef STEAD_SERVER_SNAPSHOT_STORE_H_
#define STEAD_SERVER_SNAPSHOT_STORE_H_

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "base/log.h"
#include "base/mutex.h"
#include "proto/snapshot.pb.h"
#include "raft/types.h"
#include "server/peer_transport.h"
#include "storage/checkpoint.h"
#include "storage/checkpoint_stream.h"
#include "storage/state_machine.h"

namespace stead::server {

class SnapshotStore final : public SnapshotSink {
 public:
  // Holds a checkpoint in place while it is sent or installed; its path.
  using Pin = std::shared_ptr<const std::string>;

  // Creates the directories if missing and removes leftovers of an interrupted
  // checkpoint (*.partial), and the checkpoints in received/: Raft hands a received
  // snapshot to the state machine in the process that received it, or never (the
  // leader offers it again), so after a restart they only take space.
  static absl::StatusOr<std::unique_ptr<SnapshotStore>> Open(const std::string& data_dir,
                                                             Logger logger);
  ~SnapshotStore() override;
  SnapshotStore(const SnapshotStore&) = delete;
  SnapshotStore& operator=(const SnapshotStore&) = delete;

  // --- checkpoints this member takes ---
  // A checkpoint of `state`'s applied state in raft/, named after the index and term
  // its manifest holds (applies may go on while it is taken). Errors as
  // StateMachine::CreateCheckpoint; AlreadyExists when one of that state exists.
  absl::StatusOr<pb::SnapshotManifest> Take(storage::StateMachine& state);
  // The checkpoints in raft/, oldest first.
  absl::StatusOr<std::vector<storage::CheckpointInfo>> List() const;
  // Removes the checkpoints in raft/ below `index`, except pinned ones.
  absl::Status RemoveBelow(raft::Index index);
  // The checkpoint of `snapshot` (index and term) in raft/, pinned. NotFound if none.
  absl::StatusOr<Pin> PinTaken(const pb::SnapshotMetadata& snapshot);

  // --- checkpoints received from a leader (SnapshotSink) ---
  absl::StatusOr<Transfer> BeginTransfer(const pb::SnapshotMetadata& snapshot,
                                         uint32_t manifest_crc32c) override;
  absl::Status WriteChunk(uint64_t transfer, const pb::SnapshotChunk& chunk,
                          bool* complete) override;
  absl::Status FinishTransfer(uint64_t transfer) override;
  // The index of the newest snapshot a leader offered this member (or whose transfer
  // incoming/ holds, after a restart); 0 if none. While it is above the applied index
  // the member waits for that snapshot: its own state is not current.
  raft::Index OfferedIndex() const { return offered_index_.load(); }
  // The verified checkpoint received for `snapshot`, pinned. NotFound if none.
  absl::StatusOr<Pin> PinReceived(const pb::SnapshotMetadata& snapshot);
  // Removes the received checkpoints up to `index` (installed or superseded), except
  // pinned ones.
  absl::Status RemoveReceivedThrough(raft::Index index);
  // After the received checkpoint of `snapshot` was installed: it becomes one of this
  // member's own (what it sends if it leads later), and older received ones go.
  absl::Status KeepReceived(const pb::SnapshotMetadata& snapshot);

  const std::string& taken_dir() const { return taken_dir_; }
  const std::string& received_dir() const { return received_dir_; }

 private:
  SnapshotStore(std::string root, Logger logger);
  absl::StatusOr<Pin> PinPath(const std::string& path);
  bool IsPinned(const std::string& path) const;
  // Removes the checkpoints under `parent` whose index `remove` selects, unless pinned.
  template <typename Predicate>
  absl::Status RemoveUnpinned(const std::string& parent, Predicate remove);
  // After `status`, an error of the transfer in progress: if the volume is full, ends
  // the transfer and removes its partial files (see the top of this file). Returns
  // `status`.
  absl::Status EndTransferIfVolumeFull(absl::Status status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string root_;
  const std::string taken_dir_;
  const std::string incoming_dir_;
  const std::string received_dir_;
  const Logger logger_;

  // Shared with the pins, which may outlive the store (handlers destroyed late).
  struct PinTable {
    Mutex mu;
    std::map<std::string, int> holders ABSL_GUARDED_BY(mu);  // path -> pins
  };
  const std::shared_ptr<PinTable> pins_ = std::make_shared<PinTable>();

  mutable Mutex mu_;
  // The transfer in progress: a newer offer supersedes it.
  uint64_t transfer_ ABSL_GUARDED_BY(mu_) = 0;
  pb::SnapshotMetadata transfer_snapshot_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<storage::CheckpointWriter> writer_ ABSL_GUARDED_BY(mu_);
  // See OfferedIndex(); atomic, so the raft strand reads it without waiting for mu_,
  // which is held across file I/O.
  std::atomic<raft::Index> offered_index_{0};
  // Serialises Take and RemoveBelow (CreateCheckpoint and removal in one parent).
  Mutex taken_mu_;
};

}  // namespace stead::server

#endif  // STEAD_SERVER_SNAPSHOT_STORE_H_
