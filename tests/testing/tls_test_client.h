// A blocking TLS client for tests of the members' TLS ports: connects on loopback,
// handshakes with wire's client context, and tells which certificate the port served
// (its serial and CN), so rotation tests can see the new one.
//
//   ASSERT_OK_AND_ASSIGN(auto client, TlsTestClient::Connect(port, {.trusted_ca_file = ca}));
//   EXPECT_EQ(client->served_serial(), 7u);
//
// Reads wait at most 10 s. Not thread-safe.
#ifndef STEAD_TESTS_TESTING_TLS_TEST_CLIENT_H_
#define STEAD_TESTS_TESTING_TLS_TEST_CLIENT_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "wire/asio_ssl.h"
#include "wire/tls_options.h"

namespace stead::testing {

class TlsTestClient {
 public:
  // Connects to 127.0.0.1:`port` and completes a TLS handshake with `options` (client
  // role: the trusted CA, and a client certificate when set), checking that the
  // served certificate names `server_name`. The handshake's error otherwise; under TLS
  // 1.3 a refused client certificate shows only on the first Read.
  static absl::StatusOr<std::unique_ptr<TlsTestClient>> Connect(
      uint16_t port, const wire::TlsOptions& options, const std::string& server_name = "127.0.0.1");
  ~TlsTestClient();

  // The certificate the server presented.
  uint64_t served_serial() const { return served_serial_; }
  const std::string& served_common_name() const { return served_common_name_; }

  absl::Status Write(const std::string& bytes);
  // What arrived next (at least one byte); Unavailable when the connection closed or
  // failed (with OpenSSL's reason, e.g. an alert refusing our certificate).
  absl::StatusOr<std::string> Read();

 private:
  TlsTestClient();

  boost::asio::io_context io_;
  std::shared_ptr<boost::asio::ssl::context> context_;
  std::unique_ptr<boost::asio::ssl::stream<boost::asio::ip::tcp::socket>> stream_;
  uint64_t served_serial_ = 0;
  std::string served_common_name_;
};

}  // namespace stead::testing

#endif  // STEAD_TESTS_TESTING_TLS_TEST_CLIENT_H_
