// Connection over TLS against a minimal member: an in-process listener that answers
// each ClientRequest frame with a ClientResponse of the same id, over wire::Stream.
// Shows that requests flow over TLS with a client certificate, and that each kind of
// refusal reaches the caller as FailedPrecondition naming the address and the reason.
//
// Method: one io_context on a background thread runs both the member and the
// Connection; the test thread waits for each handler's result with a deadline.
#include "client/connection.h"

#include <array>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_certificates.h"
#include "wire/stream.h"
#include "wire/tls_context.h"

namespace stead::client_internal {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
using ::stead::testing::StatusIs;
using ::stead::testing::TestCertificateAuthority;
using ::stead::testing::TestPemFiles;
using ::stead::testing::WritePemFiles;

// One accepted connection of the member: handshake, then echo request ids.
class MemberSession : public std::enable_shared_from_this<MemberSession> {
 public:
  // `on_client` receives the CN of the client's certificate after each handshake.
  MemberSession(tcp::socket socket, std::shared_ptr<asio::ssl::context> context,
                std::function<void(std::string)> on_client)
      : stream_(context != nullptr ? wire::Stream(std::move(socket), std::move(context))
                                   : wire::Stream(std::move(socket))),
        on_client_(std::move(on_client)) {}

  void Start() {
    stream_.AsyncServerHandshake(
        absl::Seconds(10), [self = shared_from_this()](absl::Status status) {
          if (!status.ok()) return;  // the client's side of the failure is what is tested
          absl::StatusOr<wire::PeerIdentity> identity = self->stream_.PeerCertificateIdentity();
          self->on_client_(identity.ok() ? identity->common_name : "(no certificate)");
          self->Read();
        });
  }

 private:
  void Read() {
    stream_.async_read_some(
        asio::buffer(buffer_),
        [self = shared_from_this()](boost::system::error_code error, size_t bytes) {
          if (error) return;
          self->reader_.Append(absl::string_view(self->buffer_.data(), bytes));
          std::string out;
          while (true) {
            absl::StatusOr<std::optional<absl::string_view>> payload = self->reader_.Next();
            if (!payload.ok()) return;  // as a member does: the connection closes
            if (!payload->has_value()) break;
            pb::ClientRequest request;
            if (!server::ParseFramePayload(**payload, "ClientRequest", &request).ok()) return;
            pb::ClientResponse response;
            response.set_request_id(request.request_id());
            response.mutable_put();
            EXPECT_OK(server::AppendFrame(response, server::kDefaultMaxFrameBytes, &out));
          }
          auto written = std::make_shared<std::string>(std::move(out));
          asio::async_write(self->stream_, asio::buffer(*written),
                            [self, written](boost::system::error_code write_error, size_t) {
                              if (!write_error) self->Read();
                            });
        });
  }

  wire::Stream stream_;
  const std::function<void(std::string)> on_client_;
  server::FrameReader reader_;
  std::array<char, 4096> buffer_{};
};

class ConnectionTlsTest : public ::testing::Test {
 protected:
  ~ConnectionTlsTest() override {
    io_.stop();
    if (thread_.joinable()) thread_.join();
  }

  // Starts a member on a free loopback port serving `files` (plain when null) and
  // returns its address.
  std::string StartMember(const TestPemFiles* files, bool require_client_certificate) {
    if (files != nullptr) {
      wire::TlsOptions options{.cert_file = files->cert_file,
                               .key_file = files->key_file,
                               .trusted_ca_file = files->ca_file,
                               .require_peer_certificate = require_client_certificate};
      absl::StatusOr<wire::TlsMaterial> material =
          wire::LoadTlsMaterial(options, wire::TlsRole::kServer, absl::Now());
      EXPECT_OK(material.status());
      member_context_ = *wire::MakeTlsContext(options, wire::TlsRole::kServer, *material);
    }
    Accept();
    thread_ = std::thread([this] { io_.run(); });
    return "127.0.0.1:" + std::to_string(acceptor_.local_endpoint().port());
  }

  // Sends one request on `connection` and waits for its handler's result.
  absl::StatusOr<pb::ClientResponse> Call(const std::shared_ptr<Connection>& connection,
                                          uint64_t request_id) {
    pb::ClientRequest request;
    request.set_request_id(request_id);
    std::string frame;
    EXPECT_OK(server::AppendFrame(request, server::kDefaultMaxFrameBytes, &frame));
    auto result = std::make_shared<std::promise<absl::StatusOr<pb::ClientResponse>>>();
    std::future<absl::StatusOr<pb::ClientResponse>> future = result->get_future();
    connection->Send(request_id, std::move(frame),
                     [result](absl::StatusOr<pb::ClientResponse> response) {
                       result->set_value(std::move(response));
                     });
    if (future.wait_for(std::chrono::seconds(30)) != std::future_status::ready) {
      return absl::DeadlineExceededError("no answer within 30 s");
    }
    return future.get();
  }

  std::shared_ptr<Connection> MakeConnection(const std::string& address,
                                             const ClientTlsOptions& tls) {
    absl::StatusOr<std::shared_ptr<wire::TlsContextProvider>> provider = MakeClientTlsProvider(tls);
    EXPECT_OK(provider.status());
    return std::make_shared<Connection>(io_, address, absl::Seconds(10), 1u << 20,
                                        provider.value_or(nullptr), tls.server_name);
  }

