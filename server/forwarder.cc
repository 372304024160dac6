#include "server/forwarder.h"

#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "server/config.h"
#include "server/frame.h"
#include "wire/stream.h"

namespace stead::server {

namespace asio = boost::asio;
using asio::ip::tcp;
using boost::system::error_code;

namespace {

constexpr uint32_t kMaxResponseBytes = 64u << 20;
constexpr size_t kReadBufferBytes = 64 * 1024;

pb::ClientResponse Failure(uint64_t request_id, const absl::Status& status) {
  pb::ClientResponse response;
  response.set_request_id(request_id);
  response.mutable_error()->set_code(static_cast<int32_t>(status.code()));
  response.mutable_error()->set_message(std::string(status.message()));
  return response;
}

}  // namespace

// The connection to one leader address. Everything runs on its strand.
class Forwarder::Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(asio::io_context& io, std::string address, Logger logger,
             std::shared_ptr<wire::TlsContextProvider> tls)
      : strand_(asio::make_strand(io)),
        tls_(std::move(tls)),
        socket_(std::make_shared<wire::Stream>(tcp::socket(strand_))),
        resolver_(strand_),
        expiry_(strand_),
        address_(std::move(address)),
        logger_(std::move(logger)) {}

  void Send(pb::ClientRequest request, absl::Time deadline, ResponseCallback done) {
    asio::post(strand_, [self = shared_from_this(), request = std::move(request), deadline,
                         done = std::move(done)]() mutable {
      self->Enqueue(std::move(request), deadline, std::move(done));
    });
  }

  void Close() {
    asio::post(strand_, [self = shared_from_this()] {
      self->closed_ = true;
      self->FailAll(absl::UnavailableError("this member is shutting down"));
    });
  }

 private:
  struct Pending {
    uint64_t caller_request_id;
    absl::Time deadline;
    ResponseCallback done;
  };

  void Enqueue(pb::ClientRequest request, absl::Time deadline, ResponseCallback done) {
    if (closed_) {
      done(Failure(request.request_id(), absl::UnavailableError("this member is shutting down")));
      return;
    }
    const uint64_t id = next_id_++;
    pending_.emplace(id, Pending{request.request_id(), deadline, std::move(done)});
    request.set_request_id(id);
    request.set_forwarded(true);
    const absl::Duration left = std::max(deadline - absl::Now(), absl::Milliseconds(1));
    request.set_timeout_ms(static_cast<uint32_t>(absl::ToInt64Milliseconds(left) + 1));
    if (absl::Status framed = AppendFrame(request, kMaxResponseBytes, &outgoing_); !framed.ok()) {
      Complete(id, Failure(0, framed));
      return;
    }
    ScheduleExpiry();
    if (state_ == State::kIdle) {
      Connect();
    } else if (state_ == State::kOpen && !writing_) {
      WriteMore();
    }
  }

  void Connect() {
    absl::StatusOr<HostPort> target = ParseHostPort(address_, "leader address", "");
    if (!target.ok()) return FailAll(target.status());
    state_ = State::kConnecting;
    // A new stream per opening: a TLS session cannot be reused after a close, and each
    // opening takes the newest context (certificate rotation).
    socket_ = std::make_shared<wire::Stream>(tcp::socket(strand_), tls_);
    resolver_.async_resolve(
        target->host, std::to_string(target->port),
        [self = shared_from_this(), generation = generation_, host = target->host](
            const error_code& resolved, const tcp::resolver::results_type& endpoints) {
          if (generation != self->generation_) return;
          if (resolved) return self->Broken(absl::StrCat("resolve: ", resolved.message()));
          asio::async_connect(
              self->socket_->socket(), endpoints,
              [self, generation, host](const error_code& connected, const tcp::endpoint&) {
                if (generation != self->generation_) return;
                if (connected) return self->Broken(absl::StrCat("connect: ", connected.message()));
                error_code ignored;
                self->socket_->socket().set_option(tcp::no_delay(true), ignored);
                // Under TLS the leader's certificate must name the host of its address.
                self->socket_->AsyncClientHandshake(
                    host, absl::Seconds(5),
                    asio::bind_executor(self->strand_, [self, generation](absl::Status handshake) {
                      if (generation != self->generation_) return;
                      if (!handshake.ok()) {
                        return self->Broken(absl::StrCat("TLS handshake: ", handshake.message()));
                      }
                      self->state_ = State::kOpen;
                      self->ReadMore();
                      self->WriteMore();
                    }));
              });
        });
  }

  void WriteMore() {
    if (outgoing_.empty() || closed_) {
      writing_ = false;
      return;
    }
    writing_ = true;
    writing_buffer_.swap(outgoing_);
    outgoing_.clear();
    asio::async_write(*socket_, asio::buffer(writing_buffer_),
                      [self = shared_from_this(), stream = socket_,
                       generation = generation_](const error_code& written, size_t) {
                        if (generation != self->generation_) return;
                        if (written) {
                          return self->Broken(absl::StrCat(
                              "send: ", stream->DescribeError(written).message()));
                        }
                        self->WriteMore();
                      });
  }

