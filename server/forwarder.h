// Forwarder: passes client requests from a member that is not the leader on to the
// leader's client port, so a client behind the client Service (which lands on any
// pod) or an embedded application on a follower is served without knowing who leads.
//
// One connection per leader address, opened on demand and kept; many requests in
// flight on it, matched by a forwarder-chosen id. A request is answered exactly once:
// with the leader's response, Unavailable when the connection fails, or
// DeadlineExceeded at its deadline (the outcome of a write is then unknown; clients
// retry with the same client id and sequence).
//
// When the members' client ports speak TLS, so does the forwarder: with `tls` (a
// client-role provider of the member's client port files: its certificate is the
// forwarder's client certificate, its trusted CA verifies the leader's) it checks that
// the leader's certificate names the host of the address it dials.
//
// Thread-safety: every method may be called from any thread.
#ifndef STEAD_SERVER_FORWARDER_H_
#define STEAD_SERVER_FORWARDER_H_

#include <map>
#include <memory>
#include <string>

#include "absl/time/time.h"
#include "base/asio.h"
#include "base/log.h"
#include "base/mutex.h"
#include "proto/kv.pb.h"
#include "server/kv_service.h"
#include "wire/tls_context.h"

namespace stead::server {

class Forwarder {
 public:
  // `tls`: null for plain TCP.
  Forwarder(boost::asio::io_context& io, Logger logger,
            std::shared_ptr<wire::TlsContextProvider> tls = nullptr);
  Forwarder(const Forwarder&) = delete;
  Forwarder& operator=(const Forwarder&) = delete;
  ~Forwarder();  // Stop()

  // Sends `request` (marked forwarded) to the member at `address` ("host:port");
  // `done` gets the response with the caller's request_id.
  void Forward(const std::string& address, pb::ClientRequest request, absl::Time deadline,
               ResponseCallback done);

  // Closes every connection and answers what is pending with Unavailable. Idempotent.
  void Stop();

 private:
  class Connection;
  boost::asio::io_context& io_;
  const Logger logger_;
  const std::shared_ptr<wire::TlsContextProvider> tls_;
  Mutex mu_;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  std::map<std::string, std::shared_ptr<Connection>> connections_ ABSL_GUARDED_BY(mu_);
};

}  // namespace stead::server

#endif  // STEAD_SERVER_FORWARDER_H_
