#include "server/peer_transport.h"

#include <algorithm>
#include <atomic>
#include <deque>
#include <vector>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/check.h"
#include "base/status_macros.h"
#include "proto/peer.pb.h"
#include "server/config.h"
#include "server/listener.h"
#include "wire/stream.h"
#include "storage/checkpoint_stream.h"

namespace stead::server {

namespace asio = boost::asio;
using asio::ip::tcp;
using boost::system::error_code;

namespace {

constexpr uint32_t kPeerProtocolVersion = 1;
constexpr size_t kReadBufferBytes = 64 * 1024;

tcp::endpoint RemoteEndpoint(const tcp::socket& socket) {
  error_code ec;
  return socket.remote_endpoint(ec);  // unspecified (0.0.0.0:0) if already reset
}

// A stream over `socket`: TLS with the current context of `tls`, plain without one.
// Under TLS, a member proves the host it announces (where its peers dial it) with its
// certificate, as a dialer's certificate proves the host dialed. Plain: nothing to check.
absl::Status CheckAnnouncedHost(const wire::Stream& stream, const std::string& host) {
  if (!stream.is_tls()) return absl::OkStatus();
  if (host.empty()) {
    return absl::FailedPreconditionError(
        "the peer announced no host to check its certificate against");
  }
  return stream.CheckPeerNamesHost(host);
}

// Reads from `socket` straight into `reader` until one whole frame is buffered, then
// parses it where it landed.
asio::awaitable<absl::Status> ReadPeerFrame(wire::Stream& socket, FrameReader& reader,
                                            pb::PeerFrame* frame) {
  for (;;) {
    absl::StatusOr<std::optional<absl::string_view>> payload = reader.Next();
    if (!payload.ok()) co_return payload.status();
    if (payload->has_value()) {
      co_return ParseFramePayload(**payload, "peer frame", frame);
    }
    error_code ec;
    const absl::Span<char> room = reader.PrepareAppend(kReadBufferBytes);
    const size_t n = co_await socket.async_read_some(
        asio::buffer(room.data(), room.size()), asio::redirect_error(asio::use_awaitable, ec));
    if (ec == asio::error::eof) co_return absl::UnavailableError("connection closed by the peer");
    if (ec) co_return socket.DescribeError(ec);
    reader.CommitAppend(n);
  }
}

absl::Status ValidateHello(const pb::PeerHello& hello, uint64_t cluster_id, raft::NodeId node_id,
                           const std::string& node_name) {
  if (hello.protocol_version() != kPeerProtocolVersion) {
    return absl::FailedPreconditionError(absl::StrCat(
        "peer protocol version ", hello.protocol_version(), ", this member speaks ",
        kPeerProtocolVersion));
  }
  if (cluster_id == 0) {
    return absl::UnavailableError("this member has not joined a cluster yet");
  }
  if (hello.cluster_id() != cluster_id) {
    return absl::FailedPreconditionError(absl::StrCat(
        "peer ", hello.from_name(), " (id ", hello.from_id(), ") belongs to cluster ",
        absl::Hex(hello.cluster_id()), ", this member to cluster ", absl::Hex(cluster_id)));
  }
  if (hello.from_id() == raft::kNoNode) return absl::InvalidArgumentError("hello without from_id");
  if (hello.to_id() != node_id) {
    return absl::FailedPreconditionError(absl::StrCat(
        "peer ", hello.from_name(), " meant to reach node ", hello.to_id(), ", this is node ",
        node_id, " (", node_name, "): stale address?"));
  }
  return absl::OkStatus();
}

using Strand = asio::strand<asio::io_context::executor_type>;

// STEAD_RETURN_IF_ERROR for coroutines.
#define STEAD_CO_RETURN_IF_ERROR(expr)              \
  do {                                              \
    if (absl::Status status_ = (expr); !status_.ok()) co_return status_; \
  } while (0)

asio::awaitable<absl::Status> WritePeerFrame(wire::Stream& socket, const pb::PeerFrame& frame,
                                             uint32_t max_frame_bytes) {
  std::string bytes;
  if (absl::Status framed = AppendFrame(frame, max_frame_bytes, &bytes); !framed.ok()) {
    co_return framed;
  }
  error_code ec;
  co_await asio::async_write(socket, asio::buffer(bytes),
                             asio::redirect_error(asio::use_awaitable, ec));
  if (ec) co_return socket.DescribeError(ec);
  co_return absl::OkStatus();
}

// Resolves `host` now (pod IPs change, so never cached) and connects; under TLS then
// handshakes, checking that the peer's certificate names `host`.
asio::awaitable<absl::Status> ResolveAndConnect(const Strand& strand, wire::Stream& stream,
                                                std::string host, uint16_t port,
                                                absl::Duration handshake_timeout) {
  error_code ec;
  tcp::resolver resolver(strand);
  const auto endpoints = co_await resolver.async_resolve(
      host, std::to_string(port), asio::redirect_error(asio::use_awaitable, ec));
  if (ec) co_return absl::UnavailableError(absl::StrCat("resolve ", host, ": ", ec.message()));
  co_await asio::async_connect(stream.socket(), endpoints,
                               asio::redirect_error(asio::use_awaitable, ec));
  if (ec) co_return absl::UnavailableError(absl::StrCat("connect: ", ec.message()));
  stream.socket().set_option(tcp::no_delay(true), ec);
  const absl::Status handshake =
      co_await stream.AsyncClientHandshake(host, handshake_timeout, asio::use_awaitable);
  co_return Annotate(handshake, "TLS handshake");
}

// What a follower checks of an offer besides its hello.
absl::Status ValidateSnapshotOffer(const pb::SnapshotOffer& offer, raft::NodeId node_id) {
  const pb::Message& message = offer.message();
  if (message.type() != pb::MESSAGE_TYPE_SNAPSHOT || !message.has_snapshot() ||
      message.snapshot().index() == 0) {
    return absl::InvalidArgumentError("snapshot offer without a SNAPSHOT message");
  }
  if (message.from() != offer.hello().from_id() || message.to() != node_id) {
    return absl::InvalidArgumentError(absl::StrCat("snapshot offer of a message from ",
                                                   message.from(), " to ", message.to()));
  }
  return absl::OkStatus();
}

}  // namespace

// State every coroutine of the transport shares; outlives the PeerTransport object when
// coroutines are still unwinding.
struct PeerTransport::Shared {
  Shared(asio::io_context& io_in, PeerTransportOptions options_in, Logger logger_in,
         MessageHandler on_message_in, UnreachableHandler on_unreachable_in)
      : io(io_in),
        options(std::move(options_in)),
        logger(std::move(logger_in)),
        on_message(std::move(on_message_in)),
        on_unreachable(std::move(on_unreachable_in)),
        cluster_id(options.cluster_id),
        node_id(options.node_id),
        listener(std::make_shared<Listener>(io_in)),
        events(logger),
        inbound(options.max_inbound_connections, options.max_authenticated_connections, &events),
        snapshot_sends(options.max_snapshot_sends) {}

