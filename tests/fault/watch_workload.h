// The watch workload: watchers of a prefix that run across the faults and record every
// event they are delivered (History::watches), for CheckWatches (checkers.h).
//
// Each watcher has a stead::Client of its own that dials a different member first, and
// opens its watch at a revision read before the workload starts. The client resumes a
// watch across lost connections and stopped members by itself; a watch that ends
// anyway (Watcher::status() not ok) closes its record at the revision through which it
// had delivered everything and is opened again from the next revision as a new record,
// so no event is lost or counted twice between the two. A watch that cannot go on
// (OutOfRange: its next revision was compacted; InvalidArgument) stays closed.
//
// At the end, a fence write into the prefix (Workload::FinishWatches) tells when a
// watcher has everything: once it has delivered the fence, every earlier revision is in
// its records.
//
// Thread-safety: WatchRecorder may be called from any thread. WatchSet's Start,
// WaitSeen and Stop from one controlling thread.
#ifndef STEAD_TESTS_FAULT_WATCH_WORKLOAD_H_
#define STEAD_TESTS_FAULT_WATCH_WORKLOAD_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "base/mutex.h"
#include "stead/client.h"
#include "tests/fault/history.h"

namespace stead::fault {

// One watcher's records: the current one grows with each batch of events; Reopen
// closes it and begins the next.
class WatchRecorder {
 public:
  WatchRecorder(uint32_t watcher, std::string prefix, int64_t start_revision);

  // A batch from the watch callback: appended to the current record as delivered.
  void OnEvents(const std::vector<WatchEvent>& events, int64_t progress_revision);
  // The watch ended, having delivered every change through `progress_revision`
  // (Watcher::progress_revision() once it ended; lower values, such as 0 before any
  // answer, change nothing). Closes the current record and begins a new one at the
  // next revision, which it returns: the revision to open the next watch from.
  int64_t Reopen(int64_t progress_revision);
  // The revision through which the recorded events are complete.
  int64_t progress() const;
  // Whether the current record holds a put of `value` to `key`.
  bool Saw(const std::string& key, const std::string& value) const;
  // Every record, the current one last (closed at progress()).
  std::vector<WatchRecord> Records() const;

 private:
  mutable Mutex mu_;
  std::vector<WatchRecord> closed_ ABSL_GUARDED_BY(mu_);
  WatchRecord current_ ABSL_GUARDED_BY(mu_);
};

struct WatchSetOptions {
  std::vector<std::string> endpoints = {};  // "ip:port" of the members. Required.
  int watchers = 3;
  std::string prefix = "r";
  absl::Duration connect_timeout = absl::Milliseconds(500);
};

class WatchSet {
 public:
  explicit WatchSet(WatchSetOptions options);
  WatchSet(const WatchSet&) = delete;
  WatchSet& operator=(const WatchSet&) = delete;
  ~WatchSet();

  // Opens every watcher at `start_revision` and starts the thread that reopens ended
  // watches. InvalidArgument from the client's options.
  absl::Status Start(int64_t start_revision);
  // Waits until every watcher still open has delivered a put of `value` to `key`; false
  // if some had not by `timeout` (their records are then shorter).
  bool WaitSeen(const std::string& key, const std::string& value, absl::Duration timeout);
  // Cancels the watches and returns every record. Idempotent (later calls return none).
  std::vector<WatchRecord> Stop();

 private:
  struct Member;
  void Monitor();

  const WatchSetOptions options_;
  std::vector<std::unique_ptr<Member>> members_;
  std::thread monitor_;
  std::atomic<bool> stop_{false};
};

}  // namespace stead::fault

#endif  // STEAD_TESTS_FAULT_WATCH_WORKLOAD_H_
