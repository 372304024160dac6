// HttpServer over real loopback sockets, driven by raw HTTP/1.1 text so the tests also
// cover malformed requests.
#include "server/http_server.h"

#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_certificates.h"
#include "tests/testing/tls_test_client.h"

namespace stead::server {
namespace {

namespace asio = boost::asio;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

class HttpServerTest : public ::testing::Test {
 protected:
  HttpServerTest() : work_(asio::make_work_guard(io_)), server_(io_, Options(), Logger()) {
    server_.Handle("/healthz", [](const HttpRequest&) { return HttpResponse{200, "text/plain", "ok\n"}; });
    server_.Handle("/echo", [](const HttpRequest& request) {
      return HttpResponse{200, "text/plain", request.method + " " + request.path + " ? " + request.query};
    });
    server_.Handle("/readyz", [](const HttpRequest&) {
      return HttpResponse{503, "text/plain", "not ready: no leader\n"};
    });
    EXPECT_OK(server_.Listen("127.0.0.1", 0));
    thread_ = std::thread([this] { io_.run(); });
  }
  ~HttpServerTest() override {
    server_.Stop();
    work_.reset();
    thread_.join();
  }

  static HttpServerOptions Options() {
    HttpServerOptions options;
    options.max_header_bytes = 1024;
    return options;
  }

