#include "server/http_server.h"

#include <atomic>
#include <utility>
#include <vector>

#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "absl/strings/str_cat.h"
#include "base/check.h"
#include "base/status_macros.h"
#include "server/listener.h"
#include "wire/stream.h"

namespace stead::server {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using asio::ip::tcp;
using boost::system::error_code;

struct HttpServer::Shared {
  Shared(asio::io_context& io_in, HttpServerOptions options_in, Logger logger_in)
      : io(io_in),
        options(options_in),
        logger(std::move(logger_in)),
        listener(std::make_shared<Listener>(io_in)),
        events(logger),
        connections(options.max_connections, 0, &events) {}

  asio::io_context& io;
  const HttpServerOptions options;
  const Logger logger;
  std::map<std::string, HttpHandler> handlers;  // fixed once Listen is called
  std::atomic<bool> stopped{false};
  const std::shared_ptr<Listener> listener;
  ConnectionEventLog events;
  ConnectionSet<Connection> connections;  // admission, and so Stop can close them
};

class HttpServer::Connection : public std::enable_shared_from_this<Connection> {
 public:
  // TLS when the port has a provider (`shared->options.tls`), plain otherwise.
  Connection(std::shared_ptr<Shared> shared, tcp::socket socket)
      : shared_(std::move(shared)),
        stream_(std::move(socket), shared_->options.tls),
        deadline_(stream_.get_executor()) {
    error_code ec;
    remote_ = stream_.socket().remote_endpoint(ec);
  }

  void Start() {
    asio::co_spawn(stream_.get_executor(), Run(shared_from_this()), [](std::exception_ptr) {});
  }

  // Thread-safe.
  void Close() {
    asio::post(stream_.get_executor(), [self = shared_from_this()] {
      error_code ignored;
      self->stream_.socket().close(ignored);
    });
  }

  // For admission (ConnectionSet::Admit): busy while a request is being answered.
  const tcp::endpoint& remote() const { return remote_; }
  const ConnectionActivity& activity() const { return activity_; }

 private:
  static asio::awaitable<void> Run(std::shared_ptr<Connection> self) {
    self->deadline_.Start(self, [raw = self.get()] {
      raw->timed_out_ = true;
      error_code ignored;
      raw->stream_.socket().close(ignored);
    });
    if (self->stream_.is_tls()) {
      // Within the header timeout, as the request that follows.
      const absl::Status handshake = co_await self->stream_.AsyncServerHandshake(
          self->shared_->options.header_timeout, asio::use_awaitable);
      if (handshake.ok()) {
        co_await self->Serve();
      } else if (!self->shared_->stopped) {
        self->shared_->events.Log(
            LogLevel::kWarning, absl::StrCat("http: closing the connection from ", self->Remote(),
                                             ": TLS handshake: ", handshake.message()));
      }
    } else {
      co_await self->Serve();
    }
    self->deadline_.Stop();
    error_code ignored;
    self->stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    self->stream_.socket().close(ignored);
    self->shared_->connections.Remove(self.get());
  }

  asio::awaitable<void> Serve() {
    beast::flat_buffer buffer;
    while (!shared_->stopped) {
      http::request_parser<http::string_body> parser;
      parser.header_limit(shared_->options.max_header_bytes);
      parser.body_limit(64 * 1024);
      deadline_.SetAfter(shared_->options.header_timeout);
      error_code ec;
      co_await http::async_read(stream_, buffer, parser,
                                asio::redirect_error(asio::use_awaitable, ec));
      if (timed_out_) {
        shared_->events.Log(LogLevel::kInfo,
                            absl::StrCat("http: closing the connection from ", Remote(),
                                         ": no request within the header timeout of ",
                                         absl::FormatDuration(shared_->options.header_timeout)));
        co_return;
      }
      if (ec == http::error::end_of_stream || ec == asio::error::operation_aborted ||
          ec == asio::error::eof) {
        co_return;
      }
      activity_.Begin();
      const bool keep_alive = co_await Answer(ec, parser.release());
      activity_.End();
      if (!keep_alive) co_return;
    }
  }

