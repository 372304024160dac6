// KvTestClient and HttpGet against a real single-member node in this process (RaftNode,
// WAL, RocksDB, ClientService, HttpServer on 127.0.0.1), plus fake servers for the
// answers a single member never gives (a leader hint) or the lack of any answer.
#include "tests/testing/kv_test_client.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "server/client_service.h"
#include "server/frame.h"
#include "server/http_server.h"
#include "server/kv_apply.h"
#include "server/kv_service.h"
#include "server/kv_store.h"
#include "server/single_member_testing.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/subprocess.h"

namespace stead::testing {
namespace {

namespace asio = boost::asio;

// A one-member cluster (server/single_member_testing.h) with an HttpServer beside it.
class KvTestClientTest : public ::testing::Test {
 protected:
  KvTestClientTest() : work_(asio::make_work_guard(io_)) {
    char pattern[] = "/tmp/stead-kv-test-client-XXXXXX";
    root_ = mkdtemp(pattern);
    thread_ = std::thread([this] { io_.run(); });
    const Logger logger(LogLevel::kWarning);
    server::KvLimits limits;
    limits.max_key_bytes = 64;
    member_ = std::make_unique<server::SingleMember>(io_, root_, logger, limits);
    service_ = std::make_unique<server::ClientService>(
        io_, server::ClientServiceOptions(), logger,
        [this](pb::ClientRequest request, server::ResponseCallback done) {
          member_->kv().Handle(std::move(request), std::move(done));
        });
    EXPECT_OK(service_->Listen("127.0.0.1", 0));
    http_ = std::make_unique<server::HttpServer>(io_, server::HttpServerOptions(), logger);
    http_->Handle("/healthz", [](const server::HttpRequest&) {
      server::HttpResponse response;
      response.body = "ok\n";
      return response;
    });
    http_->Handle("/readyz", [](const server::HttpRequest&) {
      server::HttpResponse response;
      response.status = 503;
      response.body = "not ready\n";
      return response;
    });
    EXPECT_OK(http_->Listen("127.0.0.1", 0));
  }

  ~KvTestClientTest() override {
    http_->Stop();
    service_->Stop();
    member_->Stop();
    work_.reset();
    thread_.join();
    http_.reset();
    service_.reset();
    member_.reset();
    std::filesystem::remove_all(root_);
  }

  std::string address() const { return absl::StrCat("127.0.0.1:", service_->port()); }

  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  std::thread thread_;
  std::string root_;
  std::unique_ptr<server::SingleMember> member_;
  std::unique_ptr<server::ClientService> service_;
  std::unique_ptr<server::HttpServer> http_;
};

// A listening socket on 127.0.0.1 with a receive timeout, so a blocked accept or read
// in a fake server ends by itself.
int ListenLoopback(uint16_t* port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof address;
  const timeval timeout{10, 0};
  if (::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
      ::listen(fd, 8) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0 ||
      ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout) != 0) {
    ::close(fd);
    return -1;
  }
  *port = ntohs(address.sin_port);
  return fd;
}

// A member that is not the leader: accepts one connection and answers every request on
// it with UNAVAILABLE and the leader hint `leader_address`, until the client closes it
// (or 10 s pass without a request).
class NotLeaderServer {
 public:
  explicit NotLeaderServer(std::string leader_address)
      : leader_address_(std::move(leader_address)), listen_fd_(ListenLoopback(&port_)) {
    thread_ = std::thread([this] { Serve(); });
  }
  ~NotLeaderServer() {
    thread_.join();
    if (listen_fd_ >= 0) ::close(listen_fd_);
  }
  std::string address() const { return absl::StrCat("127.0.0.1:", port_); }
  int answered() const { return answered_.load(); }

