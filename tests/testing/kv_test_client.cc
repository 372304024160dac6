// base/asio.h first: it carries a workaround the Asio headers need.
#include "base/asio.h"

#include "tests/testing/kv_test_client.h"

#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <algorithm>
#include <chrono>
#include <limits>
#include <random>
#include <utility>

#include "absl/strings/cord.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "base/check.h"
#include "base/status_macros.h"
#include "server/frame.h"

namespace stead::testing {
namespace {

namespace asio = boost::asio;
namespace http = boost::beast::http;
using boost::system::error_code;
using asio::ip::tcp;

// Largest response frame the client accepts.
constexpr uint32_t kMaxResponseFrameBytes = server::kDefaultMaxFrameBytes;
// Largest HTTP body HttpGet accepts.
constexpr uint64_t kMaxHttpBodyBytes = 16u << 20;
// Reads per request; each returns at least one byte, so this is far above any answer
// and only guards the loop.
constexpr int kMaxReadsPerCall = 1 << 20;
// Pause before retrying on another endpoint when no leader hint says where to go: long
// enough not to spin through an election, short next to an election timeout.
constexpr absl::Duration kRetryPause = absl::Milliseconds(50);
constexpr int kMaxAttempts = 100000;

// Runs `io` until the operation begun by `start` completes or `deadline` passes.
// `start` receives a handler to call with the operation's error_code. On the deadline,
// `cancel()` aborts the operation (closes its socket) and the aborted handler is run
// out, so nothing refers to this frame afterwards; the result is then timed_out.
template <typename Start, typename Cancel>
error_code RunUntil(asio::io_context& io, absl::Time deadline, Start start, Cancel cancel) {
  bool done = false;
  error_code result;
  io.restart();
  start([&done, &result](error_code ec) {
    done = true;
    result = ec;
  });
  const absl::Duration left = deadline - absl::Now();
  if (left > absl::ZeroDuration()) {
    io.run_for(std::chrono::microseconds(absl::ToInt64Microseconds(left)));
  } else {
    io.poll();  // An operation that completed at once still counts.
  }
  if (done) return result;
  cancel();
  io.restart();
  io.run();  // Returns once the aborted handler ran: socket operations abort at once.
  return asio::error::timed_out;
}

// The status for a failed socket operation `what` on `address`.
absl::Status SocketError(const error_code& ec, absl::string_view address, absl::string_view what) {
  if (ec == asio::error::timed_out) {
    return absl::DeadlineExceededError(absl::StrCat(address, ": deadline exceeded during ", what));
  }
  return absl::UnavailableError(absl::StrCat(address, ": ", what, ": ", ec.message()));
}

// Splits "host:port" or "[v6]:port".
absl::Status ParseEndpoint(absl::string_view address, std::string* host, uint16_t* port) {
  const size_t colon = address.rfind(':');
  uint32_t number = 0;
  if (colon == absl::string_view::npos || colon == 0 ||
      !absl::SimpleAtoi(address.substr(colon + 1), &number) || number == 0 || number > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("endpoint \"", address, "\" is not host:port"));
  }
  absl::string_view name = address.substr(0, colon);
  if (name.size() >= 2 && name.front() == '[' && name.back() == ']') {
    name = name.substr(1, name.size() - 2);
  }
  *host = std::string(name);
  *port = static_cast<uint16_t>(number);
  return absl::OkStatus();
}

// The TCP endpoint of host:port; a host that is not an address is resolved (blocking).
absl::StatusOr<tcp::endpoint> ResolveEndpoint(asio::io_context& io, const std::string& host,
                                              uint16_t port) {
  error_code ec;
  const asio::ip::address address = asio::ip::make_address(host, ec);
  if (!ec) return tcp::endpoint(address, port);
  tcp::resolver resolver(io);
  const tcp::resolver::results_type results = resolver.resolve(host, std::to_string(port), ec);
  if (ec || results.empty()) {
    return absl::UnavailableError(
        absl::StrCat("resolve ", host, ": ", ec ? ec.message() : "no address"));
  }
  return results.begin()->endpoint();
}

// Opens `socket` to `endpoint` by `deadline`.
error_code ConnectUntil(asio::io_context& io, tcp::socket& socket, const tcp::endpoint& endpoint,
                        absl::Time deadline) {
  return RunUntil(
      io, deadline,
      [&](auto done) { socket.async_connect(endpoint, [done](error_code ec) { done(ec); }); },
      [&] {
        error_code ignored;  // Closing to cancel; the socket is reopened on next use.
        socket.close(ignored);
      });
}

uint32_t TimeoutMs(absl::Duration timeout) {
  const int64_t ms = absl::ToInt64Milliseconds(timeout);
  return static_cast<uint32_t>(std::clamp<int64_t>(ms, 1, std::numeric_limits<uint32_t>::max()));
}

const absl::Status& StatusOf(const absl::Status& status) { return status; }
template <typename T>
const absl::Status& StatusOf(const absl::StatusOr<T>& result) {
  return result.status();
}

// Checks that an answer without error carries the expected response (or none: an
// empty response message may be left out by the server).
absl::Status CheckResponseCase(const pb::ClientResponse& response,
                               pb::ClientResponse::ResponseCase expected) {
  if (response.response_case() == expected ||
      response.response_case() == pb::ClientResponse::RESPONSE_NOT_SET) {
    return absl::OkStatus();
  }
  return absl::InternalError(absl::StrCat("answer of type ", response.response_case(),
                                          " to a request of type ", expected));
}

}  // namespace

