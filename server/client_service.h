// ClientService: the client port (2479). Each connection carries length-prefixed
// pb::ClientRequest frames and gets pb::ClientResponse frames back with the same
// request_id, in completion order: many requests may be in flight per connection.
// What a request does is the RequestHandler's business (KvService), except streams:
// a watch request opens a stream in the WatchHub, whose responses carry the watch
// request's id until it ends (see pb::WatchRequest), and a snapshot save request opens
// one in the BackupService (pb::SnapshotSaveRequest).
//
// A frame over max_frame_bytes that starts as a request does (with its request id) is
// skipped (never buffered) and answered with INVALID_ARGUMENT under that id: such a
// request can never fit, so the client must not retry it. Any other oversized frame,
// and an empty or undecodable one, is garbage: it closes the connection with a logged
// reason.
//
// A frame that has started must arrive whole (or be skipped whole) within the read
// timeout (a client sending a byte a second, or a truncated frame, is closed), and a
// connection with nothing in flight (no request, no open watch or snapshot save) is
// closed after the idle timeout; stead::Client reconnects on its next request.
// Admission when the port is full is the listener's (server/listener.h): the longest
// idle connection makes room.
//
// TLS: with ClientServiceOptions::tls every connection is TLS (wire::Stream) and must
// complete its handshake within the read timeout; a client certificate is verified
// (and required, with the provider's require_peer_certificate). Each connection takes
// the provider's current context, so rewritten certificate files reach new
// connections only. A plain port whose first bytes are a TLS ClientHello logs
// wire::kTlsOnPlainPortMessage and closes that connection; a TLS port receiving plain
// bytes fails that handshake. Either way the port goes on serving the others.
//
// Thread-safety: as PeerTransport. Stop() before destroying what the handler uses.
#ifndef STEAD_SERVER_CLIENT_SERVICE_H_
#define STEAD_SERVER_CLIENT_SERVICE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "base/asio.h"
#include "base/log.h"
#include "proto/kv.pb.h"
#include "server/backup_service.h"
#include "server/frame.h"
#include "server/kv_service.h"
#include "server/watch_hub.h"
#include "wire/tls_context.h"

namespace stead::server {

struct ClientServiceOptions {
  // Largest request frame. Default: 4 MiB (above the largest encoding of a request
  // within the key-value limits, MaxEncodedRequestBytes).
  uint32_t max_frame_bytes = 4u << 20;
  // Requests in flight per connection; more are answered RESOURCE_EXHAUSTED at once.
  // Default: 1024.
  size_t max_inflight_per_connection = 1024;
  // Connections at once; beyond it a new one closes the longest idle one, or is closed
  // itself when every one has requests in flight. The Node sizes it from the open
  // file limit (DefaultConnectionCaps in listener.h, --max-client-connections).
  // Default: 1024.
  size_t max_connections = 1024;
  // A connection with nothing in flight for this long is closed. Default: 5 min.
  absl::Duration idle_timeout = absl::Minutes(5);
  // A frame must arrive whole within this long of its first byte. Default: 10 s.
  absl::Duration read_timeout = absl::Seconds(10);
  // The TLS contexts of new connections (a server-role provider); null: plain TCP.
  // Default: null.
  std::shared_ptr<wire::TlsContextProvider> tls = nullptr;
  // Use the name a verified client certificate gives (CertificateUser in
  // auth_check.h) as the caller's user name (--client-cert-auth). Default: false.
  bool certificate_identity = false;
  // Who may do what (Authorizer::Check): asked for every request before it is served
  // (watch cancels and oversized frames aside) with the caller's certificate user
  // (empty without one); a refusal is the request's answer. Asked again, with
  // `ongoing`, before each watch response carrying events: a watch whose reader lost
  // the permission (or was deleted, or got a new password) ends with PERMISSION_DENIED
  // (or UNAUTHENTICATED) instead of delivering them; the token it was opened with may
  // expire meanwhile. The check may set the request's auth_token (for forwarding).
  // Null: everything is allowed. Default: null.
  std::function<absl::Status(pb::ClientRequest* request, const std::string& certificate_user,
                             bool ongoing)>
      authorize = nullptr;
};

// Executes one request; the callback gets its response exactly once, on any thread.
using RequestHandler = std::function<void(pb::ClientRequest request, ResponseCallback done)>;
// Whether a stream (watch, snapshot save) may open now: OK, or the error it is refused
// with (the member serves nothing). Quick and thread-safe.
using StreamGate = std::function<absl::Status()>;

class ClientService {
 public:
  // `watches` and `backups` (each may be null: watches or snapshot saves are then
  // refused) must outlive the service. `stream_gate`, when set, is asked before each
  // stream opens.
  ClientService(boost::asio::io_context& io, ClientServiceOptions options, Logger logger,
                RequestHandler handler, WatchHub* watches = nullptr,
                BackupService* backups = nullptr, StreamGate stream_gate = nullptr);
  ClientService(const ClientService&) = delete;
  ClientService& operator=(const ClientService&) = delete;
  ~ClientService();  // Stop()

  // Unavailable naming the address when it cannot bind.
  absl::Status Listen(const std::string& host, uint16_t port);
  uint16_t port() const;
  // Stops accepting, closes connections; requests in flight are dropped. Idempotent.
  void Stop();

 private:
  struct Shared;
  class Connection;
  std::shared_ptr<Shared> shared_;
};

}  // namespace stead::server

#endif  // STEAD_SERVER_CLIENT_SERVICE_H_
