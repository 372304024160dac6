// The `stead` server's configuration: command-line flags, each also readable from the
// environment as STEAD_<NAME> (upper case, '-' as '_'), validated at start with one
// clear message per mistake. The contract of flag names is in DESIGN.md; extend it,
// never rename.
//
// Precedence: a flag on the command line, then STEAD_<NAME>, then the default. The
// member name also falls back to $POD_NAME and the namespace to $POD_NAMESPACE, as the
// StatefulSet's downward API provides them.
#ifndef STEAD_SERVER_CONFIG_H_
#define STEAD_SERVER_CONFIG_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "base/log.h"
#include "server/kv_limits.h"
#include "wire/tls_options.h"

namespace stead::server {

// A "host:port" listen or peer address.
struct HostPort {
  std::string host;
  uint16_t port = 0;
  std::string ToString() const;
  bool operator==(const HostPort&) const = default;
};

// Parses "host:port" or "[v6]:port"; ":port" means `default_host`. InvalidArgument
// naming `what` otherwise.
absl::StatusOr<HostPort> ParseHostPort(const std::string& text, const std::string& what,
                                       const std::string& default_host = "0.0.0.0");

// A member name of the form <statefulset>-<ordinal>.
struct MemberName {
  std::string set;   // "stead"
  int ordinal = 0;   // 2
};
absl::StatusOr<MemberName> ParseMemberName(const std::string& name);

// One entry of --peers.
struct PeerSpec {
  std::string name;
  HostPort address;
  bool operator==(const PeerSpec&) const = default;
};
// Parses "name=host:port,name=host:port". InvalidArgument for a malformed entry or a
// duplicate name.
absl::StatusOr<std::vector<PeerSpec>> ParsePeerList(const std::string& text);

struct ServerConfig {
  std::string name;                 // --name / $POD_NAME, e.g. "stead-0"
  std::string data_dir;             // --data-dir: RocksDB state machine volume
  std::string wal_dir;              // --wal-dir: Raft log volume
  HostPort client_addr{"0.0.0.0", 2479};
  HostPort peer_addr{"0.0.0.0", 2480};
  HostPort http_addr{"0.0.0.0", 2481};
  std::string advertise_host;       // name peers and clients use for this member
  std::vector<PeerSpec> peers;      // --peers, outside Kubernetes
  std::string peer_service;         // --peer-service, in Kubernetes (headless Service)
  std::string namespace_name = "default";  // --namespace / $POD_NAMESPACE
  std::string cluster_domain = "cluster.local";
  int initial_cluster_size = 3;     // ordinals below it bootstrap the cluster
  std::string restore_from;         // --restore-from FILE: seed from a backup on first start
  // --force-new-cluster NAME: when NAME is this member, it starts as a one-voter cluster
  // of its own with everything in its log (disaster recovery after losing quorum).
  std::string force_new_cluster;
  // --new-cluster-identity TOKEN: this member belongs to the cluster born under TOKEN
  // (a clone's name, chosen per clone). Volumes recorded under another token or none
  // (cloned from another cluster's member) are re-identified at start into the first
  // member of a new cluster; see server/README.md. Empty: off.
  std::string new_cluster_identity;
  LogLevel log_level = LogLevel::kInfo;
  absl::Duration tick_interval = absl::Milliseconds(100);  // one Raft tick
  int election_ticks = 10;          // election timeout in ticks (randomized up to 2x)
  int heartbeat_ticks = 1;          // leader heartbeat interval in ticks
  absl::Duration shutdown_timeout = absl::Seconds(30);  // SIGTERM: transfer, drain, close
  // --promote-learners auto|manual: whether the leader promotes a caught-up learner by
  // itself (auto) or leaves it a learner until `steadctl member promote` (manual). The
  // leader's own setting decides: give every member the same.
  bool auto_promote_learners = true;
  // --replace-silent-member-after: a member that asks to join under the name of a member
  // in the configuration (another id: its volumes were lost) replaces it only once the
  // leader has not heard from that member for this long; until then it is refused, so a
  // second process started by mistake under a running member's name cannot evict it.
  absl::Duration replace_silent_member_after = absl::Seconds(30);
  // Watch history kept (kv_apply.h); the same on every member.
  int64_t watch_history_revisions = 100000;
  absl::Duration watch_history_age = absl::ZeroDuration();  // zero: no age limit
  // Log compaction: a checkpoint every this many applied entries (RaftNodeOptions).
  int64_t snapshot_entries = 50000;
  // Rate limit of one Raft snapshot transfer in MB/s; 0: none.
  int64_t snapshot_send_mb_per_second = 0;
  // --memory-limit: what this member may use (in Kubernetes the container's limit);
  // RocksDB's block cache and memtables get half of it. 0: RocksDB's defaults.
  uint64_t memory_limit_bytes = 0;
  // --io-threads: threads serving the raft strand and the ports; 0: DefaultIoThreads
  // of the CPUs this process may use (server/cpus.h).
  int io_threads = 0;
  // --max-response-bytes: most bytes of keys and values in one page of a range read.
  size_t max_response_bytes = kDefaultMaxResponseBytes;
  // The client port (ClientServiceOptions): connections held at once (0: sized from
  // the open file limit, DefaultConnectionCaps in listener.h), how long one with
  // nothing in flight stays, and how long a request frame may take to arrive whole.
  size_t max_client_connections = 0;
  absl::Duration client_idle_timeout = absl::Minutes(5);
  absl::Duration client_read_timeout = absl::Seconds(10);
  // TLS of each port, from --<port>-cert-file, --<port>-key-file,
  // --<port>-trusted-ca-file and --<port>-cert-auth; a port speaks TLS exactly when its
  // cert_file is set (TlsEnabled), and validation at start refused any other setting
  // without it. The peer port's TLS is always mutual (require_peer_certificate), and
  // the member dials its peers with the same files. The member's forwarder dials the
  // leader's client port with client_tls's files (its certificate as client
  // certificate, its trusted CA for the leader's).
  wire::TlsOptions client_tls = {.names = wire::TlsSettingNames::ForPort("client")};
  wire::TlsOptions peer_tls = {.names = wire::TlsSettingNames::ForPort("peer")};
  wire::TlsOptions http_tls = {.names = wire::TlsSettingNames::ForPort("http")};
  // --tls-transition: for switching a running cluster to or from TLS by rolling
  // restarts (docs/security.md). Every port with TLS also accepts plain connections,
  // and this member's own connections fall back to plain when the other side's port
  // has no TLS (TlsOptions::allow_plain, set on each TLS port by validation).
  bool tls_transition = false;