std::optional<std::string> LeaderHintOf(const absl::Status& status) {
  const auto hint = status.GetPayload(kLeaderHintPayloadUrl);  // absl::optional<Cord>
  if (!hint.has_value() || hint->empty()) return std::nullopt;
  return std::string(*hint);
}

absl::Status StatusFromError(const pb::Error& error) {
  absl::StatusCode code = absl::StatusCode::kUnknown;
  if (error.code() > 0 && error.code() <= static_cast<int32_t>(absl::StatusCode::kUnauthenticated)) {
    code = static_cast<absl::StatusCode>(error.code());
  }
  absl::Status status(code, error.message().empty() ? "(no message)" : error.message());
  if (!error.leader_address().empty()) {
    status.SetPayload(kLeaderHintPayloadUrl, absl::Cord(error.leader_address()));
  }
  return status;
}

// One endpoint's connection; closed (socket not open) until first use and after any
// failure.
struct KvTestClient::Connection {
  explicit Connection(std::string address_in)
      : address(std::move(address_in)),
        socket(io),
        reader(std::make_unique<server::FrameReader>(kMaxResponseFrameBytes)) {}

  void Close() {
    error_code ignored;  // Best effort: the socket is discarded either way.
    socket.close(ignored);
    // A new stream starts with no buffered bytes (FrameReader cannot be reset).
    reader = std::make_unique<server::FrameReader>(kMaxResponseFrameBytes);
  }

  // Connects if not connected.
  absl::Status Open(absl::Time deadline) {
    if (socket.is_open()) return absl::OkStatus();
    std::string host;
    uint16_t port = 0;
    STEAD_RETURN_IF_ERROR(ParseEndpoint(address, &host, &port));
    STEAD_ASSIGN_OR_RETURN(const tcp::endpoint endpoint, ResolveEndpoint(io, host, port));
    const error_code ec = ConnectUntil(io, socket, endpoint, deadline);
    if (ec) {
      Close();
      return SocketError(ec, address, "connect");
    }
    error_code ignored;  // Only latency: requests are small and one at a time.
    socket.set_option(tcp::no_delay(true), ignored);
    return absl::OkStatus();
  }