  // Handlers run through these, never directly: they hold handler_mu while calling,
  // which is what lets Stop() wait out a handler in progress.
  void DeliverMessage(pb::Message message) {
    MutexLock lock(&handler_mu);
    if (!stopped) on_message(std::move(message));
  }
  void ReportUnreachable(raft::NodeId peer) {
    MutexLock lock(&handler_mu);
    if (!stopped) on_unreachable(peer);
  }
  std::optional<pb::DiscoveryResponse> AnswerDiscovery(const pb::DiscoveryRequest& request) {
    MutexLock lock(&handler_mu);
    if (stopped || !on_discovery) return std::nullopt;
    return on_discovery(request);
  }
  pb::PeerHello Hello(raft::NodeId to) const {
    pb::PeerHello hello;
    hello.set_protocol_version(kPeerProtocolVersion);
    hello.set_cluster_id(cluster_id);
    hello.set_from_id(node_id);
    hello.set_from_name(options.node_name);
    hello.set_to_id(to);
    hello.set_from_host(options.advertised_host);
    return hello;
  }
  void FinishSnapshotSend(const SnapshotDone& done, absl::Status status) {
    MutexLock lock(&handler_mu);
    if (!stopped) done(std::move(status));
  }
  template <typename Fn>
  void CountSnapshot(Fn update) {
    MutexLock lock(&stats_mu);
    update(snapshot_stats);
  }

  asio::io_context& io;
  const PeerTransportOptions options;
  const Logger logger;
  const MessageHandler on_message;
  const UnreachableHandler on_unreachable;
  DiscoveryHandler on_discovery;  // set before Listen
  std::atomic<SnapshotSink*> snapshot_sink{nullptr};  // set once the member has its storage
  // Zero until the member has a cluster identity (SetIdentity).
  std::atomic<uint64_t> cluster_id;
  std::atomic<raft::NodeId> node_id;
  std::atomic<bool> stopped{false};
  Mutex handler_mu;

  const std::shared_ptr<Listener> listener;
  ConnectionEventLog events;  // of inbound connections not authenticated
  ConnectionSet<Inbound> inbound;  // admission, and so Stop can close them
  ConnectionSet<SnapshotSend> snapshot_sends;

  mutable Mutex stats_mu;
  SnapshotTransferStats snapshot_stats ABSL_GUARDED_BY(stats_mu);
};

// One outgoing connection: resolve, connect, hello, then write queued frames.
class PeerTransport::Outbound : public std::enable_shared_from_this<Outbound> {
 public:
  Outbound(std::shared_ptr<Shared> shared, raft::NodeId id, std::string host, uint16_t port)
      : shared_(std::move(shared)),
        id_(id),
        strand_(asio::make_strand(shared_->io)),
        wake_(strand_),
        backoff_timer_(strand_),
        host_(std::move(host)),
        port_(port) {}

  void Start() {
    asio::co_spawn(strand_, Run(shared_from_this()),
                   [shared = shared_, id = id_](std::exception_ptr error) {
                     if (error) STEAD_LOG(shared->logger, Error) << "peer=" << id << " connection loop failed";
                   });
  }

  // Called on any thread.
  void Enqueue(std::string frame) {
    asio::post(strand_, [self = shared_from_this(), frame = std::move(frame)]() mutable {
      self->EnqueueOnStrand(std::move(frame));
    });
  }

  void SetAddress(std::string host, uint16_t port) {
    asio::post(strand_, [self = shared_from_this(), host = std::move(host), port]() mutable {
      self->host_ = std::move(host);
      self->port_ = port;
    });
  }

  void Close() {
    asio::post(strand_, [self = shared_from_this()] {
      self->closed_ = true;
      self->wake_.cancel();
      self->backoff_timer_.cancel();
      error_code ignored;
      if (self->socket_ != nullptr) self->socket_->socket().close(ignored);
    });
  }

  PeerState State() const {
    MutexLock lock(&state_mu_);
    return state_;
  }

 private:
  void EnqueueOnStrand(std::string frame) {
    if (closed_) return;
    if (queued_bytes_ + frame.size() > shared_->options.max_queued_bytes_per_peer) {
      CountDropped(1);
      if (!overflowing_) {
        overflowing_ = true;
        STEAD_LOG(shared_->logger, Warning)
            << "peer=" << id_ << " send queue full (" << queued_bytes_
            << " bytes): dropping messages until it drains";
        ReportUnreachable();
      }
      return;
    }
    overflowing_ = false;
    queued_bytes_ += frame.size();
    queue_.push_back(std::move(frame));
    wake_.cancel();
  }

