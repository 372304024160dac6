// Connection: one TCP connection of stead::Client to one member's client port, with
// many requests in flight. Requests are length-prefixed pb::ClientRequest frames
// (server/frame.h); answers are matched to their handler by request_id, in whatever
// order they arrive. Frames queued while a write is in progress go out together in
// the next write.
//
// The connection opens on the first Send and again on the first Send after a failure;
// a failure (refused, reset, closed by the member, undecodable frame) answers every
// request still pending on it with Unavailable naming the address.
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

namespace stead::client_internal {

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  using ResponseHandler = std::function<void(absl::StatusOr<pb::ClientResponse>)>;

  // `address` is "host:port" (host a name, an IPv4 address or a bracketed IPv6 one).
  Connection(boost::asio::io_context& io, std::string address, absl::Duration connect_timeout,
             uint32_t max_frame_bytes);
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
  void StartWrite();
  void StartRead();
  void OnRead(uint64_t generation, const boost::system::error_code& error, size_t bytes);
  // Closes the socket and answers every pending request with `status`.
  void Fail(const absl::Status& status);

  const std::string address_;
  const absl::Duration connect_timeout_;
  const uint32_t max_frame_bytes_;
  boost::asio::strand<boost::asio::io_context::executor_type> strand_;
  boost::asio::ip::tcp::resolver resolver_;
  boost::asio::ip::tcp::socket socket_;
  boost::asio::steady_timer connect_timer_;
  // Everything below is touched on strand_ only.
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
