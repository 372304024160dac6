#include "server/watch_hub.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/check.h"
#include "base/status_macros.h"
#include "server/kv_ops.h"
#include "server/kv_service.h"
#include "server/kv_store.h"

namespace stead::server {

// Revisions one history scan reads at most.
constexpr size_t kHistoryScanRevisions = 1000;

struct WatchHub::Watch {
  Watch(std::shared_ptr<WatchStream> stream_in, uint64_t id_in, pb::WatchRequest request_in)
      : stream(std::move(stream_in)), id(id_in), request(std::move(request_in)) {}

  // Sends unless the watch is finished; `last` finishes it.
  void Send(pb::ClientResponse response, bool last) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    if (finished) return;
    response.set_request_id(id);
    response.mutable_header()->set_revision(std::max<int64_t>(0, next - 1));
    if (last) {
      response.mutable_watch()->set_canceled(true);
      finished = true;
    }
    stream->Send(std::move(response));
    last_sent = absl::Now();
  }

  const std::shared_ptr<WatchStream> stream;
  const uint64_t id;
  const pb::WatchRequest request;

  Mutex mu;  // orders this watch's responses; taken before the hub's mu_, never after
  bool finished ABSL_GUARDED_BY(mu) = false;  // its last response is sent
  bool created ABSL_GUARDED_BY(mu) = false;   // the cursor is set
  // The next revision to deliver: start_revision until created.
  int64_t next ABSL_GUARDED_BY(mu) = 0;
  int64_t progress_sent ABSL_GUARDED_BY(mu) = 0;  // the last progress_revision sent
  absl::Time last_sent ABSL_GUARDED_BY(mu) = absl::InfinitePast();
};

absl::StatusOr<HistoryPage> ReadHistory(const storage::StateSnapshot& snapshot,
                                        absl::string_view key, absl::string_view range_end,
                                        int64_t from, int64_t to, size_t max_bytes) {
  STEAD_CHECK_GE(from, 1);
  HistoryPage page;
  page.through = from - 1;
  size_t bytes = 0;
  while (page.through < to && (bytes < max_bytes || page.through < from)) {
    storage::ScanOptions scan;
    scan.keyspace = kHistoryKeyspace;
    scan.start_key = HistoryKey(page.through + 1);
    scan.end_key = HistoryKey(to + 1);
    scan.limit = static_cast<size_t>(
        std::min<int64_t>(to - page.through, static_cast<int64_t>(kHistoryScanRevisions)));
    STEAD_ASSIGN_OR_RETURN(storage::ScanResult stored, snapshot.Scan(scan));
    if (stored.pairs.empty()) {
      return absl::DataLossError(
          absl::StrCat("the history of revision ", page.through + 1, " is missing"));
    }
    for (const storage::KeyValue& pair : stored.pairs) {
      STEAD_ASSIGN_OR_RETURN(const int64_t revision, ParseHistoryKey(pair.key));
      if (revision != page.through + 1) {
        return absl::DataLossError(
            absl::StrCat("the history of revision ", page.through + 1, " is missing"));
      }
      pb::RevisionEvents recorded;
      if (!recorded.ParseFromString(pair.value)) {
        return absl::DataLossError(
            absl::StrCat("the history of revision ", revision, " does not decode"));
      }
      for (pb::Event& event : *recorded.mutable_events()) {
        if (!InKeyRange(event.kv().key(), key, range_end)) continue;
        bytes += event.ByteSizeLong();
        page.events.push_back(std::move(event));
      }
      page.through = revision;
      if (bytes >= max_bytes) break;
    }
  }
  return page;
}

WatchHub::WatchHub(WatchHubOptions options, Logger logger)
    : options_(std::move(options)), logger_(std::move(logger)) {
  thread_ = std::thread([this] { Run(); });
}

WatchHub::~WatchHub() { Stop(); }

void WatchHub::Attach(const storage::StateMachine* state) {
  STEAD_CHECK(state != nullptr);
  MutexLock lock(&mu_);
  state_ = state;
  notified_ = true;
  wake_.Signal();
}

