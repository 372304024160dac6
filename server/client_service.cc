#include "server/client_service.h"

#include "server/auth_check.h"

#include <atomic>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/check.h"
#include "base/status_macros.h"
#include "google/protobuf/io/coded_stream.h"
#include "server/auth_check.h"
#include "server/listener.h"
#include "wire/stream.h"
#include "wire/tls_context.h"

namespace stead::server {

namespace asio = boost::asio;
using asio::ip::tcp;
using boost::system::error_code;

namespace {

constexpr size_t kReadBufferBytes = 64 * 1024;
// A TLS connection reads through a buffer of its own (the TLS layer may hold decrypted
// bytes the socket no longer signals); one TLS record at most.
constexpr size_t kTlsReadBufferBytes = 16 * 1024;
// How many first bytes of a plain connection tell a TLS ClientHello (LooksLikeTlsClientHello).
constexpr size_t kClientHelloProbeBytes = 3;

// The request_id (field 1) of a pb::ClientRequest from the first bytes of its
// encoding, where encoders put it (fields in number order); 0 when they do not start
// with it (not a request: garbage).
uint64_t RequestIdOf(absl::string_view head) {
  google::protobuf::io::CodedInputStream input(reinterpret_cast<const uint8_t*>(head.data()),
                                               static_cast<int>(head.size()));
  constexpr uint32_t kRequestIdTag = (1 << 3) | 0;  // field 1, varint
  uint64_t request_id = 0;
  if (input.ReadTag() != kRequestIdTag || !input.ReadVarint64(&request_id)) return 0;
  return request_id;
}

// Reads what `socket` (readable, non-blocking) holds into `reader`, through a buffer
// of the calling thread rather than one per connection, and keeps the connection's
// first bytes in `first_bytes` until it holds kClientHelloProbeBytes. Not a
// coroutine: the buffer is used and released with no suspension in between (and a
// thread_local in a coroutine frame would be resolved on whichever thread first ran it).
boost::system::error_code ReadAvailable(tcp::socket& socket, FrameReader& reader,
                                        std::string& first_bytes) {
  thread_local std::string buffer(kReadBufferBytes, '\0');
  boost::system::error_code ec;
  const size_t n = socket.read_some(asio::buffer(buffer), ec);
  if (ec) return ec;
  const absl::string_view read(buffer.data(), n);
  if (first_bytes.size() < kClientHelloProbeBytes) {
    first_bytes.append(read.data(), std::min(n, kClientHelloProbeBytes - first_bytes.size()));
  }
  reader.Append(read);
  return ec;
}

// Whether `response` is the last of its stream: a cancelled watch, the end of a
// snapshot save, or a refusal.
bool EndsStream(const pb::ClientResponse& response) {
  return response.watch().canceled() || response.snapshot_save().done() ||
         (response.has_error() && !response.has_watch());
}

}  // namespace

struct ClientService::Shared {
  Shared(asio::io_context& io_in, ClientServiceOptions options_in, Logger logger_in,
         RequestHandler handler_in, WatchHub* watches_in, BackupService* backups_in,
         StreamGate stream_gate_in)
      : io(io_in),
        options(std::move(options_in)),
        logger(std::move(logger_in)),
        handler(std::move(handler_in)),
        watches(watches_in),
        backups(backups_in),
        stream_gate(std::move(stream_gate_in)),
        listener(std::make_shared<Listener>(io_in)),
        events(logger),
        connections(options.max_connections, 0, &events) {}