  static asio::awaitable<void> Run(std::shared_ptr<Outbound> self) {
    absl::Duration backoff = self->shared_->options.min_reconnect_backoff;
    while (!self->closed_ && !self->shared_->stopped) {
      // A new stream per attempt: a TLS session cannot be reused after a close, and
      // each attempt takes the newest context (certificate rotation).
      std::unique_ptr<wire::Stream> stream =
          std::make_unique<wire::Stream>(tcp::socket(self->strand_),
                                         self->shared_->options.tls_client);
      wire::Stream& socket = *stream;
      self->socket_ = &socket;
      const absl::Status connected = co_await self->Connect(socket);
      if (connected.ok()) {
        backoff = self->shared_->options.min_reconnect_backoff;
        self->SetConnected(true);
        const absl::Status written = co_await self->WriteLoop(socket);
        self->SetConnected(false);
        if (!self->closed_ && !self->shared_->stopped) {
          STEAD_LOG(self->shared_->logger, Warning)
              << "peer=" << self->id_ << " connection to " << self->host_ << ":" << self->port_
              << " lost: " << written.message();
        }
      } else {
        {
          MutexLock lock(&self->state_mu_);
          ++self->state_.connect_failures;
        }
        STEAD_LOG(self->shared_->logger, Info)
            << "peer=" << self->id_ << " cannot connect to " << self->host_ << ":"
            << self->port_ << ": " << connected.message() << "; retrying in " << backoff;
      }
      self->socket_ = nullptr;
      error_code ignored;
      socket.socket().close(ignored);
      // Messages queued for a broken connection are stale by the time it is back.
      self->CountDropped(self->queue_.size());
      if (!self->queue_.empty()) self->ReportUnreachable();
      self->queue_.clear();
      self->queued_bytes_ = 0;
      if (self->closed_ || self->shared_->stopped) break;

      self->backoff_timer_.expires_after(absl::ToChronoNanoseconds(backoff));
      error_code ec;
      co_await self->backoff_timer_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      backoff = std::min(backoff * 2, self->shared_->options.max_reconnect_backoff);
    }
  }

  // Resolves the host now (never cached), connects and exchanges hellos, all within
  // the handshake timeout.
  asio::awaitable<absl::Status> Connect(wire::Stream& socket) {
    asio::steady_timer deadline(strand_,
                                absl::ToChronoNanoseconds(shared_->options.handshake_timeout));
    // The handler runs on strand_ like this coroutine; `pending` tells it whether the
    // socket is still the one being connected (it may already be gone otherwise).
    auto pending = std::make_shared<bool>(true);
    deadline.async_wait([pending, &socket](error_code ec) {
      error_code ignored;
      if (!ec && *pending) socket.socket().close(ignored);  // unblocks whichever step is pending
    });
    const absl::Status status = co_await ConnectAndHello(socket);
    *pending = false;
    deadline.cancel();
    co_return status;
  }

  asio::awaitable<absl::Status> ConnectAndHello(wire::Stream& socket) {
    if (const absl::Status connected = co_await ResolveAndConnect(
            strand_, socket, host_, port_, shared_->options.handshake_timeout);
        !connected.ok()) {
      co_return connected;
    }
    pb::PeerFrame hello_frame;
    *hello_frame.mutable_hello() = shared_->Hello(id_);
    error_code ec;
    std::string bytes;
    STEAD_CHECK_OK(AppendFrame(hello_frame, shared_->options.max_frame_bytes, &bytes));
    co_await asio::async_write(socket, asio::buffer(bytes),
                               asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return Annotate(socket.DescribeError(ec), "send hello");

    FrameReader reader(shared_->options.max_frame_bytes);
    pb::PeerFrame response;
    const absl::Status read = co_await ReadPeerFrame(socket, reader, &response);
    if (!read.ok()) co_return Annotate(read, "hello response");
    if (!response.has_hello_response()) {
      co_return absl::InvalidArgumentError("peer answered the hello with another frame");
    }
    const pb::PeerHelloResponse& answer = response.hello_response();
    const uint64_t own_cluster = shared_->cluster_id;
    const uint64_t other_cluster =
        !answer.accepted() && answer.cluster_id() != 0 && answer.cluster_id() != own_cluster
            ? answer.cluster_id()
            : 0;
    const bool newly_other = SetOtherCluster(other_cluster);
    if (other_cluster != 0) {
      // One peer of another cluster says only that one of the two members is misplaced
      // (the node decides which: it is this one when most peers say so), so this is a
      // warning, said once.
      const std::string message = absl::StrCat(
          "peer ", host_, ":", port_, " answers from cluster ", absl::Hex(other_cluster),
          ", not from this member's cluster ", absl::Hex(own_cluster),
          ": it runs on another cluster's volumes, or this member does");
      if (newly_other) STEAD_LOG(shared_->logger, Warning) << message;
      co_return absl::FailedPreconditionError(message);
    }
    if (!answer.accepted()) {
      co_return absl::FailedPreconditionError(absl::StrCat("refused by the peer: ", answer.reason()));
    }
    co_return absl::OkStatus();
  }

  // Writes queued frames until the connection breaks or the peer is closed.
  asio::awaitable<absl::Status> WriteLoop(wire::Stream& socket) {
    std::string batch;
    while (!closed_ && !shared_->stopped) {
      if (queue_.empty()) {
        wake_.expires_at(asio::steady_timer::time_point::max());
        error_code ignored;
        co_await wake_.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
        continue;
      }
      batch.clear();
      const size_t count = queue_.size();
      for (std::string& frame : queue_) batch += frame;
      queue_.clear();
      queued_bytes_ = 0;
      error_code ec;
      co_await asio::async_write(socket, asio::buffer(batch),
                                 asio::redirect_error(asio::use_awaitable, ec));
      if (ec) {
        CountDropped(count);
        co_return socket.DescribeError(ec);
      }
      MutexLock lock(&state_mu_);
      state_.messages_sent += count;
    }
    co_return absl::OkStatus();
  }

  // Records the peer's answer of "another cluster" (0: none); true if it is new.
  bool SetOtherCluster(uint64_t cluster) {
    MutexLock lock(&state_mu_);
    const bool changed = state_.other_cluster_id != cluster;
    state_.other_cluster_id = cluster;
    return changed && cluster != 0;
  }

  void SetConnected(bool connected) {
    MutexLock lock(&state_mu_);
    state_.connected = connected;
    if (connected) ++state_.connects;
    state_.address = absl::StrCat(host_, ":", port_);
  }

  void CountDropped(size_t count) {
    MutexLock lock(&state_mu_);
    state_.messages_dropped += count;
  }

  void ReportUnreachable() {
    shared_->ReportUnreachable(id_);
  }

  const std::shared_ptr<Shared> shared_;
  const raft::NodeId id_;
  asio::strand<asio::io_context::executor_type> strand_;
  // Everything below is touched only on strand_.
  asio::steady_timer wake_;           // cancelled to wake the write loop
  asio::steady_timer backoff_timer_;  // the wait between connection attempts
  std::string host_;
  uint16_t port_;
  std::deque<std::string> queue_;
  size_t queued_bytes_ = 0;
  bool overflowing_ = false;
  bool closed_ = false;
  wire::Stream* socket_ = nullptr;  // the live stream while Run holds one

  mutable Mutex state_mu_;
  PeerState state_ ABSL_GUARDED_BY(state_mu_);
};

// One accepted connection: check the hello, then deliver Raft messages.
class PeerTransport::Inbound : public std::enable_shared_from_this<Inbound> {
 public:
  // `socket`'s executor is a strand of its own (Listener).
  Inbound(std::shared_ptr<Shared> shared, tcp::socket socket)
      : shared_(std::move(shared)),
        remote_(RemoteEndpoint(socket)),
        socket_holder_(
            std::make_unique<wire::Stream>(std::move(socket), shared_->options.tls_server)),
        socket_(*socket_holder_),
        strand_(socket_.get_executor()),
        watchdog_(strand_) {}

