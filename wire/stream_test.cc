// Stream over real loopback connections: plain and TLS exchanges, mutual TLS, each kind
// of refused certificate as both sides see it, a protocol mismatch in either
// direction, the handshake deadline, and certificate rotation under an open connection.
//
// Method: one io_context run on the test thread until both ends of a connection have
// finished (bounded by run_for), so the tests need no locks and assert only results.
#include "wire/stream.h"

#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/log_capture.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_certificates.h"
#include "wire/tls_context.h"

namespace stead::wire {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
using ::stead::testing::CapturingLogSink;
using ::stead::testing::StatusIs;
using ::stead::testing::TestCertificateAuthority;
using ::stead::testing::TestPemFiles;
using ::stead::testing::WritePemFiles;
using ::testing::HasSubstr;
using SslContext = std::shared_ptr<asio::ssl::context>;

constexpr absl::Duration kHandshakeTimeout = absl::Seconds(10);

// Both ends of one loopback connection and how their handshakes ended.
struct Connection {
  std::unique_ptr<Stream> server;
  std::unique_ptr<Stream> client;
  absl::Status server_handshake = absl::UnknownError("server handshake did not complete");
  absl::Status client_handshake = absl::UnknownError("client handshake did not complete");
};

std::unique_ptr<Stream> MakeStream(tcp::socket socket, const SslContext& context,
                                   bool allow_plain = false) {
  return context != nullptr ? std::make_unique<Stream>(std::move(socket), context, allow_plain)
                            : std::make_unique<Stream>(std::move(socket));
}

class StreamTest : public ::testing::Test {
 protected:
  StreamTest() : acceptor_(io_, tcp::endpoint(asio::ip::address_v4::loopback(), 0)) {}

  // Runs the loop until it has no work left; bounded, so a hang fails instead of
  // blocking the suite.
  void Run() {
    io_.restart();
    io_.run_for(std::chrono::seconds(60));
  }

  // Connects a client to the listener and runs both handshakes. A null context makes
  // that end plain.
  Connection Connect(const SslContext& server_context, const SslContext& client_context,
                     const std::string& peer_name = "127.0.0.1",
                     absl::Duration server_timeout = kHandshakeTimeout) {
    Connection connection;
    acceptor_.async_accept([&](boost::system::error_code error, tcp::socket socket) {
      ASSERT_FALSE(error) << error.message();
      connection.server = MakeStream(std::move(socket), server_context, server_allows_plain_);
      connection.server->AsyncServerHandshake(
          server_timeout, [&](absl::Status status) { connection.server_handshake = status; });
    });
    tcp::socket socket(io_);
    socket.connect(acceptor_.local_endpoint());
    connection.client = MakeStream(std::move(socket), client_context, client_allows_plain_);
    connection.client->AsyncClientHandshake(peer_name, kHandshakeTimeout, [&](absl::Status status) {
      connection.client_handshake = status;
    });
    Run();
    return connection;
  }

  // Sends `message` from client to server and back; returns what came back.
  std::string Echo(Connection& connection, const std::string& message) {
    std::string at_server(message.size(), '\0');
    std::string at_client(message.size(), '\0');
    asio::async_write(*connection.client, asio::buffer(message),
                      [](boost::system::error_code error, size_t) { EXPECT_FALSE(error); });
    asio::async_read(
        *connection.server, asio::buffer(at_server), [&](boost::system::error_code error, size_t) {
          ASSERT_FALSE(error) << connection.server->DescribeError(error);
          asio::async_write(
              *connection.server, asio::buffer(at_server),
              [](boost::system::error_code write_error, size_t) { EXPECT_FALSE(write_error); });
        });
    asio::async_read(*connection.client, asio::buffer(at_client),
                     [&](boost::system::error_code error, size_t) {
                       EXPECT_FALSE(error) << connection.client->DescribeError(error);
                     });
    Run();
    return at_client;
  }

