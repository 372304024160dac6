// BackupService: the requests a member serves from its own state machine, off the
// network threads, because each may read the whole state: the content hash
// (pb::HashRequest, `steadctl endpoint hash`).
//
// Hashes run one at a time on the service's worker thread, in arrival order; at most
// max_queued_hashes wait, more are refused with RESOURCE_EXHAUSTED, so a burst of
// requests cannot pile up work.
//
// Thread-safety: every method may be called from any thread.
#ifndef STEAD_SERVER_BACKUP_SERVICE_H_
#define STEAD_SERVER_BACKUP_SERVICE_H_

#include <cstddef>
#include <deque>
#include <functional>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "base/log.h"
#include "base/mutex.h"
#include "proto/kv.pb.h"
#include "storage/state_machine.h"

namespace stead::server {

struct BackupServiceOptions {
  // Hash requests waiting for the worker; more are refused. Default: 4.
  size_t max_queued_hashes = 4;
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
  // requests are answered UNAVAILABLE.
  void Attach(const storage::StateMachine* state);

  // Computes the content hash of the state at its current applied index and answers
  // `done` (on the worker thread, or at once on the caller's when refused) with a
  // response whose `hash` is set. DEADLINE_EXCEEDED if `deadline` passed before the
  // work started; RESOURCE_EXHAUSTED when too many wait; UNAVAILABLE when stopped.
  void Hash(absl::Time deadline, BackupDone done);

  // Answers waiting requests UNAVAILABLE, waits for the one running, and stops the
  // worker; the state machine is not touched afterwards. Idempotent.
  void Stop();

 private:
  struct HashJob {
    absl::Time deadline;
    BackupDone done;
  };

  void Run();
  absl::StatusOr<pb::ClientResponse> ComputeHash(const storage::StateMachine& state) const;

  const BackupServiceOptions options_;
  const Logger logger_;
  Mutex mu_;
  CondVar wake_;
  const storage::StateMachine* state_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::deque<HashJob> hashes_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread worker_;
};

}  // namespace stead::server

#endif  // STEAD_SERVER_BACKUP_SERVICE_H_