  void Start() {
    asio::co_spawn(strand_, Run(shared_from_this()), [](std::exception_ptr) {});
  }

  // Thread-safe.
  void Close() {
    asio::post(strand_, [self = shared_from_this()] {
      error_code ignored;
      self->socket_.socket().close(ignored);
    });
  }

  // For admission (ConnectionSet::Admit): busy while answering a discovery question.
  const tcp::endpoint& remote() const { return remote_; }
  const ConnectionActivity& activity() const { return activity_; }

 private:
  static asio::awaitable<void> Run(std::shared_ptr<Inbound> self) {
    self->watchdog_.Start(self, [raw = self.get()] {
      raw->timed_out_ = true;
      error_code ignored;
      raw->socket_.socket().close(ignored);
    });
    const absl::Status status = co_await self->Serve();
    if (!status.ok() && !self->shared_->stopped) {
      const LogLevel level = absl::IsUnavailable(status) ? LogLevel::kInfo : LogLevel::kWarning;
      const std::string message =
          absl::StrCat("closing peer connection from ", self->remote_.address().to_string(), ":",
                       self->remote_.port(), " (", self->peer_name_, "): ", status.message());
      if (self->authenticated_) {
        if (self->shared_->logger.Enabled(level)) {
          self->shared_->logger.Write(level, __FILE__, __LINE__, message);
        }
      } else {
        // Anyone can open these, as often as they like: a line per interval at most.
        self->shared_->events.Log(level, message);
      }
    }
    self->watchdog_.Stop();
    error_code ignored;
    self->socket_.socket().close(ignored);
    self->shared_->inbound.Remove(self.get());
  }

  asio::awaitable<absl::Status> Serve() {
    FrameReader reader(shared_->options.max_frame_bytes);
    pb::PeerFrame frame;
    // The handshake and the first frame share the hello timeout: a socket that never
    // completes either holds an unauthenticated slot that long at most.
    watchdog_.SetAfter(shared_->options.hello_timeout);
    if (socket_.is_tls()) {
      const absl::Status handshake = co_await socket_.AsyncServerHandshake(
          shared_->options.hello_timeout, asio::use_awaitable);
      if (!handshake.ok()) co_return Annotate(handshake, "TLS handshake");
    }
    const absl::Status first = co_await ReadPeerFrame(socket_, reader, &frame);
    watchdog_.Clear();
    if (timed_out_) {
      co_return absl::DeadlineExceededError(absl::StrCat(
          "no hello within ", absl::FormatDuration(shared_->options.hello_timeout)));
    }
    if (!first.ok() && !socket_.is_tls() && wire::LooksLikeTlsClientHello(reader.buffered())) {
      // A member with peer TLS dialing this plain port: say so, as the client port does.
      co_return absl::FailedPreconditionError(wire::kTlsOnPlainPortMessage);
    }
    if (!first.ok()) co_return Annotate(first, "waiting for hello");
    if (frame.has_discovery_request()) {
      activity_.Begin();  // answered at once, then closed: not worth evicting
      co_return co_await AnswerDiscovery(frame);
    }
    if (frame.has_snapshot_offer()) {
      co_return co_await ReceiveSnapshot(std::move(*frame.mutable_snapshot_offer()), reader);
    }
    if (!frame.has_hello()) co_return absl::InvalidArgumentError("first frame is not a hello");
    const pb::PeerHello hello = frame.hello();
    peer_name_ = hello.from_name();
    const raft::NodeId node_id = shared_->node_id;
    absl::Status valid =
        ValidateHello(hello, shared_->cluster_id, node_id, shared_->options.node_name);
    if (valid.ok()) valid = CheckAnnouncedHost(socket_, hello.from_host());
    if (valid.ok()) valid = Authenticate();
    if (const absl::Status sent = co_await SendHelloResponse(valid); !sent.ok()) co_return sent;
    if (!valid.ok()) co_return Annotate(valid, "refused");

    for (;;) {
      const absl::Status read = co_await ReadPeerFrame(socket_, reader, &frame);
      if (!read.ok()) co_return read;
      if (!frame.has_raft()) co_return absl::InvalidArgumentError("unexpected frame after hello");
      if (frame.raft().from() != hello.from_id() || frame.raft().to() != node_id) {
        co_return absl::InvalidArgumentError(
            absl::StrCat("message from ", frame.raft().from(), " to ", frame.raft().to(),
                         " on the connection of node ", hello.from_id()));
      }
      if (shared_->stopped) co_return absl::OkStatus();
      shared_->DeliverMessage(std::move(*frame.mutable_raft()));
    }
  }