  // The outcome of reading one byte from `stream`: OK with data, else the error.
  absl::Status ReadOne(Stream& stream) {
    char byte = 0;
    absl::Status status = absl::UnknownError("read did not complete");
    stream.async_read_some(asio::buffer(&byte, 1), [&](boost::system::error_code error, size_t) {
      status = error ? stream.DescribeError(error) : absl::OkStatus();
    });
    Run();
    return status;
  }

  // How the client end learnt it was refused: under TLS 1.3 a client's handshake ends
  // before the server has checked the client's certificate, so the refusal arrives as
  // an alert on the client's first read.
  absl::Status ClientOutcome(Connection& connection) {
    if (!connection.client_handshake.ok()) return connection.client_handshake;
    return ReadOne(*connection.client);
  }

  static SslContext Context(const TlsOptions& options, TlsRole role, absl::Time now = absl::Now()) {
    absl::StatusOr<TlsMaterial> material = LoadTlsMaterial(options, role, now);
    EXPECT_OK(material.status());
    if (!material.ok()) return nullptr;
    return *MakeTlsContext(options, role, *material);
  }
  static SslContext ServerContext(const TestPemFiles& files, bool require_client_certificate,
                                  absl::Time now = absl::Now()) {
    return Context({.cert_file = files.cert_file,
                    .key_file = files.key_file,
                    .trusted_ca_file = files.ca_file,
                    .require_peer_certificate = require_client_certificate},
                   TlsRole::kServer, now);
  }
  static SslContext ClientContext(const std::string& ca_file, const TestPemFiles* own = nullptr,
                                  absl::Time now = absl::Now()) {
    return Context({.cert_file = own != nullptr ? own->cert_file : "",
                    .key_file = own != nullptr ? own->key_file : "",
                    .trusted_ca_file = ca_file},
                   TlsRole::kClient, now);
  }