  const std::string dir_ = ::stead::testing::MakeTempDir();
  TestCertificateAuthority ca_{"stead test CA"};
  const TestPemFiles member_ = WritePemFiles(
      dir_, "member", ca_.Issue({.common_name = "stead-0", .ip_addresses = {"127.0.0.1"}}), ca_);
  const TestPemFiles client_ =
      WritePemFiles(dir_, "client", ca_.Issue({.common_name = "steadctl"}), ca_);
  // The CN of the first client that completed a handshake.
  std::promise<std::string> client_name_;

 private:
  void Accept() {
    acceptor_.async_accept([this](boost::system::error_code error, tcp::socket socket) {
      if (error) return;
      std::make_shared<MemberSession>(std::move(socket), member_context_, [this](std::string name) {
        if (client_named_) return;
        client_named_ = true;
        client_name_.set_value(std::move(name));
      })->Start();
      Accept();
    });
  }

  asio::io_context io_;
  tcp::acceptor acceptor_{io_, tcp::endpoint(asio::ip::address_v4::loopback(), 0)};
  std::shared_ptr<asio::ssl::context> member_context_;
  bool client_named_ = false;  // on the io thread only
  std::thread thread_;
};

TEST_F(ConnectionTlsTest, PlainRequestsFlowWithoutTlsSettings) {
  const std::string address = StartMember(nullptr, /*require_client_certificate=*/false);
  auto connection = MakeConnection(address, ClientTlsOptions{});
  for (uint64_t id = 1; id <= 3; ++id) {
    absl::StatusOr<pb::ClientResponse> response = Call(connection, id);
    ASSERT_OK(response.status());
    EXPECT_EQ(response->request_id(), id);
  }
}

TEST_F(ConnectionTlsTest, RequestsFlowOverMutualTls) {
  const std::string address = StartMember(&member_, /*require_client_certificate=*/true);
  auto connection = MakeConnection(address, {.trusted_ca_file = client_.ca_file,
                                             .cert_file = client_.cert_file,
                                             .key_file = client_.key_file});
  for (uint64_t id = 1; id <= 3; ++id) {
    absl::StatusOr<pb::ClientResponse> response = Call(connection, id);
    ASSERT_OK(response.status());
    EXPECT_EQ(response->request_id(), id);
  }
  std::future<std::string> client_name = client_name_.get_future();
  ASSERT_EQ(client_name.wait_for(std::chrono::seconds(30)), std::future_status::ready);
  EXPECT_EQ(client_name.get(), "steadctl");
  connection->Close();
}

TEST_F(ConnectionTlsTest, MemberCertificateOfAnotherCaFailsWithoutRetryCode) {
  TestCertificateAuthority other_ca("another CA");
  const TestPemFiles stranger =
      WritePemFiles(dir_, "stranger", other_ca.Issue({.ip_addresses = {"127.0.0.1"}}), other_ca);
  const std::string address = StartMember(&stranger, /*require_client_certificate=*/false);
  auto connection = MakeConnection(address, {.trusted_ca_file = member_.ca_file});
  EXPECT_THAT(Call(connection, 1),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       "TLS handshake with " + address +
                           " failed: refused the peer's certificate: it is not issued by a CA"));
}

TEST_F(ConnectionTlsTest, RefusedClientCertificateFailsWithoutRetryCode) {
  const std::string address = StartMember(&member_, /*require_client_certificate=*/true);
  auto connection = MakeConnection(address, {.trusted_ca_file = member_.ca_file});
  EXPECT_THAT(Call(connection, 1),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       "connection to " + address + " lost: the peer refused our certificate"));
}

TEST_F(ConnectionTlsTest, ServerNameReplacesTheEndpointHost) {
  const TestPemFiles service =
      WritePemFiles(dir_, "service", ca_.Issue({.dns_names = {"stead-client.default.svc"}}), ca_);
  const std::string address = StartMember(&service, /*require_client_certificate=*/false);
  auto by_ip = MakeConnection(address, {.trusted_ca_file = member_.ca_file});
  EXPECT_THAT(Call(by_ip, 1), StatusIs(absl::StatusCode::kFailedPrecondition,
                                       "the certificate does not name 127.0.0.1 (it names "
                                       "stead-client.default.svc)"));
  auto by_name = MakeConnection(
      address, {.trusted_ca_file = member_.ca_file, .server_name = "stead-client.default.svc"});
  EXPECT_OK(Call(by_name, 2).status());
}

// A member without TLS reads the ClientHello as an oversized frame and closes.
TEST_F(ConnectionTlsTest, PlainMemberClosingDuringTheHandshakeIsSaidSo) {
  const std::string address = StartMember(nullptr, /*require_client_certificate=*/false);
  auto connection = MakeConnection(address, {.enabled = true, .trusted_ca_file = member_.ca_file});
  EXPECT_THAT(Call(connection, 1),
              StatusIs(absl::StatusCode::kUnavailable,
                       "TLS handshake with " + address +
                           " failed: the peer closed the connection during the TLS handshake"));
}

TEST(MakeClientTlsProvider, OffWithoutSettingsAndNamesTheFieldOfABadFile) {
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<wire::TlsContextProvider> off,
                       MakeClientTlsProvider(ClientTlsOptions{}));
  EXPECT_EQ(off, nullptr);
  EXPECT_THAT(MakeClientTlsProvider({.trusted_ca_file = "/nonexistent/ca.crt"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "ClientTlsOptions::trusted_ca_file /nonexistent/ca.crt: cannot read it"));
  EXPECT_THAT(MakeClientTlsProvider({.cert_file = "/nonexistent/client.crt"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "ClientTlsOptions::cert_file and ClientTlsOptions::key_file go together"));
}

}  // namespace
}  // namespace stead::client_internal