  // A peer whose hello was accepted leaves the slots of unauthenticated connections for
  // its own, where it cannot be evicted. Unavailable when those are all taken.
  absl::Status Authenticate() {
    if (!shared_->inbound.Trust(this)) {
      return absl::UnavailableError(absl::StrCat(
          "this member holds ", shared_->inbound.trusted_size(),
          " peer connections already (max_authenticated_connections)"));
    }
    authenticated_ = true;
    return absl::OkStatus();
  }

  // Answers one discovery question; the connection then closes.
  asio::awaitable<absl::Status> AnswerDiscovery(const pb::PeerFrame& request) {
    peer_name_ = request.discovery_request().from().name();
    if (socket_.is_tls()) {
      const std::string& address = request.discovery_request().from().peer_address();
      absl::StatusOr<HostPort> asker = ParseHostPort(address, "the asker's peer address", "");
      if (!asker.ok()) co_return asker.status();
      STEAD_CO_RETURN_IF_ERROR(CheckAnnouncedHost(socket_, asker->host));
    }
    std::optional<pb::DiscoveryResponse> answer =
        shared_->AnswerDiscovery(request.discovery_request());
    if (!answer) co_return absl::UnavailableError("not answering discovery (stopping)");
    pb::PeerFrame response;
    *response.mutable_discovery_response() = std::move(*answer);
    co_return co_await SendFrame(response);
  }

  asio::awaitable<absl::Status> SendHelloResponse(const absl::Status& valid) {
    pb::PeerFrame response;
    response.mutable_hello_response()->set_accepted(valid.ok());
    response.mutable_hello_response()->set_reason(std::string(valid.message()));
    response.mutable_hello_response()->set_node_id(shared_->node_id);
    response.mutable_hello_response()->set_cluster_id(shared_->cluster_id);
    const absl::Status sent = co_await SendFrame(response);
    co_return Annotate(sent, "send hello response");
  }

  asio::awaitable<absl::Status> SendFrame(const pb::PeerFrame& response) {
    co_return co_await WritePeerFrame(socket_, response, shared_->options.max_frame_bytes);
  }

  // A leader streams a checkpoint: stage it through the sink, acknowledge each chunk,
  // and hand the SNAPSHOT message to Raft once the whole checkpoint is verified.
  asio::awaitable<absl::Status> ReceiveSnapshot(pb::SnapshotOffer offer, FrameReader& reader) {
    peer_name_ = offer.hello().from_name();
    const raft::NodeId node_id = shared_->node_id;
    absl::Status valid =
        ValidateHello(offer.hello(), shared_->cluster_id, node_id, shared_->options.node_name);
    if (valid.ok()) valid = ValidateSnapshotOffer(offer, node_id);
    if (valid.ok()) valid = CheckAnnouncedHost(socket_, offer.hello().from_host());
    if (valid.ok()) valid = Authenticate();
    SnapshotSink* const sink = shared_->snapshot_sink;
    if (valid.ok() && sink == nullptr) {
      valid = absl::UnavailableError("this member does not take snapshots yet");
    }
    SnapshotSink::Transfer transfer;
    if (valid.ok()) {
      absl::StatusOr<SnapshotSink::Transfer> begun = sink->BeginTransfer(
          offer.message().snapshot(), offer.manifest_crc32c());
      if (begun.ok()) {
        transfer = *begun;
      } else {
        valid = begun.status();
      }
    }
    pb::PeerFrame response;
    pb::SnapshotOfferResponse* answer = response.mutable_snapshot_offer_response();
    answer->set_accepted(valid.ok());
    answer->set_reason(std::string(valid.message()));
    answer->set_resume_file_index(transfer.resume.file_index);
    answer->set_resume_offset(transfer.resume.offset);
    if (const absl::Status sent = co_await SendFrame(response); !sent.ok()) co_return sent;
    if (!valid.ok()) co_return Annotate(valid, "snapshot offer refused");
    STEAD_LOG(shared_->logger, Info)
        << "receiving snapshot index=" << offer.message().snapshot().index()
        << " term=" << offer.message().snapshot().term() << " from " << peer_name_
        << (transfer.resumed ? " (resuming a partial transfer)" : "");
    if (transfer.resumed) shared_->CountSnapshot([](auto& stats) { ++stats.receives_resumed; });

    const absl::Status status = co_await ReceiveChunks(*sink, transfer.id, reader);
    if (status.ok()) {
      shared_->DeliverMessage(std::move(*offer.mutable_message()));
      shared_->CountSnapshot([](auto& stats) { ++stats.receives_completed; });
    } else {
      shared_->CountSnapshot([](auto& stats) { ++stats.receives_failed; });
    }
    pb::PeerFrame result;
    result.mutable_snapshot_result()->set_ok(status.ok());
    result.mutable_snapshot_result()->set_reason(std::string(status.message()));
    if (const absl::Status sent = co_await SendFrame(result); !sent.ok() && status.ok()) {
      co_return sent;
    }
    co_return status;
  }

