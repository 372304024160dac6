// PeerTransport: Raft messages between members over persistent TCP connections.
//
// Each member dials every peer it sends to and keeps that connection for its outgoing
// messages; what it receives arrives on connections the peers dialled. A connection
// starts with a PeerHello (cluster id, sender id, intended receiver id) that the
// receiver checks before accepting anything else, so a process of another cluster, or
// one that reached the wrong member, is refused with a logged reason. Garbage,
// oversized or unexpected frames close that connection only. Until its hello is
// accepted an inbound connection competes for a few slots (and a short hello timeout)
// with whatever else connects; once accepted it holds a slot of its own, so a flood
// of silent sockets can neither keep a member's peers out nor displace them.
//
// With TLS (PeerTransportOptions::tls_server and tls_client) every connection is
// mutual TLS: the dialer checks that the peer's certificate names the host it dials;
// the accepting side requires a certificate of its trusted CA and checks that it names
// the host the dialer announces (hello, snapshot offer, or the asker's peer address in
// a discovery question) before the usual checks of the hello. A member of another
// cluster holding a certificate of the same CA is still refused by its cluster id.
// Each connection takes the providers' current context, so rotated certificate files
// reach new connections and never break established ones.
//
// A peer's address is a host name resolved again on every connection attempt (pod IPs
// change when a StatefulSet pod is rescheduled); failed attempts back off
// exponentially up to a cap. Messages are queued per peer up to a byte limit and
// dropped beyond it: Raft retransmits, and the unreachable callback tells the core to
// go back to probing that follower.
//
// Raft snapshots travel apart from messages: SendSnapshot streams a checkpoint on a
// connection of its own, in chunks the follower acknowledges (at most a window of them
// unacknowledged, optionally rate limited), so heartbeats and appends to that follower
// and to others are never stuck behind it. The follower writes the chunks through its
// SnapshotSink, which stages and verifies the checkpoint and can resume an interrupted
// transfer of the same checkpoint; only then is the SNAPSHOT message handed to Raft.
//
// Thread-safety: every public method may be called from any thread. The handlers run
// on the io_context's threads, one at a time; they must hand work to the raft strand
// themselves and not block.
#ifndef STEAD_SERVER_PEER_TRANSPORT_H_
#define STEAD_SERVER_PEER_TRANSPORT_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "base/asio.h"
#include "base/log.h"
#include "base/mutex.h"
#include "proto/peer.pb.h"
#include "proto/raft.pb.h"
#include "raft/types.h"
#include "server/frame.h"
#include "storage/checkpoint_stream.h"
#include "wire/tls_context.h"

namespace stead::server {

struct PeerTransportOptions {
  // This member's cluster and Raft id; both > 0, or both 0 for a member that has no
  // cluster identity yet (SetIdentity later). Hellos naming others are refused.
  uint64_t cluster_id = 0;
  raft::NodeId node_id = raft::kNoNode;
  std::string node_name;  // for peers' logs
  // Mutual TLS between members (--peer-cert-file and related flags): tls_server gives
  // the contexts of accepted connections (a server-role provider requiring a client
  // certificate), tls_client those of connections this member opens (client role,
  // the same files). Both null: plain TCP. Default: null.
  std::shared_ptr<wire::TlsContextProvider> tls_server = nullptr;
  std::shared_ptr<wire::TlsContextProvider> tls_client = nullptr;
  // The host peers dial this member at (its advertised host), announced in every hello.
  // Under TLS the receiver checks that this member's certificate names it. Default: empty.
  std::string advertised_host;
  // Largest frame sent or accepted. Default: kDefaultMaxFrameBytes (16 MiB).
  uint32_t max_frame_bytes = kDefaultMaxFrameBytes;
  // Bytes of outgoing frames buffered per peer; beyond it messages are dropped.
  // Default: 32 MiB.
  size_t max_queued_bytes_per_peer = size_t{32} << 20;
  // Reconnect backoff: doubles from min to max after each failed attempt.
  // Default: 50 ms to 2 s.
  absl::Duration min_reconnect_backoff = absl::Milliseconds(50);
  absl::Duration max_reconnect_backoff = absl::Seconds(2);
  // Time allowed for resolving, connecting and the hello exchange on a connection
  // this member opens. Default: 5 s.
  absl::Duration handshake_timeout = absl::Seconds(5);
  // An accepted connection whose first frame (hello, snapshot offer or discovery
  // question) does not arrive within this long is closed. Default: 2 s.
  absl::Duration hello_timeout = absl::Seconds(2);
  // Accepted connections not authenticated yet (waiting for their first frame, or
  // answering discovery); beyond it a new one closes the longest idle of them (see
  // server/listener.h). Default: 256.
  size_t max_inbound_connections = 256;
  // Accepted connections whose hello or snapshot offer was accepted: slots of their
  // own, never evicted; a hello beyond it is refused. Default: 128.
  size_t max_authenticated_connections = 128;