 private:
  void Serve() {
    if (listen_fd_ < 0) return;
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) return;
    const timeval timeout{10, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    server::FrameReader reader;
    for (int reads = 0; reads < 1000; ++reads) {
      absl::StatusOr<std::optional<absl::string_view>> payload = reader.Next();
      if (!payload.ok()) break;
      if (payload->has_value()) {
        pb::ClientRequest request;
        if (!request.ParseFromArray(payload->value().data(), static_cast<int>(payload->value().size()))) break;
        pb::ClientResponse response;
        response.set_request_id(request.request_id());
        response.mutable_error()->set_code(static_cast<int32_t>(absl::StatusCode::kUnavailable));
        response.mutable_error()->set_message("not the leader");
        response.mutable_error()->set_leader_name("stead-0");
        response.mutable_error()->set_leader_address(leader_address_);
        std::string bytes;
        if (!server::AppendFrame(response, server::kDefaultMaxFrameBytes, &bytes).ok()) break;
        if (::write(fd, bytes.data(), bytes.size()) != static_cast<ssize_t>(bytes.size())) break;
        ++answered_;
        continue;
      }
      char chunk[4096];
      const ssize_t got = ::read(fd, chunk, sizeof chunk);
      if (got <= 0) break;
      reader.Append(absl::string_view(chunk, static_cast<size_t>(got)));
    }
    ::close(fd);
  }

  const std::string leader_address_;
  uint16_t port_ = 0;
  const int listen_fd_;
  std::atomic<int> answered_{0};
  std::thread thread_;
};

TEST_F(KvTestClientTest, PutGetDeleteRoundTrip) {
  ASSERT_EQ(member_->node().Status().role, raft::Role::kLeader);
  KvTestClient client({address()});
  ASSERT_OK(client.Put("colour", "blue", absl::Seconds(10)));
  EXPECT_EQ(client.last_sequence(), 1u);
  EXPECT_NE(client.client_id(), 0u);
  ASSERT_OK_AND_ASSIGN(std::optional<std::string> value,
                       client.Get("colour", KvGetOptions(), absl::Seconds(10)));
  EXPECT_EQ(value, std::optional<std::string>("blue"));
  ASSERT_OK_AND_ASSIGN(value, client.Get("colour", {.serializable = true}, absl::Seconds(10)));
  EXPECT_EQ(value, std::optional<std::string>("blue"));

  ASSERT_OK(client.Put("colour", "red", absl::Seconds(10), /*endpoint=*/0));
  EXPECT_EQ(client.Get("colour", {}, absl::Seconds(10)).value_or(std::nullopt),
            std::optional<std::string>("red"));

  ASSERT_OK_AND_ASSIGN(const bool deleted, client.Delete("colour", absl::Seconds(10)));
  EXPECT_TRUE(deleted);
  EXPECT_EQ(client.last_sequence(), 3u);
  ASSERT_OK_AND_ASSIGN(value, client.Get("colour", {}, absl::Seconds(10)));
  EXPECT_FALSE(value.has_value());
}

TEST_F(KvTestClientTest, AMissingKeyIsAbsentNotAnError) {
  ASSERT_EQ(member_->node().Status().role, raft::Role::kLeader);
  KvTestClient client({address()});
  ASSERT_OK_AND_ASSIGN(const std::optional<std::string> value,
                       client.Get("never-written", {}, absl::Seconds(10)));
  EXPECT_FALSE(value.has_value());
  ASSERT_OK_AND_ASSIGN(const bool deleted, client.Delete("never-written", absl::Seconds(10)));
  EXPECT_FALSE(deleted);
  // A key that is a prefix of a written one is still absent.
  ASSERT_OK(client.Put("prefix-and-more", "v", absl::Seconds(10)));
  EXPECT_EQ(client.Get("prefix", {}, absl::Seconds(10)).value_or("?"), std::nullopt);
}

TEST_F(KvTestClientTest, TheServersErrorKeepsItsCodeAndMessage) {
  ASSERT_EQ(member_->node().Status().role, raft::Role::kLeader);
  KvTestClient client({address()});
  const absl::Status status = client.Put(std::string(65, 'k'), "v", absl::Seconds(10));
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kInvalidArgument, "max_key_bytes"));
  EXPECT_EQ(LeaderHintOf(status), std::nullopt);
  // Not retried: the request itself is wrong.
  EXPECT_THAT(client.PutWithRetry(std::string(65, 'k'), "v", absl::Seconds(10)),
              StatusIs(absl::StatusCode::kInvalidArgument));
  // The connection is still usable.
  EXPECT_OK(client.Put("k", "v", absl::Seconds(10)));
}

