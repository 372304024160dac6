// The parts every TCP server of a node shares (peer, client and HTTP ports): a bound
// acceptor that hands each connection, on a strand of its own, to a callback; and the
// set of live connections a server closes when it stops.
#ifndef STEAD_SERVER_LISTENER_H_
#define STEAD_SERVER_LISTENER_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "base/asio.h"
#include "base/mutex.h"

namespace stead::server {

class Listener : public std::enable_shared_from_this<Listener> {
 public:
  using AcceptHandler = std::function<void(boost::asio::ip::tcp::socket socket)>;

  // Create with std::make_shared: the accept loop keeps the listener alive.
  explicit Listener(boost::asio::io_context& io) : io_(io), acceptor_(io) {}

  // Binds host:port (port 0 picks a free one) and listens. `what` names the port in
  // errors ("clients", "peers", "HTTP"). InvalidArgument for a malformed host,
  // Unavailable with the system error when it cannot bind.
  absl::Status Listen(const std::string& host, uint16_t port, absl::string_view what);
  // The bound port; 0 before Listen.
  uint16_t port() const { return port_; }

  // Accepts until Close(). `on_accept` runs on the listener's executor; each socket's
  // executor is a strand of its own. Call once, after Listen.
  void Start(AcceptHandler on_accept);
  // Stops accepting. Thread-safe; idempotent.
  void Close();

 private:
  boost::asio::io_context& io_;
  boost::asio::ip::tcp::acceptor acceptor_;
  std::atomic<uint16_t> port_{0};
  std::atomic<bool> closed_{false};
};

// The live connections of one server, held weakly (each connection is owned by its own
// coroutine), with a cap on how many may be open. Thread-safe.
template <typename Connection>
class ConnectionSet {
 public:
  explicit ConnectionSet(size_t max_connections) : max_connections_(max_connections) {}

  // Adds `connection` unless the set is full; returns whether it was added.
  bool Add(const std::shared_ptr<Connection>& connection) {
    MutexLock lock(&mu_);
    if (connections_.size() >= max_connections_) return false;
    connections_.emplace(connection.get(), connection);
    return true;
  }
  void Remove(Connection* connection) {
    MutexLock lock(&mu_);
    connections_.erase(connection);
  }
  size_t size() const {
    MutexLock lock(&mu_);
    return connections_.size();
  }
  // The connections still alive.
  std::vector<std::shared_ptr<Connection>> Live() const {
    std::vector<std::shared_ptr<Connection>> live;
    MutexLock lock(&mu_);
    for (const auto& [raw, weak] : connections_) {
      if (auto connection = weak.lock()) live.push_back(std::move(connection));
    }
    return live;
  }

 private:
  const size_t max_connections_;
  mutable Mutex mu_;
  std::map<Connection*, std::weak_ptr<Connection>> connections_ ABSL_GUARDED_BY(mu_);
};

}  // namespace stead::server

#endif  // STEAD_SERVER_LISTENER_H_
