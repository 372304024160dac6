// Stream: one connection of a port or client, plain TCP or TLS, behind one type.
//
// Why one class holding either stream rather than a template the services instantiate
// twice: the client, peer and HTTP services keep a single read loop, write queue and
// frame reader each, compiled once, and decide plain or TLS at run time from their
// configuration. The cost is one branch per read and write, nothing next to a system
// call. Stream meets Asio's AsyncReadStream and AsyncWriteStream requirements, so
// boost::asio::async_write, async_read and Beast's HTTP functions accept it, with
// callbacks or use_awaitable alike.
//
//   Stream stream(std::move(socket), provider.Current());  // TLS; Stream(socket): plain
//   stream.AsyncServerHandshake(absl::Seconds(5), [&](absl::Status status) { ... });
//
// A plain Stream's handshakes complete at once with OK, so a service calls them
// whatever its configuration.
//
// With TlsOptions::allow_plain (a cluster switching to or from TLS), a TLS Stream may
// end its handshake as a plain one: on the accepting side when the first byte the
// client sends does not start a TLS record (22, which neither stead's frames, whose
// length would exceed any limit, nor HTTP can start with); on the dialing side when
// the server ends the handshake as a port without TLS does (closes, resets, or answers
// without TLS), by connecting once more to the same address without TLS. is_tls()
// tells which it became.
//
// There is no TLS close_notify exchange on close: stead's frames carry their own
// length, so a truncated stream is seen by the frame reader, and waiting for the
// peer's close_notify would let a stalled peer hold a closing connection open.
//
// Thread-safety: as an Asio socket. Not thread-safe; run every operation on the
// executor of the socket, which must serialise them (a strand or a one-thread
// io_context). The Stream must outlive its pending operations.
#ifndef STEAD_WIRE_STREAM_H_
#define STEAD_WIRE_STREAM_H_

#include <memory>
#include <string>
#include <utility>
#include <variant>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "wire/asio_ssl.h"
#include "wire/tls_context.h"
#include "wire/tls_verify.h"

namespace stead::wire {

// What a plain port logs when a client speaks TLS to it (see LooksLikeTlsClientHello).
inline constexpr absl::string_view kTlsOnPlainPortMessage =
    "the peer started a TLS handshake on a port without TLS: enable TLS on this port or "
    "connect without TLS";

// True if `first_bytes`, the first bytes received on a connection, begin a TLS
// handshake record (content type 22, protocol version 3.x). A plain port's frame
// reader would read them as a length near 369 MB; a port checks this first to log
// kTlsOnPlainPortMessage instead of "frame too large". Needs 3 bytes; false on fewer.
bool LooksLikeTlsClientHello(absl::string_view first_bytes);

class Stream {
 public:
  using Socket = boost::asio::ip::tcp::socket;
  using TlsStream = boost::asio::ssl::stream<Socket>;
  using executor_type = Socket::executor_type;

  // A plain TCP stream over `socket`.
  explicit Stream(Socket socket);
  // A TLS stream over `socket` with `context` (a TlsContextProvider's Current()), which
  // the stream keeps alive: a reload never changes an open connection.
  Stream(Socket socket, std::shared_ptr<boost::asio::ssl::context> context,
         bool allow_plain = false);
  // Plain when `tls` is null; otherwise TLS with the provider's current context and its
  // options' allow_plain.
  Stream(Socket socket, const std::shared_ptr<TlsContextProvider>& tls);
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  bool is_tls() const { return std::holds_alternative<TlsStream>(stream_); }
  executor_type get_executor() { return socket().get_executor(); }
  // The TCP socket (under TLS, the stream's lowest layer): for connect, socket
  // options, endpoints and close.
  Socket& socket();

  // Client side of the handshake: verifies the server's chain against the trusted CA
  // and that its certificate names `peer_name` (the host dialed: a DNS name, also sent
  // as SNI, or an IP address). Completes with void(absl::Status) (with use_awaitable,
  // co_await yields the Status): OK; an error as DescribeError; Unavailable when the
  // peer closes during the handshake or `timeout` passes first (the socket is then
  // closed); InvalidArgument for an empty or unusable `peer_name`.
  template <typename Token>
  auto AsyncClientHandshake(std::string peer_name, absl::Duration timeout, Token&& token) {
    absl::Status prepared = PrepareClientHandshake(peer_name);
    return AsyncHandshake(boost::asio::ssl::stream_base::client, timeout, std::move(prepared),
                          std::forward<Token>(token));
  }
  // Server side of the handshake; completes as AsyncClientHandshake.
  template <typename Token>
  auto AsyncServerHandshake(absl::Duration timeout, Token&& token) {
    return AsyncHandshake(boost::asio::ssl::stream_base::server, timeout, absl::OkStatus(),
                          std::forward<Token>(token));
  }

