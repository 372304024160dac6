// What every TCP server of a node shares (peer, client and HTTP ports): a bound
// acceptor that hands each connection, on a strand of its own, to a callback; the set
// of live connections with the admission policy of a port; a per-connection deadline;
// the throttled log of connection events; and the open-file budget the ports' caps are
// sized from.
//
// Admission (ConnectionSet::Admit). A port holds at most `max_connections`
// connections. When it is full, a new connection is not refused: the connection idle
// longest (nothing in flight) of the source address holding the most connections is
// closed to make room. So idle sockets, however many, cannot lock out a new client, a
// follower's forwarder or a health probe, and one source cannot take every slot from
// the others. Only when every connection has something in flight is a new one
// refused. Connections of authenticated peers are "trusted": they have slots of their
// own (`max_trusted`) and are never evicted.
#ifndef STEAD_SERVER_LISTENER_H_
#define STEAD_SERVER_LISTENER_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "base/asio.h"
#include "base/check.h"
#include "base/log.h"
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

// Whether a connection has work in flight (a request not yet answered, an open
// stream) and since when it has had none. Begin and End run on the connection's
// strand; admission reads from any thread.
class ConnectionActivity {
 public:
  using Clock = std::chrono::steady_clock;

  // One more request or stream in flight.
  void Begin() { inflight_.fetch_add(1); }
  // One fewer; with none left the connection is idle from now.
  void End() {
    STEAD_CHECK_GT(inflight_.load(), 0u) << "End() without Begin()";
    if (inflight_.fetch_sub(1) == 1) idle_since_ = Clock::now().time_since_epoch().count();
  }
  bool busy() const { return inflight_.load() > 0; }
  // When the last work in flight ended (or the connection was accepted).
  Clock::time_point idle_since() const { return Clock::time_point(Clock::duration(idle_since_)); }

 private:
  std::atomic<uint64_t> inflight_{0};
  std::atomic<Clock::rep> idle_since_{Clock::now().time_since_epoch().count()};
};

// A connection's deadline, which its owner moves as the connection makes progress:
// `on_expiry` runs once the deadline set last has passed. Strand only: the owner's
// coroutine and the timer run on one strand, so Stop() may cancel the timer directly.
// Moving the deadline later costs no timer operation; the timer is re-armed only for
// an earlier one.
class ConnectionDeadline {
 public:
  using Clock = std::chrono::steady_clock;

  explicit ConnectionDeadline(const boost::asio::any_io_executor& strand) : timer_(strand) {}

  // `owner` (the connection, held weakly) is kept alive while the timer waits. Call
  // once, before the first Set.
  void Start(const std::shared_ptr<void>& owner, std::function<void()> on_expiry);
  // The deadline is now `at`; Clock::time_point::max() for none.
  void Set(Clock::time_point at);
  void SetAfter(absl::Duration timeout) { Set(Clock::now() + absl::ToChronoNanoseconds(timeout)); }
  void Clear() { Set(Clock::time_point::max()); }
  void Stop();

 private:
  void Arm(Clock::time_point at);

  boost::asio::steady_timer timer_;
  std::weak_ptr<void> owner_;
  std::function<void()> on_expiry_;
  Clock::time_point deadline_ = Clock::time_point::max();
  Clock::time_point armed_ = Clock::time_point::max();  // the pending wait's expiry
  uint64_t generation_ = 0;  // of the pending wait; older waits' handlers do nothing
  bool stopped_ = false;
};

// Logs the connection events of one port (refused, evicted, timed out, closed for bad
// input) at most once per interval and level, each line with the number held back
// since the previous one of its level: a flood is a line per interval, not a line per
// socket, and routine closes (info) never hide a warning. Thread-safe.
class ConnectionEventLog {
 public:
  static constexpr absl::Duration kDefaultInterval = absl::Seconds(10);

