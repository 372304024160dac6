#include "server/listener.h"

#include <sys/resource.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <utility>

#include "absl/strings/str_cat.h"

namespace stead::server {

namespace asio = boost::asio;
using asio::ip::tcp;
using boost::system::error_code;

absl::Status Listener::Listen(const std::string& host, uint16_t port, absl::string_view what) {
  error_code ec;
  const asio::ip::address address = asio::ip::make_address(host, ec);
  if (ec) {
    return absl::InvalidArgumentError(
        absl::StrCat("listen address for ", what, " '", host, "': ", ec.message()));
  }
  const tcp::endpoint endpoint(address, port);
  if (acceptor_.open(endpoint.protocol(), ec); !ec) {
    acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
    acceptor_.bind(endpoint, ec);
  }
  if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    error_code ignored;
    acceptor_.close(ignored);
    return absl::UnavailableError(
        absl::StrCat("cannot listen for ", what, " on ", host, ":", port, ": ", ec.message()));
  }
  port_ = acceptor_.local_endpoint().port();
  return absl::OkStatus();
}

void Listener::Start(AcceptHandler on_accept) {
  asio::co_spawn(
      acceptor_.get_executor(),
      [self = shared_from_this(), on_accept = std::move(on_accept)]() -> asio::awaitable<void> {
        for (;;) {
          error_code ec;
          tcp::socket socket = co_await self->acceptor_.async_accept(
              asio::make_strand(self->io_), asio::redirect_error(asio::use_awaitable, ec));
          if (self->closed_ || ec == asio::error::operation_aborted) co_return;
          if (!ec) {
            on_accept(std::move(socket));
            continue;
          }
          // Other errors (out of descriptors, a connection reset before accept) may
          // repeat at once: pause briefly instead of spinning, then keep serving.
          asio::steady_timer pause(self->acceptor_.get_executor(), std::chrono::milliseconds(50));
          co_await pause.async_wait(asio::redirect_error(asio::use_awaitable, ec));
        }
      },
      [](std::exception_ptr) {});
}

void Listener::Close() {
  if (closed_.exchange(true)) return;
  asio::post(acceptor_.get_executor(), [self = shared_from_this()] {
    error_code ignored;
    self->acceptor_.close(ignored);
  });
}

void ConnectionDeadline::Start(const std::shared_ptr<void>& owner,
                               std::function<void()> on_expiry) {
  owner_ = owner;
  on_expiry_ = std::move(on_expiry);
}

void ConnectionDeadline::Set(Clock::time_point at) {
  deadline_ = at;
  if (at < armed_) Arm(at);
}

void ConnectionDeadline::Stop() {
  stopped_ = true;
  timer_.cancel();
}

void ConnectionDeadline::Arm(Clock::time_point at) {
  std::shared_ptr<void> owner = owner_.lock();
  if (owner == nullptr || stopped_) return;
  armed_ = at;
  timer_.expires_at(at);  // cancels the pending wait, if any
  timer_.async_wait([this, owner = std::move(owner), generation = ++generation_](error_code ec) {
    // A wait replaced by a later Arm may still complete without an error (it had
    // expired already): only the latest one acts.
    if (ec || stopped_ || generation != generation_) return;
    armed_ = Clock::time_point::max();
    if (Clock::now() >= deadline_) {
      on_expiry_();
    } else if (deadline_ != Clock::time_point::max()) {
      Arm(deadline_);  // moved later meanwhile
    }
  });
}

void ConnectionEventLog::Log(LogLevel level, absl::string_view message) {
  uint64_t held_back = 0;
  LogThrottle& throttle = throttles_[static_cast<int>(level)];
  if (!logger_.Enabled(level) || !throttle.Allow(absl::Now(), &held_back)) return;
  logger_.Write(level, __FILE__, __LINE__,
                held_back == 0 ? std::string(message)
                               : absl::StrCat(message, " (and ", held_back,
                                              " more connection events not logged since the "
                                              "last one)"));
}

std::optional<size_t> ChooseEviction(const std::vector<EvictionCandidate>& candidates) {
  struct Source {
    size_t connections = 0;
    std::optional<size_t> longest_idle;  // index of its connection idle longest
  };
  std::map<asio::ip::address, Source> sources;
  for (size_t i = 0; i < candidates.size(); ++i) {
    const EvictionCandidate& candidate = candidates[i];
    Source& source = sources[candidate.source];
    ++source.connections;
    if (candidate.busy) continue;
    if (!source.longest_idle ||
        candidate.idle_since < candidates[*source.longest_idle].idle_since) {
      source.longest_idle = i;
    }
  }
  std::optional<size_t> victim;
  size_t victim_source_connections = 0;
  for (const auto& [address, source] : sources) {
    if (!source.longest_idle) continue;
    const bool better =
        !victim || source.connections > victim_source_connections ||
        (source.connections == victim_source_connections &&
         candidates[*source.longest_idle].idle_since < candidates[*victim].idle_since);
    if (better) {
      victim = source.longest_idle;
      victim_source_connections = source.connections;
    }
  }
  return victim;
}

absl::StatusOr<uint64_t> RaiseOpenFileLimit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) {
    return absl::InternalError(absl::StrCat("getrlimit(RLIMIT_NOFILE): ", std::strerror(errno)));
  }
  if (limit.rlim_cur != limit.rlim_max) {
    rlimit raised = limit;
    raised.rlim_cur = limit.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &raised) != 0) {
      return absl::InternalError(absl::StrCat("setrlimit(RLIMIT_NOFILE) from ", limit.rlim_cur,
                                              " to ", limit.rlim_max, ": ",
                                              std::strerror(errno)));
    }
  }
  return OpenFileLimit();
}

uint64_t OpenFileLimit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return 1024;  // the usual default
  return limit.rlim_cur == RLIM_INFINITY ? UINT64_MAX : uint64_t{limit.rlim_cur};
}

ConnectionCaps DefaultConnectionCaps(uint64_t open_file_limit) {
  const uint64_t reserve = std::max<uint64_t>(512, open_file_limit / 4);
  // A limit below the reserve still gets a little of everything; the process then
  // runs short of descriptors long before its ports fill up.
  const uint64_t available = open_file_limit > reserve + 64 ? open_file_limit - reserve : 64;
  auto share = [&](uint64_t cap, uint64_t divisor) {
    return static_cast<size_t>(std::max<uint64_t>(4, std::min(cap, available / divisor)));
  };
  ConnectionCaps caps;
  caps.http = share(64, 16);
  caps.peer_unauthenticated = share(256, 8);
  caps.peer_authenticated = share(128, 8);
  const uint64_t rest =
      available - std::min<uint64_t>(available, caps.http + caps.peer_unauthenticated +
                                                    caps.peer_authenticated);
  caps.client = static_cast<size_t>(
      std::clamp<uint64_t>(rest, 16, kMaxDefaultClientConnections));
  return caps;
}

}  // namespace stead::server