  // The address peers reach ordinal `ordinal` at: from --peers, or in Kubernetes
  // <set>-<ordinal>.<peer-service>.<namespace>.svc.<cluster-domain>:<peer port>.
  HostPort PeerAddressOf(const MemberName& member) const;
};

// Whether a port configured with `options` speaks TLS: its certificate is set.
inline bool TlsEnabled(const wire::TlsOptions& options) { return !options.cert_file.empty(); }

// Reads the environment; tests pass a map instead of the process's environment.
using EnvLookup = std::function<std::optional<std::string>(const std::string& name)>;
EnvLookup ProcessEnvironment();

// The longest --new-cluster-identity token.
inline constexpr size_t kMaxIdentityTokenBytes = 63;
// OK if `token` is 1..kMaxIdentityTokenBytes characters of [A-Za-z0-9._-];
// InvalidArgument naming `what` and the first offending character otherwise.
absl::Status ValidateIdentityToken(const std::string& token, const std::string& what);

// What the command line asked for.
struct ParsedCommandLine {
  bool help = false;     // --help: print Usage() and exit 0
  bool version = false;  // --version
  ServerConfig config;   // valid only when neither help nor version
};

// Parses args (without argv[0]) and the environment and validates the result.
// InvalidArgument with a message naming the flag (and its STEAD_ variable) for an
// unknown flag, a missing or malformed value, or an inconsistent combination.
absl::StatusOr<ParsedCommandLine> ParseServerCommandLine(const std::vector<std::string>& args,
                                                         const EnvLookup& env);

// `stead --help`: every flag with its default and environment variable.
std::string ServerUsage();

}  // namespace stead::server

#endif  // STEAD_SERVER_CONFIG_H_