  asio::awaitable<absl::Status> ReceiveChunks(SnapshotSink& sink, uint64_t transfer,
                                              FrameReader& reader) {
    const absl::Duration idle = shared_->options.snapshot_idle_timeout;
    watchdog_.SetAfter(idle);
    pb::PeerFrame frame;
    uint64_t chunks = 0;
    for (bool complete = false; !complete;) {
      const absl::Status read = co_await ReadPeerFrame(socket_, reader, &frame);
      if (!read.ok()) co_return Annotate(read, "snapshot transfer broken (idle or closed)");
      if (!frame.has_snapshot_chunk()) {
        co_return absl::InvalidArgumentError("unexpected frame in a snapshot transfer");
      }
      const size_t bytes = frame.snapshot_chunk().data().size();
      if (absl::Status written =
              sink.WriteChunk(transfer, frame.snapshot_chunk(), &complete);
          !written.ok()) {
        co_return written;
      }
      shared_->CountSnapshot([bytes](auto& stats) { stats.bytes_received += bytes; });
      watchdog_.SetAfter(idle);
      pb::PeerFrame ack;
      ack.mutable_snapshot_ack()->set_chunks(++chunks);
      if (const absl::Status sent = co_await SendFrame(ack); !sent.ok()) co_return sent;
    }
    co_return sink.FinishTransfer(transfer);
  }

  const std::shared_ptr<Shared> shared_;
  const tcp::endpoint remote_;
  const std::unique_ptr<wire::Stream> socket_holder_;
  wire::Stream& socket_;  // plain or TLS
  const asio::any_io_executor strand_;  // the socket's
  ConnectionActivity activity_;
  // Strand only.
  std::string peer_name_ = "unknown";
  bool authenticated_ = false;
  bool timed_out_ = false;  // the watchdog closed the socket
  ConnectionDeadline watchdog_;  // the hello, then the gaps between snapshot chunks
};

// One outgoing snapshot transfer, on a connection of its own: offer, then chunks with
// at most a window of them unacknowledged, then the follower's result.
class PeerTransport::SnapshotSend : public std::enable_shared_from_this<SnapshotSend> {
 public:
  SnapshotSend(std::shared_ptr<Shared> shared, pb::Message message, std::string checkpoint_dir,
               std::string host, uint16_t port, SnapshotDone done)
      : shared_(std::move(shared)),
        message_(std::move(message)),
        checkpoint_dir_(std::move(checkpoint_dir)),
        host_(std::move(host)),
        port_(port),
        done_(std::move(done)),
        strand_(asio::make_strand(shared_->io)),
        socket_holder_(
            std::make_unique<wire::Stream>(tcp::socket(strand_), shared_->options.tls_client)),
        socket_(*socket_holder_),
        pace_(strand_),
        watchdog_(strand_) {}

  void Start() {
    asio::co_spawn(strand_, Run(shared_from_this()), [](std::exception_ptr) {});
  }

  void Close() {
    asio::post(strand_, [self = shared_from_this()] {
      self->closed_ = true;
      self->pace_.cancel();
      error_code ignored;
      self->socket_.socket().close(ignored);
    });
  }

 private:
  static asio::awaitable<void> Run(std::shared_ptr<SnapshotSend> self) {
    const raft::NodeId to = self->message_.to();
    const absl::Time start = absl::Now();
    absl::Status status = co_await self->Transfer();
    self->watchdog_.Stop();
    error_code ignored;
    self->socket_.socket().close(ignored);
    const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
    if (status.ok()) {
      self->shared_->CountSnapshot([](auto& stats) { ++stats.sends_completed; });
      STEAD_LOG(self->shared_->logger, Info)
          << "peer=" << to << " snapshot index=" << self->message_.snapshot().index() << " sent: "
          << self->bytes_sent_ << " bytes in " << seconds << " s";
    } else {
      self->shared_->CountSnapshot([](auto& stats) { ++stats.sends_failed; });
      STEAD_LOG(self->shared_->logger, Warning)
          << "peer=" << to << " snapshot index=" << self->message_.snapshot().index()
          << " not delivered after " << self->bytes_sent_ << " bytes: " << status.message()
          << "; Raft will offer it again";
    }
    self->shared_->snapshot_sends.Remove(self.get());
    self->shared_->FinishSnapshotSend(self->done_, std::move(status));
  }

