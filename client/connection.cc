#include "client/connection.h"

#include <algorithm>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "base/log.h"
#include "base/status_macros.h"
#include "wire/stream.h"
#include "wire/tls_context.h"

namespace stead::client_internal {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;

// Splits "host:port" / "[v6]:port"; false if it is not of that form.
bool SplitHostPort(const std::string& address, std::string* host, std::string* port) {
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == address.size()) return false;
  *host = address.substr(0, colon);
  *port = address.substr(colon + 1);
  if (host->size() >= 2 && host->front() == '[' && host->back() == ']') {
    *host = host->substr(1, host->size() - 2);
  }
  uint32_t number = 0;
  return absl::SimpleAtoi(*port, &number) && number > 0 && number <= 65535;
}

}  // namespace

absl::StatusOr<std::shared_ptr<wire::TlsContextProvider>> MakeClientTlsProvider(
    const ClientTlsOptions& options) {
  if (!options.enabled && options.trusted_ca_file.empty() && options.cert_file.empty() &&
      options.key_file.empty()) {
    return nullptr;
  }
  wire::TlsOptions tls{.cert_file = options.cert_file,
                       .key_file = options.key_file,
                       .trusted_ca_file = options.trusted_ca_file,
                       .names = {.cert_file = "ClientTlsOptions::cert_file",
                                 .key_file = "ClientTlsOptions::key_file",
                                 .trusted_ca_file = "ClientTlsOptions::trusted_ca_file",
                                 .cert_auth = ""}};
  // Only reload failures are logged: a client library stays quiet when all is well.
  STEAD_ASSIGN_OR_RETURN(std::unique_ptr<wire::TlsContextProvider> provider,
                         wire::TlsContextProvider::Create(std::move(tls), wire::TlsRole::kClient,
                                                          Logger(LogLevel::kWarning)));
  return std::shared_ptr<wire::TlsContextProvider>(std::move(provider));
}

Connection::Connection(asio::io_context& io, std::string address, absl::Duration connect_timeout,
                       uint32_t max_frame_bytes, std::shared_ptr<wire::TlsContextProvider> tls,
                       std::string tls_server_name)
    : address_(std::move(address)),
      connect_timeout_(connect_timeout),
      max_frame_bytes_(max_frame_bytes),
      strand_(asio::make_strand(io)),
      tls_(std::move(tls)),
      tls_server_name_(std::move(tls_server_name)),
      resolver_(strand_),
      connect_timer_(strand_) {}

Connection::~Connection() = default;

void Connection::Send(uint64_t request_id, std::string frame, ResponseHandler handler) {
  Enqueue(request_id, std::move(frame), Pending{std::move(handler), /*stream=*/false});
}

void Connection::SendStream(uint64_t request_id, std::string frame, ResponseHandler handler) {
  Enqueue(request_id, std::move(frame), Pending{std::move(handler), /*stream=*/true});
}

void Connection::Enqueue(uint64_t request_id, std::string frame, Pending pending) {
  asio::post(strand_, [self = shared_from_this(), request_id, frame = std::move(frame),
                       pending = std::move(pending)]() mutable {
    self->pending_[request_id] = std::move(pending);
    self->queued_.append(frame);
    switch (self->state_) {
      case State::kIdle: self->StartConnect(); break;
      case State::kConnecting: break;  // written once connected
      case State::kConnected:
        if (self->writing_.empty()) self->StartWrite();
        break;
    }
  });
}

void Connection::Forget(uint64_t request_id) {
  asio::post(strand_, [self = shared_from_this(), request_id] { self->pending_.erase(request_id); });
}

void Connection::Close() {
  asio::post(strand_, [self = shared_from_this()] {
    self->Fail(absl::UnavailableError(absl::StrCat("connection to ", self->address_, " closed")));
  });
}

void Connection::StartConnect() {
  state_ = State::kConnecting;
  reader_.emplace(max_frame_bytes_);
  const uint64_t generation = generation_;
  std::string host, port;
  if (!SplitHostPort(address_, &host, &port)) {
    Fail(absl::InvalidArgumentError(absl::StrCat("endpoint '", address_, "' is not host:port")));
    return;
  }
  stream_ = std::make_shared<wire::Stream>(tcp::socket(strand_), tls_);
  connect_deadline_ = absl::Now() + connect_timeout_;
  // The timer bounds resolution and connect together; on expiry it cancels both, and
  // their handlers then see operation_aborted and fail the connection. The TLS
  // handshake has a deadline of its own: the rest of connect_timeout_.
  connect_timer_.expires_after(absl::ToChronoNanoseconds(connect_timeout_));
  connect_timer_.async_wait([self = shared_from_this(), generation](boost::system::error_code ec) {
    if (ec || generation != self->generation_ || self->state_ != State::kConnecting) return;
    self->resolver_.cancel();
    boost::system::error_code ignored;
    self->stream_->socket().close(ignored);  // the pending connect completes with an error
  });
  resolver_.async_resolve(
      host, port,
      [self = shared_from_this(), generation](boost::system::error_code ec,
                                               tcp::resolver::results_type results) {
        if (generation != self->generation_) return;
        if (ec) {
          self->OnConnected(generation, ec);
          return;
        }
        asio::async_connect(self->stream_->socket(), results,
                            [self, stream = self->stream_, generation](
                                boost::system::error_code connect_error, const tcp::endpoint&) {
                              self->OnConnected(generation, connect_error);
                            });
      });
}