void WatchHub::Detach() {
  std::map<WatchKey, std::shared_ptr<Watch>> watches;
  {
    MutexLock lock(&mu_);
    state_ = nullptr;
    while (in_round_) round_done_.Wait(&mu_);
    watches.swap(watches_);
  }
  for (auto& [key, watch] : watches) {
    MutexLock lock(&watch->mu);
    Finish(*watch, absl::UnavailableError(absl::StrCat(
                       "this member stopped serving watches; watch again from revision ",
                       watch->next, ", here or on another member")));
  }
}

void WatchHub::Stop() {
  {
    MutexLock lock(&mu_);
    if (stopping_) return;
    stopping_ = true;
    wake_.Signal();
  }
  thread_.join();
  Detach();
}

size_t WatchHub::watch_count() const {
  MutexLock lock(&mu_);
  return watches_.size();
}

void WatchHub::Open(std::shared_ptr<WatchStream> stream, uint64_t watch_id,
                    pb::WatchRequest request) {
  auto watch = std::make_shared<Watch>(stream, watch_id, std::move(request));
  absl::Status refused = ValidateWatch(watch->request);
  if (refused.ok()) {
    MutexLock lock(&mu_);
    if (stopping_) {
      refused = absl::UnavailableError("this member is stopping; watch on another member");
    } else if (watches_.size() >= options_.max_watches) {
      refused = absl::ResourceExhaustedError(absl::StrCat(
          watches_.size(), " watches are open on this member (limit ", options_.max_watches,
          "); close some or watch on another member"));
    } else if (!watches_.emplace(WatchKey(stream.get(), watch_id), watch).second) {
      refused = absl::AlreadyExistsError(
          absl::StrCat("request id ", watch_id, " is already a watch on this connection"));
    } else {
      notified_ = true;
      wake_.Signal();
    }
  }
  if (!refused.ok()) {
    MutexLock lock(&watch->mu);
    Finish(*watch, refused);
  }
}

absl::Status WatchHub::Cancel(const WatchStream* stream, uint64_t watch_id) {
  std::shared_ptr<Watch> watch;
  {
    MutexLock lock(&mu_);
    auto it = watches_.find(WatchKey(stream, watch_id));
    if (it == watches_.end()) {
      return absl::NotFoundError(absl::StrCat("no watch ", watch_id, " on this connection"));
    }
    watch = it->second;
    watches_.erase(it);
  }
  MutexLock lock(&watch->mu);
  watch->Send(pb::ClientResponse(), /*last=*/true);
  return absl::OkStatus();
}

void WatchHub::CloseStream(const WatchStream* stream) {
  std::vector<std::shared_ptr<Watch>> closed;
  {
    MutexLock lock(&mu_);
    for (auto it = watches_.lower_bound(WatchKey(stream, 0));
         it != watches_.end() && it->first.first == stream;) {
      closed.push_back(it->second);
      it = watches_.erase(it);
    }
  }
  for (const std::shared_ptr<Watch>& watch : closed) {
    MutexLock lock(&watch->mu);
    watch->finished = true;
  }
}

void WatchHub::Notify() {
  MutexLock lock(&mu_);
  if (watches_.empty()) return;  // Open wakes the thread for a first watch
  notified_ = true;
  wake_.Signal();
}

void WatchHub::Run() {
  // Wakes at least this often for progress responses.
  const absl::Duration poll = std::min(options_.progress_interval / 2, absl::Milliseconds(500));
  bool more = false;
  mu_.Lock();
  while (!stopping_) {
    if (!notified_ && !more) wake_.WaitWithTimeout(&mu_, poll);
    notified_ = false;
    more = false;
    if (stopping_ || state_ == nullptr) continue;
    const storage::StateMachine* state = state_;
    in_round_ = true;
    mu_.Unlock();
    more = Round(*state);
    mu_.Lock();
    in_round_ = false;
    round_done_.SignalAll();
  }
  mu_.Unlock();
}