  const std::string dir_ = ::stead::testing::MakeTempDir();
  TestCertificateAuthority ca_{"stead test CA"};
  TestCertificateAuthority other_ca_{"another CA"};
  const TestPemFiles server_ = WritePemFiles(dir_, "server",
                                             ca_.Issue({.common_name = "stead-0",
                                                        .dns_names = {"stead-0.stead"},
                                                        .ip_addresses = {"127.0.0.1"}}),
                                             ca_);
  const TestPemFiles alice_ =
      WritePemFiles(dir_, "alice", ca_.Issue({.common_name = "alice"}), ca_);
  asio::io_context io_;
  tcp::acceptor acceptor_;
  int handshakes_seen_ = 0;
  // TlsOptions::allow_plain of the ends Connect makes.
  bool server_allows_plain_ = false;
  bool client_allows_plain_ = false;
};

TEST(LooksLikeTlsClientHello, RecognisesTlsRecordsNotFrames) {
  const struct {
    std::string name;
    std::string bytes;
    bool want;
  } cases[] = {
      {"TLS 1.0 record header (every ClientHello)", std::string("\x16\x03\x01\x02\x00", 5), true},
      {"TLS 1.2 record header", std::string("\x16\x03\x03", 3), true},
      {"too short to tell", std::string("\x16\x03", 2), false},
      {"a frame of 5 bytes", std::string("\x00\x00\x00\x05", 4), false},
      {"an HTTP request", "GET / HTTP/1.1\r\n", false},
      {"handshake type, unknown major version", std::string("\x16\x02\x01", 3), false},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_EQ(LooksLikeTlsClientHello(c.bytes), c.want);
  }
}

TEST_F(StreamTest, PlainStreamsHandshakeAtOnceAndExchangeBytes) {
  Connection connection = Connect(nullptr, nullptr);
  EXPECT_OK(connection.server_handshake);
  EXPECT_OK(connection.client_handshake);
  EXPECT_FALSE(connection.client->is_tls());
  EXPECT_EQ(Echo(connection, "plain bytes"), "plain bytes");
  EXPECT_THAT(connection.server->PeerCertificateIdentity(),
              StatusIs(absl::StatusCode::kFailedPrecondition, "no verified TLS certificate"));
}

TEST_F(StreamTest, TlsClientVerifiesServerAndExchangesBytes) {
  Connection connection = Connect(ServerContext(server_, /*require_client_certificate=*/false),
                                  ClientContext(server_.ca_file), "stead-0.stead");
  ASSERT_OK(connection.server_handshake);
  ASSERT_OK(connection.client_handshake);
  EXPECT_TRUE(connection.client->is_tls());
  EXPECT_EQ(Echo(connection, std::string(100000, 'x')), std::string(100000, 'x'));
  ASSERT_OK_AND_ASSIGN(PeerIdentity server, connection.client->PeerCertificateIdentity());
  EXPECT_EQ(server.common_name, "stead-0");
  // The client presented no certificate, which this port allows.
  EXPECT_THAT(connection.server->PeerCertificateIdentity(),
              StatusIs(absl::StatusCode::kFailedPrecondition));
}

// Mutual TLS as between members: each side verifies the other's chain; the accepting
// side also checks the address the dialer announces against the dialer's certificate.
TEST_F(StreamTest, MutualTlsGivesEachSideTheOthersIdentity) {
  const TestPemFiles peer = WritePemFiles(dir_, "peer",
                                          ca_.Issue({.common_name = "stead-1",
                                                     .dns_names = {"stead-1.stead"},
                                                     .ip_addresses = {"127.0.0.1"}}),
                                          ca_);
  Connection connection = Connect(ServerContext(server_, /*require_client_certificate=*/true),
                                  ClientContext(server_.ca_file, &peer), "127.0.0.1");
  ASSERT_OK(connection.server_handshake);
  ASSERT_OK(connection.client_handshake);
  EXPECT_EQ(Echo(connection, "hello"), "hello");
  ASSERT_OK_AND_ASSIGN(PeerIdentity dialer, connection.server->PeerCertificateIdentity());
  EXPECT_EQ(dialer.common_name, "stead-1");
  EXPECT_THAT(dialer.dns_names, ::testing::ElementsAre("stead-1.stead"));
  EXPECT_OK(connection.server->CheckPeerNamesHost("stead-1.stead"));
  EXPECT_THAT(connection.server->CheckPeerNamesHost("stead-2.stead"),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       "does not name stead-2.stead (it names stead-1.stead, 127.0.0.1)"));
}

TEST_F(StreamTest, ClientCertificateOfAnotherCaIsRefusedOnBothSides) {
  const TestPemFiles stranger = WritePemFiles(dir_, "stranger", other_ca_.Issue({}), other_ca_);
  Connection connection = Connect(ServerContext(server_, /*require_client_certificate=*/true),
                                  ClientContext(server_.ca_file, &stranger));
  EXPECT_THAT(connection.server_handshake,
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       "refused the peer's certificate: it is not issued by a CA of the trusted "
                       "CA file (unable to get local issuer certificate)"));
  EXPECT_THAT(ClientOutcome(connection),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       "the peer refused our certificate (tlsv1 alert unknown ca)"));
}

TEST_F(StreamTest, ExpiredClientCertificateIsRefusedOnBothSides) {
  const TestPemFiles expired =
      WritePemFiles(dir_, "expired",
                    ca_.Issue({.not_before = absl::Now() - absl::Hours(48),
                               .not_after = absl::Now() - absl::Hours(24)}),
                    ca_);
  // Loaded as of a time it was valid: validation would refuse it today.
  Connection connection =
      Connect(ServerContext(server_, /*require_client_certificate=*/true),
              ClientContext(server_.ca_file, &expired, absl::Now() - absl::Hours(36)));
  EXPECT_THAT(connection.server_handshake,
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       "refused the peer's certificate: it has expired"));
  EXPECT_THAT(ClientOutcome(connection),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       "the peer refused our certificate (sslv3 alert certificate expired)"));
}