  // Answers one request (or the error reading it); whether the connection stays open.
  asio::awaitable<bool> Answer(error_code read_error, http::request<http::string_body> request) {
    if (read_error) {
      // Malformed or oversized request: answer once, then close (the stream cannot be
      // trusted to resynchronise).
      const int status = read_error == http::error::header_limit ? 431 : 400;
      shared_->events.Log(LogLevel::kInfo, absl::StrCat("http: bad request from ", Remote(),
                                                        ": ", read_error.message()));
      co_await Write(MakeResponse(status, "text/plain; charset=utf-8",
                                  absl::StrCat(read_error.message(), "\n"), 11, false, false));
      co_return false;
    }
    const bool keep_alive = request.keep_alive();
    http::response<http::string_body> response = Route(request);
    response.keep_alive(keep_alive);
    co_return co_await Write(std::move(response)) && keep_alive;
  }

  http::response<http::string_body> Route(const http::request<http::string_body>& request) {
    const std::string target(request.target());
    const size_t question = target.find('?');
    HttpRequest parsed{std::string(request.method_string()), target.substr(0, question),
                       question == std::string::npos ? "" : target.substr(question + 1)};
    const bool head = request.method() == http::verb::head;
    if (request.method() != http::verb::get && !head) {
      auto response = MakeResponse(405, "text/plain; charset=utf-8", "only GET and HEAD\n",
                                   request.version(), true, false);
      response.set(http::field::allow, "GET, HEAD");
      return response;
    }
    auto it = shared_->handlers.find(parsed.path);
    if (it == shared_->handlers.end()) {
      return MakeResponse(404, "text/plain; charset=utf-8",
                          absl::StrCat("no such path: ", parsed.path, "\n"), request.version(),
                          true, head);
    }
    HttpResponse answer = it->second(parsed);
    return MakeResponse(answer.status, answer.content_type, std::move(answer.body),
                        request.version(), true, head);
  }

  static http::response<http::string_body> MakeResponse(int status, const std::string& type,
                                                        std::string body, unsigned version,
                                                        bool keep_alive, bool head) {
    http::response<http::string_body> response(static_cast<http::status>(status), version);
    response.set(http::field::server, "stead");
    response.set(http::field::content_type, type);
    response.set(http::field::cache_control, "no-store");
    response.keep_alive(keep_alive);
    const size_t length = body.size();
    if (!head) response.body() = std::move(body);
    response.content_length(length);
    return response;
  }

  asio::awaitable<bool> Write(http::response<http::string_body> response) {
    error_code ec;
    deadline_.SetAfter(shared_->options.header_timeout);
    co_await http::async_write(stream_, response, asio::redirect_error(asio::use_awaitable, ec));
    co_return !ec && !timed_out_;
  }

  std::string Remote() const {
    return absl::StrCat(remote_.address().to_string(), ":", remote_.port());
  }

  const std::shared_ptr<Shared> shared_;
  wire::Stream stream_;  // plain or TLS; its executor is this connection's strand
  tcp::endpoint remote_;
  ConnectionActivity activity_;
  // Strand only: the header (and write) timeout, and whether it closed the socket.
  ConnectionDeadline deadline_;
  bool timed_out_ = false;
};

HttpServer::HttpServer(asio::io_context& io, HttpServerOptions options, Logger logger)
    : shared_(std::make_shared<Shared>(io, options, std::move(logger))) {}

HttpServer::~HttpServer() { Stop(); }

void HttpServer::Handle(std::string path, HttpHandler handler) {
  STEAD_CHECK_EQ(shared_->listener->port(), 0) << "Handle() after Listen()";
  shared_->handlers[std::move(path)] = std::move(handler);
}

absl::Status HttpServer::Listen(const std::string& host, uint16_t port) {
  STEAD_RETURN_IF_ERROR(shared_->listener->Listen(host, port, "HTTP"));
  // Weak: the listener keeps its handler, and Shared keeps the listener.
  shared_->listener->Start([weak = std::weak_ptr<Shared>(shared_)](tcp::socket socket) {
    std::shared_ptr<Shared> shared = weak.lock();
    if (shared == nullptr || shared->stopped) return;
    auto connection = std::make_shared<Connection>(shared, std::move(socket));
    if (shared->connections.Admit(connection)) connection->Start();
  });
  return absl::OkStatus();
}

uint16_t HttpServer::port() const { return shared_->listener->port(); }

void HttpServer::Stop() {
  if (shared_->stopped.exchange(true)) return;
  for (const auto& connection : shared_->connections.Live()) connection->Close();
  shared_->listener->Close();
}

}  // namespace stead::server