  asio::awaitable<absl::Status> Transfer() {
    const PeerTransportOptions& options = shared_->options;
    storage::CheckpointReaderOptions reader_options;
    reader_options.max_chunk_bytes = options.snapshot_chunk_bytes;
    absl::StatusOr<std::unique_ptr<storage::CheckpointReader>> reader =
        storage::CheckpointReader::Open(checkpoint_dir_, reader_options);
    if (!reader.ok()) co_return Annotate(reader.status(), "open the checkpoint");
    // The manifest chunk comes first; its CRC names the checkpoint in the offer.
    absl::StatusOr<std::optional<pb::SnapshotChunk>> manifest_chunk = (*reader)->Next();
    if (!manifest_chunk.ok()) co_return manifest_chunk.status();
    if (!manifest_chunk->has_value()) co_return absl::InternalError("checkpoint stream is empty");

    watchdog_.Start(shared_from_this(), [this] {
      error_code ignored;
      socket_.socket().close(ignored);
    });
    watchdog_.SetAfter(options.handshake_timeout);
    if (absl::Status connected = co_await ResolveAndConnect(strand_, socket_, host_, port_,
                                                            options.handshake_timeout);
        !connected.ok()) {
      co_return connected;
    }
    pb::PeerFrame offer;
    *offer.mutable_snapshot_offer()->mutable_hello() = shared_->Hello(message_.to());
    *offer.mutable_snapshot_offer()->mutable_message() = message_;
    offer.mutable_snapshot_offer()->set_manifest_crc32c((*manifest_chunk)->manifest_crc32c());
    STEAD_CO_RETURN_IF_ERROR(co_await Write(offer));
    FrameReader frames(options.max_frame_bytes);
    pb::PeerFrame frame;
    STEAD_CO_RETURN_IF_ERROR(co_await Read(frames, &frame));
    if (!frame.has_snapshot_offer_response()) {
      co_return absl::InvalidArgumentError("peer answered the snapshot offer with another frame");
    }
    const pb::SnapshotOfferResponse& answer = frame.snapshot_offer_response();
    if (!answer.accepted()) {
      co_return absl::UnavailableError(absl::StrCat("offer refused: ", answer.reason()));
    }
    const storage::StreamPosition resume{answer.resume_file_index(), answer.resume_offset()};
    if (resume != storage::StreamPosition{}) {
      reader_options.start = resume;
      reader = storage::CheckpointReader::Open(checkpoint_dir_, reader_options);
      if (!reader.ok()) co_return Annotate(reader.status(), "reopen the checkpoint to resume");
      manifest_chunk = (*reader)->Next();
      if (!manifest_chunk.ok()) co_return manifest_chunk.status();
    }
    watchdog_.SetAfter(options.snapshot_idle_timeout);

    // Chunks, at most a window ahead of the acknowledgements.
    std::optional<pb::SnapshotChunk> next = std::move(*manifest_chunk);
    uint64_t sent = 0;
    uint64_t acknowledged = 0;
    const absl::Time started = absl::Now();
    while (next.has_value() || acknowledged < sent) {
      if (next.has_value() && sent - acknowledged < options.snapshot_window_chunks) {
        pb::PeerFrame chunk;
        *chunk.mutable_snapshot_chunk() = std::move(*next);
        const size_t bytes = chunk.snapshot_chunk().data().size();
        STEAD_CO_RETURN_IF_ERROR(co_await Write(chunk));
        ++sent;
        bytes_sent_ += bytes;
        shared_->CountSnapshot([bytes](auto& stats) { stats.bytes_sent += bytes; });
        STEAD_CO_RETURN_IF_ERROR(co_await Pace(started));
        absl::StatusOr<std::optional<pb::SnapshotChunk>> read = (*reader)->Next();
        if (!read.ok()) co_return Annotate(read.status(), "read the checkpoint");
        next = std::move(*read);
        continue;
      }
      STEAD_CO_RETURN_IF_ERROR(co_await Read(frames, &frame));
      if (frame.has_snapshot_result()) break;  // the follower gave up early
      if (!frame.has_snapshot_ack()) {
        co_return absl::InvalidArgumentError("unexpected frame in a snapshot transfer");
      }
      acknowledged = frame.snapshot_ack().chunks();
      watchdog_.SetAfter(options.snapshot_idle_timeout);
    }
    if (!frame.has_snapshot_result()) STEAD_CO_RETURN_IF_ERROR(co_await Read(frames, &frame));
    if (!frame.has_snapshot_result()) {
      co_return absl::InvalidArgumentError("expected the follower's snapshot result");
    }
    if (!frame.snapshot_result().ok()) {
      co_return absl::AbortedError(
          absl::StrCat("follower refused the snapshot: ", frame.snapshot_result().reason()));
    }
    co_return absl::OkStatus();
  }

  asio::awaitable<absl::Status> Write(const pb::PeerFrame& frame) {
    if (closed_) co_return absl::UnavailableError("transport stopping");
    co_return co_await WritePeerFrame(socket_, frame, shared_->options.max_frame_bytes);
  }
  asio::awaitable<absl::Status> Read(FrameReader& frames, pb::PeerFrame* frame) {
    if (closed_) co_return absl::UnavailableError("transport stopping");
    const absl::Status read = co_await ReadPeerFrame(socket_, frames, frame);
    co_return Annotate(read, "snapshot connection (idle too long, or closed)");
  }
  // Sleeps as long as the transfer is ahead of snapshot_bytes_per_second.
  asio::awaitable<absl::Status> Pace(absl::Time started) {
    const uint64_t rate = shared_->options.snapshot_bytes_per_second;
    if (rate == 0) co_return absl::OkStatus();
    const absl::Time due = started + absl::Seconds(static_cast<double>(bytes_sent_) / static_cast<double>(rate));
    const absl::Duration ahead = due - absl::Now();
    if (ahead <= absl::ZeroDuration()) co_return absl::OkStatus();
    pace_.expires_after(absl::ToChronoNanoseconds(ahead));
    error_code ec;
    co_await pace_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    watchdog_.SetAfter(shared_->options.snapshot_idle_timeout);
    if (closed_) co_return absl::UnavailableError("transport stopping");
    co_return absl::OkStatus();
  }