  explicit ConnectionEventLog(Logger logger, absl::Duration interval = kDefaultInterval)
      : logger_(std::move(logger)),
        throttles_{LogThrottle(interval), LogThrottle(interval), LogThrottle(interval),
                   LogThrottle(interval)} {}

  void Log(LogLevel level, absl::string_view message);

 private:
  const Logger logger_;
  LogThrottle throttles_[4];  // by LogLevel
};

// One admitted connection as the eviction choice sees it.
struct EvictionCandidate {
  boost::asio::ip::address source;
  bool busy = false;
  std::chrono::steady_clock::time_point idle_since;
};

// The connection a full port closes to admit a new one: of the sources holding an idle
// connection (nothing in flight), the one holding the most connections, busy ones
// included (ties: the one with the longest idle connection); of its idle connections,
// the one idle longest. Its index in `candidates`; nullopt when every one is busy.
std::optional<size_t> ChooseEviction(const std::vector<EvictionCandidate>& candidates);

// The live connections of one server, held weakly (each connection is owned by its own
// coroutine), with a cap on how many may be open. Thread-safe.
//
// Add() refuses beyond the cap (for connections this member opens, such as snapshot
// transfers). Admit() applies the admission policy of the file comment to accepted
// connections; it needs `activity()` (ConnectionActivity), `remote()` (the peer's
// tcp::endpoint) and `Close()` (thread-safe) of the connection.
template <typename Connection>
class ConnectionSet {
 public:
  // `log` is where Admit reports refused and evicted connections; it must outlive the
  // set (null: Add only).
  explicit ConnectionSet(size_t max_connections, size_t max_trusted = 0,
                         ConnectionEventLog* log = nullptr)
      : max_connections_(max_connections), max_trusted_(max_trusted), log_(log) {}

  // Adds `connection` unless the set is full; returns whether it was added.
  bool Add(const std::shared_ptr<Connection>& connection) {
    MutexLock lock(&mu_);
    if (untrusted_ >= max_connections_) return false;
    Insert(connection);
    return true;
  }

  // Adds a connection just accepted, closing an idle one to make room if the set is
  // full. False (logged) when every connection has work in flight: the caller drops
  // the new one.
  bool Admit(const std::shared_ptr<Connection>& connection) {
    std::shared_ptr<Connection> evicted;
    bool admitted = false;
    size_t open = 0;
    {
      MutexLock lock(&mu_);
      auto victim = connections_.end();
      if (untrusted_ >= max_connections_ && ChooseVictim(&victim)) {
        // Gone from the set now, so a later eviction cannot pick it again; its own
        // Remove() when it unwinds finds nothing.
        evicted = victim->second.connection.lock();
        Erase(victim);
      }
      admitted = untrusted_ < max_connections_;
      if (admitted) Insert(connection);
      open = untrusted_;
    }
    const std::string from = connection->remote().address().to_string();
    if (!admitted) {
      Report(absl::StrCat("refused a connection from ", from, ": all ", open,
                          " connections have requests in flight; raise the limit if this load "
                          "is expected"));
    } else if (evicted != nullptr) {
      evicted->Close();
      const absl::Duration idle = absl::FromChrono(ConnectionActivity::Clock::now() -
                                                   evicted->activity().idle_since());
      Report(absl::StrCat("port full (", open, " connections): closed the one from ",
                          evicted->remote().address().to_string(), " idle for ",
                          absl::FormatDuration(absl::Trunc(idle, absl::Milliseconds(1))),
                          " to admit one from ", from));
    }
    return admitted;
  }

  // Moves an admitted connection among the trusted ones (an authenticated peer): it no
  // longer counts against max_connections and is never evicted. False, with nothing
  // changed, when max_trusted connections are trusted already or it was evicted.
  bool Trust(Connection* connection) {
    MutexLock lock(&mu_);
    auto it = connections_.find(connection);
    if (it == connections_.end()) return false;
    if (it->second.trusted) return true;
    if (trusted_ >= max_trusted_) return false;
    it->second.trusted = true;
    ++trusted_;
    --untrusted_;
    return true;
  }