TEST_F(StreamTest, MissingClientCertificateIsRefusedWhereRequired) {
  Connection connection = Connect(ServerContext(server_, /*require_client_certificate=*/true),
                                  ClientContext(server_.ca_file));
  EXPECT_THAT(connection.server_handshake,
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       "the peer presented no certificate and this port requires one"));
  EXPECT_THAT(ClientOutcome(connection),
              StatusIs(absl::StatusCode::kFailedPrecondition, "the peer refused our certificate"));
}

TEST_F(StreamTest, ServerCertificateOfAnotherCaIsRefusedOnBothSides) {
  const TestPemFiles other =
      WritePemFiles(dir_, "other", other_ca_.Issue({.ip_addresses = {"127.0.0.1"}}), other_ca_);
  Connection connection = Connect(ServerContext(other, /*require_client_certificate=*/false),
                                  ClientContext(server_.ca_file));
  EXPECT_THAT(connection.client_handshake,
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       "refused the peer's certificate: it is not issued by a CA of the trusted "
                       "CA file"));
  EXPECT_THAT(connection.server_handshake,
              StatusIs(absl::StatusCode::kFailedPrecondition, "the peer refused our certificate"));
}

TEST_F(StreamTest, ExpiredServerCertificateIsRefusedOnBothSides) {
  const TestPemFiles expired =
      WritePemFiles(dir_, "expired-server",
                    ca_.Issue({.ip_addresses = {"127.0.0.1"},
                               .not_before = absl::Now() - absl::Hours(48),
                               .not_after = absl::Now() - absl::Hours(24)}),
                    ca_);
  Connection connection = Connect(
      ServerContext(expired, /*require_client_certificate=*/false, absl::Now() - absl::Hours(36)),
      ClientContext(server_.ca_file));
  EXPECT_THAT(connection.client_handshake,
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       "refused the peer's certificate: it has expired"));
  EXPECT_THAT(connection.server_handshake,
              StatusIs(absl::StatusCode::kFailedPrecondition, "the peer refused our certificate"));
}

TEST_F(StreamTest, ServerCertificateNotNamingTheDialedHostIsRefusedOnBothSides) {
  Connection connection = Connect(ServerContext(server_, /*require_client_certificate=*/false),
                                  ClientContext(server_.ca_file), "stead-1.stead");
  EXPECT_THAT(connection.client_handshake,
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       "refused the peer's certificate: the certificate does not name "
                       "stead-1.stead (it names stead-0.stead, 127.0.0.1)"));
  EXPECT_THAT(connection.server_handshake,
              StatusIs(absl::StatusCode::kFailedPrecondition, "the peer refused our certificate"));
}

// The HTTP port reads and writes through Beast, which takes any AsyncReadStream and
// AsyncWriteStream: a request and its response cross a TLS Stream unchanged.
TEST_F(StreamTest, BeastHttpCrossesATlsStream) {
  namespace http = boost::beast::http;
  Connection connection =
      Connect(ServerContext(server_, false), ClientContext(server_.ca_file), "stead-0.stead");
  ASSERT_OK(connection.client_handshake);
  http::request<http::string_body> request(http::verb::get, "/healthz", 11);
  http::request<http::string_body> received;
  http::response<http::string_body> response(http::status::ok, 11);
  response.body() = "ok\n";
  response.prepare_payload();
  http::response<http::string_body> answer;
  boost::beast::flat_buffer server_buffer, client_buffer;
  http::async_write(*connection.client, request,
                    [](boost::system::error_code error, size_t) { EXPECT_FALSE(error); });
  http::async_read(
      *connection.server, server_buffer, received, [&](boost::system::error_code error, size_t) {
        ASSERT_FALSE(error);
        http::async_write(
            *connection.server, response,
            [](boost::system::error_code write_error, size_t) { EXPECT_FALSE(write_error); });
      });
  http::async_read(*connection.client, client_buffer, answer,
                   [](boost::system::error_code error, size_t) { EXPECT_FALSE(error); });
  Run();
  EXPECT_EQ(received.target(), "/healthz");
  EXPECT_EQ(answer.result(), http::status::ok);
  EXPECT_EQ(answer.body(), "ok\n");
}

