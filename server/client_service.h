// ClientService: the client port (2479). Each connection carries length-prefixed
// pb::ClientRequest frames and gets pb::ClientResponse frames back with the same
// request_id, in completion order: many requests may be in flight per connection.
//
// Writes (put, delete) are proposed through the RaftNode and answered with the result
// of applying them. Reads are linearizable by default (a ReadIndex barrier, then the
// local state machine) or serializable on request (local, possibly stale). On a member
// that is not the leader, writes and linearizable reads fail with UNAVAILABLE and a
// leader hint; the client retries there.
//
// Garbage, oversized or undecodable frames close that connection with a logged reason.
//
// Thread-safety: as PeerTransport. Stop() before destroying the RaftNode or the state
// machine it reads.
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
#include "server/frame.h"
#include "server/raft_node.h"
#include "storage/limits.h"
#include "storage/state_machine.h"

namespace stead::server {

struct ClientServiceOptions {
  uint64_t cluster_id = 0;
  // Largest request frame. Default: 4 MiB (well above the value limit).
  uint32_t max_frame_bytes = 4u << 20;
  // Requests in flight per connection; more are answered RESOURCE_EXHAUSTED at once.
  // Default: 1024.
  size_t max_inflight_per_connection = 1024;
  // Connections at once; more are closed on accept. Default: 1024.
  size_t max_connections = 1024;
  // Deadline of a request that sets no timeout_ms; also the cap on timeout_ms.
  // Default: 5 s (cap 60 s).
  absl::Duration default_timeout = absl::Seconds(5);
  absl::Duration max_timeout = absl::Seconds(60);
  // Key and value limits checked before proposing.
  storage::Limits limits;
};

// Who a node id is, for leader hints: member name and client address ("host:port").
struct MemberAddress {
  std::string name;
  std::string client_address;
};
using MemberDirectory = std::function<std::optional<MemberAddress>(raft::NodeId id)>;

class ClientService {
 public:
  ClientService(boost::asio::io_context& io, ClientServiceOptions options, Logger logger,
                RaftNode* node, const storage::StateMachine* state, MemberDirectory members);
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

// The wire form of a failed request: the status code and message, and the leader hint
// for UNAVAILABLE.
pb::Error ErrorFromStatus(const absl::Status& status, const std::optional<MemberAddress>& leader);

}  // namespace stead::server

#endif  // STEAD_SERVER_CLIENT_SERVICE_H_