  void ReadMore() {
    socket_->async_read_some(
        asio::buffer(read_buffer_),
        [self = shared_from_this(), stream = socket_, generation = generation_](
            const error_code& read, size_t n) {
          if (generation != self->generation_) return;
          if (read) {
            return self->Broken(absl::StrCat("receive: ", stream->DescribeError(read).message()));
          }
          self->reader_->Append(absl::string_view(self->read_buffer_.data(), n));
          for (;;) {
            absl::StatusOr<std::optional<absl::string_view>> payload = self->reader_->Next();
            if (!payload.ok()) return self->Broken(std::string(payload.status().message()));
            if (!payload->has_value()) break;
            pb::ClientResponse response;
            if (!ParseFramePayload(**payload, "forwarded response", &response).ok()) {
              return self->Broken("undecodable response");
            }
            const uint64_t id = response.request_id();  // before the move below
            self->Complete(id, std::move(response));
          }
          self->ReadMore();
        });
  }

  void Complete(uint64_t id, pb::ClientResponse response) {
    auto it = pending_.find(id);
    if (it == pending_.end()) return;  // expired meanwhile
    Pending pending = std::move(it->second);
    pending_.erase(it);
    response.set_request_id(pending.caller_request_id);
    pending.done(std::move(response));
  }

  // The connection is gone: every request on it fails (a write may still have been
  // applied; the client retries with the same client id and sequence).
  void Broken(const std::string& why) {
    if (state_ == State::kIdle) return;
    STEAD_LOG(logger_, Info) << "connection to the leader at " << address_ << " lost: " << why;
    error_code ignored;
    socket_->socket().close(ignored);
    state_ = State::kIdle;
    ++generation_;  // callbacks of the old socket change nothing now
    writing_ = false;
    outgoing_.clear();
    reader_.emplace(kMaxResponseBytes);
    FailAll(absl::UnavailableError(absl::StrCat("forwarding to the leader at ", address_, ": ", why)));
  }

  void FailAll(const absl::Status& status) {
    std::map<uint64_t, Pending> pending;
    pending.swap(pending_);
    for (auto& [id, request] : pending) request.done(Failure(request.caller_request_id, status));
    if (closed_) {
      error_code ignored;
      socket_->socket().close(ignored);
      expiry_.cancel();
    }
  }

  void ScheduleExpiry() {
    if (expiry_armed_) return;
    expiry_armed_ = true;
    expiry_.expires_after(std::chrono::milliseconds(50));
    expiry_.async_wait([self = shared_from_this()](const error_code& cancelled) {
      self->expiry_armed_ = false;
      if (cancelled || self->closed_) return;
      const absl::Time now = absl::Now();
      std::vector<uint64_t> expired;
      for (const auto& [id, request] : self->pending_) {
        if (request.deadline <= now) expired.push_back(id);
      }
      for (uint64_t id : expired) {
        self->Complete(id, Failure(0, absl::DeadlineExceededError(
                                          "the leader did not answer in time; a write's outcome "
                                          "is unknown")));
      }
      if (!self->pending_.empty()) self->ScheduleExpiry();
    });
  }

  enum class State { kIdle, kConnecting, kOpen };

  asio::strand<asio::io_context::executor_type> strand_;
  const std::shared_ptr<wire::TlsContextProvider> tls_;  // null: plain TCP
  // Replaced on every opening; each operation's handler holds the one it runs on, so
  // a stream closed by Broken() lives until its pending operations completed.
  std::shared_ptr<wire::Stream> socket_;
  tcp::resolver resolver_;
  asio::steady_timer expiry_;
  const std::string address_;
  const Logger logger_;
  State state_ = State::kIdle;
  bool closed_ = false;
  bool writing_ = false;
  bool expiry_armed_ = false;
  uint64_t next_id_ = 1;
  std::map<uint64_t, Pending> pending_;
  std::string outgoing_;
  std::string writing_buffer_;
  std::string read_buffer_ = std::string(kReadBufferBytes, '\0');
  uint64_t generation_ = 0;  // of the socket; bumped when it breaks
  std::optional<FrameReader> reader_{std::in_place, kMaxResponseBytes};
};

Forwarder::Forwarder(asio::io_context& io, Logger logger,
                     std::shared_ptr<wire::TlsContextProvider> tls)
    : io_(io), logger_(std::move(logger)), tls_(std::move(tls)) {}

Forwarder::~Forwarder() { Stop(); }

void Forwarder::Forward(const std::string& address, pb::ClientRequest request, absl::Time deadline,
                        ResponseCallback done) {
  std::shared_ptr<Connection> connection;
  {
    MutexLock lock(&mu_);
    if (!stopped_) {
      std::shared_ptr<Connection>& slot = connections_[address];
      if (slot == nullptr) slot = std::make_shared<Connection>(io_, address, logger_, tls_);
      connection = slot;
    }
  }
  if (connection == nullptr) {
    done(Failure(request.request_id(), absl::UnavailableError("this member is shutting down")));
    return;
  }
  connection->Send(std::move(request), deadline, std::move(done));
}

void Forwarder::Stop() {
  std::map<std::string, std::shared_ptr<Connection>> connections;
  {
    MutexLock lock(&mu_);
    stopped_ = true;
    connections.swap(connections_);
  }
  for (auto& [address, connection] : connections) connection->Close();
}

}  // namespace stead::server