void Connection::OnConnected(uint64_t generation, const boost::system::error_code& error) {
  if (generation != generation_) return;
  connect_timer_.cancel();
  if (error) {
    Fail(absl::UnavailableError(
        absl::StrCat("cannot connect to ", address_, ": ",
                     error == asio::error::operation_aborted ? "timed out" : error.message())));
    return;
  }
  boost::system::error_code ignored;
  stream_->socket().set_option(tcp::no_delay(true), ignored);  // small frames: latency matters
  if (!stream_->is_tls()) {
    OnReady(generation);
    return;
  }
  std::string host = tls_server_name_;
  if (host.empty()) {
    std::string port;
    SplitHostPort(address_, &host, &port);  // checked in StartConnect
  }
  // At least a millisecond: a connect that used up the budget still gets one try.
  const absl::Duration remaining =
      std::max(connect_deadline_ - absl::Now(), absl::Milliseconds(1));
  stream_->AsyncClientHandshake(
      std::move(host), remaining,
      asio::bind_executor(strand_, [self = shared_from_this(), stream = stream_,
                                    generation](absl::Status status) {
        if (generation != self->generation_) return;
        if (!status.ok()) {
          self->Fail(absl::Status(status.code(), absl::StrCat("TLS handshake with ", self->address_,
                                                              " failed: ", status.message())));
          return;
        }
        self->OnReady(generation);
      }));
}

void Connection::OnReady(uint64_t generation) {
  if (generation != generation_) return;
  state_ = State::kConnected;
  StartRead();
  if (!queued_.empty()) StartWrite();
}

void Connection::StartWrite() {
  writing_.swap(queued_);
  queued_.clear();
  const uint64_t generation = generation_;
  asio::async_write(*stream_, asio::buffer(writing_),
                    [self = shared_from_this(), stream = stream_, generation](
                        boost::system::error_code ec, size_t) {
                      if (generation != self->generation_) return;
                      if (ec) {
                        self->Fail(self->Lost(*stream, ec));
                        return;
                      }
                      self->writing_.clear();
                      if (!self->queued_.empty()) self->StartWrite();
                    });
}

void Connection::StartRead() {
  const uint64_t generation = generation_;
  stream_->async_read_some(asio::buffer(read_buffer_),
                           [self = shared_from_this(), stream = stream_, generation](
                               boost::system::error_code ec, size_t bytes) {
                             if (generation != self->generation_) return;
                             if (ec) {
                               self->Fail(self->Lost(*stream, ec));
                               return;
                             }
                             self->OnRead(bytes);
                           });
}

absl::Status Connection::Lost(const wire::Stream& stream,
                               const boost::system::error_code& error) const {
  if (error == asio::error::eof) {
    return absl::UnavailableError(
        absl::StrCat("connection to ", address_, " lost: closed by the member"));
  }
  // Under TLS 1.3 a member that refuses our certificate says so after our handshake
  // has completed, in an alert on the first read: FailedPrecondition like a refusal
  // during the handshake, as retrying cannot help.
  const absl::Status status = stream.DescribeError(error);
  return absl::Status(status.code(),
                      absl::StrCat("connection to ", address_, " lost: ", status.message()));
}

void Connection::OnRead(size_t bytes) {
  reader_->Append(absl::string_view(read_buffer_.data(), bytes));
  // Bounded by what one read delivered: every iteration consumes a whole frame.
  while (true) {
    absl::StatusOr<std::optional<absl::string_view>> payload = reader_->Next();
    if (!payload.ok()) {
      Fail(absl::UnavailableError(
          absl::StrCat("connection to ", address_, ": ", payload.status().message())));
      return;
    }
    if (!payload->has_value()) break;
    pb::ClientResponse response;
    absl::Status parsed = server::ParseFramePayload(**payload, "ClientResponse", &response);
    if (!parsed.ok()) {
      Fail(absl::UnavailableError(absl::StrCat("connection to ", address_, ": ", parsed.message())));
      return;
    }
    auto it = pending_.find(response.request_id());
    if (it == pending_.end()) continue;  // forgotten after its attempt timed out
    // A stream ends with a cancelled watch, the last response of a snapshot save, or
    // an error that belongs to no watch (a refused save).
    const bool ends_stream = response.watch().canceled() || response.snapshot_save().done() ||
                             (response.has_error() && !response.has_watch());
    if (it->second.stream && !ends_stream) {
      // Copied: the handler may Forget (erase) itself.
      ResponseHandler handler = it->second.handler;
      handler(std::move(response));
      continue;
    }
    ResponseHandler handler = std::move(it->second.handler);
    pending_.erase(it);
    handler(std::move(response));
  }
  StartRead();
}

void Connection::Fail(const absl::Status& status) {
  ++generation_;
  state_ = State::kIdle;
  boost::system::error_code ignored;
  connect_timer_.cancel();
  resolver_.cancel();
  if (stream_ != nullptr) stream_->socket().close(ignored);
  stream_.reset();
  queued_.clear();
  writing_.clear();
  absl::flat_hash_map<uint64_t, Pending> failed;
  failed.swap(pending_);
  for (auto& [request_id, pending] : failed) pending.handler(status);
}

}  // namespace stead::client_internal