bool WatchHub::Round(const storage::StateMachine& state) {
  std::vector<std::shared_ptr<Watch>> watches;
  {
    MutexLock lock(&mu_);
    watches.reserve(watches_.size());
    for (const auto& [key, watch] : watches_) watches.push_back(watch);
  }
  if (watches.empty()) return false;  // no reads for nobody: writes come often
  absl::StatusOr<std::unique_ptr<storage::StateSnapshot>> snapshot = state.NewSnapshot();
  absl::StatusOr<pb::KvMeta> meta =
      snapshot.ok() ? ReadKvMeta(**snapshot) : absl::StatusOr<pb::KvMeta>(snapshot.status());
  if (!meta.ok()) {
    STEAD_LOG(logger_, Error) << "watches cannot read the state machine: " << meta.status();
    return false;
  }
  bool more = false;
  for (const std::shared_ptr<Watch>& watch : watches) {
    bool finished;
    {
      MutexLock lock(&watch->mu);
      more |= Serve(*watch, **snapshot, *meta);
      finished = watch->finished;
    }
    if (finished) Remove(*watch);
  }
  return more;
}

bool WatchHub::Serve(Watch& watch, const storage::StateSnapshot& snapshot,
                     const pb::KvMeta& meta) {
  watch.mu.AssertHeld();
  if (watch.finished) return false;
  const int64_t oldest = meta.compacted_revision() + 1;
  if (!watch.created) {
    const int64_t start = watch.request.start_revision();
    watch.next = start == 0 ? meta.revision() + 1 : start;
    watch.created = true;
    if (watch.next < oldest) {
      Finish(watch,
             absl::OutOfRangeError(absl::StrCat("revision ", watch.next,
                                                " is compacted; the oldest revision available is ",
                                                oldest)),
             oldest);
      return false;
    }
    pb::ClientResponse created;
    created.mutable_watch()->set_created(true);
    created.mutable_watch()->set_progress_revision(watch.next - 1);
    watch.progress_sent = watch.next - 1;
    watch.Send(std::move(created), /*last=*/false);
  }
  if (watch.next < oldest) {
    Finish(watch,
           absl::OutOfRangeError(absl::StrCat("the watch fell behind the compacted history at "
                                              "revision ", watch.next,
                                              "; the oldest revision available is ", oldest)),
           oldest);
    return false;
  }
  const bool progress_due = absl::Now() - watch.last_sent >= options_.progress_interval;
  if (watch.next > meta.revision()) {
    // Caught up: tell the client how far, if revisions passed since it last heard.
    if (watch.progress_sent < watch.next - 1 && progress_due) {
      pb::ClientResponse progress;
      progress.mutable_watch()->set_progress_revision(watch.next - 1);
      watch.progress_sent = watch.next - 1;
      watch.Send(std::move(progress), /*last=*/false);
    }
    return false;
  }
  if (const size_t unsent = watch.stream->UnsentBytes(); unsent > options_.max_unsent_bytes) {
    Finish(watch, absl::ResourceExhaustedError(absl::StrCat(
                      "the client reads too slowly: ", unsent, " bytes unsent (limit ",
                      options_.max_unsent_bytes, "); watch again from revision ", watch.next)));
    return false;
  }
  absl::StatusOr<HistoryPage> page = ReadHistory(snapshot, watch.request.key(),
                                                 watch.request.range_end(), watch.next,
                                                 meta.revision(), options_.max_response_bytes);
  if (!page.ok()) {
    STEAD_LOG(logger_, Error) << "watch " << watch.id << ": " << page.status();
    Finish(watch, page.status());
    return false;
  }
  watch.next = page->through + 1;
  if (!page->events.empty() || progress_due) {
    pb::ClientResponse response;
    pb::WatchResponse& body = *response.mutable_watch();
    for (pb::Event& event : page->events) *body.add_events() = std::move(event);
    body.set_progress_revision(page->through);
    watch.progress_sent = page->through;
    watch.Send(std::move(response), /*last=*/false);
  }
  return watch.next <= meta.revision();
}

void WatchHub::Finish(Watch& watch, const absl::Status& status, int64_t oldest_revision) {
  watch.mu.AssertHeld();
  pb::ClientResponse response;
  *response.mutable_error() = ErrorFromStatus(status, std::nullopt);
  if (oldest_revision > 0) response.mutable_watch()->set_oldest_revision(oldest_revision);
  watch.Send(std::move(response), /*last=*/true);
}

void WatchHub::Remove(const Watch& watch) {
  MutexLock lock(&mu_);
  auto it = watches_.find(WatchKey(watch.stream.get(), watch.id));
  if (it != watches_.end() && it->second.get() == &watch) watches_.erase(it);
}

}  // namespace stead::server