  void Remove(Connection* connection) {
    MutexLock lock(&mu_);
    auto it = connections_.find(connection);
    if (it != connections_.end()) Erase(it);
  }
  // Connections that are not trusted.
  size_t size() const {
    MutexLock lock(&mu_);
    return untrusted_;
  }
  size_t trusted_size() const {
    MutexLock lock(&mu_);
    return trusted_;
  }
  // The connections still alive.
  std::vector<std::shared_ptr<Connection>> Live() const {
    std::vector<std::shared_ptr<Connection>> live;
    MutexLock lock(&mu_);
    for (const auto& [raw, entry] : connections_) {
      if (auto connection = entry.connection.lock()) live.push_back(std::move(connection));
    }
    return live;
  }

 private:
  struct Entry {
    std::weak_ptr<Connection> connection;
    bool trusted = false;
  };
  using Map = std::map<Connection*, Entry>;

  void Insert(const std::shared_ptr<Connection>& connection) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (connections_.emplace(connection.get(), Entry{connection, false}).second) ++untrusted_;
  }
  void Erase(typename Map::iterator it) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    --(it->second.trusted ? trusted_ : untrusted_);
    connections_.erase(it);
  }

  // The untrusted connection ChooseEviction picks; false when all are busy. A
  // connection already gone (unwinding, not yet removed) is the first choice.
  bool ChooseVictim(typename Map::iterator* victim) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    std::vector<typename Map::iterator> entries;
    std::vector<EvictionCandidate> candidates;
    for (auto it = connections_.begin(); it != connections_.end(); ++it) {
      if (it->second.trusted) continue;
      std::shared_ptr<Connection> connection = it->second.connection.lock();
      if (connection == nullptr) {
        *victim = it;
        return true;
      }
      entries.push_back(it);
      candidates.push_back({connection->remote().address(), connection->activity().busy(),
                            connection->activity().idle_since()});
    }
    const std::optional<size_t> chosen = ChooseEviction(candidates);
    if (!chosen) return false;
    *victim = entries[*chosen];
    return true;
  }

  void Report(absl::string_view message) {
    if (log_ != nullptr) log_->Log(LogLevel::kWarning, message);
  }

  const size_t max_connections_;
  const size_t max_trusted_;
  ConnectionEventLog* const log_;
  mutable Mutex mu_;
  Map connections_ ABSL_GUARDED_BY(mu_);
  size_t untrusted_ ABSL_GUARDED_BY(mu_) = 0;
  size_t trusted_ ABSL_GUARDED_BY(mu_) = 0;
};

// Raises this process's soft limit on open files (RLIMIT_NOFILE) to its hard limit.
// The soft limit now in force; Internal with the system error if it cannot be read or
// raised (the limit is then what it was).
absl::StatusOr<uint64_t> RaiseOpenFileLimit();
// This process's soft limit on open files, without changing it.
uint64_t OpenFileLimit();

// Default connection caps of the three ports for a process allowed `open_file_limit`
// descriptors. A reserve is kept first (a quarter of the limit, at least 512) for the
// WAL, RocksDB (which keeps every table file open), checkpoints, outbound peer and
// forwarding connections; the rest is shared out: the HTTP port and the peer port get
// small fixed caps (less on a small limit), the client port the remainder, at most
// kMaxDefaultClientConnections.
struct ConnectionCaps {
  size_t client = 0;
  size_t http = 0;
  size_t peer_unauthenticated = 0;
  size_t peer_authenticated = 0;
};
inline constexpr size_t kMaxDefaultClientConnections = 65536;
ConnectionCaps DefaultConnectionCaps(uint64_t open_file_limit);

}  // namespace stead::server

#endif  // STEAD_SERVER_LISTENER_H_