  // Sends `bytes` and reads frames until the response to `request_id`.
  absl::StatusOr<pb::ClientResponse> Exchange(const std::string& bytes, uint64_t request_id,
                                              absl::Time deadline) {
    error_code ec = RunUntil(
        io, deadline,
        [&](auto done) {
          asio::async_write(socket, asio::buffer(bytes),
                            [done](error_code write_ec, size_t) { done(write_ec); });
        },
        [&] { Close(); });
    if (ec) {
      Close();
      return SocketError(ec, address, "send");
    }
    for (int reads = 0; reads < kMaxReadsPerCall; ++reads) {
      absl::StatusOr<std::optional<absl::string_view>> payload = reader->Next();
      if (!payload.ok()) {
        Close();
        return absl::InternalError(absl::StrCat(address, ": ", payload.status().message()));
      }
      if (payload->has_value()) {
        pb::ClientResponse response;
        const absl::Status parsed =
            server::ParseFramePayload(**payload, "ClientResponse", &response);
        if (!parsed.ok()) {
          Close();
          return absl::InternalError(absl::StrCat(address, ": ", parsed.message()));
        }
        if (response.request_id() == request_id) return response;
        continue;  // Cannot happen on a connection closed after every failure; skip it.
      }
      char chunk[16384];
      size_t got = 0;
      ec = RunUntil(
          io, deadline,
          [&](auto done) {
            socket.async_read_some(asio::buffer(chunk), [done, &got](error_code read_ec, size_t n) {
              got = n;
              done(read_ec);
            });
          },
          [&] { Close(); });
      if (ec) {
        Close();
        return ec == asio::error::eof
                   ? absl::UnavailableError(absl::StrCat(address, ": connection closed by the server"))
                   : SocketError(ec, address, "receive");
      }
      reader->Append(absl::string_view(chunk, got));
    }
    Close();
    return absl::InternalError(absl::StrCat(address, ": no answer after ", kMaxReadsPerCall, " reads"));
  }

  const std::string address;
  asio::io_context io;
  tcp::socket socket;
  std::unique_ptr<server::FrameReader> reader;
};

KvTestClient::KvTestClient(std::vector<std::string> endpoints)
    : client_id_([] {
        std::random_device device;
        std::mt19937_64 random((uint64_t{device()} << 32) ^ device());
        uint64_t id = 0;
        while (id == 0) id = random();  // 0 would read as "no client id"
        return id;
      }()) {
  STEAD_CHECK(!endpoints.empty()) << "KvTestClient needs at least one endpoint";
  for (std::string& endpoint : endpoints) {
    connections_.push_back(std::make_unique<Connection>(std::move(endpoint)));
  }
}

KvTestClient::~KvTestClient() = default;

size_t KvTestClient::endpoint_count() const { return connections_.size(); }

void KvTestClient::set_current_endpoint(size_t endpoint) {
  current_ = endpoint % connections_.size();
}

std::optional<size_t> KvTestClient::EndpointIndexOf(absl::string_view address) const {
  for (size_t i = 0; i < connections_.size(); ++i) {
    if (connections_[i]->address == address) return i;
  }
  return std::nullopt;
}

void KvTestClient::Disconnect() {
  for (std::unique_ptr<Connection>& connection : connections_) connection->Close();
}

KvTestClient::WriteId KvTestClient::NextWriteId() { return WriteId{client_id_, ++sequence_}; }

absl::StatusOr<pb::ClientResponse> KvTestClient::Call(pb::ClientRequest request,
                                                      absl::Duration timeout,
                                                      std::optional<size_t> endpoint) {
  return Exchange(std::move(request), timeout, endpoint);
}

absl::StatusOr<pb::ClientResponse> KvTestClient::Exchange(pb::ClientRequest request,
                                                          absl::Duration timeout,
                                                          std::optional<size_t> endpoint) {
  const absl::Time deadline = absl::Now() + timeout;
  const size_t index = endpoint.value_or(current_);
  if (index >= connections_.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("endpoint ", index, " of ", connections_.size()));
  }
  Connection& connection = *connections_[index];
  request.set_request_id(++request_id_);
  request.set_timeout_ms(TimeoutMs(timeout));
  std::string bytes;
  STEAD_RETURN_IF_ERROR(server::AppendFrame(request, kMaxResponseFrameBytes, &bytes));
  STEAD_RETURN_IF_ERROR(connection.Open(deadline));
  return connection.Exchange(bytes, request.request_id(), deadline);
}

