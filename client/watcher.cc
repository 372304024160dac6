#include "client/watcher.h"

#include <algorithm>
#include <atomic>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/mutex.h"
#include "server/frame.h"

namespace stead {

namespace asio = boost::asio;
using client_internal::Connection;
using client_internal::WatchContext;

class Watcher::State : public std::enable_shared_from_this<State> {
 public:
  State(WatchContext context, pb::WatchRequest request, WatchCallback on_events,
        std::function<void(absl::Status)> on_end)
      : context_(std::move(context)),
        request_(std::move(request)),
        on_events_(std::move(on_events)),
        on_end_(std::move(on_end)),
        strand_(asio::make_strand(*context_.io)),
        timer_(strand_),
        backoff_(context_.initial_backoff) {
    if (request_.start_revision() > 0) next_ = request_.start_revision();
  }

  void Start() {
    asio::post(strand_, [self = shared_from_this()] { self->Open(); });
  }

  // No callback runs once this returns (unless called from one).
  void Cancel() {
    {
      MutexLock lock(&callback_mu_);
      cancelled_ = true;
    }
    asio::post(strand_, [self = shared_from_this()] {
      self->timer_.cancel();
      if (self->request_id_ == 0) return;
      // Tells the member to drop the stream; the answer does not matter.
      pb::ClientRequest cancel;
      cancel.set_request_id(self->context_.next_request_id());
      cancel.mutable_watch_cancel()->set_watch_id(self->request_id_);
      std::string frame;
      if (server::AppendFrame(cancel, self->context_.max_frame_bytes, &frame).ok()) {
        self->connection_->Send(cancel.request_id(), std::move(frame),
                                [](absl::StatusOr<pb::ClientResponse>) {});
      }
      self->connection_->Forget(self->request_id_);
      self->request_id_ = 0;
    });
  }

  int64_t progress_revision() const { return progress_.load(); }
  absl::Status status() const {
    MutexLock lock(&status_mu_);
    return status_;
  }

 private:
  bool cancelled() const {
    MutexLock lock(&callback_mu_);
    return cancelled_;
  }

  // On the strand: opens the stream on the next member, from the cursor.
  void Open() {
    if (cancelled() || ended_) return;
    if (context_.shutting_down()) {
      End(absl::CancelledError("the stead client is shutting down"));
      return;
    }
    connection_ = context_.next_connection();
    request_id_ = context_.next_request_id();
    pb::ClientRequest request;
    request.set_request_id(request_id_);
    *request.mutable_watch() = request_;
    request.mutable_watch()->set_start_revision(next_);
    request.set_auth_token(context_.auth_token());
    std::string frame;
    if (absl::Status framed = server::AppendFrame(request, context_.max_frame_bytes, &frame);
        !framed.ok()) {
      End(absl::InvalidArgumentError(absl::StrCat("watch request: ", framed.message())));
      return;
    }
    connection_->SendStream(
        request_id_, std::move(frame),
        [weak = weak_from_this(), id = request_id_](absl::StatusOr<pb::ClientResponse> answer) {
          std::shared_ptr<State> self = weak.lock();
          if (self == nullptr) return;
          asio::post(self->strand_, [self, id, answer = std::move(answer)]() mutable {
            self->OnResponse(id, std::move(answer));
          });
        });
  }