TEST_F(KvTestClientTest, RetriesReachTheLiveEndpoint) {
  ASSERT_EQ(member_->node().Status().role, raft::Role::kLeader);
  ASSERT_OK_AND_ASSIGN(const uint16_t closed, FreeLoopbackPort());
  KvTestClient client({absl::StrCat("127.0.0.1:", closed), address()});
  ASSERT_OK(client.PutWithRetry("retried", "yes", absl::Seconds(10)));
  EXPECT_EQ(client.current_endpoint(), 1u);
  EXPECT_EQ(client.last_sequence(), 1u) << "all attempts of one write share its sequence";
  client.set_current_endpoint(0);
  EXPECT_EQ(client.GetWithRetry("retried", {}, absl::Seconds(10)).value_or(std::nullopt),
            std::optional<std::string>("yes"));
  client.set_current_endpoint(0);
  EXPECT_EQ(client.DeleteWithRetry("retried", absl::Seconds(10)).value_or(false), true);
}

TEST_F(KvTestClientTest, ReconnectsAfterTheConnectionBreaks) {
  ASSERT_EQ(member_->node().Status().role, raft::Role::kLeader);
  KvTestClient client({address()});
  ASSERT_OK(client.Put("a", "1", absl::Seconds(10)));
  client.Disconnect();
  EXPECT_EQ(client.Get("a", {}, absl::Seconds(10)).value_or(std::nullopt),
            std::optional<std::string>("1"));
}

TEST_F(KvTestClientTest, FollowsTheLeaderHint) {
  ASSERT_EQ(member_->node().Status().role, raft::Role::kLeader);
  NotLeaderServer follower(address());
  KvTestClient client({follower.address(), address()});
  EXPECT_EQ(client.EndpointIndexOf(address()), std::optional<size_t>(1));

  const absl::Status status = client.Put("led", "here", absl::Seconds(10), /*endpoint=*/0);
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kUnavailable, "not the leader"));
  EXPECT_EQ(LeaderHintOf(status), std::optional<std::string>(address()));

  ASSERT_EQ(client.current_endpoint(), 0u);
  const absl::Time start = absl::Now();
  ASSERT_OK(client.PutWithRetry("led", "here", absl::Seconds(10)));
  EXPECT_EQ(client.current_endpoint(), 1u);
  EXPECT_EQ(follower.answered(), 2);
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  EXPECT_EQ(client.Get("led", {}, absl::Seconds(10)).value_or(std::nullopt),
            std::optional<std::string>("here"));
  client.Disconnect();  // Ends the fake server's connection, so it returns.
}

TEST(KvTestClientErrorTest, StatusFromErrorMapsCodesAndTheHint) {
  pb::Error error;
  error.set_code(static_cast<int32_t>(absl::StatusCode::kUnavailable));
  error.set_message("no leader");
  EXPECT_THAT(StatusFromError(error), StatusIs(absl::StatusCode::kUnavailable, "no leader"));
  EXPECT_EQ(LeaderHintOf(StatusFromError(error)), std::nullopt);
  error.set_leader_address("10.0.0.7:2479");
  EXPECT_EQ(LeaderHintOf(StatusFromError(error)), std::optional<std::string>("10.0.0.7:2479"));
  error.set_code(999);
  EXPECT_THAT(StatusFromError(error), StatusIs(absl::StatusCode::kUnknown));
  error.set_code(0);  // An error without a code is still an error.
  EXPECT_FALSE(StatusFromError(error).ok());
  EXPECT_EQ(LeaderHintOf(absl::OkStatus()), std::nullopt);
}