absl::Status KvTestClient::PutOnce(absl::string_view key, absl::string_view value, WriteId id,
                                   absl::Duration timeout, std::optional<size_t> endpoint) {
  pb::ClientRequest request;
  request.set_client_id(id.client_id);
  request.set_sequence(id.sequence);
  request.mutable_put()->set_key(std::string(key));
  request.mutable_put()->set_value(std::string(value));
  STEAD_ASSIGN_OR_RETURN(const pb::ClientResponse response,
                         Exchange(std::move(request), timeout, endpoint));
  if (response.has_error()) return StatusFromError(response.error());
  return CheckResponseCase(response, pb::ClientResponse::kPut);
}

absl::StatusOr<bool> KvTestClient::DeleteOnce(absl::string_view key, WriteId id,
                                              absl::Duration timeout,
                                              std::optional<size_t> endpoint) {
  pb::ClientRequest request;
  request.set_client_id(id.client_id);
  request.set_sequence(id.sequence);
  request.mutable_delete_range()->set_key(std::string(key));
  STEAD_ASSIGN_OR_RETURN(const pb::ClientResponse response,
                         Exchange(std::move(request), timeout, endpoint));
  if (response.has_error()) return StatusFromError(response.error());
  STEAD_RETURN_IF_ERROR(CheckResponseCase(response, pb::ClientResponse::kDeleteRange));
  return response.delete_range().deleted() > 0;
}

absl::Status KvTestClient::Put(absl::string_view key, absl::string_view value,
                               absl::Duration timeout, std::optional<size_t> endpoint) {
  return PutOnce(key, value, NextWriteId(), timeout, endpoint);
}

absl::StatusOr<bool> KvTestClient::Delete(absl::string_view key, absl::Duration timeout,
                                          std::optional<size_t> endpoint) {
  return DeleteOnce(key, NextWriteId(), timeout, endpoint);
}

absl::StatusOr<std::optional<std::string>> KvTestClient::Get(absl::string_view key,
                                                             KvGetOptions options,
                                                             absl::Duration timeout,
                                                             std::optional<size_t> endpoint) {
  pb::ClientRequest request;
  request.mutable_range()->set_key(std::string(key));
  request.mutable_range()->set_consistency(options.serializable
                                               ? pb::READ_CONSISTENCY_SERIALIZABLE
                                               : pb::READ_CONSISTENCY_LINEARIZABLE);
  STEAD_ASSIGN_OR_RETURN(const pb::ClientResponse response,
                         Exchange(std::move(request), timeout, endpoint));
  if (response.has_error()) return StatusFromError(response.error());
  STEAD_RETURN_IF_ERROR(CheckResponseCase(response, pb::ClientResponse::kRange));
  for (const pb::KeyValue& kv : response.range().kvs()) {
    if (kv.key() == key) return std::optional<std::string>(kv.value());
  }
  if (response.range().kvs_size() > 0) {
    return absl::InternalError(absl::StrCat("a read of one key returned ",
                                            response.range().kvs_size(), " other keys"));
  }
  return std::optional<std::string>();
}

template <typename Result, typename Attempt>
Result KvTestClient::Retry(absl::Duration overall, absl::Duration attempt_timeout,
                           Attempt attempt) {
  const absl::Time deadline = absl::Now() + overall;
  absl::Status last = absl::DeadlineExceededError(
      absl::StrCat("no attempt within ", absl::FormatDuration(overall)));
  size_t endpoint = current_;
  int attempts = 0;
  while (attempts < kMaxAttempts) {
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) break;
    ++attempts;
    Result result = attempt(std::min(left, attempt_timeout), endpoint);
    current_ = endpoint;
    const absl::Status& status = StatusOf(result);
    if (status.ok() || !(absl::IsUnavailable(status) || absl::IsDeadlineExceeded(status))) {
      return result;
    }
    last = status;
    const std::optional<std::string> hint = LeaderHintOf(status);
    const std::optional<size_t> leader = hint ? EndpointIndexOf(*hint) : std::nullopt;
    if (leader.has_value() && *leader != endpoint) {
      endpoint = *leader;  // Straight to the leader: no pause.
      continue;
    }
    endpoint = (endpoint + 1) % connections_.size();
    absl::SleepFor(std::min(kRetryPause, std::max(deadline - absl::Now(), absl::ZeroDuration())));
  }
  return Annotate(last, absl::StrCat("gave up after ", attempts, " attempts in ",
                                     absl::FormatDuration(overall)));
}

