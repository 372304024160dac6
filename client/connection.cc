#include "client/connection.h"

#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

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

Connection::Connection(asio::io_context& io, std::string address, absl::Duration connect_timeout,
                       uint32_t max_frame_bytes)
    : address_(std::move(address)),
      connect_timeout_(connect_timeout),
      max_frame_bytes_(max_frame_bytes),
      strand_(asio::make_strand(io)),
      resolver_(strand_),
      socket_(strand_),
      connect_timer_(strand_) {}

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
  // The timer bounds resolution and connect together; on expiry it cancels both, and
  // their handlers then see operation_aborted and fail the connection.
  connect_timer_.expires_after(absl::ToChronoNanoseconds(connect_timeout_));
  connect_timer_.async_wait([self = shared_from_this(), generation](boost::system::error_code ec) {
    if (ec || generation != self->generation_ || self->state_ != State::kConnecting) return;
    self->resolver_.cancel();
    boost::system::error_code ignored;
    self->socket_.close(ignored);  // the pending connect completes with an error
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
        asio::async_connect(self->socket_, results,
                            [self, generation](boost::system::error_code connect_error,
                                               const tcp::endpoint&) {
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
  socket_.set_option(tcp::no_delay(true), ignored);  // small frames: latency matters
  state_ = State::kConnected;
  StartRead();
  if (!queued_.empty()) StartWrite();
}

void Connection::StartWrite() {
  writing_.swap(queued_);
  queued_.clear();
  const uint64_t generation = generation_;
  asio::async_write(socket_, asio::buffer(writing_),
                    [self = shared_from_this(), generation](boost::system::error_code ec, size_t) {
                      if (generation != self->generation_) return;
                      if (ec) {
                        self->Fail(absl::UnavailableError(absl::StrCat(
                            "connection to ", self->address_, " lost: ", ec.message())));
                        return;
                      }
                      self->writing_.clear();
                      if (!self->queued_.empty()) self->StartWrite();
                    });
}

void Connection::StartRead() {
  const uint64_t generation = generation_;
  socket_.async_read_some(asio::buffer(read_buffer_),
                          [self = shared_from_this(), generation](boost::system::error_code ec,
                                                                  size_t bytes) {
                            self->OnRead(generation, ec, bytes);
                          });
}

void Connection::OnRead(uint64_t generation, const boost::system::error_code& error, size_t bytes) {
  if (generation != generation_) return;
  if (error) {
    Fail(absl::UnavailableError(absl::StrCat(
        "connection to ", address_, " lost: ",
        error == asio::error::eof ? "closed by the member" : error.message())));
    return;
  }
  reader_->Append(absl::string_view(read_buffer_.data(), bytes));
  // Bounded by what one read delivered: every iteration consumes a whole frame.
  while (true) {
    absl::StatusOr<std::optional<std::string>> payload = reader_->Next();
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
  socket_.close(ignored);
  queued_.clear();
  writing_.clear();
  absl::flat_hash_map<uint64_t, Pending> failed;
  failed.swap(pending_);
  for (auto& [request_id, pending] : failed) pending.handler(status);
}

}  // namespace stead::client_internal