  // Sends `raw` on a new connection and returns everything read until the server closes
  // it or `timeout` passes.
  std::string Exchange(const std::string& raw, absl::Duration timeout = absl::Seconds(5)) {
    asio::io_context client;
    asio::ip::tcp::socket socket(client);
    boost::system::error_code ec;
    socket.connect({asio::ip::make_address("127.0.0.1"), server_.port()}, ec);
    EXPECT_FALSE(ec) << ec.message();
    asio::write(socket, asio::buffer(raw), ec);
    const timeval tv{static_cast<time_t>(absl::ToInt64Seconds(timeout)), 0};
    setsockopt(socket.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    std::string received;
    char buffer[4096];
    for (int i = 0; i < 1000; ++i) {
      const size_t n = socket.read_some(asio::buffer(buffer), ec);
      if (ec) break;
      received.append(buffer, n);
    }
    return received;
  }

  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  HttpServer server_;
  std::thread thread_;
};

TEST_F(HttpServerTest, GetServesTheHandlerAndCloseEndsTheConnection) {
  const std::string response =
      Exchange("GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  EXPECT_THAT(response, StartsWith("HTTP/1.1 200 OK\r\n"));
  EXPECT_THAT(response, HasSubstr("Content-Length: 3\r\n"));
  EXPECT_THAT(response, HasSubstr("\r\n\r\nok\n"));
}

TEST_F(HttpServerTest, HandlerStatusAndQueryArePassedThrough) {
  EXPECT_THAT(Exchange("GET /readyz HTTP/1.1\r\nConnection: close\r\n\r\n"),
              StartsWith("HTTP/1.1 503 Service Unavailable"));
  EXPECT_THAT(Exchange("GET /echo?noleader=1 HTTP/1.1\r\nConnection: close\r\n\r\n"),
              HasSubstr("GET /echo ? noleader=1"));
}

TEST_F(HttpServerTest, HeadHasTheLengthButNoBody) {
  const std::string response = Exchange("HEAD /healthz HTTP/1.1\r\nConnection: close\r\n\r\n");
  EXPECT_THAT(response, StartsWith("HTTP/1.1 200 OK"));
  EXPECT_THAT(response, HasSubstr("Content-Length: 3\r\n"));
  EXPECT_THAT(response, Not(HasSubstr("ok\n")));
}

TEST_F(HttpServerTest, KeepAliveServesSeveralRequestsOnOneConnection) {
  const std::string response = Exchange(
      "GET /healthz HTTP/1.1\r\n\r\nGET /echo HTTP/1.1\r\n\r\nGET /healthz HTTP/1.1\r\n"
      "Connection: close\r\n\r\n");
  size_t count = 0;
  for (size_t at = response.find("HTTP/1.1 200"); at != std::string::npos;
       at = response.find("HTTP/1.1 200", at + 1)) {
    ++count;
  }
  EXPECT_EQ(count, 3u);
}

TEST_F(HttpServerTest, UnknownPathAndMethodAreRefused) {
  EXPECT_THAT(Exchange("GET /nope HTTP/1.1\r\nConnection: close\r\n\r\n"),
              StartsWith("HTTP/1.1 404 Not Found"));
  const std::string post =
      Exchange("POST /healthz HTTP/1.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
  EXPECT_THAT(post, StartsWith("HTTP/1.1 405 Method Not Allowed"));
  EXPECT_THAT(post, HasSubstr("Allow: GET, HEAD"));
}

TEST_F(HttpServerTest, GarbageAndOversizedHeadersAreAnsweredAndClosed) {
  EXPECT_THAT(Exchange("\x16\x03\x01\x02\x00 not http at all\r\n\r\n"),
              StartsWith("HTTP/1.1 400 Bad Request"));
  EXPECT_THAT(Exchange("GET /healthz HTTP/1.1\r\nX-Big: " + std::string(4096, 'a') + "\r\n\r\n"),
              StartsWith("HTTP/1.1 431"));
  // The server is unharmed.
  EXPECT_THAT(Exchange("GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n"),
              StartsWith("HTTP/1.1 200 OK"));
}

// Goal: idle connections beyond the cap (a kubelet's leaked keep-alives, or an attack)
// never keep a health probe out. Method: hold more idle connections than the server's
// cap, then probe /readyz on a new one.
TEST_F(HttpServerTest, ReadyzAnswersPastSeventyIdleConnections) {
  asio::io_context client;
  std::vector<asio::ip::tcp::socket> idle;
  for (int i = 0; i < 70; ++i) {
    idle.emplace_back(client);
    boost::system::error_code ec;
    idle.back().connect({asio::ip::make_address("127.0.0.1"), server_.port()}, ec);
    ASSERT_FALSE(ec) << ec.message();
  }
  EXPECT_THAT(Exchange("GET /readyz HTTP/1.1\r\nConnection: close\r\n\r\n"),
              StartsWith("HTTP/1.1 503 Service Unavailable"));
  EXPECT_THAT(Exchange("GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n"),
              StartsWith("HTTP/1.1 200 OK"));
}

TEST(HttpServer, ListenReportsABadAddressAndABusyPort) {
  asio::io_context io;
  HttpServer first(io, HttpServerOptions(), Logger());
  EXPECT_THAT(first.Listen("not-an-ip", 0),
              stead::testing::StatusIs(absl::StatusCode::kInvalidArgument, "not-an-ip"));
  ASSERT_OK(first.Listen("127.0.0.1", 0));
  HttpServer second(io, HttpServerOptions(), Logger());
  EXPECT_THAT(second.Listen("127.0.0.1", first.port()),
              stead::testing::StatusIs(absl::StatusCode::kUnavailable, "cannot listen for HTTP"));
  first.Stop();
  second.Stop();
  io.run();
}

TEST(HttpServer, HttpsPortServesProbesOverTlsOnlyAndRotatesItsCertificate) {
  testing::TestCertificateAuthority ca("HTTP CA");
  const std::string dir = testing::MakeTempDir();
  const testing::TestPemFiles files = testing::WritePemFiles(
      dir, "http", ca.Issue({.common_name = "stead-0", .ip_addresses = {"127.0.0.1"}}), ca);
  asio::io_context io;
  auto work = asio::make_work_guard(io);
  HttpServerOptions options;
  options.header_timeout = absl::Seconds(2);
  ASSERT_OK_AND_ASSIGN(options.tls,
                       wire::TlsContextProvider::Create(
                           {.cert_file = files.cert_file, .key_file = files.key_file},
                           wire::TlsRole::kServer, Logger(), {.check_interval = absl::ZeroDuration()}));
  HttpServer server(io, options, Logger());
  server.Handle("/healthz", [](const HttpRequest&) { return HttpResponse{200, "text/plain", "ok\n"}; });
  ASSERT_OK(server.Listen("127.0.0.1", 0));
  std::thread thread([&] { io.run(); });
  const wire::TlsOptions client_options = {.trusted_ca_file = files.ca_file};
  auto get = [&](testing::TlsTestClient& client) -> std::string {
    EXPECT_OK(client.Write("GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
    std::string received;
    for (int i = 0; i < 100; ++i) {
      absl::StatusOr<std::string> read = client.Read();
      if (!read.ok()) break;
      received += *read;
    }
    return received;
  };
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<testing::TlsTestClient> client,
                         testing::TlsTestClient::Connect(server.port(), client_options));
    EXPECT_THAT(get(*client), HasSubstr("\r\n\r\nok\n"));
  }
  // Plain HTTP on the HTTPS port gets no answer.
  {
    asio::io_context plain_io;
    asio::ip::tcp::socket plain(plain_io);
    plain.connect({asio::ip::make_address("127.0.0.1"), server.port()});
    asio::write(plain, asio::buffer(std::string("GET /healthz HTTP/1.1\r\n\r\n")));
    const timeval tv{5, 0};
    setsockopt(plain.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    char buffer[512];
    boost::system::error_code ec;
    const size_t n = plain.read_some(asio::buffer(buffer), ec);
    EXPECT_THAT(std::string(buffer, ec ? 0 : n), Not(HasSubstr("200 OK")));
  }
  // A rewritten certificate is served to the next connection.
  const testing::TestCertificate renewed =
      ca.Issue({.common_name = "stead-0", .ip_addresses = {"127.0.0.1"}});
  testing::ReplaceFile(files.cert_file, renewed.certificate_pem);
  testing::ReplaceFile(files.key_file, renewed.private_key_pem);
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<testing::TlsTestClient> client,
                         testing::TlsTestClient::Connect(server.port(), client_options));
    EXPECT_EQ(client->served_serial(), renewed.serial);
    EXPECT_THAT(get(*client), HasSubstr("\r\n\r\nok\n"));
  }
  server.Stop();
  work.reset();
  thread.join();
}

}  // namespace
}  // namespace stead::server
