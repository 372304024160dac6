// The client port end to end on a single-member cluster: real RaftNode, WAL, RocksDB
// and sockets; requests as raw frames, so malformed input is covered too.
#include "server/client_service.h"

#include <sys/socket.h>

#include <cerrno>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "server/kv_apply.h"
#include "server/single_member_testing.h"
#include "tests/testing/log_capture.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_certificates.h"
#include "tests/testing/tls_test_client.h"
#include "wire/stream.h"

namespace stead::server {
namespace {

namespace asio = boost::asio;
constexpr uint64_t kCluster = SingleMember::kCluster;

class ClientServiceTest : public ::testing::Test {
 protected:
  ClientServiceTest() : work_(asio::make_work_guard(io_)) {
    char pattern[] = "/tmp/stead-client-service-XXXXXX";
    root_ = mkdtemp(pattern);
    thread_ = std::thread([this] { io_.run(); });
    const Logger logger(LogLevel::kWarning);
    KvLimits limits;
    limits.max_key_bytes = 64;
    member_ = std::make_unique<SingleMember>(io_, root_, logger, limits);
    service_ = StartService(ClientServiceOptions());
  }

  // A service with `options` in front of the member, listening on a free port.
  std::unique_ptr<ClientService> StartService(ClientServiceOptions options,
                                              Logger logger = Logger(LogLevel::kWarning)) {
    auto service = std::make_unique<ClientService>(
        io_, options, logger,
        [this](pb::ClientRequest request, ResponseCallback done) {
          member_->kv().Handle(std::move(request), std::move(done));
        });
    EXPECT_OK(service->Listen("127.0.0.1", 0));
    return service;
  }

  ~ClientServiceTest() override {
    service_->Stop();
    member_->Stop();
    work_.reset();
    thread_.join();
    service_.reset();
    member_.reset();
    std::filesystem::remove_all(root_);
  }

  // A blocking client connection speaking raw frames.
  class Client {
   public:
    explicit Client(uint16_t port) : socket_(io_) {
      socket_.connect({asio::ip::make_address("127.0.0.1"), port});
      const timeval tv{10, 0};
      setsockopt(socket_.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    }
    void SendRaw(const std::string& bytes) { asio::write(socket_, asio::buffer(bytes)); }
    // False if the connection is gone.
    bool TrySendRaw(const std::string& bytes) {
      boost::system::error_code ec;
      asio::write(socket_, asio::buffer(bytes), ec);
      return !ec;
    }
    // Whether the server closed the connection (true) or it stayed open and silent for
    // the 10 s receive timeout (false). Consumes whatever the server sent.
    bool WaitUntilClosedByServer() {
      char buffer[4096];
      for (int i = 0; i < 10000; ++i) {
        boost::system::error_code ec;
        socket_.read_some(asio::buffer(buffer), ec);
        if (ec == asio::error::eof || ec == asio::error::connection_reset) return true;
        if (ec) return false;
      }
      return false;
    }
    // Without waiting: whether the server has closed the connection already.
    bool ClosedByServer() {
      char byte;
      const ssize_t n = ::recv(socket_.native_handle(), &byte, 1, MSG_DONTWAIT | MSG_PEEK);
      return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
    }
    void Send(const pb::ClientRequest& request) {
      std::string bytes;
      EXPECT_OK(AppendFrame(request, 1 << 24, &bytes));
      SendRaw(bytes);
    }
    // The next response, or nullopt when the server closed the connection.
    std::optional<pb::ClientResponse> Receive() {
      for (int i = 0; i < 10000; ++i) {
        absl::StatusOr<std::optional<absl::string_view>> payload = reader_.Next();
        if (payload.ok() && payload->has_value()) {
          pb::ClientResponse response;
          EXPECT_OK(ParseFramePayload(**payload, "client response", &response));
          return response;
        }
        char buffer[4096];
        boost::system::error_code ec;
        const size_t n = socket_.read_some(asio::buffer(buffer), ec);
        if (ec) return std::nullopt;
        reader_.Append(absl::string_view(buffer, n));
      }
      return std::nullopt;
    }
    pb::ClientResponse Call(const pb::ClientRequest& request) {
      Send(request);
      std::optional<pb::ClientResponse> response = Receive();
      EXPECT_TRUE(response.has_value());
      return response.value_or(pb::ClientResponse());
    }

   private:
    asio::io_context io_;
    asio::ip::tcp::socket socket_;
    FrameReader reader_;
  };