  // Snapshot transfers. Data bytes per chunk. Default: 1 MiB.
  size_t snapshot_chunk_bytes = size_t{1} << 20;
  // Chunks sent ahead of the follower's acknowledgements. Default: 4.
  size_t snapshot_window_chunks = 4;
  // Bytes per second of one transfer; 0 for no limit. Default: 0.
  uint64_t snapshot_bytes_per_second = 0;
  // Transfers sent at once; more are refused at once (Raft retries later). Default: 2.
  size_t max_snapshot_sends = 2;
  // A transfer that makes no progress for this long is abandoned (either side; the
  // follower's final verification of a large checkpoint counts). Default: 60 s.
  absl::Duration snapshot_idle_timeout = absl::Seconds(60);
};

// Transfer counters, for metrics and tests.
struct SnapshotTransferStats {
  uint64_t sends_started = 0;
  uint64_t sends_completed = 0;   // the follower staged, verified and accepted it
  uint64_t sends_failed = 0;
  uint64_t bytes_sent = 0;        // chunk data bytes
  uint64_t receives_completed = 0;
  uint64_t receives_failed = 0;
  uint64_t bytes_received = 0;
  uint64_t receives_resumed = 0;  // transfers that continued a staged partial one
};

// Where a follower puts the checkpoint a leader streams (server/snapshot_store.h).
// Called on the transport's threads; may do file I/O but must not wait for Raft.
class SnapshotSink {
 public:
  struct Transfer {
    uint64_t id = 0;
    storage::StreamPosition resume;  // where the leader should start the file data
    bool resumed = false;            // part of it was staged already
  };
  virtual ~SnapshotSink() = default;
  // A leader offers the checkpoint for `snapshot`, identified by `manifest_crc32c`.
  // A new offer supersedes a transfer in progress (whose later calls then fail).
  virtual absl::StatusOr<Transfer> BeginTransfer(const pb::SnapshotMetadata& snapshot,
                                                 uint32_t manifest_crc32c) = 0;
  // Writes the next chunk; `*complete` once every file arrived.
  virtual absl::Status WriteChunk(uint64_t transfer, const pb::SnapshotChunk& chunk,
                                  bool* complete) = 0;
  // Verifies the staged checkpoint and keeps it for installation.
  virtual absl::Status FinishTransfer(uint64_t transfer) = 0;
};

// What a member whose peers all belong to another cluster is told to do (logged and
// given as the reason of /readyz; docs/lost-volume.md quotes it).
inline constexpr char kStaleVolumesAdvice[] =
    "this member's volumes are stale (a removed member's or another cluster's): delete them "
    "together with the pod (docs/lost-volume.md)";

// A snapshot of one outbound peer, for metrics and tests.
struct PeerState {
  std::string address;  // "host:port" as configured
  bool connected = false;
  uint64_t connects = 0;          // successful handshakes
  uint64_t connect_failures = 0;  // failed resolve, connect or hello
  uint64_t messages_sent = 0;     // written to the socket
  uint64_t messages_dropped = 0;  // queue full, or lost with a broken connection
  // Non-zero while the peer refuses this member's hello because it belongs to this
  // other cluster: where no peer accepts and some say this, this member's volumes
  // are stale (a removed member's or another cluster's).
  uint64_t other_cluster_id = 0;
};

class PeerTransport {
 public:
  using MessageHandler = std::function<void(pb::Message message)>;
  using UnreachableHandler = std::function<void(raft::NodeId peer)>;
  // Answers a discovery question (bootstrap, join) from a member without a cluster
  // identity. Runs like the other handlers: quick, thread-safe, never blocking.
  using DiscoveryHandler = std::function<pb::DiscoveryResponse(const pb::DiscoveryRequest&)>;
  // The outcome of SendSnapshot, run once (not after Stop).
  using SnapshotDone = std::function<void(absl::Status status)>;