TEST_F(StreamTest, PlainTextToTlsPortFailsWithNotTls) {
  acceptor_.async_accept([&](boost::system::error_code error, tcp::socket socket) {
    ASSERT_FALSE(error);
    auto server = std::make_shared<Stream>(std::move(socket), ServerContext(server_, false));
    server->AsyncServerHandshake(kHandshakeTimeout, [this, server](absl::Status status) {
      EXPECT_THAT(status,
                  StatusIs(absl::StatusCode::kFailedPrecondition, "the peer did not speak TLS"));
      handshakes_seen_++;
    });
  });
  tcp::socket client(io_);
  client.connect(acceptor_.local_endpoint());
  const std::string frame("\x00\x00\x00\x05hello", 9);
  asio::write(client, asio::buffer(frame));
  Run();
  EXPECT_EQ(handshakes_seen_, 1);
}

TEST_F(StreamTest, TlsToPlainPortIsRecognisedAndTheClientToldClearly) {
  std::string first_bytes(16, '\0');
  acceptor_.async_accept([&](boost::system::error_code error, tcp::socket socket) {
    ASSERT_FALSE(error);
    auto server = std::make_shared<Stream>(std::move(socket));
    server->async_read_some(asio::buffer(first_bytes),
                            [&, server](boost::system::error_code read_error, size_t bytes) {
                              ASSERT_FALSE(read_error);
                              first_bytes.resize(bytes);
                              // What a plain port does: log and close.
                              boost::system::error_code ignored;
                              server->socket().close(ignored);
                            });
  });
  tcp::socket socket(io_);
  socket.connect(acceptor_.local_endpoint());
  Stream client(std::move(socket), ClientContext(server_.ca_file));
  absl::Status handshake = absl::UnknownError("did not complete");
  client.AsyncClientHandshake("127.0.0.1", kHandshakeTimeout,
                              [&](absl::Status status) { handshake = status; });
  Run();
  EXPECT_TRUE(LooksLikeTlsClientHello(first_bytes));
  EXPECT_THAT(handshake, StatusIs(absl::StatusCode::kUnavailable,
                                  "the peer closed the connection during the TLS handshake"));
}

TEST_F(StreamTest, HandshakeEndsAtItsDeadline) {
  // A client that connects and says nothing holds no TLS port's resources for longer
  // than the deadline.
  Connection connection =
      Connect(ServerContext(server_, false), nullptr, "127.0.0.1", absl::Milliseconds(200));
  EXPECT_THAT(
      connection.server_handshake,
      StatusIs(absl::StatusCode::kUnavailable, "the TLS handshake did not finish within 200ms"));
}

TEST_F(StreamTest, ClientHandshakeNeedsAPeerName) {
  // The server end gives up at its deadline: the client never sends its hello.
  Connection connection = Connect(ServerContext(server_, false), ClientContext(server_.ca_file), "",
                                  absl::Milliseconds(200));
  EXPECT_THAT(connection.client_handshake,
              StatusIs(absl::StatusCode::kInvalidArgument, "needs the name"));
}

