#include "server/listener.h"

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

}  // namespace stead::server
