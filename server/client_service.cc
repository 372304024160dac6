#include "server/client_service.h"

#include <atomic>
#include <deque>
#include <map>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/check.h"
#include "base/status_macros.h"
#include "server/listener.h"
#include "server/kv_apply.h"

namespace stead::server {

namespace asio = boost::asio;
using asio::ip::tcp;
using boost::system::error_code;

namespace {
constexpr size_t kReadBufferBytes = 64 * 1024;
}  // namespace

pb::Error ErrorFromStatus(const absl::Status& status, const std::optional<MemberAddress>& leader) {
  pb::Error error;
  error.set_code(static_cast<int32_t>(status.code()));
  error.set_message(std::string(status.message()));
  if (absl::IsUnavailable(status) && leader) {
    error.set_leader_name(leader->name);
    error.set_leader_address(leader->client_address);
  }
  return error;
}

struct ClientService::Shared {
  Shared(asio::io_context& io_in, ClientServiceOptions options_in, Logger logger_in,
         RaftNode* node_in, const storage::StateMachine* state_in, MemberDirectory members_in)
      : io(io_in),
        options(std::move(options_in)),
        logger(std::move(logger_in)),
        node(node_in),
        state(state_in),
        members(std::move(members_in)),
        listener(std::make_shared<Listener>(io_in)),
        connections(options.max_connections) {}

  asio::io_context& io;
  const ClientServiceOptions options;
  const Logger logger;
  RaftNode* const node;
  const storage::StateMachine* const state;
  const MemberDirectory members;
  std::atomic<bool> stopped{false};
  const std::shared_ptr<Listener> listener;
  ConnectionSet<Connection> connections;  // so Stop can close them
};

class ClientService::Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(std::shared_ptr<Shared> shared, tcp::socket socket)
      : shared_(std::move(shared)), socket_(std::move(socket)) {
    error_code ec;
    const tcp::endpoint remote = socket_.remote_endpoint(ec);
    remote_ = ec ? "unknown" : absl::StrCat(remote.address().to_string(), ":", remote.port());
  }

  void Start() {
    asio::co_spawn(socket_.get_executor(), Run(shared_from_this()), [](std::exception_ptr) {});
  }

  void Close() {
    asio::post(socket_.get_executor(), [self = shared_from_this()] {
      error_code ignored;
      self->socket_.close(ignored);
    });
  }

 private:
  static asio::awaitable<void> Run(std::shared_ptr<Connection> self) {
    const absl::Status status = co_await self->ReadLoop();
    if (!status.ok() && !self->shared_->stopped) {
      STEAD_LOG(self->shared_->logger, Info)
          << "closing client connection from " << self->remote_ << ": " << status.message();
    }
    error_code ignored;
    self->socket_.close(ignored);
    self->shared_->connections.Remove(self.get());
  }

  asio::awaitable<absl::Status> ReadLoop() {
    FrameReader reader(shared_->options.max_frame_bytes);
    std::string buffer(kReadBufferBytes, '\0');
    for (;;) {
      for (;;) {
        absl::StatusOr<std::optional<std::string>> payload = reader.Next();
        if (!payload.ok()) co_return payload.status();
        if (!payload->has_value()) break;
        pb::ClientRequest request;
        if (absl::Status parsed = ParseFramePayload(**payload, "client request", &request);
            !parsed.ok()) {
          co_return parsed;
        }
        Dispatch(std::move(request));
      }
      error_code ec;
      const size_t n = co_await socket_.async_read_some(
          asio::buffer(buffer), asio::redirect_error(asio::use_awaitable, ec));
      if (ec == asio::error::eof) co_return absl::OkStatus();
      if (ec) co_return absl::UnavailableError(ec.message());
      reader.Append(absl::string_view(buffer.data(), n));
    }
  }

  absl::Time Deadline(const pb::ClientRequest& request) const {
    absl::Duration timeout = request.timeout_ms() == 0 ? shared_->options.default_timeout
                                                       : absl::Milliseconds(request.timeout_ms());
    return absl::Now() + std::min(timeout, shared_->options.max_timeout);
  }

