// stead::Node — one member of a stead cluster, in your process.
//
// A Node is everything a member needs: the Raft core, the log on the WAL volume, the
// RocksDB state machine on the data volume, the peer transport, the client port and
// the HTTP port (/healthz, /readyz, /metrics). The `stead` binary is a thin main()
// around it; an application can embed one instead and read and write through it
// directly, without a socket. Several Nodes may live in one process.
//
//   stead::NodeOptions options;
//   options.name = "stead-0";
//   options.data_dir = "/var/lib/stead/data";
//   options.wal_dir = "/var/lib/stead/wal";
//   options.peers = "stead-0=10.0.0.1:2480,stead-1=10.0.0.2:2480,stead-2=10.0.0.3:2480";
//   absl::StatusOr<std::unique_ptr<stead::Node>> node = stead::Node::Start(options);
//   if (!node.ok()) { /* the message says what is wrong and what to do */ }
//   (*node)->WaitUntilReady(absl::Seconds(30));
//   (*node)->Put("greeting", "hello");
//
// Thread-safety: every method may be called from any thread.
#ifndef STEAD_NODE_H_
#define STEAD_NODE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace stead {

// The TLS settings of one port: the `stead` flags --<port>-cert-file,
// --<port>-key-file, --<port>-trusted-ca-file and --<port>-cert-auth. A port speaks
// TLS when cert_file is set; the files are checked at Start (InvalidArgument naming
// the flag) and reloaded when they change (certificate rotation). For the peer port
// TLS is always mutual: trusted_ca_file is required and cert_auth implied.
struct NodeTlsOptions {
  std::string cert_file;
  std::string key_file;
  std::string trusted_ca_file;
  bool cert_auth = false;
};

// Loopback listen addresses of an embedded Node whose options name none; the `stead`
// binary listens on 0.0.0.0 instead.
inline constexpr const char* kEmbeddedClientAddr = "127.0.0.1:2479";
inline constexpr const char* kEmbeddedPeerAddr = "127.0.0.1:2480";
inline constexpr const char* kEmbeddedHttpAddr = "127.0.0.1:2481";

// Each field is the `stead` flag of the same name (see `stead --help` for what it
// means); an empty string or 0 keeps that flag's default, but for the listen
// addresses: an embedded Node binds loopback (kEmbedded*Addr) unless given another.
struct NodeOptions {
  std::string name;      // "<set>-<ordinal>", e.g. "stead-0"; required
  std::string data_dir;  // required
  std::string wal_dir;   // required; another directory (volume) than data_dir
  std::string client_addr;  // listen "host:port"; default kEmbeddedClientAddr (loopback)
  std::string peer_addr;    // default kEmbeddedPeerAddr
  std::string http_addr;    // default kEmbeddedHttpAddr
  std::string advertise_host;
  std::string peers;  // "name=host:port,...": outside Kubernetes
  std::string peer_service;  // in a StatefulSet, with namespace_name and cluster_domain
  std::string namespace_name;
  std::string cluster_domain;
  int initial_cluster_size = 0;
  std::string log_level;  // debug, info, warning, error
  int tick_interval_ms = 0;
  int election_ticks = 0;
  int heartbeat_ticks = 0;
  int shutdown_timeout_ms = 0;
  std::string promote_learners;  // "auto" or "manual"
  int64_t replace_silent_member_after_ms = 0;
  int64_t watch_history_revisions = 0;
  int64_t watch_history_age_ms = 0;
  int64_t snapshot_entries = 0;
  int snapshot_send_rate_mb_per_second = 0;  // --snapshot-send-rate
  int64_t memory_limit_bytes = 0;
  int io_threads = 0;  // --io-threads; 0: half the CPUs this process may use, 1 to 8
  int64_t max_response_bytes = 0;  // --max-response-bytes: bytes of one range page
  int max_client_connections = 0;
  int64_t client_idle_timeout_ms = 0;
  int64_t client_read_timeout_ms = 0;
  // TLS of each port (docs/security.md); all off by default.
  NodeTlsOptions client_tls;
  NodeTlsOptions peer_tls;
  NodeTlsOptions http_tls;
  bool tls_transition = false;  // --tls-transition: switching a running cluster to TLS
  // Starting from a backup, a clone, or after quorum loss (docs/restore.md,
  // docs/clone.md, docs/disaster-recovery.md).
  std::string restore_from;
  std::string force_new_cluster;
  std::string new_cluster_identity;
};

