// HttpServer: the small HTTP/1.1 server on the HTTP port (2481) for /healthz, /readyz
// and /metrics. Handlers are registered by exact path and answer GET and HEAD; other
// methods get 405, unknown paths 404, malformed or oversized requests 400 or 431 and
// the connection is closed. A request (its header) must arrive within the header
// timeout, on a new connection and between the requests of a keep-alive one. When the
// port is full, the connection idle longest makes room for a new one (server/
// listener.h), so /healthz and /readyz answer a probe however many idle connections
// are open.
//
// With HttpServerOptions::tls (--http-cert-file) the port speaks HTTPS only, each
// connection with the provider's current context (rotated files reach new
// connections); the handshake must complete within the header timeout.
//
// Thread-safety: Handle() before Listen(); everything else from any thread. Handlers
// run on the io_context's threads and must be quick and thread-safe (they read state
// published by the node, never wait on the raft strand).
#ifndef STEAD_SERVER_HTTP_SERVER_H_
#define STEAD_SERVER_HTTP_SERVER_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "base/asio.h"
#include "base/log.h"
#include "wire/tls_context.h"

namespace stead::server {

struct HttpRequest {
  std::string method;  // "GET" or "HEAD"
  std::string path;    // "/readyz"
  std::string query;   // what followed '?', without it
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

using HttpHandler = std::function<HttpResponse(const HttpRequest& request)>;

struct HttpServerOptions {
  // Connections served at once; beyond it a new one closes the longest idle one (or is
  // closed itself while every one is being answered). Default: 64.
  size_t max_connections = 64;
  // A connection whose next request does not arrive whole within this long (from
  // accept, or from the previous response) is closed; a response must be written
  // within it too. Default: 5 s.
  absl::Duration header_timeout = absl::Seconds(5);
  // Largest request header accepted (431 beyond). Default: 8 KiB.
  uint32_t max_header_bytes = 8 * 1024;
  // The TLS contexts of new connections (a server-role provider); null: plain HTTP.
  // Default: null.
  std::shared_ptr<wire::TlsContextProvider> tls = nullptr;
};

class HttpServer {
 public:
  HttpServer(boost::asio::io_context& io, HttpServerOptions options, Logger logger);
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;
  ~HttpServer();  // Stop()

  // Serves `path` (exact match, e.g. "/metrics") with `handler`. Call before Listen.
  void Handle(std::string path, HttpHandler handler);

  // Binds host:port (port 0 picks a free one). Unavailable naming the address and the
  // system error when it cannot bind; InvalidArgument for a malformed host.
  absl::Status Listen(const std::string& host, uint16_t port);
  uint16_t port() const;

  // Closes the listener and open connections; idempotent. Let the io_context run out
  // of work afterwards so every connection unwinds.
  void Stop();

 private:
  struct Shared;
  class Connection;
  std::shared_ptr<Shared> shared_;
};

}  // namespace stead::server

#endif  // STEAD_SERVER_HTTP_SERVER_H_
