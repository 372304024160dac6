// Connection: one TCP connection, plain or TLS, of stead::Client to one member's client
// port, with many requests in flight. Requests are length-prefixed pb::ClientRequest frames
// (server/frame.h); answers are matched to their handler by request_id, in whatever
// order they arrive. Frames queued while a write is in progress go out together in
// the next write.
//
// The connection opens on the first Send and again on the first Send after a failure;
// a failure (refused, reset, closed by the member, undecodable frame) answers every
// request still pending on it with Unavailable naming the address. A member closes a
// connection with nothing in flight after its --client-idle-timeout, and evicts idle
// ones when its port is full: the next Send reconnects.
//
// With TLS, each opening takes the provider's current context (so rotated client
// certificates are used by the next connection) and completes the handshake within
// the connect timeout; the member's certificate must name the endpoint's host or the
// configured server name. A certificate refused by either side, or a member that does
// not speak TLS, fails the pending requests with FailedPrecondition naming the address
// and the reason: retrying cannot succeed until the configuration changes.
//
// Thread-safety: every method may be called from any thread; all socket work runs on
// the connection's strand, and so do the handlers.
#ifndef STEAD_CLIENT_CONNECTION_H_
#define STEAD_CLIENT_CONNECTION_H_

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "base/asio.h"
#include "proto/kv.pb.h"
#include "server/frame.h"
#include "stead/options.h"

namespace stead::wire {
class Stream;
class TlsContextProvider;
}  // namespace stead::wire

namespace stead::client_internal {

// The TLS context provider of `options`, or null when TLS is off (not enabled and no
// file set). Errors as wire::LoadTlsMaterial, naming the ClientTlsOptions fields.
absl::StatusOr<std::shared_ptr<wire::TlsContextProvider>> MakeClientTlsProvider(
    const ClientTlsOptions& options);

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  using ResponseHandler = std::function<void(absl::StatusOr<pb::ClientResponse>)>;

  // `address` is "host:port" (host a name, an IPv4 address or a bracketed IPv6 one).
  // With `tls` (MakeClientTlsProvider) the connection speaks TLS and checks that the
  // member's certificate names `tls_server_name`, or the host of `address` when empty.
  Connection(boost::asio::io_context& io, std::string address, absl::Duration connect_timeout,
             uint32_t max_frame_bytes, std::shared_ptr<wire::TlsContextProvider> tls = nullptr,
             std::string tls_server_name = {});
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  const std::string& address() const { return address_; }

  // Queues `frame` (one encoded request carrying `request_id`, unique on this
  // connection) and connects if needed. `handler` runs once with the response of that
  // id or an error, unless Forget(request_id) comes first.
  void Send(uint64_t request_id, std::string frame, ResponseHandler handler);
  // As Send for a request answered by a stream of responses (a watch, a snapshot
  // save): `handler` runs for each response of that id, until one ends the stream
  // (WatchResponse.canceled, SnapshotSaveResponse.done, or an error outside a watch)
  // or the connection fails (then once more, with the error), unless Forget comes first.
  void SendStream(uint64_t request_id, std::string frame, ResponseHandler handler);
  // Drops the handler of `request_id` (its attempt timed out); a late answer is ignored.
  void Forget(uint64_t request_id);
  // Closes the socket; pending requests get Unavailable. A later Send reconnects.
  void Close();

 private:
  enum class State { kIdle, kConnecting, kConnected };

  struct Pending {
    ResponseHandler handler;
    bool stream = false;  // stays registered across responses
  };

  void Enqueue(uint64_t request_id, std::string frame, Pending pending);
  void StartConnect();
  void OnConnected(uint64_t generation, const boost::system::error_code& error);
  // Connected and, with TLS, handshaken: starts reading and writing.
  void OnReady(uint64_t generation);
  void StartWrite();
  void StartRead();
  // Handles `bytes` new bytes in read_buffer_ of the current stream.
  void OnRead(size_t bytes);
  // The status of a failed read or write on `stream`, naming the address.
  absl::Status Lost(const wire::Stream& stream, const boost::system::error_code& error) const;
  // Closes the socket and answers every pending request with `status`.
  void Fail(const absl::Status& status);

  const std::string address_;
  const absl::Duration connect_timeout_;
  const uint32_t max_frame_bytes_;
  boost::asio::strand<boost::asio::io_context::executor_type> strand_;
  const std::shared_ptr<wire::TlsContextProvider> tls_;  // null: plain TCP
  const std::string tls_server_name_;                     // empty: the host of address_
  boost::asio::ip::tcp::resolver resolver_;
  boost::asio::steady_timer connect_timer_;
  // Everything below is touched on strand_ only.
  // A new stream per opening (a TLS session cannot be reused after a close). Each
  // operation's handler holds it too, so a stream closed by Fail() lives until its
  // pending operations have completed.
  std::shared_ptr<wire::Stream> stream_;
  absl::Time connect_deadline_;  // of the opening in progress
  State state_ = State::kIdle;
  // +1 on every close: completions of an older socket see a different value and return.
  uint64_t generation_ = 0;
  std::string queued_;   // frames not yet handed to a write
  std::string writing_;  // frames of the write in progress; empty when none
  std::optional<server::FrameReader> reader_;  // a fresh one per socket
  std::array<char, 64 * 1024> read_buffer_{};
  absl::flat_hash_map<uint64_t, Pending> pending_;
};

}  // namespace stead::client_internal

#endif  // STEAD_CLIENT_CONNECTION_H_