absl::Status KvTestClient::PutWithRetry(absl::string_view key, absl::string_view value,
                                        absl::Duration overall, absl::Duration attempt_timeout) {
  const WriteId id = NextWriteId();
  return Retry<absl::Status>(overall, attempt_timeout,
                             [&](absl::Duration timeout, size_t endpoint) {
                               return PutOnce(key, value, id, timeout, endpoint);
                             });
}

absl::StatusOr<bool> KvTestClient::DeleteWithRetry(absl::string_view key, absl::Duration overall,
                                                   absl::Duration attempt_timeout) {
  const WriteId id = NextWriteId();
  return Retry<absl::StatusOr<bool>>(overall, attempt_timeout,
                                     [&](absl::Duration timeout, size_t endpoint) {
                                       return DeleteOnce(key, id, timeout, endpoint);
                                     });
}

absl::StatusOr<std::optional<std::string>> KvTestClient::GetWithRetry(
    absl::string_view key, KvGetOptions options, absl::Duration overall,
    absl::Duration attempt_timeout) {
  return Retry<absl::StatusOr<std::optional<std::string>>>(
      overall, attempt_timeout, [&](absl::Duration timeout, size_t endpoint) {
        return Get(key, options, timeout, endpoint);
      });
}

absl::StatusOr<HttpResponse> HttpGet(const std::string& host, uint16_t port,
                                     const std::string& path, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  const std::string address = absl::StrCat(host, ":", port);
  asio::io_context io;
  tcp::socket socket(io);
  STEAD_ASSIGN_OR_RETURN(const tcp::endpoint endpoint, ResolveEndpoint(io, host, port));
  error_code ec = ConnectUntil(io, socket, endpoint, deadline);
  if (ec) return SocketError(ec, address, "connect");
  auto close = [&socket] {
    error_code ignored;  // Closing to cancel; the socket is discarded.
    socket.close(ignored);
  };

  http::request<http::empty_body> request(http::verb::get, path, 11);
  request.set(http::field::host, address);
  request.set(http::field::connection, "close");
  ec = RunUntil(
      io, deadline,
      [&](auto done) {
        http::async_write(socket, request, [done](error_code write_ec, size_t) { done(write_ec); });
      },
      close);
  if (ec) return SocketError(ec, address, "send");

  boost::beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(kMaxHttpBodyBytes);
  ec = RunUntil(
      io, deadline,
      [&](auto done) {
        http::async_read(socket, buffer, parser, [done](error_code read_ec, size_t) { done(read_ec); });
      },
      close);
  if (ec == asio::error::timed_out || ec == http::error::end_of_stream ||
      ec == asio::error::eof || ec == asio::error::connection_reset) {
    return SocketError(ec, address, absl::StrCat("GET ", path));
  }
  if (ec) {
    return absl::InternalError(absl::StrCat(address, ": GET ", path, ": ", ec.message()));
  }
  HttpResponse response;
  response.status_code = static_cast<int>(parser.get().result_int());
  response.body = std::move(parser.get().body());
  return response;
}

std::map<std::string, pb::Member> MembersByName(KvTestClient& client) {
  pb::ClientRequest request;
  request.mutable_member_list();
  absl::StatusOr<pb::ClientResponse> response = client.Call(request, absl::Seconds(2));
  std::map<std::string, pb::Member> members;
  if (!response.ok() || response->has_error()) return members;
  for (const pb::Member& member : response->member_list().members()) members[member.name()] = member;
  return members;
}

}  // namespace stead::testing