// allow_plain (--tls-transition): a TLS port also takes plain clients, each connection
// becoming what its first byte says; the TLS rules are unchanged for TLS clients.
TEST_F(StreamTest, AllowPlainServerTakesPlainClientsPlainAndTlsClientsWithTls) {
  server_allows_plain_ = true;
  {
    // A plain client speaks first, as stead's clients and members and HTTP clients do.
    std::string received(11, '\0');
    std::unique_ptr<Stream> server;
    absl::Status server_handshake = absl::UnknownError("did not complete");
    acceptor_.async_accept([&](boost::system::error_code error, tcp::socket socket) {
      ASSERT_FALSE(error);
      server = MakeStream(std::move(socket), ServerContext(server_, true), /*allow_plain=*/true);
      server->AsyncServerHandshake(kHandshakeTimeout, [&](absl::Status status) {
        server_handshake = status;
        if (status.ok()) {
          asio::async_read(*server, asio::buffer(received),
                           [](boost::system::error_code read, size_t) { EXPECT_FALSE(read); });
        }
      });
    });
    tcp::socket client(io_);
    client.connect(acceptor_.local_endpoint());
    asio::write(client, asio::buffer(std::string("plain frame")));
    Run();
    ASSERT_OK(server_handshake);
    EXPECT_FALSE(server->is_tls());
    EXPECT_EQ(received, "plain frame");
  }

  Connection tls = Connect(ServerContext(server_, true), ClientContext(server_.ca_file, &alice_),
                           "stead-0.stead");
  ASSERT_OK(tls.server_handshake);
  ASSERT_OK(tls.client_handshake);
  EXPECT_TRUE(tls.server->is_tls());
  EXPECT_EQ(Echo(tls, std::string(50000, 'y')), std::string(50000, 'y'));
  ASSERT_OK_AND_ASSIGN(PeerIdentity client, tls.server->PeerCertificateIdentity());
  EXPECT_EQ(client.common_name, "alice");

  // A TLS client without the required certificate is refused as without allow_plain.
  Connection anonymous = Connect(ServerContext(server_, true), ClientContext(server_.ca_file),
                                 "stead-0.stead");
  EXPECT_THAT(anonymous.server_handshake,
              StatusIs(absl::StatusCode::kFailedPrecondition, "presented no certificate"));
}

TEST_F(StreamTest, AllowPlainServerStillEndsASilentConnectionAtTheDeadline) {
  server_allows_plain_ = true;
  Connection connection =
      Connect(ServerContext(server_, false), nullptr, "127.0.0.1", absl::Milliseconds(200));
  EXPECT_THAT(
      connection.server_handshake,
      StatusIs(absl::StatusCode::kUnavailable, "the TLS handshake did not finish within 200ms"));
}

// A plain port as stead's are: a connection whose first bytes are a TLS ClientHello is
// closed; any other is echoed back. Serves `connections` connections.
void ServePlainPort(tcp::acceptor& acceptor, int connections) {
  if (connections == 0) return;
  acceptor.async_accept([&acceptor, connections](boost::system::error_code error,
                                                 tcp::socket socket) {
    ASSERT_FALSE(error);
    auto stream = std::make_shared<Stream>(std::move(socket));
    auto buffer = std::make_shared<std::string>(64, '\0');
    stream->async_read_some(asio::buffer(*buffer), [stream, buffer](boost::system::error_code read,
                                                                    size_t bytes) {
      if (read) return;
      buffer->resize(bytes);
      if (LooksLikeTlsClientHello(*buffer)) {
        boost::system::error_code ignored;
        stream->socket().close(ignored);
        return;
      }
      asio::async_write(*stream, asio::buffer(*buffer),
                        [stream, buffer](boost::system::error_code, size_t) {});
    });
    ServePlainPort(acceptor, connections - 1);
  });
}

TEST_F(StreamTest, AllowPlainClientConnectsAgainWithoutTlsToAPortWithoutTls) {
  ServePlainPort(acceptor_, 2);
  tcp::socket socket(io_);
  socket.connect(acceptor_.local_endpoint());
  Stream client(std::move(socket), ClientContext(server_.ca_file, &alice_), /*allow_plain=*/true);
  absl::Status handshake = absl::UnknownError("did not complete");
  std::string echoed(5, '\0');
  client.AsyncClientHandshake("127.0.0.1", kHandshakeTimeout, [&](absl::Status status) {
    handshake = status;
    if (!status.ok()) return;
    asio::async_write(client, asio::buffer(std::string("hello")),
                      [](boost::system::error_code error, size_t) { EXPECT_FALSE(error); });
    asio::async_read(client, asio::buffer(echoed),
                     [](boost::system::error_code error, size_t) { EXPECT_FALSE(error); });
  });
  Run();
  ASSERT_OK(handshake);
  EXPECT_FALSE(client.is_tls());
  EXPECT_EQ(echoed, "hello");
}