TEST(KvTestClientErrorTest, AClosedPortFailsWithinTheDeadline) {
  ASSERT_OK_AND_ASSIGN(const uint16_t port, FreeLoopbackPort());
  KvTestClient client({absl::StrCat("127.0.0.1:", port)});
  const absl::Time start = absl::Now();
  EXPECT_THAT(client.Put("k", "v", absl::Seconds(2)), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(client.Get("k", {}, absl::Seconds(2)), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
  const absl::Status retried = client.PutWithRetry("k", "v", absl::Milliseconds(300));
  EXPECT_THAT(retried, StatusIs(absl::StatusCode::kUnavailable, "gave up"));
  EXPECT_LT(absl::Now() - start, absl::Seconds(3));
}

TEST(KvTestClientErrorTest, ASilentServerTimesOutAtTheDeadline) {
  // Listening but never accepting: the kernel completes the handshake, nobody answers.
  uint16_t port = 0;
  const int listen_fd = ListenLoopback(&port);
  ASSERT_GE(listen_fd, 0);
  KvTestClient client({absl::StrCat("127.0.0.1:", port)});
  absl::Time start = absl::Now();
  EXPECT_THAT(client.Put("k", "v", absl::Milliseconds(300)),
              StatusIs(absl::StatusCode::kDeadlineExceeded));
  absl::Duration took = absl::Now() - start;
  EXPECT_GE(took, absl::Milliseconds(300));
  EXPECT_LT(took, absl::Seconds(2));

  start = absl::Now();
  EXPECT_THAT(client.GetWithRetry("k", {}, absl::Milliseconds(500), absl::Milliseconds(200)),
              StatusIs(absl::StatusCode::kDeadlineExceeded));
  took = absl::Now() - start;
  EXPECT_GE(took, absl::Milliseconds(500));
  EXPECT_LT(took, absl::Seconds(2));

  EXPECT_THAT(HttpGet("127.0.0.1", port, "/healthz", absl::Milliseconds(300)),
              StatusIs(absl::StatusCode::kDeadlineExceeded));
  ::close(listen_fd);
}

TEST(KvTestClientErrorTest, AMalformedEndpointIsInvalidArgument) {
  KvTestClient client({"no-port"});
  EXPECT_THAT(client.Put("k", "v", absl::Seconds(1)), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(client.Get("k", {}, absl::Seconds(1), /*endpoint=*/5),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_F(KvTestClientTest, HttpGetReturnsStatusAndBody) {
  ASSERT_OK_AND_ASSIGN(HttpResponse healthz,
                       HttpGet("127.0.0.1", http_->port(), "/healthz", absl::Seconds(10)));
  EXPECT_EQ(healthz.status_code, 200);
  EXPECT_EQ(healthz.body, "ok\n");
  ASSERT_OK_AND_ASSIGN(HttpResponse readyz,
                       HttpGet("127.0.0.1", http_->port(), "/readyz", absl::Seconds(10)));
  EXPECT_EQ(readyz.status_code, 503);
  EXPECT_EQ(readyz.body, "not ready\n");
  ASSERT_OK_AND_ASSIGN(HttpResponse missing,
                       HttpGet("127.0.0.1", http_->port(), "/nowhere", absl::Seconds(10)));
  EXPECT_EQ(missing.status_code, 404);
}

TEST(HttpGetTest, AClosedPortIsUnavailable) {
  ASSERT_OK_AND_ASSIGN(const uint16_t port, FreeLoopbackPort());
  EXPECT_THAT(HttpGet("127.0.0.1", port, "/healthz", absl::Seconds(2)),
              StatusIs(absl::StatusCode::kUnavailable));
}

}  // namespace
}  // namespace stead::testing