  // Runs on the connection's strand. Every request gets exactly one response.
  void Dispatch(pb::ClientRequest request) {
    const uint64_t id = request.request_id();
    if (inflight_ >= shared_->options.max_inflight_per_connection) {
      Respond(id, absl::ResourceExhaustedError(absl::StrCat(
                      inflight_, " requests in flight on this connection: back off")));
      return;
    }
    ++inflight_;
    auto self = shared_from_this();
    switch (request.request_case()) {
      case pb::ClientRequest::kRange: {
        if (request.range().consistency() == pb::READ_CONSISTENCY_SERIALIZABLE) {
          ServeRead(id, request.range());
          return;
        }
        pb::RangeRequest range = request.range();
        shared_->node->ReadBarrier(Deadline(request), [self, id, range](absl::Status status) {
          asio::post(self->socket_.get_executor(), [self, id, range, status] {
            if (self->shared_->stopped) return;
            if (!status.ok()) {
              self->Respond(id, status);
            } else {
              self->ServeRead(id, range);
            }
          });
        });
        return;
      }
      case pb::ClientRequest::kPut:
      case pb::ClientRequest::kDeleteRange: {
        if (absl::Status valid = ValidateWriteRequest(request, shared_->options.limits); !valid.ok()) {
          Respond(id, valid);
          return;
        }
        const absl::Time deadline = Deadline(request);
        shared_->node->Propose(
            request.SerializeAsString(), deadline, [self, id](absl::StatusOr<std::string> result) {
              asio::post(self->socket_.get_executor(), [self, id, result = std::move(result)] {
                if (self->shared_->stopped) return;
                if (!result.ok()) {
                  self->Respond(id, result.status());
                  return;
                }
                pb::ClientResponse response;
                if (!response.ParseFromString(*result)) {
                  self->Respond(id, absl::InternalError("undecodable apply result"));
                  return;
                }
                response.set_request_id(id);
                self->Send(std::move(response));
              });
            });
        return;
      }
      case pb::ClientRequest::kTxn:
        Respond(id, absl::InvalidArgumentError(
                        "transactions are not supported by this server version"));
        return;
      case pb::ClientRequest::REQUEST_NOT_SET:
        Respond(id, absl::InvalidArgumentError("request has no operation"));
        return;
    }
  }

  void ServeRead(uint64_t id, const pb::RangeRequest& range) {
    absl::StatusOr<pb::RangeResponse> result = ReadRange(range, *shared_->state);
    if (!result.ok()) {
      Respond(id, result.status());
      return;
    }
    pb::ClientResponse response;
    response.set_request_id(id);
    *response.mutable_range() = std::move(*result);
    Send(std::move(response));
  }

  void Respond(uint64_t id, const absl::Status& status) {
    pb::ClientResponse response;
    response.set_request_id(id);
    std::optional<MemberAddress> leader;
    if (absl::IsUnavailable(status)) {
      const raft::NodeId leader_id = shared_->node->Status().leader;
      if (leader_id != raft::kNoNode) leader = shared_->members(leader_id);
    }
    *response.mutable_error() = ErrorFromStatus(status, leader);
    Send(std::move(response));
  }

  // On the strand: frames the response and starts writing if idle.
  void Send(pb::ClientResponse response) {
    STEAD_CHECK_GT(inflight_, 0u);
    --inflight_;
    const RaftNodeStatus status = shared_->node->Status();
    pb::ResponseHeader* header = response.mutable_header();
    header->set_cluster_id(shared_->options.cluster_id);
    header->set_member_id(status.id);
    header->set_raft_term(status.term);
    if (absl::Status framed = AppendFrame(response, UINT32_MAX, &pending_); !framed.ok()) {
      STEAD_LOG(shared_->logger, Error) << "cannot frame a response: " << framed.message();
      return;
    }
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
    asio::async_write(socket_, asio::buffer(writing_buffer_),
                      [self = shared_from_this()](error_code ec, size_t) {
                        if (ec) {
                          error_code ignored;
                          self->socket_.close(ignored);
                          self->writing_ = false;
                          return;
                        }
                        self->WriteNext();
                      });
  }

  const std::shared_ptr<Shared> shared_;
  tcp::socket socket_;  // its executor is this connection's strand
  std::string remote_;
  // Strand only.
  size_t inflight_ = 0;
  std::string pending_;         // framed responses not yet being written
  std::string writing_buffer_;  // what async_write is sending
  bool writing_ = false;
};

ClientService::ClientService(asio::io_context& io, ClientServiceOptions options, Logger logger,
                             RaftNode* node, const storage::StateMachine* state,
                             MemberDirectory members)
    : shared_(std::make_shared<Shared>(io, std::move(options), std::move(logger), node, state,
                                       std::move(members))) {}

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
    if (!shared->connections.Add(connection)) {
      STEAD_LOG(shared->logger, Warning) << "refusing a client connection: "
                                         << shared->connections.size() << " open";
      return;
    }
    connection->Start();
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