  asio::io_context& io;
  const ClientServiceOptions options;
  const Logger logger;
  const RequestHandler handler;
  WatchHub* const watches;
  BackupService* const backups;
  const StreamGate stream_gate;
  std::atomic<bool> stopped{false};
  const std::shared_ptr<Listener> listener;
  ConnectionEventLog events;
  ConnectionSet<Connection> connections;  // admission, and so Stop can close them
};

class ClientService::Connection : public WatchStream,
                                  public std::enable_shared_from_this<Connection> {
 public:
  // TLS when the port has a provider (`shared->options.tls`), plain otherwise.
  Connection(std::shared_ptr<Shared> shared, tcp::socket socket)
      : shared_(std::move(shared)),
        stream_(std::move(socket), shared_->options.tls),
        deadline_(stream_.get_executor()) {
    error_code ec;
    remote_ = stream_.socket().remote_endpoint(ec);
  }

  void Start() {
    asio::co_spawn(stream_.get_executor(), Run(shared_from_this()), [](std::exception_ptr) {});
  }

  // Thread-safe.
  void Close() {
    asio::post(stream_.get_executor(), [self = shared_from_this()] {
      error_code ignored;
      self->stream_.socket().close(ignored);
    });
  }

  // For admission (ConnectionSet::Admit).
  const tcp::endpoint& remote() const { return remote_; }
  const ConnectionActivity& activity() const { return activity_; }

 private:
  static asio::awaitable<void> Run(std::shared_ptr<Connection> self) {
    self->deadline_.Start(self, [raw = self.get()] { raw->OnDeadline(); });
    self->UpdateDeadline();
    absl::Status status = absl::OkStatus();
    if (self->stream_.is_tls()) {
      // Bounded by the read timeout like a frame: a socket that never finishes its
      // handshake holds its slot no longer than one that never finishes a frame.
      status = co_await self->stream_.AsyncServerHandshake(self->shared_->options.read_timeout,
                                                           asio::use_awaitable);
      if (!status.ok()) status = Annotate(status, "TLS handshake");
      if (status.ok() && self->shared_->options.certificate_identity) {
        absl::StatusOr<wire::PeerIdentity> identity = self->stream_.PeerCertificateIdentity();
        if (identity.ok()) self->certificate_user_ = CertificateUser(*identity);
      }
    }
    // A plain connection, or one that a port in TLS transition found plain (the
    // handshake then ends plain).
    if (status.ok() && !self->stream_.is_tls()) {
      // Plain reads happen only once the socket is readable, and never wait (see ReadLoop).
      error_code ec;
      self->stream_.socket().non_blocking(true, ec);
      if (ec) status = absl::UnavailableError(ec.message());
    }
    // Not a conditional expression around co_await: g++ 12 destroys its result twice.
    if (status.ok()) status = co_await self->ReadLoop();
    if (!self->timed_out_.ok()) status = self->timed_out_;
    if (!status.ok() && !self->shared_->stopped) {
      // A refused certificate or the wrong protocol is a configuration to fix, not
      // routine churn.
      self->shared_->events.Log(
          status.code() == absl::StatusCode::kFailedPrecondition ? LogLevel::kWarning
                                                                 : LogLevel::kInfo,
          absl::StrCat("closing client connection from ", self->remote_.address().to_string(),
                       ":", self->remote_.port(), ": ", status.message()));
    }
    self->deadline_.Stop();
    error_code ignored;
    self->stream_.socket().close(ignored);
    if (self->shared_->watches != nullptr) self->shared_->watches->CloseStream(self.get());
    if (self->shared_->backups != nullptr) self->shared_->backups->CloseStream(self.get());
    self->shared_->connections.Remove(self.get());
  }

  asio::awaitable<absl::Status> ReadLoop() {
    FrameReader reader(shared_->options.max_frame_bytes, OversizedFrames::kSkip);
    for (;;) {
      bool completed_a_frame = false;
      for (;;) {
        absl::StatusOr<std::optional<ReadFrame>> frame = reader.NextFrame();
        if (!frame.ok()) co_return frame.status();
        if (!frame->has_value()) break;
        completed_a_frame = true;
        if ((*frame)->oversized_length != 0) {
          const uint64_t request_id = RequestIdOf((*frame)->payload);
          if (request_id == 0) {
            // Not the start of a request: garbage, and the stream is lost.
            co_return absl::InvalidArgumentError(absl::StrCat(
                "frame of ", (*frame)->oversized_length, " bytes exceeds the limit of ",
                shared_->options.max_frame_bytes, " bytes"));
          }
          RefuseOversized(request_id, (*frame)->oversized_length);
          continue;
        }
        pb::ClientRequest request;
        if (absl::Status parsed = ParseFramePayload((*frame)->payload, "client request", &request);
            !parsed.ok()) {
          co_return parsed;
        }
        Dispatch(std::move(request));
      }
      // What remains is the start of the next frame (or the rest of a skipped one).
      if (!reader.mid_frame()) {
        frame_started_.reset();
      } else if (completed_a_frame || !frame_started_) {
        frame_started_ = ConnectionDeadline::Clock::now();
      }
      UpdateDeadline();
      error_code ec;
      if (stream_.is_tls()) {
        if (tls_buffer_.empty()) tls_buffer_.resize(kTlsReadBufferBytes);
        const size_t n = co_await stream_.async_read_some(
            asio::buffer(tls_buffer_), asio::redirect_error(asio::use_awaitable, ec));
        if (ec == asio::error::eof) co_return absl::OkStatus();
        if (ec) co_return stream_.DescribeError(ec);
        reader.Append(absl::string_view(tls_buffer_.data(), n));
        continue;
      }
      // Wait for bytes before taking a buffer, so an idle connection holds none: a
      // port may hold tens of thousands of them.
      co_await stream_.socket().async_wait(tcp::socket::wait_read,
                                           asio::redirect_error(asio::use_awaitable, ec));
      if (ec) co_return absl::UnavailableError(ec.message());
      const bool probing = first_bytes_.size() < kClientHelloProbeBytes;
      ec = ReadAvailable(stream_.socket(), reader, first_bytes_);
      if (probing && wire::LooksLikeTlsClientHello(first_bytes_)) {
        // Read as a frame, its first bytes would be a length near 369 MB.
        co_return absl::FailedPreconditionError(wire::kTlsOnPlainPortMessage);
      }
      if (ec == asio::error::would_block) continue;
      if (ec == asio::error::eof) co_return absl::OkStatus();
      if (ec) co_return absl::UnavailableError(ec.message());
    }
  }

  // On the strand, after anything that changes what the connection waits for: a frame
  // that has started must complete within the read timeout; a connection with nothing
  // in flight may stay for the idle timeout.
  void UpdateDeadline() {
    const ClientServiceOptions& options = shared_->options;
    if (frame_started_) {
      deadline_.Set(*frame_started_ + absl::ToChronoNanoseconds(options.read_timeout));
    } else if (activity_.busy()) {
      deadline_.Clear();
    } else {
      deadline_.Set(activity_.idle_since() + absl::ToChronoNanoseconds(options.idle_timeout));
    }
  }

  void OnDeadline() {
    timed_out_ = absl::DeadlineExceededError(
        frame_started_
            ? absl::StrCat("a frame started ", absl::FormatDuration(shared_->options.read_timeout),
                           " ago is still incomplete (read timeout)")
            : absl::StrCat("nothing in flight for ",
                           absl::FormatDuration(shared_->options.idle_timeout),
                           " (idle timeout)"));
    error_code ignored;
    stream_.socket().close(ignored);
  }

  // On the strand: a request in flight begins; Respond ends it.
  void BeginRequest() {
    ++inflight_;
    BeginWork();
  }
  // On the strand: a request or stream in flight begins or ends.
  void BeginWork() {
    activity_.Begin();
    UpdateDeadline();
  }
  void EndWork() {
    activity_.End();
    UpdateDeadline();
  }

  // WatchStream: a watch's response, from the hub's thread.
  void Send(pb::ClientResponse response) override {
    unsent_bytes_ += response.ByteSizeLong();
    asio::post(stream_.get_executor(),
               [self = shared_from_this(), response = std::move(response)]() mutable {
                 if (self->shared_->stopped) return;
                 if (self->revoked_.contains(response.request_id())) {
                   // Ended for lost permission: the hub's own last word is dropped.
                   if (EndsStream(response)) self->revoked_.erase(response.request_id());
                   self->unsent_bytes_ -= response.ByteSizeLong();
                   return;
                 }
                 if (!self->StillAllowed(&response)) {
                   self->shared_->watches->Cancel(self.get(), response.request_id()).IgnoreError();
                 }
                 if (EndsStream(response)) {
                   self->watch_requests_.erase(response.request_id());
                   if (self->streams_.erase(response.request_id()) > 0) self->EndWork();
                 }
                 self->Enqueue(std::move(response));
               });
  }
  size_t UnsentBytes() const override { return unsent_bytes_.load(); }

  // On the strand: whether the reader of the watch `response` belongs to may still
  // read what it carries. If not, `response` becomes the watch's last one, with the
  // refusal, and the caller cancels the watch in the hub.
  bool StillAllowed(pb::ClientResponse* response) {
    if (!response->has_watch() || response->watch().events_size() == 0) return true;
    auto found = watch_requests_.find(response->request_id());
    if (found == watch_requests_.end()) return true;
    pb::ClientRequest request = found->second;  // the check may add a token to it
    absl::Status allowed = shared_->options.authorize(&request, certificate_user_, true);
    if (allowed.ok()) return true;
    unsent_bytes_ -= response->ByteSizeLong();
    const uint64_t id = response->request_id();
    response->Clear();
    response->set_request_id(id);
    response->mutable_watch()->set_canceled(true);
    *response->mutable_error() = ErrorFromStatus(allowed, std::nullopt);
    unsent_bytes_ += response->ByteSizeLong();
    revoked_.insert(id);
    return false;
  }

  // Runs on the connection's strand. Every request gets exactly one response, but a
  // watch: it gets a stream of them from the hub.
  void Dispatch(pb::ClientRequest request) {
    std::optional<pb::ClientRequest> watch_as_sent;
    if (shared_->options.authorize && request.has_watch()) watch_as_sent = request;
    if (shared_->options.authorize && !request.has_watch_cancel()) {
      if (absl::Status allowed = shared_->options.authorize(&request, certificate_user_, false);
          !allowed.ok()) {
        pb::ClientResponse refused;
        refused.set_request_id(request.request_id());
        *refused.mutable_error() = ErrorFromStatus(allowed, std::nullopt);
        BeginRequest();
        Respond(std::move(refused));
        return;
      }
    }
    if ((request.has_watch() || request.has_snapshot_save()) && shared_->stream_gate) {
      if (absl::Status open = shared_->stream_gate(); !open.ok()) {
        pb::ClientResponse refused;
        refused.set_request_id(request.request_id());
        *refused.mutable_error() = ErrorFromStatus(open, std::nullopt);
        BeginRequest();
        Respond(std::move(refused));
        return;
      }
    }
    if (request.has_watch() && shared_->watches != nullptr) {
      const uint64_t id = request.request_id();
      OpenStream(id);
      if (watch_as_sent) watch_requests_[id] = *std::move(watch_as_sent);
      shared_->watches->Open(shared_from_this(), id, std::move(*request.mutable_watch()));
      return;
    }
    if (request.has_snapshot_save() && shared_->backups != nullptr) {
      OpenStream(request.request_id());
      shared_->backups->OpenSnapshotSave(shared_from_this(), request.request_id(),
                                         request.snapshot_save());
      return;
    }
    if (request.has_watch_cancel() && shared_->watches != nullptr) {
      pb::ClientResponse answer;
      answer.set_request_id(request.request_id());
      if (absl::Status cancelled = shared_->watches->Cancel(this, request.watch_cancel().watch_id());
          cancelled.ok()) {
        answer.mutable_watch_cancel();
      } else {
        *answer.mutable_error() = ErrorFromStatus(cancelled, std::nullopt);
      }
      BeginRequest();
      Respond(std::move(answer));
      return;
    }
    if (inflight_ >= shared_->options.max_inflight_per_connection) {
      pb::ClientResponse refused;
      refused.set_request_id(request.request_id());
      refused.mutable_error()->set_code(static_cast<int32_t>(absl::StatusCode::kResourceExhausted));
      refused.mutable_error()->set_message(
          absl::StrCat(inflight_, " requests in flight on this connection: back off"));
      BeginRequest();
      Respond(std::move(refused));
      return;
    }
    BeginRequest();
    shared_->handler(std::move(request), [self = shared_from_this()](pb::ClientResponse response) {
      asio::post(self->stream_.get_executor(), [self, response = std::move(response)]() mutable {
        if (!self->shared_->stopped) self->Respond(std::move(response));
      });
    });
  }

  // On the strand: answers request `request_id`, whose frame of `frame_bytes` is over
  // the limit (the reader skips its bytes), with InvalidArgument, so that the client
  // neither waits nor retries a request that can never fit.
  void RefuseOversized(uint64_t request_id, uint32_t frame_bytes) {
    pb::ClientResponse refused;
    refused.set_request_id(request_id);
    *refused.mutable_error() = ErrorFromStatus(
        absl::InvalidArgumentError(absl::StrCat(
            "request of ", frame_bytes, " bytes exceeds the client port's frame limit of ",
            shared_->options.max_frame_bytes,
            " bytes: keys, values and requests have size limits (README, \"Limits\")")),
        std::nullopt);
    BeginRequest();
    Respond(std::move(refused));
  }

  // On the strand: a stream's responses arrive through Send until one ends it.
  void OpenStream(uint64_t request_id) {
    if (streams_.insert(request_id).second) BeginWork();
  }

  // On the strand: the one response of a request in flight (begun by BeginRequest).
  void Respond(pb::ClientResponse response) {
    STEAD_CHECK_GT(inflight_, 0u);
    --inflight_;
    EndWork();
    unsent_bytes_ += response.ByteSizeLong();
    Enqueue(std::move(response));
  }

  // On the strand: frames the response and starts writing if idle. Its bytes are
  // already counted in unsent_bytes_.
  void Enqueue(const pb::ClientResponse& response) {
    const size_t bytes = response.ByteSizeLong();
    if (absl::Status framed = AppendFrame(response, UINT32_MAX, &pending_); !framed.ok()) {
      unsent_bytes_ -= bytes;
      STEAD_LOG(shared_->logger, Error) << "cannot frame a response: " << framed.message();
      return;
    }
    pending_bytes_ += bytes;
    if (!writing_) WriteNext();
  }

  void WriteNext() {
    if (pending_.empty()) {
      writing_ = false;
      return;
    }
    writing_ = true;
    writing_buffer_.swap(pending_);
    pending_.clear();
    const size_t bytes = std::exchange(pending_bytes_, 0);
    asio::async_write(stream_, asio::buffer(writing_buffer_),
                      [self = shared_from_this(), bytes](error_code ec, size_t) {
                        self->unsent_bytes_ -= bytes;
                        if (ec) {
                          error_code ignored;
                          self->stream_.socket().close(ignored);
                          self->writing_ = false;
                          return;
                        }
                        self->WriteNext();
                      });
  }

  const std::shared_ptr<Shared> shared_;
  wire::Stream stream_;  // plain or TLS; its executor is this connection's strand
  tcp::endpoint remote_;
  ConnectionActivity activity_;  // requests and streams in flight
  // Strand only.
  ConnectionDeadline deadline_;
  std::optional<ConnectionDeadline::Clock::time_point> frame_started_;  // of a partial frame
  absl::Status timed_out_;     // why OnDeadline closed the connection
  std::set<uint64_t> streams_;  // request ids of the open watches and snapshot saves
  std::string certificate_user_;  // set once, after the handshake
  // With authorize: each open watch's request as sent (checked again before each event), and
  // the watches ended for a lost permission whose last hub response is still to come.
  std::map<uint64_t, pb::ClientRequest> watch_requests_;
  std::set<uint64_t> revoked_;
  std::string first_bytes_;     // of a plain connection, to tell a TLS ClientHello
  std::string tls_buffer_;      // a TLS connection's read buffer, once it reads
  size_t inflight_ = 0;  // requests, not streams
  std::string pending_;         // framed responses not yet being written
  std::string writing_buffer_;  // what async_write is sending
  bool writing_ = false;
  size_t pending_bytes_ = 0;  // response bytes (unframed) in pending_
  // Response bytes handed to this connection and not yet written: the watch hub reads it
  // from its own thread to spot a client that does not keep up.
  std::atomic<size_t> unsent_bytes_{0};
};

ClientService::ClientService(asio::io_context& io, ClientServiceOptions options, Logger logger,
                             RequestHandler handler, WatchHub* watches, BackupService* backups,
                             StreamGate stream_gate)
    : shared_(std::make_shared<Shared>(io, std::move(options), std::move(logger),
                                       std::move(handler), watches, backups,
                                       std::move(stream_gate))) {}

ClientService::~ClientService() { Stop(); }

absl::Status ClientService::Listen(const std::string& host, uint16_t port) {
  STEAD_RETURN_IF_ERROR(shared_->listener->Listen(host, port, "clients"));
  // Weak: the listener keeps its handler, and Shared keeps the listener.
  shared_->listener->Start([weak = std::weak_ptr<Shared>(shared_)](tcp::socket socket) {
    std::shared_ptr<Shared> shared = weak.lock();
    if (shared == nullptr || shared->stopped) return;
    boost::system::error_code ignored;
    socket.set_option(tcp::no_delay(true), ignored);
    auto connection = std::make_shared<Connection>(shared, std::move(socket));
    if (shared->connections.Admit(connection)) connection->Start();
  });
  return absl::OkStatus();
}

uint16_t ClientService::port() const { return shared_->listener->port(); }

void ClientService::Stop() {
  if (shared_->stopped.exchange(true)) return;
  for (const auto& connection : shared_->connections.Live()) connection->Close();
  shared_->listener->Close();
}

}  // namespace stead::server