enum class ReadConsistency {
  kLinearizable,  // sees every write acknowledged before the read began (leader only)
  kSerializable,  // this member's state, possibly stale; served by any member
};

struct NodeStatus {
  std::string name;
  uint64_t cluster_id = 0;  // 0 until the member bootstrapped or joined a cluster
  uint64_t node_id = 0;
  // "discovering", "joining", "leader", "follower", "candidate", "learner", "removed",
  // "failed" or "stopped".
  std::string state;
  uint64_t term = 0;
  uint64_t commit_index = 0;
  uint64_t applied_index = 0;
  uint64_t leader_id = 0;
  std::string leader_name;
  bool voter = false;
  // What /readyz and /healthz answer, and why not. Ready: a voter that knows a leader,
  // whose state machine's checksums were verified since the start and found sound,
  // that waits for no snapshot, and whose applied index is within 1,000 entries of the
  // leader's commit index.
  bool ready = false;
  std::string not_ready_reason;
  bool healthy = true;
  std::string unhealthy_reason;
  uint16_t client_port = 0;
  uint16_t peer_port = 0;
  uint16_t http_port = 0;
};

class Node;
namespace server {
struct ServerConfig;
// For the stead binary, which has a validated configuration already: see Node::Start.
absl::StatusOr<std::unique_ptr<Node>> StartNode(const ServerConfig& config);
}  // namespace server

class Node {
 public:
  // Checks the options and the volumes, binds the three ports and starts the member;
  // returns once it is listening. A member whose volumes are empty then finds or
  // forms its cluster in the background (Status().state is "discovering").
  //   InvalidArgument: a bad option (the message names the flag).
  //   FailedPrecondition: a volume of another cluster or member, or in use.
  //   Unavailable: a port cannot be bound.
  static absl::StatusOr<std::unique_ptr<Node>> Start(const NodeOptions& options);

  // Stops at once (no leadership transfer): like a crash, minus the lost writes, as
  // everything acknowledged is durable.
  ~Node();
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  // Graceful stop, as on SIGTERM: refuses new requests, hands leadership to a caught-up
  // voter, lets requests in flight finish and closes storage cleanly, within the
  // shutdown timeout. DeadlineExceeded if a step ran out of time (the node still
  // stops). Idempotent.
  absl::Status Shutdown();

  NodeStatus Status() const;
  // Waits until /readyz would answer 200. DeadlineExceeded with the last reason.
  absl::Status WaitUntilReady(absl::Duration timeout) const;

  // Key-value access without a socket. Writes and linearizable reads must reach the
  // leader: elsewhere they fail with Unavailable naming the leader.
  absl::Status Put(std::string_view key, std::string_view value,
                   absl::Duration timeout = absl::Seconds(5));
  absl::StatusOr<std::optional<std::string>> Get(
      std::string_view key, ReadConsistency consistency = ReadConsistency::kLinearizable,
      absl::Duration timeout = absl::Seconds(5));
  // OK whether or not the key existed.
  absl::Status Delete(std::string_view key, absl::Duration timeout = absl::Seconds(5));

  // Removes a member (by name) from the cluster; leader only. NotFound if no member
  // has that name.
  absl::Status RemoveMember(std::string_view name, absl::Duration timeout = absl::Seconds(10));

  struct Impl;

 private:
  explicit Node(std::unique_ptr<Impl> impl);
  friend absl::StatusOr<std::unique_ptr<Node>> server::StartNode(const server::ServerConfig&);
  std::unique_ptr<Impl> impl_;
};

}  // namespace stead

#endif  // STEAD_NODE_H_