  static pb::ClientRequest Put(uint64_t id, const std::string& key, const std::string& value) {
    pb::ClientRequest request;
    request.set_request_id(id);
    request.mutable_put()->set_key(key);
    request.mutable_put()->set_value(value);
    return request;
  }
  static pb::ClientRequest Get(uint64_t id, const std::string& key, bool serializable = false) {
    pb::ClientRequest request;
    request.set_request_id(id);
    request.mutable_range()->set_key(key);
    if (serializable) request.mutable_range()->set_consistency(pb::READ_CONSISTENCY_SERIALIZABLE);
    return request;
  }
  static pb::ClientRequest Delete(uint64_t id, const std::string& key) {
    pb::ClientRequest request;
    request.set_request_id(id);
    request.mutable_delete_range()->set_key(key);
    request.mutable_delete_range()->set_prev_kv(true);
    return request;
  }

  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  std::thread thread_;
  std::string root_;
  std::unique_ptr<SingleMember> member_;
  std::unique_ptr<ClientService> service_;
};

TEST_F(ClientServiceTest, PutGetDeleteRoundTrip) {
  ASSERT_EQ(member_->node().Status().role, raft::Role::kLeader);
  Client client(service_->port());
  pb::ClientResponse put = client.Call(Put(1, "colour", "blue"));
  EXPECT_FALSE(put.has_error()) << put.error().message();
  EXPECT_EQ(put.request_id(), 1u);
  EXPECT_EQ(put.header().cluster_id(), kCluster);

  pb::ClientResponse get = client.Call(Get(2, "colour"));
  ASSERT_EQ(get.range().kvs_size(), 1);
  EXPECT_EQ(get.range().kvs(0).value(), "blue");
  EXPECT_EQ(client.Call(Get(3, "colour", /*serializable=*/true)).range().kvs(0).value(), "blue");

  pb::ClientResponse del = client.Call(Delete(4, "colour"));
  EXPECT_EQ(del.delete_range().deleted(), 1);
  ASSERT_EQ(del.delete_range().prev_kvs_size(), 1);
  EXPECT_EQ(del.delete_range().prev_kvs(0).value(), "blue");
  EXPECT_EQ(client.Call(Get(5, "colour")).range().kvs_size(), 0);
  EXPECT_EQ(client.Call(Delete(6, "colour")).delete_range().deleted(), 0);
}

TEST_F(ClientServiceTest, ManyPipelinedRequestsOnOneConnectionAllGetTheirAnswer) {
  ASSERT_EQ(member_->node().Status().role, raft::Role::kLeader);
  Client client(service_->port());
  for (uint64_t i = 1; i <= 200; ++i) client.Send(Put(i, absl::StrCat("k", i), absl::StrCat("v", i)));
  std::vector<bool> answered(201, false);
  for (int i = 0; i < 200; ++i) {
    std::optional<pb::ClientResponse> response = client.Receive();
    ASSERT_TRUE(response.has_value());
    ASSERT_FALSE(response->has_error()) << response->error().message();
    ASSERT_LE(response->request_id(), 200u);
    EXPECT_FALSE(answered[response->request_id()]) << "answered twice";
    answered[response->request_id()] = true;
  }
  pb::ClientRequest scan;
  scan.set_request_id(999);
  scan.mutable_range()->set_key("k");
  scan.mutable_range()->set_range_end("l");
  scan.mutable_range()->set_limit(150);
  pb::ClientResponse page = client.Call(scan);
  EXPECT_EQ(page.range().kvs_size(), 150);
  EXPECT_TRUE(page.range().more());
  EXPECT_FALSE(page.range().next_key().empty());
}

TEST_F(ClientServiceTest, InvalidRequestsGetClearErrorsAndChangeNothing) {
  ASSERT_EQ(member_->node().Status().role, raft::Role::kLeader);
  Client client(service_->port());
  pb::ClientResponse big = client.Call(Put(1, std::string(65, 'k'), "v"));
  ASSERT_TRUE(big.has_error());
  EXPECT_EQ(big.error().code(), static_cast<int>(absl::StatusCode::kInvalidArgument));
  EXPECT_NE(big.error().message().find("max_key_bytes"), std::string::npos) << big.error().message();
  EXPECT_EQ(client.Call(Get(2, std::string(65, 'k'), true)).range().kvs_size(), 0);

  pb::ClientRequest empty;
  empty.set_request_id(3);
  EXPECT_EQ(client.Call(empty).error().code(), static_cast<int>(absl::StatusCode::kInvalidArgument));
  pb::ClientRequest txn;
  txn.set_request_id(4);
  txn.mutable_txn();
  EXPECT_EQ(client.Call(txn).error().code(), static_cast<int>(absl::StatusCode::kInvalidArgument));
}

TEST_F(ClientServiceTest, GarbageClosesOnlyThatConnection) {
  ASSERT_EQ(member_->node().Status().role, raft::Role::kLeader);
  Client bad(service_->port());
  bad.SendRaw(std::string("\x00\x00\x00\x05\xff\xff\xff\xff\xff", 9));
  EXPECT_FALSE(bad.Receive().has_value()) << "the connection must be closed";
  Client oversized(service_->port());
  oversized.SendRaw(std::string("\x7f\x00\x00\x00", 4) + std::string(64, '\xff'));
  EXPECT_FALSE(oversized.Receive().has_value()) << "an oversized frame of garbage closes it";

  Client good(service_->port());
  EXPECT_FALSE(good.Call(Put(1, "still", "serving")).has_error());
}

// Goal: a request whose frame is over the client port's limit is answered with
// InvalidArgument under its request id, not by closing the connection (which a client
// would retry), and the connection goes on serving.
TEST_F(ClientServiceTest, AnOversizedRequestIsAnsweredAndTheConnectionServesOn) {
  Client client(service_->port());
  const size_t too_big = ClientServiceOptions().max_frame_bytes;
  const pb::ClientResponse refused = client.Call(Put(7, "big", std::string(too_big, 'v')));
  EXPECT_EQ(refused.request_id(), 7u);
  ASSERT_TRUE(refused.has_error());
  EXPECT_EQ(refused.error().code(), static_cast<int>(absl::StatusCode::kInvalidArgument));
  EXPECT_NE(refused.error().message().find("exceeds the client port's frame limit of 4194304"),
            std::string::npos)
      << refused.error().message();
  EXPECT_FALSE(client.Call(Put(8, "small", "v")).has_error());
  const pb::ClientResponse big = client.Call(Get(9, "big"));
  EXPECT_EQ(big.range().kvs_size(), 0) << "nothing of the refused request was written";
}

// Goal: a port full of idle connections still admits a new client. Method: a service
// capped at 8 connections, 20 idle ones opened, then a request on a new connection.
TEST_F(ClientServiceTest, IdleConnectionsBeyondTheCapMakeRoomForANewClient) {
  ClientServiceOptions options;
  options.max_connections = 8;
  std::unique_ptr<ClientService> small = StartService(options);
  std::vector<std::unique_ptr<Client>> idle;
  for (int i = 0; i < 20; ++i) idle.push_back(std::make_unique<Client>(small->port()));
  Client late(small->port());
  pb::ClientResponse put = late.Call(Put(1, "late", "served"));
  EXPECT_FALSE(put.has_error()) << put.error().message();
  EXPECT_EQ(put.request_id(), 1u);
  EXPECT_TRUE(idle.front()->WaitUntilClosedByServer()) << "the longest idle was evicted";
  small->Stop();
}

// Goal: a started frame must arrive whole within the read timeout, and a connection
// with nothing in flight goes after the idle timeout; the others are served. Method:
// a service with a 300 ms read and 600 ms idle timeout; a frame sent a byte every
// 50 ms, a frame cut short, a connection that never sends.
TEST_F(ClientServiceTest, SlowTruncatedAndIdleConnectionsAreClosed) {
  ClientServiceOptions options;
  options.read_timeout = absl::Milliseconds(300);
  options.idle_timeout = absl::Milliseconds(600);
  std::unique_ptr<ClientService> service = StartService(options);

  std::string frame;
  ASSERT_OK(AppendFrame(Put(1, "slow", std::string(200, 'v')), 1 << 20, &frame));
  Client slow(service->port());
  size_t sent = 0;
  while (sent < frame.size() && !slow.ClosedByServer() && slow.TrySendRaw(frame.substr(sent, 1))) {
    ++sent;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_LT(sent, frame.size()) << "a client sending a byte every 50 ms was served";

  Client truncated(service->port());
  truncated.SendRaw(frame.substr(0, 10));
  EXPECT_TRUE(truncated.WaitUntilClosedByServer()) << "a truncated frame was held";

  Client idle(service->port());
  EXPECT_TRUE(idle.WaitUntilClosedByServer()) << "an idle connection was held";

  Client good(service->port());
  EXPECT_FALSE(good.Call(Put(2, "quick", "served")).has_error());
  service->Stop();
}

// TLS material of the port tests: a CA, the member's certificate for 127.0.0.1, a
// client certificate of the same CA and one of another CA.
struct PortCertificates {
  PortCertificates() : ca("client port CA"), stranger_ca("another CA") {
    dir = testing::MakeTempDir();
    server = testing::WritePemFiles(
        dir, "server", ca.Issue({.common_name = "stead-0", .ip_addresses = {"127.0.0.1"}}), ca);
    client = testing::WritePemFiles(dir, "client", ca.Issue({.common_name = "app"}), ca);
    stranger = testing::WritePemFiles(dir, "stranger", stranger_ca.Issue({.common_name = "app"}),
                                      stranger_ca);
  }
  wire::TlsOptions ServerOptions(bool require_client_certificate) const {
    return {.cert_file = server.cert_file,
            .key_file = server.key_file,
            .trusted_ca_file = server.ca_file,
            .require_peer_certificate = require_client_certificate};
  }
  wire::TlsOptions ClientOptions(const testing::TestPemFiles& identity) const {
    return {.cert_file = identity.cert_file, .key_file = identity.key_file,
            .trusted_ca_file = server.ca_file};
  }
  testing::TestCertificateAuthority ca, stranger_ca;
  std::string dir;
  testing::TestPemFiles server, client, stranger;
};

// One request over a TLS client connection: its response, or the error that ended
// the connection.
absl::StatusOr<pb::ClientResponse> CallOverTls(testing::TlsTestClient& client,
                                               const pb::ClientRequest& request) {
  std::string bytes;
  STEAD_RETURN_IF_ERROR(AppendFrame(request, 1 << 24, &bytes));
  STEAD_RETURN_IF_ERROR(client.Write(bytes));
  FrameReader reader(1 << 24);
  for (int i = 0; i < 1000; ++i) {
    STEAD_ASSIGN_OR_RETURN(std::optional<absl::string_view> payload, reader.Next());
    if (payload) {
      pb::ClientResponse response;
      STEAD_RETURN_IF_ERROR(ParseFramePayload(*payload, "client response", &response));
      return response;
    }
    STEAD_ASSIGN_OR_RETURN(std::string read, client.Read());
    reader.Append(read);
  }
  return absl::DeadlineExceededError("no response");
}

TEST_F(ClientServiceTest, TlsPortServesCertifiedClientsAndRefusesOthers) {
  PortCertificates certificates;
  auto sink = std::make_shared<testing::CapturingLogSink>();
  ClientServiceOptions options;
  ASSERT_OK_AND_ASSIGN(options.tls,
                       wire::TlsContextProvider::Create(certificates.ServerOptions(true),
                                                        wire::TlsRole::kServer,
                                                        Logger(LogLevel::kWarning)));
  std::unique_ptr<ClientService> service =
      StartService(options, Logger(sink, LogLevel::kInfo));

  ASSERT_OK_AND_ASSIGN(std::unique_ptr<testing::TlsTestClient> good,
                       testing::TlsTestClient::Connect(
                           service->port(), certificates.ClientOptions(certificates.client)));
  EXPECT_EQ(good->served_common_name(), "stead-0");
  ASSERT_OK_AND_ASSIGN(pb::ClientResponse put, CallOverTls(*good, Put(1, "colour", "blue")));
  EXPECT_FALSE(put.has_error()) << put.error().message();

  // No client certificate, or one of another CA: refused (under TLS 1.3 on the first read).
  for (const wire::TlsOptions& refused :
       {wire::TlsOptions{.trusted_ca_file = certificates.server.ca_file},
        certificates.ClientOptions(certificates.stranger)}) {
    SCOPED_TRACE(refused.cert_file);
    absl::StatusOr<std::unique_ptr<testing::TlsTestClient>> client =
        testing::TlsTestClient::Connect(service->port(), refused);
    if (client.ok()) {
      EXPECT_FALSE(CallOverTls(**client, Get(3, "colour")).ok());
    }
  }
  // Plain bytes on the TLS port: the handshake fails and the connection closes
  // (not logged: the port logs one warning per 10 s, and the refusals came first).
  Client plain(service->port());
  plain.Send(Get(2, "colour"));
  EXPECT_TRUE(plain.WaitUntilClosedByServer());

  // The port goes on serving, on the old connection and a new one.
  ASSERT_OK_AND_ASSIGN(pb::ClientResponse get, CallOverTls(*good, Get(4, "colour")));
  ASSERT_EQ(get.range().kvs_size(), 1);
  EXPECT_EQ(get.range().kvs(0).value(), "blue");
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<testing::TlsTestClient> again,
                       testing::TlsTestClient::Connect(
                           service->port(), certificates.ClientOptions(certificates.client)));
  ASSERT_OK(CallOverTls(*again, Get(5, "colour")).status());
  service->Stop();
  bool said_no_certificate = false;
  for (const std::string& line : sink->lines()) {
    said_no_certificate = said_no_certificate || line.find("certificate") != std::string::npos;
  }
  EXPECT_TRUE(said_no_certificate) << ::testing::PrintToString(sink->lines());
}

TEST_F(ClientServiceTest, PlainPortClosesATlsClientHelloWithAMessageAndServesOn) {
  auto sink = std::make_shared<testing::CapturingLogSink>();
  std::unique_ptr<ClientService> service =
      StartService(ClientServiceOptions(), Logger(sink, LogLevel::kInfo));
  PortCertificates certificates;
  // A real TLS client: its ClientHello would read as a frame of about 369 MB.
  EXPECT_FALSE(testing::TlsTestClient::Connect(service->port(),
                                               certificates.ClientOptions(certificates.client))
                   .ok());
  Client client(service->port());
  EXPECT_FALSE(client.Call(Put(1, "k", "v")).has_error());
  service->Stop();
  bool logged = false;
  for (const std::string& line : sink->lines()) {
    logged = logged || line.find(std::string(wire::kTlsOnPlainPortMessage)) != std::string::npos;
  }
  EXPECT_TRUE(logged);
}

// --tls-transition: one port serves plain and TLS clients side by side, and a plain
// connection found by the handshake reads without blocking the port's thread (a client
// that sent half a frame holds nobody up).
TEST_F(ClientServiceTest, TransitionPortServesPlainAndTlsClientsSideBySide) {
  PortCertificates certificates;
  ClientServiceOptions options;
  wire::TlsOptions server_options = certificates.ServerOptions(true);
  server_options.allow_plain = true;
  ASSERT_OK_AND_ASSIGN(options.tls,
                       wire::TlsContextProvider::Create(server_options, wire::TlsRole::kServer,
                                                        Logger(LogLevel::kWarning)));
  std::unique_ptr<ClientService> service = StartService(options);

  Client plain(service->port());
  EXPECT_FALSE(plain.Call(Put(1, "k", "plain")).has_error());
  Client half(service->port());
  std::string frame;
  ASSERT_OK(AppendFrame(Put(2, "k", "half"), 1 << 24, &frame));
  half.SendRaw(frame.substr(0, frame.size() / 2));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<testing::TlsTestClient> tls,
                       testing::TlsTestClient::Connect(
                           service->port(), certificates.ClientOptions(certificates.client)));
  ASSERT_OK_AND_ASSIGN(pb::ClientResponse get, CallOverTls(*tls, Get(3, "k")));
  ASSERT_EQ(get.range().kvs_size(), 1) << get.DebugString();
  EXPECT_EQ(get.range().kvs(0).value(), "plain");
  EXPECT_FALSE(plain.Call(Put(4, "k", "again")).has_error());
  service->Stop();
}

TEST_F(ClientServiceTest, RewrittenCertificateFilesReachNewConnectionsOnly) {
  PortCertificates certificates;
  ClientServiceOptions options;
  ASSERT_OK_AND_ASSIGN(options.tls, wire::TlsContextProvider::Create(
                                        certificates.ServerOptions(false), wire::TlsRole::kServer,
                                        Logger(LogLevel::kWarning),
                                        {.check_interval = absl::ZeroDuration()}));
  std::unique_ptr<ClientService> service = StartService(options);
  const wire::TlsOptions client_options = {.trusted_ca_file = certificates.server.ca_file};
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<testing::TlsTestClient> before,
                       testing::TlsTestClient::Connect(service->port(), client_options));
  const uint64_t old_serial = before->served_serial();

  const testing::TestCertificate renewed =
      certificates.ca.Issue({.common_name = "stead-0", .ip_addresses = {"127.0.0.1"}});
  testing::ReplaceFile(certificates.server.cert_file, renewed.certificate_pem);
  testing::ReplaceFile(certificates.server.key_file, renewed.private_key_pem);

  ASSERT_OK_AND_ASSIGN(std::unique_ptr<testing::TlsTestClient> after,
                       testing::TlsTestClient::Connect(service->port(), client_options));
  EXPECT_EQ(after->served_serial(), renewed.serial);
  EXPECT_NE(after->served_serial(), old_serial);
  // The connection made before the rotation still works.
  ASSERT_OK_AND_ASSIGN(pb::ClientResponse put, CallOverTls(*before, Put(1, "k", "v")));
  EXPECT_FALSE(put.has_error());
  ASSERT_OK(CallOverTls(*after, Get(2, "k")).status());
  service->Stop();
}

}  // namespace
}  // namespace stead::server