TEST_F(StreamTest, AllowPlainClientDoesNotFallBackWhenTheServerRefusesItsCertificateOrName) {
  client_allows_plain_ = true;
  const TestPemFiles stranger =
      WritePemFiles(dir_, "stranger", other_ca_.Issue({.common_name = "alice"}), other_ca_);
  Connection refused_by_server = Connect(ServerContext(server_, true),
                                         ClientContext(server_.ca_file, &stranger), "stead-0.stead");
  EXPECT_THAT(ClientOutcome(refused_by_server), StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_TRUE(refused_by_server.client->is_tls());

  Connection wrong_name = Connect(ServerContext(server_, false), ClientContext(server_.ca_file),
                                  "stead-9.stead");
  EXPECT_THAT(wrong_name.client_handshake,
              StatusIs(absl::StatusCode::kFailedPrecondition, "refused the peer's certificate"));
  EXPECT_TRUE(wrong_name.client->is_tls());
}

// Rotation as cert-manager does it: the files are replaced while a connection is open.
// The open connection keeps its session; the next one gets the new certificate; a
// broken replacement is refused, logged once, and the last good certificate stays.
TEST_F(StreamTest, RotationKeepsOpenConnectionsAndServesTheNewCertificateToNewOnes) {
  auto sink = std::make_shared<CapturingLogSink>();
  ASSERT_OK_AND_ASSIGN(
      std::unique_ptr<TlsContextProvider> provider,
      TlsContextProvider::Create({.cert_file = server_.cert_file, .key_file = server_.key_file},
                                 TlsRole::kServer, Logger(sink, LogLevel::kInfo),
                                 {.check_interval = absl::ZeroDuration()}));
  const SslContext client_context = ClientContext(server_.ca_file);
  auto server_name = [](Connection& connection) {
    absl::StatusOr<PeerIdentity> identity = connection.client->PeerCertificateIdentity();
    return identity.ok() ? identity->common_name : identity.status().ToString();
  };

  Connection before = Connect(provider->Current(), client_context);
  ASSERT_OK(before.client_handshake);
  EXPECT_EQ(server_name(before), "stead-0");

  const ::stead::testing::TestCertificate rotated =
      ca_.Issue({.common_name = "stead-0 rotated", .ip_addresses = {"127.0.0.1"}});
  WritePemFiles(dir_, "server", rotated, ca_);
  Connection after = Connect(provider->Current(), client_context);
  ASSERT_OK(after.client_handshake);
  EXPECT_EQ(server_name(after), "stead-0 rotated");
  EXPECT_EQ(Echo(before, "still here"), "still here");

  ::stead::testing::ReplaceFile(server_.cert_file, "-----BEGIN CERTIFICATE-----\ngarbage\n");
  Connection during_garbage = Connect(provider->Current(), client_context);
  Connection again = Connect(provider->Current(), client_context);
  EXPECT_EQ(server_name(during_garbage), "stead-0 rotated");
  EXPECT_EQ(server_name(again), "stead-0 rotated");

  const ::stead::testing::TestCertificate third =
      ca_.Issue({.common_name = "stead-0 third", .ip_addresses = {"127.0.0.1"}});
  ::stead::testing::ReplaceFile(server_.cert_file, third.certificate_pem);  // key still the old one
  Connection mismatched = Connect(provider->Current(), client_context);
  EXPECT_EQ(server_name(mismatched), "stead-0 rotated");
  EXPECT_EQ(Echo(after, "and here"), "and here");

  EXPECT_THAT(sink->lines(),
              ::testing::ElementsAre(
                  HasSubstr("TLS files reloaded: certificate CN=stead-0 rotated"),
                  HasSubstr("still using the previous certificate: --cert-file " +
                            server_.cert_file + ": holds no PEM certificate"),
                  HasSubstr("still using the previous certificate: the key in --key-file " +
                            server_.key_file + " does not match the certificate")));
}

}  // namespace
}  // namespace stead::wire
