#include "tests/testing/tls_test_client.h"

#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "wire/tls_context.h"
#include "wire/tls_verify.h"

namespace stead::testing {

namespace asio = boost::asio;
using asio::ip::tcp;

TlsTestClient::TlsTestClient() = default;
TlsTestClient::~TlsTestClient() = default;

absl::StatusOr<std::unique_ptr<TlsTestClient>> TlsTestClient::Connect(
    uint16_t port, const wire::TlsOptions& options, const std::string& server_name) {
  std::unique_ptr<TlsTestClient> client(new TlsTestClient());
  STEAD_ASSIGN_OR_RETURN(wire::TlsMaterial material,
                         wire::LoadTlsMaterial(options, wire::TlsRole::kClient, absl::Now()));
  STEAD_ASSIGN_OR_RETURN(client->context_,
                         wire::MakeTlsContext(options, wire::TlsRole::kClient, material));
  client->stream_ = std::make_unique<asio::ssl::stream<tcp::socket>>(client->io_, *client->context_);
  boost::system::error_code ec;
  tcp::socket& socket = client->stream_->next_layer();
  socket.connect({asio::ip::make_address("127.0.0.1"), port}, ec);
  if (ec) return absl::UnavailableError(absl::StrCat("connect: ", ec.message()));
  const timeval timeout{10, 0};
  setsockopt(socket.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  SSL* ssl = client->stream_->native_handle();
  if (wire::IsIpAddress(server_name)) {
    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), server_name.c_str());
  } else {
    SSL_set1_host(ssl, server_name.c_str());
    // SSL_set_tlsext_host_name is a macro with an old-style cast.
    SSL_ctrl(ssl, SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
             const_cast<char*>(server_name.c_str()));
  }
  client->stream_->handshake(asio::ssl::stream_base::client, ec);
  if (ec) return absl::UnavailableError(absl::StrCat("handshake: ", ec.message()));
  X509* served = SSL_get0_peer_certificate(ssl);
  if (served == nullptr) return absl::InternalError("no server certificate");
  client->served_serial_ = ASN1_INTEGER_get(X509_get0_serialNumber(served));
  client->served_common_name_ = wire::IdentityOf(served).common_name;
  return client;
}

absl::Status TlsTestClient::Write(const std::string& bytes) {
  boost::system::error_code ec;
  asio::write(*stream_, asio::buffer(bytes), ec);
  if (ec) return absl::UnavailableError(absl::StrCat("write: ", ec.message()));
  return absl::OkStatus();
}

absl::StatusOr<std::string> TlsTestClient::Read() {
  std::string buffer(16 * 1024, '\0');
  boost::system::error_code ec;
  const size_t n = stream_->read_some(asio::buffer(buffer), ec);
  if (ec) return absl::UnavailableError(absl::StrCat("read: ", ec.message()));
  buffer.resize(n);
  return buffer;
}

}  // namespace stead::testing
