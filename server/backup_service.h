// BackupService: the requests a member serves from its own state machine, off the
// network threads, because each may read the whole state: the content hash
// (pb::HashRequest, `steadctl endpoint hash`) and the snapshot save stream
// (pb::SnapshotSaveRequest, `steadctl snapshot save`).
//
// Hashes run one at a time on the service's worker thread, in arrival order; at most
// max_queued_hashes wait, more are refused with RESOURCE_EXHAUSTED, so a burst of
// requests cannot pile up work.
//
// A save runs on a thread of its own, one at a time per member (another is refused
// with RESOURCE_EXHAUSTED): it creates a checkpoint under options.checkpoint_dir (a
// unique name; removed afterwards, and every leftover of a crash is removed by Attach),
// reads it with a storage::CheckpointReader and sends each chunk only while the
// connection holds at most max_unsent_bytes not yet written. A client that reads slowly
// therefore slows the save down; the member never buffers more than about
// max_unsent_bytes + one chunk of it. The connection's write queue has no wake-up for
// "drained", so a paused save looks again every few milliseconds.
//
// Thread-safety: every method may be called from any thread.
#ifndef STEAD_SERVER_BACKUP_SERVICE_H_
#define STEAD_SERVER_BACKUP_SERVICE_H_

#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "base/log.h"
#include "base/mutex.h"
#include "proto/kv.pb.h"
#include "server/watch_hub.h"
#include "storage/restore.h"
#include "storage/state_machine.h"

namespace stead::server {

struct BackupServiceOptions {
  // Hash requests waiting for the worker; more are refused. Default: 4.
  size_t max_queued_hashes = 4;
  // Keyspaces the content hash leaves out. Default: the member records
  // (storage::kMembersKeyspace; see storage/content_hash.h).
  std::vector<std::string> unhashed_keyspaces = {storage::kMembersKeyspace};
  // Where saves build their checkpoints: <data-dir>/checkpoints/backup, on the data
  // volume so that the checkpoint hard-links the database files. Emptied by Attach.
  // Required for saves (empty: saves are refused as UNIMPLEMENTED).
  std::string checkpoint_dir;
  // Data bytes per chunk when the request does not say; requests may ask for
  // 1..kMaxSnapshotChunkBytes. Default: 1 MiB.
  size_t default_chunk_bytes = 1u << 20;
  // A save sends its next chunk only while its connection holds at most this many
  // bytes not yet written. Default: 8 MiB.
  size_t max_unsent_bytes = 8u << 20;
  // A save whose connection writes nothing for this long is abandoned (the client
  // stopped reading). Default: 60 s.
  absl::Duration stall_timeout = absl::Seconds(60);
};

// Receives a response body (request_id and header are the caller's) or the error.
using BackupDone = std::function<void(absl::StatusOr<pb::ClientResponse>)>;

class BackupService {
 public:
  BackupService(BackupServiceOptions options, Logger logger);
  BackupService(const BackupService&) = delete;
  BackupService& operator=(const BackupService&) = delete;
  ~BackupService();  // Stop()

  // Serves from `state`, which must outlive the service or a later Stop(). Before it,
  // requests are answered UNAVAILABLE. Removes what options.checkpoint_dir holds
  // (checkpoints of saves interrupted by a crash).
  void Attach(storage::StateMachine* state);

  // Computes the content hash of the state at its current applied index and answers
  // `done` (on the worker thread, or at once on the caller's when refused) with a
  // response whose `hash` is set. DEADLINE_EXCEEDED if `deadline` passed before the
  // work started; RESOURCE_EXHAUSTED when too many wait; UNAVAILABLE when stopped.
  void Hash(absl::Time deadline, BackupDone done);

  // Starts streaming a checkpoint to `stream` as the responses of request
  // `request_id` (see pb::SnapshotSaveRequest). A refused or failed save gets one
  // response with the error: RESOURCE_EXHAUSTED (a save runs already), UNAVAILABLE (not
  // serving yet, stopping), INVALID_ARGUMENT (chunk size), or the storage error.
  void OpenSnapshotSave(std::shared_ptr<WatchStream> stream, uint64_t request_id,
                        const pb::SnapshotSaveRequest& request);
  // The connection of `stream` closed: its save, if any, stops without another word.
  void CloseStream(const WatchStream* stream);

  // Answers waiting requests UNAVAILABLE, cancels a running save, waits for both
  // threads, and stops; the state machine is not touched afterwards. Idempotent.
  void Stop();

 private:
  // One save in progress. `cancelled` is guarded by the service's mu_.
  struct Save {
    std::shared_ptr<WatchStream> stream;
    uint64_t request_id = 0;
    size_t chunk_bytes = 0;
    bool cancelled = false;
  };

  struct HashJob {
    absl::Time deadline;
    BackupDone done;
  };

  void Run();
  absl::StatusOr<pb::ClientResponse> ComputeHash(const storage::StateMachine& state) const;
  void RunSave(std::shared_ptr<Save> save, storage::StateMachine* state);
  absl::Status StreamSave(Save& save, storage::StateMachine& state, const std::string& dir);
  // Waits until `save`'s connection has room for another chunk. Cancelled when the
  // connection closed, Unavailable when stopping, DeadlineExceeded after stall_timeout
  // without progress.
  absl::Status WaitForRoom(const Save& save);
  void SendError(WatchStream& stream, uint64_t request_id, const absl::Status& status) const;

  const BackupServiceOptions options_;
  const Logger logger_;
  Mutex mu_;
  CondVar wake_;
  // Saves create checkpoints (the state machine serialises that with its applier);
  // hashes only read.
  storage::StateMachine* state_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::deque<HashJob> hashes_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread worker_;
  CondVar save_wake_;  // a save's cancellation or Stop
  std::shared_ptr<Save> save_ ABSL_GUARDED_BY(mu_);  // the running save, if any
  std::thread save_thread_ ABSL_GUARDED_BY(mu_);     // the latest save's thread
};

}  // namespace stead::server

#endif  // STEAD_SERVER_BACKUP_SERVICE_H_