  // Does not listen or connect yet. `io` must outlive the transport's coroutines: stop
  // the transport, then let `io` run until it has no more work.
  PeerTransport(boost::asio::io_context& io, PeerTransportOptions options, Logger logger,
                MessageHandler on_message, UnreachableHandler on_unreachable);
  PeerTransport(const PeerTransport&) = delete;
  PeerTransport& operator=(const PeerTransport&) = delete;
  ~PeerTransport();  // Stop()

  // Sets the cluster and node id of a transport created without them. Once; the
  // identity never changes afterwards. Hellos are refused until then.
  void SetIdentity(uint64_t cluster_id, raft::NodeId node_id);
  // Discovery questions are refused until a handler is set. Call before Listen.
  void SetDiscoveryHandler(DiscoveryHandler handler);
  // Snapshot offers are refused until a sink is set (once the member opened its
  // storage). `sink` must outlive the transport.
  void SetSnapshotSink(SnapshotSink* sink);

  // Binds host:port (port 0 picks a free one) and accepts peers. Unavailable naming
  // the address and the system error when it cannot bind.
  absl::Status Listen(const std::string& host, uint16_t port);
  // The bound port, 0 before Listen.
  uint16_t listen_port() const;

  // Adds a peer or changes its address (the next connection attempt uses it).
  void SetPeer(raft::NodeId id, std::string host, uint16_t port);
  // Forgets a peer: its connection closes and queued messages are dropped.
  void RemovePeer(raft::NodeId id);

  // Queues `message` for message.to(). Never blocks. A message to an unknown peer, or
  // beyond the queue limit, is dropped (counted, and reported as unreachable).
  void Send(pb::Message message);

  // Streams the checkpoint in `checkpoint_dir` to message.to() for the SNAPSHOT
  // `message` (see the class comment). `done` gets OK once the follower staged and
  // verified it and handed the message to Raft; Unavailable when the peer is unknown or
  // unreachable or too many transfers run; the follower's reason otherwise. The
  // checkpoint must stay in place until `done` runs.
  void SendSnapshot(pb::Message message, std::string checkpoint_dir, SnapshotDone done);

  std::map<raft::NodeId, PeerState> Peers() const;
  SnapshotTransferStats SnapshotStats() const;

  // Closes the listener and every connection; idempotent. When it returns no handler
  // is running or will run (so what the handlers touch may be destroyed); it must not
  // be called from a handler.
  void Stop();

 private:
  struct Shared;
  class Outbound;
  class Inbound;
  class SnapshotSend;

  std::shared_ptr<Shared> shared_;
  mutable Mutex mu_;
  std::map<raft::NodeId, std::shared_ptr<Outbound>> peers_ ABSL_GUARDED_BY(mu_);
  // Where each peer listens, for snapshot connections.
  std::map<raft::NodeId, std::pair<std::string, uint16_t>> addresses_ ABSL_GUARDED_BY(mu_);
};

}  // namespace stead::server

#endif  // STEAD_SERVER_PEER_TRANSPORT_H_
