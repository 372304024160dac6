// WatchHub: serves watches (pb::WatchRequest) from the history the state machine keeps
// (the `history` keyspace, kv_apply.h).
//
// A watch is a cursor: the next revision to deliver. One thread wakes when the applier
// applied more (Notify) and moves every cursor forward by reading the recorded changes
// of the revisions it passes, keeping those of the watched keys. Delivery is exact by
// construction: every revision is read once per watch, in order, from the replicated
// history, so a watch sees every change exactly once whichever member serves it and
// however long it lags. Writes never wait for watchers: the hub only reads.
//
// Bounds: a watch whose connection holds more than max_unsent_bytes of unsent responses
// while it has more to deliver is cancelled (RESOURCE_EXHAUSTED, with the revision to
// resume from); a cursor that falls below the compacted history is cancelled
// (OUT_OF_RANGE). Either way the client can watch again from its progress revision.
//
// Thread-safety: every method may be called from any thread.
#ifndef STEAD_SERVER_WATCH_HUB_H_
#define STEAD_SERVER_WATCH_HUB_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "base/log.h"
#include "base/mutex.h"
#include "proto/kv.pb.h"
#include "storage/state_machine.h"

namespace stead::server {

struct WatchHubOptions {
  // Unsent response bytes a watch's connection may hold while the watch has more to
  // deliver; beyond it the watch is cancelled as too slow. Default: 8 MiB.
  size_t max_unsent_bytes = 8u << 20;
  // A response holds whole revisions, up to about this many bytes of events (one
  // revision larger than it goes alone). Default: 256 KiB.
  size_t max_response_bytes = 256u << 10;
  // While revisions pass that change none of its keys, a watch gets a progress
  // response (no events) this often. Default: 1 s.
  absl::Duration progress_interval = absl::Seconds(1);
  // Watches at once on this member; more are refused (RESOURCE_EXHAUSTED).
  // Default: 10,000.
  size_t max_watches = 10000;
};

// Where a watch's responses go: the client connection that opened it.
class WatchStream {
 public:
  virtual ~WatchStream() = default;
  // Queues `response` to be written; never blocks.
  virtual void Send(pb::ClientResponse response) = 0;
  // Bytes queued on the connection and not yet written.
  virtual size_t UnsentBytes() const = 0;
};

// The changes of history revisions [from, to] to keys of [key, range_end) (range
// rules of pb::RangeRequest), at most about `max_bytes` of events but always whole
// revisions and at least one. `through` is the last revision read (from - 1 if none).
struct HistoryPage {
  std::vector<pb::Event> events;
  int64_t through = 0;
};
// DataLoss when a revision of the range is missing or does not decode; the caller
// checks the range against KvMeta.compacted_revision first.
absl::StatusOr<HistoryPage> ReadHistory(const storage::StateSnapshot& snapshot,
                                        absl::string_view key, absl::string_view range_end,
                                        int64_t from, int64_t to, size_t max_bytes);

class WatchHub {
 public:
  WatchHub(WatchHubOptions options, Logger logger);
  WatchHub(const WatchHub&) = delete;
  WatchHub& operator=(const WatchHub&) = delete;
  ~WatchHub();  // Stop()

  // Serves watches from `state` (which must outlive the hub or a later Detach); until
  // then, watches wait.
  void Attach(const storage::StateMachine* state);
  // Stops reading `state` and cancels every watch (UNAVAILABLE); returns once the hub no
  // longer touches it.
  void Detach();

  // Opens watch `watch_id` (the request_id of the ClientRequest) for `stream`; its
  // responses carry that id. A refused watch gets one response with `canceled` and the
  // error (INVALID_ARGUMENT, OUT_OF_RANGE, RESOURCE_EXHAUSTED, ALREADY_EXISTS).
  void Open(std::shared_ptr<WatchStream> stream, uint64_t watch_id, pb::WatchRequest request);
  // Cancels a watch of `stream` at the client's request: its last response has
  // `canceled` and no error. NotFound if it is not open.
  absl::Status Cancel(const WatchStream* stream, uint64_t watch_id);
  // Forgets every watch of `stream` without a word (its connection is gone).
  void CloseStream(const WatchStream* stream);
  // The state machine applied more: move the cursors.
  void Notify();
  // Detach(), then no watch is accepted. Idempotent.
  void Stop();

  size_t watch_count() const;

 private:
  struct Watch;
  using WatchKey = std::pair<const WatchStream*, uint64_t>;

  void Run();
  // One pass over every watch; whether some watch has more to deliver at once.
  bool Round(const storage::StateMachine& state);
  // Advances one watch; whether it has more to deliver.
  bool Serve(Watch& watch, const storage::StateSnapshot& snapshot, const pb::KvMeta& meta);
  void Finish(Watch& watch, const absl::Status& status, int64_t oldest_revision = 0);
  void Remove(const Watch& watch);

  const WatchHubOptions options_;
  const Logger logger_;

  mutable Mutex mu_;
  CondVar wake_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool notified_ ABSL_GUARDED_BY(mu_) = false;
  bool in_round_ ABSL_GUARDED_BY(mu_) = false;
  CondVar round_done_;
  const storage::StateMachine* state_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::map<WatchKey, std::shared_ptr<Watch>> watches_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace stead::server

#endif  // STEAD_SERVER_WATCH_HUB_H_
