// Discovery: the one-question exchange a member without a cluster identity has with
// its peers, to bootstrap a new cluster or join an existing one (server/README.md,
// "Identity and bootstrap"). The answering side is PeerTransport's discovery handler.
#ifndef STEAD_SERVER_DISCOVERY_H_
#define STEAD_SERVER_DISCOVERY_H_

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "proto/peer.pb.h"
#include "server/config.h"
#include "wire/tls_context.h"

namespace stead::server {

inline constexpr uint32_t kDiscoveryProtocolVersion = 1;

// Asks the member at `address` (its peer port) one question and returns its answer.
// Blocks the calling thread for at most `timeout` (resolve, connect, exchange).
// Unavailable when it cannot be reached in time; InvalidArgument when it answers
// with something else than a discovery response. With `tls` (the member's client-role
// provider of the peer port's files) the question goes over TLS, the peer's
// certificate must name address.host, and a refused certificate is FailedPrecondition.
absl::StatusOr<pb::DiscoveryResponse> AskPeer(
    const HostPort& address, const pb::DiscoveryRequest& request, absl::Duration timeout,
    const std::shared_ptr<wire::TlsContextProvider>& tls = nullptr);

}  // namespace stead::server

#endif  // STEAD_SERVER_DISCOVERY_H_