  void OnResponse(uint64_t id, absl::StatusOr<pb::ClientResponse> answer) {
    if (id != request_id_ || ended_ || cancelled()) return;
    if (!answer.ok()) return Resume();  // the connection failed
    if (answer->has_error()) {
      const auto code = static_cast<absl::StatusCode>(answer->error().code());
      absl::Status status(code, answer->error().message());
      // A member that stops, or one that found this client too slow: go on elsewhere.
      if (absl::IsUnavailable(status) || absl::IsResourceExhausted(status)) return Resume();
      // An expired token: resume with a new one, a few times (a wrong password stays).
      if (absl::IsUnauthenticated(status) && unauthenticated_ < 3) {
        ++unauthenticated_;
        context_.refresh_auth_token();
        return Resume();
      }
      return End(std::move(status));
    }
    unauthenticated_ = 0;
    const pb::WatchResponse& watch = answer->watch();
    if (watch.canceled()) return Resume();  // ended by the member without a reason
    std::vector<WatchEvent> events;
    events.reserve(static_cast<size_t>(watch.events_size()));
    for (const pb::Event& event : watch.events()) {
      // The cursor says what was delivered: anything below it came before.
      if (next_ > 0 && event.kv().mod_revision() < next_) continue;
      WatchEvent& out = events.emplace_back();
      out.type = event.type() == pb::Event::TYPE_DELETE ? WatchEvent::Type::kDelete
                                                         : WatchEvent::Type::kPut;
      out.kv.key = event.kv().key();
      out.kv.value = event.kv().value();
      out.kv.create_revision = event.kv().create_revision();
      out.kv.mod_revision = event.kv().mod_revision();
      out.kv.version = event.kv().version();
    }
    const int64_t progress = std::max(watch.progress_revision(), next_ - 1);
    next_ = progress + 1;
    progress_ = progress;
    backoff_ = context_.initial_backoff;
    if (events.empty()) return;
    MutexLock lock(&callback_mu_);
    if (!cancelled_) on_events_(events, progress);
  }

  // On the strand: drops the broken stream and opens another after a pause.
  void Resume() {
    connection_->Forget(request_id_);
    request_id_ = 0;
    timer_.expires_after(absl::ToChronoNanoseconds(backoff_));
    backoff_ = std::min(backoff_ * 2, context_.max_backoff);
    timer_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
      if (!ec) self->Open();
    });
  }

  void End(absl::Status status) {
    ended_ = true;
    if (request_id_ != 0) connection_->Forget(request_id_);
    request_id_ = 0;
    {
      MutexLock lock(&status_mu_);
      status_ = status;
    }
    MutexLock lock(&callback_mu_);
    if (!cancelled_ && on_end_) on_end_(std::move(status));
  }

  const WatchContext context_;
  const pb::WatchRequest request_;
  const WatchCallback on_events_;
  const std::function<void(absl::Status)> on_end_;
  asio::strand<asio::io_context::executor_type> strand_;
  asio::steady_timer timer_;  // the pause before reopening

  // On the strand only.
  std::shared_ptr<Connection> connection_;
  uint64_t request_id_ = 0;  // of the open stream; 0 when none
  int unauthenticated_ = 0;  // UNAUTHENTICATED answers in a row
  int64_t next_ = 0;         // the next revision to deliver; 0 until the first answer
  absl::Duration backoff_;
  bool ended_ = false;

  // Held while a callback runs, so that Cancel waits for it.
  mutable Mutex callback_mu_;
  bool cancelled_ ABSL_GUARDED_BY(callback_mu_) = false;
  std::atomic<int64_t> progress_{0};
  mutable Mutex status_mu_;
  absl::Status status_ ABSL_GUARDED_BY(status_mu_);
};

Watcher::Watcher(std::shared_ptr<State> state) : state_(std::move(state)) {}
Watcher::~Watcher() { state_->Cancel(); }
int64_t Watcher::progress_revision() const { return state_->progress_revision(); }
absl::Status Watcher::status() const { return state_->status(); }

namespace client_internal {

std::unique_ptr<Watcher> StartWatch(WatchContext context, pb::WatchRequest request,
                                    WatchCallback on_events,
                                    std::function<void(absl::Status)> on_end) {
  auto state = std::make_shared<Watcher::State>(std::move(context), std::move(request),
                                                std::move(on_events), std::move(on_end));
  state->Start();
  return std::make_unique<Watcher>(std::move(state));
}

}  // namespace client_internal
}  // namespace stead