  const std::shared_ptr<Shared> shared_;
  const pb::Message message_;
  const std::string checkpoint_dir_;
  const std::string host_;
  const uint16_t port_;
  const SnapshotDone done_;
  Strand strand_;
  // Strand only.
  const std::unique_ptr<wire::Stream> socket_holder_;
  wire::Stream& socket_;  // plain or TLS
  asio::steady_timer pace_;
  ConnectionDeadline watchdog_;
  bool closed_ = false;
  uint64_t bytes_sent_ = 0;
};

PeerTransport::PeerTransport(asio::io_context& io, PeerTransportOptions options, Logger logger,
                             MessageHandler on_message, UnreachableHandler on_unreachable)
    : shared_(std::make_shared<Shared>(io, std::move(options), std::move(logger),
                                       std::move(on_message), std::move(on_unreachable))) {
  STEAD_CHECK_EQ(shared_->options.cluster_id == 0, shared_->options.node_id == raft::kNoNode)
      << "cluster id and node id are set together";
}

void PeerTransport::SetIdentity(uint64_t cluster_id, raft::NodeId node_id) {
  STEAD_CHECK_NE(cluster_id, 0u);
  STEAD_CHECK_NE(node_id, raft::kNoNode);
  STEAD_CHECK(shared_->cluster_id == 0 || shared_->cluster_id == cluster_id)
      << "a member's cluster id never changes";
  shared_->node_id = node_id;
  shared_->cluster_id = cluster_id;
}

void PeerTransport::SetDiscoveryHandler(DiscoveryHandler handler) {
  shared_->on_discovery = std::move(handler);
}

void PeerTransport::SetSnapshotSink(SnapshotSink* sink) { shared_->snapshot_sink = sink; }

PeerTransport::~PeerTransport() { Stop(); }

absl::Status PeerTransport::Listen(const std::string& host, uint16_t port) {
  STEAD_RETURN_IF_ERROR(shared_->listener->Listen(host, port, "peers"));
  // Weak: the listener keeps its handler, and Shared keeps the listener.
  shared_->listener->Start([weak = std::weak_ptr<Shared>(shared_)](tcp::socket socket) {
    std::shared_ptr<Shared> shared = weak.lock();
    if (shared == nullptr || shared->stopped) return;
    auto inbound = std::make_shared<Inbound>(shared, std::move(socket));
    if (shared->inbound.Admit(inbound)) inbound->Start();
  });
  return absl::OkStatus();
}

uint16_t PeerTransport::listen_port() const { return shared_->listener->port(); }

void PeerTransport::SetPeer(raft::NodeId id, std::string host, uint16_t port) {
  STEAD_CHECK_NE(id, raft::kNoNode);
  STEAD_CHECK_NE(id, shared_->node_id.load()) << "a member is not its own peer";
  if (shared_->stopped) return;
  std::shared_ptr<Outbound> peer;
  {
    MutexLock lock(&mu_);
    addresses_[id] = {host, port};
    auto it = peers_.find(id);
    if (it != peers_.end()) {
      it->second->SetAddress(std::move(host), port);
      return;
    }
    peer = std::make_shared<Outbound>(shared_, id, std::move(host), port);
    peers_.emplace(id, peer);
  }
  peer->Start();
}

void PeerTransport::RemovePeer(raft::NodeId id) {
  std::shared_ptr<Outbound> peer;
  {
    MutexLock lock(&mu_);
    addresses_.erase(id);
    auto it = peers_.find(id);
    if (it == peers_.end()) return;
    peer = std::move(it->second);
    peers_.erase(it);
  }
  peer->Close();
}

void PeerTransport::Send(pb::Message message) {
  if (shared_->stopped) return;
  std::shared_ptr<Outbound> peer;
  {
    MutexLock lock(&mu_);
    auto it = peers_.find(message.to());
    if (it != peers_.end()) peer = it->second;
  }
  if (peer == nullptr) {
    STEAD_LOG(shared_->logger, Debug) << "dropping a message to unknown peer " << message.to();
    shared_->ReportUnreachable(message.to());
    return;
  }
  pb::PeerFrame frame;
  *frame.mutable_raft() = std::move(message);
  std::string bytes;
  if (const absl::Status framed = AppendFrame(frame, shared_->options.max_frame_bytes, &bytes);
      !framed.ok()) {
    // Raft bounds its messages well below the frame limit, so this is a bug in the caller.
    STEAD_LOG(shared_->logger, Error) << "dropping a message to peer " << frame.raft().to() << ": "
                                      << framed.message();
    return;
  }
  peer->Enqueue(std::move(bytes));
}

void PeerTransport::SendSnapshot(pb::Message message, std::string checkpoint_dir,
                                 SnapshotDone done) {
  if (shared_->stopped) return;
  std::optional<std::pair<std::string, uint16_t>> address;
  {
    MutexLock lock(&mu_);
    auto it = addresses_.find(message.to());
    if (it != addresses_.end()) address = it->second;
  }
  if (!address) {
    done(absl::UnavailableError(absl::StrCat("no address for peer ", message.to())));
    return;
  }
  auto send = std::make_shared<SnapshotSend>(shared_, std::move(message), std::move(checkpoint_dir),
                                             address->first, address->second, done);
  if (!shared_->snapshot_sends.Add(send)) {
    done(absl::UnavailableError(absl::StrCat(shared_->snapshot_sends.size(),
                                             " snapshot transfers running (max_snapshot_sends)")));
    return;
  }
  shared_->CountSnapshot([](auto& stats) { ++stats.sends_started; });
  send->Start();
}

SnapshotTransferStats PeerTransport::SnapshotStats() const {
  MutexLock lock(&shared_->stats_mu);
  return shared_->snapshot_stats;
}

std::map<raft::NodeId, PeerState> PeerTransport::Peers() const {
  std::map<raft::NodeId, PeerState> states;
  MutexLock lock(&mu_);
  for (const auto& [id, peer] : peers_) states[id] = peer->State();
  return states;
}

void PeerTransport::Stop() {
  if (shared_->stopped.exchange(true)) return;
  {
    // Wait for a handler in progress on another thread; later ones see `stopped`.
    MutexLock lock(&shared_->handler_mu);
  }
  std::map<raft::NodeId, std::shared_ptr<Outbound>> peers;
  {
    MutexLock lock(&mu_);
    peers.swap(peers_);
  }
  for (auto& [id, peer] : peers) peer->Close();
  for (const auto& connection : shared_->inbound.Live()) connection->Close();
  for (const auto& send : shared_->snapshot_sends.Live()) send->Close();
  shared_->listener->Close();
}

}  // namespace stead::server
