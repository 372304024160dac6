#include "wire/stream.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "absl/strings/str_cat.h"

namespace stead::wire {
namespace {

// TLS record content type "handshake" and the major version byte of SSL 3.0 to TLS 1.3.
constexpr unsigned char kTlsHandshakeRecord = 0x16;
constexpr unsigned char kTlsMajorVersion = 0x03;

bool IsCertificateAlert(int alert) {
  switch (alert) {
    case SSL_AD_BAD_CERTIFICATE:
    case SSL_AD_UNSUPPORTED_CERTIFICATE:
    case SSL_AD_CERTIFICATE_REVOKED:
    case SSL_AD_CERTIFICATE_EXPIRED:
    case SSL_AD_CERTIFICATE_UNKNOWN:
    case SSL_AD_UNKNOWN_CA:
    case SSL_AD_CERTIFICATE_REQUIRED:
      return true;
    default:
      return false;
  }
}

// Reasons OpenSSL gives when the first bytes of a connection are not a TLS record.
bool IsNotTls(int reason) {
  return reason == SSL_R_WRONG_VERSION_NUMBER || reason == SSL_R_HTTP_REQUEST ||
         reason == SSL_R_HTTPS_PROXY_REQUEST || reason == SSL_R_PACKET_LENGTH_TOO_LONG ||
         reason == SSL_R_UNKNOWN_PROTOCOL || reason == SSL_R_RECORD_LENGTH_MISMATCH;
}

std::string ReasonText(unsigned long code) {
  const char* text = ERR_reason_error_string(code);
  return text != nullptr ? text : absl::StrCat("OpenSSL error ", code);
}

// Why the verification of the peer's certificate on `ssl` failed, and what to do;
// `expected_host` is the name a client handshake asked for.
std::string VerificationFailure(SSL* ssl, const std::string& expected_host) {
  const long result = SSL_get_verify_result(ssl);
  const std::string openssl_text = X509_verify_cert_error_string(result);
  switch (result) {
    case X509_V_ERR_HOSTNAME_MISMATCH:
    case X509_V_ERR_IP_ADDRESS_MISMATCH: {
      // The chain as received: a client that refused it has no verified certificate.
      STACK_OF(X509)* chain = SSL_get_peer_cert_chain(ssl);
      if (chain == nullptr || sk_X509_num(chain) == 0) return openssl_text;
      return std::string(
          CheckCertificateNamesHost(sk_X509_value(chain, 0), expected_host).message());
    }
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
      return absl::StrCat("it is not issued by a CA of the trusted CA file (", openssl_text,
                          "): check the trusted CA file here and the issuer of the peer's");
    case X509_V_ERR_CERT_HAS_EXPIRED:
      return absl::StrCat("it has expired (", openssl_text, "): the peer must renew it");
    case X509_V_ERR_CERT_NOT_YET_VALID:
      return absl::StrCat("it is not yet valid (", openssl_text,
                          "): check the clocks of both hosts");
    default:
      return openssl_text;
  }
}

}  // namespace

bool LooksLikeTlsClientHello(absl::string_view first_bytes) {
  return first_bytes.size() >= 3 &&
         static_cast<unsigned char>(first_bytes[0]) == kTlsHandshakeRecord &&
         static_cast<unsigned char>(first_bytes[1]) == kTlsMajorVersion &&
         static_cast<unsigned char>(first_bytes[2]) <= 0x04;
}

Stream::Stream(Socket socket) : stream_(std::in_place_type<Socket>, std::move(socket)) {}

Stream::Stream(Socket socket, std::shared_ptr<boost::asio::ssl::context> context,
               bool allow_plain)
    : context_(std::move(context)),
      stream_(std::in_place_type<TlsStream>, std::move(socket), *context_),
      allow_plain_(allow_plain) {}

Stream::Stream(Socket socket, const std::shared_ptr<TlsContextProvider>& tls)
    : context_(tls != nullptr ? tls->Current() : nullptr),
      stream_(std::in_place_type<Socket>, std::move(socket)),
      allow_plain_(tls != nullptr && tls->options().allow_plain) {
  if (context_ != nullptr) {
    Socket plain = std::move(std::get<Socket>(stream_));
    stream_.emplace<TlsStream>(std::move(plain), *context_);
  }
}

void Stream::StartHandshake(boost::asio::ssl::stream_base::handshake_type type,
                            absl::Duration timeout, absl::Status prepared,
                            absl::AnyInvocable<void(absl::Status)> done) {
  auto* tls = std::get_if<TlsStream>(&stream_);
  if (tls == nullptr || !prepared.ok()) {
    done(std::move(prepared));
    return;
  }
  auto state = std::make_shared<HandshakeState>(get_executor());
  state->type = type;
  state->timeout = timeout;
  state->on_done = std::move(done);
  state->timer.expires_after(absl::ToChronoNanoseconds(timeout));
  // `done` guards `this`: once the handshake completed, the owner may have destroyed
  // the stream, and a late expiry must not touch it.
  state->timer.async_wait([this, state](const boost::system::error_code& error) {
    if (error || state->done) return;
    state->timed_out = true;
    boost::system::error_code ignored;
    socket().close(ignored);  // the pending step completes with operation_aborted
  });
  if (allow_plain_ && type == boost::asio::ssl::stream_base::server) {
    ServerHandshakeOrPlain(std::move(state));
  } else if (allow_plain_) {
    ClientHandshakeOrPlain(std::move(state));
  } else {
    tls->async_handshake(type, [this, state](const boost::system::error_code& error) {
      FinishHandshake(state, error);
    });
  }
}

void Stream::ServerHandshakeOrPlain(std::shared_ptr<HandshakeState> state) {
  // The client's first byte tells TLS from plain.
  socket().async_wait(Socket::wait_read, [this, state](const boost::system::error_code& error) {
    if (error) return FinishHandshake(state, error);
    if (!FirstByteStartsTlsRecord()) {
      BecomePlain();
      return FinishHandshake(state, {});
    }
    std::get<TlsStream>(stream_).async_handshake(
        state->type,
        [this, state](const boost::system::error_code& handshake) {
          FinishHandshake(state, handshake);
        });
  });
}

void Stream::ClientHandshakeOrPlain(std::shared_ptr<HandshakeState> state) {
  boost::system::error_code ignored;
  const Socket::endpoint_type server = socket().remote_endpoint(ignored);
  std::get<TlsStream>(stream_).async_handshake(
      state->type, [this, state, server](const boost::system::error_code& error) {
        if (!error || state->timed_out || !ServerSpeaksPlain(error)) {
          return FinishHandshake(state, error);
        }
        // The server's port has no TLS: the same address once more, without TLS, within
        // the same deadline.
        BecomePlain();
        boost::system::error_code closed;
        socket().close(closed);
        socket().async_connect(server, [this, state](const boost::system::error_code& connected) {
          boost::system::error_code no_delay;
          if (!connected) socket().set_option(boost::asio::ip::tcp::no_delay(true), no_delay);
          FinishHandshake(state, connected);
        });
      });
}

void Stream::FinishHandshake(const std::shared_ptr<HandshakeState>& state,
                             const boost::system::error_code& error) {
  state->done = true;
  state->timer.cancel();
  state->on_done(HandshakeResult(error, state->timed_out, state->timeout));
}

bool Stream::FirstByteStartsTlsRecord() {
  unsigned char first = 0;
  boost::system::error_code error;
  const size_t n = socket().receive(boost::asio::buffer(&first, 1),
                                    boost::asio::socket_base::message_peek, error);
  return error || n == 0 || first == kTlsHandshakeRecord;
}

bool Stream::ServerSpeaksPlain(const boost::system::error_code& error) {
  if (error == boost::asio::error::eof || error == boost::asio::ssl::error::stream_truncated ||
      error == boost::asio::error::connection_reset) {
    return true;
  }
  return error.category() == boost::asio::error::get_ssl_category() &&
         IsNotTls(ERR_GET_REASON(static_cast<unsigned long>(error.value())));
}

void Stream::BecomePlain() {
  Socket plain = std::move(std::get<TlsStream>(stream_).next_layer());
  stream_.emplace<Socket>(std::move(plain));
  context_.reset();
}

Stream::Socket& Stream::socket() {
  if (auto* tls = std::get_if<TlsStream>(&stream_)) return tls->next_layer();
  return std::get<Socket>(stream_);
}

absl::Status Stream::PrepareClientHandshake(const std::string& peer_name) {
  auto* tls = std::get_if<TlsStream>(&stream_);
  if (tls == nullptr) return absl::OkStatus();
  if (peer_name.empty()) {
    return absl::InvalidArgumentError(
        "a TLS client handshake needs the name the server's certificate must hold");
  }
  peer_name_ = peer_name;
  SSL* ssl = tls->native_handle();
  // OpenSSL checks the name while it verifies the chain, with the rules of
  // CheckCertificateNamesHost, and reports a mismatch as a verification failure.
  X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
  X509_VERIFY_PARAM_set_hostflags(
      param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS | X509_CHECK_FLAG_NEVER_CHECK_SUBJECT);
  const bool ip = IsIpAddress(peer_name);
  const int set = ip ? X509_VERIFY_PARAM_set1_ip_asc(param, peer_name.c_str())
                     : X509_VERIFY_PARAM_set1_host(param, peer_name.c_str(), peer_name.size());
  // SNI carries host names only (RFC 6066 §3). SSL_set_tlsext_host_name is this call
  // behind a macro with a C cast.
  if (set != 1 || (!ip && SSL_ctrl(ssl, SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
                                   const_cast<char*>(peer_name.c_str())) != 1)) {
    ERR_clear_error();
    return absl::InvalidArgumentError(
        absl::StrCat("'", peer_name, "' is not a host name or IP address a certificate can hold"));
  }
  return absl::OkStatus();
}

absl::Status Stream::HandshakeResult(const boost::system::error_code& error, bool timed_out,
                                     absl::Duration timeout) const {
  if (timed_out) {
    return absl::UnavailableError(
        absl::StrCat("the TLS handshake did not finish within ", absl::FormatDuration(timeout)));
  }
  if (!error) return absl::OkStatus();
  // A plain port that reads a ClientHello as a frame closes with the rest unread, and
  // the kernel then resets the connection instead of closing it.
  if (error == boost::asio::error::eof || error == boost::asio::ssl::error::stream_truncated ||
      error == boost::asio::error::connection_reset) {
    return absl::UnavailableError(
        "the peer closed the connection during the TLS handshake: does its port serve TLS, "
        "and does it accept our certificate?");
  }
  return DescribeError(error);
}

absl::Status Stream::DescribeError(const boost::system::error_code& error) const {
  const auto* tls = std::get_if<TlsStream>(&stream_);
  if (error == boost::asio::error::eof || error == boost::asio::ssl::error::stream_truncated) {
    return absl::UnavailableError("the connection was closed by the peer");
  }
  if (tls == nullptr || error.category() != boost::asio::error::get_ssl_category()) {
    return absl::UnavailableError(error.message());
  }
  const auto code = static_cast<unsigned long>(error.value());
  const int reason = ERR_GET_REASON(code);
  SSL* ssl = const_cast<TlsStream*>(tls)->native_handle();
  if (reason == SSL_R_CERTIFICATE_VERIFY_FAILED) {
    return absl::FailedPreconditionError(
        absl::StrCat("refused the peer's certificate: ", VerificationFailure(ssl, peer_name_)));
  }
  if (reason == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE) {
    return absl::FailedPreconditionError(
        "the peer presented no certificate and this port requires one: give it a certificate "
        "issued by the trusted CA");
  }
  if (IsNotTls(reason)) {
    return absl::FailedPreconditionError(
        absl::StrCat("the peer did not speak TLS (", ReasonText(code),
                     "): enable TLS on the other side or connect to this port without TLS"));
  }
  if (reason >= SSL_AD_REASON_OFFSET && IsCertificateAlert(reason - SSL_AD_REASON_OFFSET)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the peer refused our certificate (", ReasonText(code),
        "): present one issued by a CA the peer trusts, valid now and naming this host"));
  }
  if (reason >= SSL_AD_REASON_OFFSET) {
    return absl::FailedPreconditionError(
        absl::StrCat("the peer ended the TLS session: ", ReasonText(code)));
  }
  return absl::FailedPreconditionError(absl::StrCat("TLS failed: ", ReasonText(code)));
}

X509* Stream::VerifiedPeerCertificate() const {
  const auto* tls = std::get_if<TlsStream>(&stream_);
  if (tls == nullptr) return nullptr;
  SSL* ssl = const_cast<TlsStream*>(tls)->native_handle();
  X509* certificate = SSL_get0_peer_certificate(ssl);
  if (certificate == nullptr || SSL_get_verify_result(ssl) != X509_V_OK) return nullptr;
  return certificate;
}

absl::StatusOr<PeerIdentity> Stream::PeerCertificateIdentity() const {
  X509* certificate = VerifiedPeerCertificate();
  if (certificate == nullptr) {
    return absl::FailedPreconditionError("the peer presented no verified TLS certificate");
  }
  return IdentityOf(certificate);
}

absl::Status Stream::CheckPeerNamesHost(absl::string_view host) const {
  X509* certificate = VerifiedPeerCertificate();
  if (certificate == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the peer presented no verified TLS certificate, so it cannot prove it is ", host));
  }
  return CheckCertificateNamesHost(certificate, host);
}

}  // namespace stead::wire