  template <typename MutableBuffers, typename Token>
  auto async_read_some(const MutableBuffers& buffers, Token&& token) {
    if (auto* tls = std::get_if<TlsStream>(&stream_)) {
      return tls->async_read_some(buffers, std::forward<Token>(token));
    }
    return std::get<Socket>(stream_).async_read_some(buffers, std::forward<Token>(token));
  }
  template <typename ConstBuffers, typename Token>
  auto async_write_some(const ConstBuffers& buffers, Token&& token) {
    if (auto* tls = std::get_if<TlsStream>(&stream_)) {
      return tls->async_write_some(buffers, std::forward<Token>(token));
    }
    return std::get<Socket>(stream_).async_write_some(buffers, std::forward<Token>(token));
  }

  // A read, write or handshake error as a Status whose message says what happened in
  // words an operator can act on:
  //  - FailedPrecondition: the peer's certificate was refused (names the reason: not
  //    issued by the trusted CA, expired, does not name the host), the peer refused
  //    ours (TLS alert), no certificate where one is required, or the peer did not
  //    speak TLS. Retrying will not help.
  //  - Unavailable: the connection closed or failed otherwise.
  absl::Status DescribeError(const boost::system::error_code& error) const;

  // Who the peer is, from its certificate, after a successful handshake that verified
  // it. FailedPrecondition on a plain stream or when the peer presented no certificate.
  absl::StatusOr<PeerIdentity> PeerCertificateIdentity() const;
  // OK if the peer's verified certificate names `host` (CheckCertificateNamesHost):
  // how an accepting member checks the address a dialing member announces.
  // FailedPrecondition otherwise, or without a certificate.
  absl::Status CheckPeerNamesHost(absl::string_view host) const;

 private:
  // One handshake in flight: its deadline timer, whether it fired, and the completion.
  struct HandshakeState {
    explicit HandshakeState(const executor_type& executor) : timer(executor) {}
    boost::asio::steady_timer timer;
    bool done = false;
    bool timed_out = false;
    boost::asio::ssl::stream_base::handshake_type type = boost::asio::ssl::stream_base::client;
    absl::Duration timeout;
    absl::AnyInvocable<void(absl::Status)> on_done;
  };

  // Sets the name the server's certificate must hold; InvalidArgument if empty.
  absl::Status PrepareClientHandshake(const std::string& peer_name);
  absl::Status HandshakeResult(const boost::system::error_code& error, bool timed_out,
                               absl::Duration timeout) const;
  // The peer's certificate if the handshake verified it, else null (not owned).
  X509* VerifiedPeerCertificate() const;

  template <typename Token>
  auto AsyncHandshake(boost::asio::ssl::stream_base::handshake_type type, absl::Duration timeout,
                      absl::Status prepared, Token&& token) {
    return boost::asio::async_initiate<Token, void(absl::Status)>(
        [this, type, timeout, prepared = std::move(prepared)](auto handler) mutable {
          auto executor = boost::asio::get_associated_executor(handler, get_executor());
          StartHandshake(type, timeout, std::move(prepared),
                         [handler = std::move(handler), executor](absl::Status status) mutable {
                           // Never inline: the handler runs on its own executor.
                           boost::asio::post(executor, [handler = std::move(handler),
                                                        status = std::move(status)]() mutable {
                             std::move(handler)(std::move(status));
                           });
                         });
        },
        token);
  }

  // The handshake behind AsyncHandshake; calls `done` once, from the stream's executor.
  void StartHandshake(boost::asio::ssl::stream_base::handshake_type type, absl::Duration timeout,
                      absl::Status prepared, absl::AnyInvocable<void(absl::Status)> done);
  // allow_plain: the steps of each side's handshake after the deadline is armed.
  void ServerHandshakeOrPlain(std::shared_ptr<HandshakeState> state);
  void ClientHandshakeOrPlain(std::shared_ptr<HandshakeState> state);
  // Ends the handshake of `state` with `error` (none: OK).
  void FinishHandshake(const std::shared_ptr<HandshakeState>& state,
                       const boost::system::error_code& error);

  // allow_plain: whether the bytes waiting on the socket begin with a TLS record; true
  // when none are left (the handshake then reports the close).
  bool FirstByteStartsTlsRecord();
  // allow_plain: whether a failed client handshake means the server's port has no TLS.
  static bool ServerSpeaksPlain(const boost::system::error_code& error);
  // Drops TLS: the stream becomes a plain one over the same socket.
  void BecomePlain();

  // Declared before stream_: the TLS stream's SSL object uses the context.
  std::shared_ptr<boost::asio::ssl::context> context_;
  std::variant<Socket, TlsStream> stream_;
  bool allow_plain_ = false;
  std::string peer_name_;  // the host a client handshake expects; for messages
};

}  // namespace stead::wire

#endif  // STEAD_WIRE_STREAM_H_
