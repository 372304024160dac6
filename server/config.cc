#include "server/config.h"

#include <algorithm>
#include <cstdlib>
#include <map>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "base/status_macros.h"

namespace stead::server {
namespace {

std::string EnvName(const std::string& flag) {
  std::string env = "STEAD_" + absl::AsciiStrToUpper(flag);
  for (char& c : env) {
    if (c == '-') c = '_';
  }
  return env;
}

absl::StatusOr<int> ParsePositiveInt(const std::string& text, const std::string& what) {
  int value = 0;
  if (!absl::SimpleAtoi(text, &value) || value <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": '", text, "' is not a positive whole number"));
  }
  return value;
}

// Bytes, plain or with a Kubernetes binary suffix (Ki, Mi, Gi), at most 1 PiB.
absl::StatusOr<uint64_t> ParseByteCount(const std::string& text, const std::string& what) {
  uint64_t unit = 1;
  absl::string_view digits = text;
  for (const auto& [suffix, bytes] :
       {std::pair<const char*, uint64_t>{"Ki", uint64_t{1} << 10}, {"Mi", uint64_t{1} << 20},
        {"Gi", uint64_t{1} << 30}}) {
    if (absl::ConsumeSuffix(&digits, suffix)) {
      unit = bytes;
      break;
    }
  }
  uint64_t value = 0;
  if (!absl::SimpleAtoi(digits, &value) || value > (uint64_t{1} << 50) / unit) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": '", text, "' is not a byte count such as 268435456 or 256Mi"));
  }
  return value * unit;
}

// A byte count; 0 for none; at least 64 MiB otherwise (less leaves RocksDB too little
// to work with).
absl::StatusOr<uint64_t> ParseMemoryLimit(const std::string& text, const std::string& what) {
  STEAD_ASSIGN_OR_RETURN(const uint64_t value, ParseByteCount(text, what));
  if (value != 0 && value < (uint64_t{64} << 20)) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": '", text, "' is below 64Mi"));
  }
  return value;
}

// A byte count within [kMinMaxResponseBytes, kMaxMaxResponseBytes].
absl::StatusOr<size_t> ParseMaxResponseBytes(const std::string& text, const std::string& what) {
  STEAD_ASSIGN_OR_RETURN(const uint64_t value, ParseByteCount(text, what));
  if (value < kMinMaxResponseBytes || value > kMaxMaxResponseBytes) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": '", text, "' is outside ",
                                                   kMinMaxResponseBytes, " (1Ki) .. ",
                                                   kMaxMaxResponseBytes, " (32Mi)"));
  }
  return static_cast<size_t>(value);
}

absl::StatusOr<absl::Duration> ParsePositiveDuration(const std::string& text,
                                                     const std::string& what) {
  absl::Duration value;
  if (!absl::ParseDuration(text, &value) || value <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": '", text, "' is not a positive duration such as 100ms or 30s"));
  }
  return value;
}

// One flag of the table below: how it is shown in --help and how a value is applied.
struct FlagSpec {
  const char* name;
  const char* value_name;
  const char* default_text;
  const char* help;
  absl::Status (*apply)(const std::string& value, const std::string& what, ServerConfig& config);
  // A switch: given alone on the command line it means "true" and takes no value.
  bool boolean = false;
};

// A switch's value: true or false (also 1/0, yes/no), as etcd's boolean flags.
absl::StatusOr<bool> ParseBool(const std::string& text, const std::string& what) {
  const std::string lower = absl::AsciiStrToLower(text);
  if (lower == "true" || lower == "1" || lower == "yes") return true;
  if (lower == "false" || lower == "0" || lower == "no") return false;
  return absl::InvalidArgumentError(absl::StrCat(what, ": '", text, "' is not true or false"));
}

// The peer port's TLS is mutual whenever it is on: a member must prove it holds a
// certificate of the cluster's CA before it may send Raft messages.
absl::Status ApplyPeerCertAuth(const std::string& value, const std::string& what,
                               ServerConfig&) {
  STEAD_ASSIGN_OR_RETURN(const bool on, ParseBool(value, what));
  if (!on) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, "=false: members always verify each other's certificates when the peer port "
              "speaks TLS; drop the flag"));
  }
  return absl::OkStatus();
}

absl::Status ApplyHostPort(const std::string& value, const std::string& what, HostPort& out) {
  STEAD_ASSIGN_OR_RETURN(out, ParseHostPort(value, what));
  return absl::OkStatus();
}

const FlagSpec kFlags[] = {
    {"name", "NAME", "$POD_NAME", "member name, <statefulset>-<ordinal> (e.g. stead-0)",
     [](const std::string& v, const std::string&, ServerConfig& c) {
       c.name = v;
       return absl::OkStatus();
     }},
    {"data-dir", "DIR", "(required)", "RocksDB state machine (the data volume)",
     [](const std::string& v, const std::string&, ServerConfig& c) {
       c.data_dir = v;
       return absl::OkStatus();
     }},
    {"wal-dir", "DIR", "(required)", "Raft log (the WAL volume); must differ from --data-dir",
     [](const std::string& v, const std::string&, ServerConfig& c) {
       c.wal_dir = v;
       return absl::OkStatus();
     }},
    {"client-addr", "HOST:PORT", "0.0.0.0:2479", "listen address for clients",
     [](const std::string& v, const std::string& w, ServerConfig& c) {
       return ApplyHostPort(v, w, c.client_addr);
     }},
    {"peer-addr", "HOST:PORT", "0.0.0.0:2480", "listen address for Raft peers",
     [](const std::string& v, const std::string& w, ServerConfig& c) {
       return ApplyHostPort(v, w, c.peer_addr);
     }},
    {"http-addr", "HOST:PORT", "0.0.0.0:2481", "listen address for /healthz, /readyz, /metrics",
     [](const std::string& v, const std::string& w, ServerConfig& c) {
       return ApplyHostPort(v, w, c.http_addr);
     }},
    {"advertise-host", "HOST", "own peer address", "name peers and clients use for this member",
     [](const std::string& v, const std::string&, ServerConfig& c) {
       c.advertise_host = v;
       return absl::OkStatus();
     }},
    {"peers", "NAME=HOST:PORT,...", "", "every initial member's peer address (outside Kubernetes)",
     [](const std::string& v, const std::string& w, ServerConfig& c) {
       STEAD_ASSIGN_OR_RETURN(c.peers, Annotate(ParsePeerList(v), w));
       return absl::OkStatus();
     }},
    {"peer-service", "NAME", "", "headless Service of the StatefulSet (in Kubernetes)",
     [](const std::string& v, const std::string&, ServerConfig& c) {
       c.peer_service = v;
       return absl::OkStatus();
     }},
    {"namespace", "NAME", "$POD_NAMESPACE or default", "Kubernetes namespace of the pods",
     [](const std::string& v, const std::string&, ServerConfig& c) {
       c.namespace_name = v;
       return absl::OkStatus();
     }},
    {"cluster-domain", "DOMAIN", "cluster.local", "Kubernetes cluster DNS domain",
     [](const std::string& v, const std::string&, ServerConfig& c) {
       c.cluster_domain = v;
       return absl::OkStatus();
     }},
    {"initial-cluster-size", "N", "3",
     "ordinals below N bootstrap the cluster; higher ones join as learners",
     [](const std::string& v, const std::string& w, ServerConfig& c) {
       STEAD_ASSIGN_OR_RETURN(c.initial_cluster_size, ParsePositiveInt(v, w));
       return absl::OkStatus();
     }},
    {"restore-from", "FILE", "",
     "first start with empty volumes: restore this backup file as the first member of a new "
     "cluster (ignored once the volumes are in use)",
     [](const std::string& v, const std::string&, ServerConfig& c) {
       c.restore_from = v;
       return absl::OkStatus();
     }},
    {"force-new-cluster", "NAME", "",
     "disaster recovery: if NAME is this member, restart it from its volumes as the only "
     "voter of its cluster, committing its whole log (see README)",
     [](const std::string& v, const std::string&, ServerConfig& c) {
       c.force_new_cluster = v;
       return absl::OkStatus();
     }},
    {"new-cluster-identity", "TOKEN", "",
     "for clones: the member belongs to the cluster born under TOKEN ([A-Za-z0-9._-], at "
     "most 63); empty volumes record it, volumes of another cluster are re-identified into "
     "a new cluster (docs/clone.md)",
     [](const std::string& v, const std::string& w, ServerConfig& c) {
       STEAD_RETURN_IF_ERROR(ValidateIdentityToken(v, w));
       c.new_cluster_identity = v;
       return absl::OkStatus();
     }},
    {"log-level", "LEVEL", "info", "debug, info, warning or error",
     [](const std::string& v, const std::string& w, ServerConfig& c) {
       STEAD_ASSIGN_OR_RETURN(c.log_level, Annotate(ParseLogLevel(v), w));
       return absl::OkStatus();
     }},
    {"tick-interval", "DURATION", "100ms", "length of one Raft tick",
     [](const std::string& v, const std::string& w, ServerConfig& c) {
       STEAD_ASSIGN_OR_RETURN(c.tick_interval, ParsePositiveDuration(v, w));
       return absl::OkStatus();
     }},
    {"election-ticks", "N", "10", "election timeout in ticks (randomized up to twice that)",
     [](const std::string& v, const std::string& w, ServerConfig& c) {
       STEAD_ASSIGN_OR_RETURN(c.election_ticks, ParsePositiveInt(v, w));
       return absl::OkStatus();
     }},
    {"heartbeat-ticks", "N", "1", "leader heartbeat interval in ticks",
     [](const std::string& v, const std::string& w, ServerConfig& c) {
       STEAD_ASSIGN_OR_RETURN(c.heartbeat_ticks, ParsePositiveInt(v, w));
       return absl::OkStatus();
     }},
    {"shutdown-timeout", "DURATION", "30s",
     "on SIGTERM: bound on leadership transfer, draining and closing storage",
     [](const std::string& v, const std::string& w, ServerConfig& c) {
       STEAD_ASSIGN_OR_RETURN(c.shutdown_timeout, ParsePositiveDuration(v, w));
       return absl::OkStatus();
     }},
    {"promote-learners", "auto|manual", "auto",
     "auto: the leader promotes caught-up learners; manual: only steadctl member promote",
     [](const std::string& v, const std::string& w, ServerConfig& c) {
       if (v != "auto" && v != "manual") {
         return absl::InvalidArgumentError(absl::StrCat(w, ": '", v, "' is not auto or manual"));
       }
       c.auto_promote_learners = v == "auto";
       return absl::OkStatus();
     }},
    {"replace-silent-member-after", "DURATION", "30s",
     "a member that comes back under a running member's name with empty volumes replaces it "
     "only once the leader has not heard from the old one for this long (or after steadctl "
     "member remove)",
     [](const std::string& v, const std::string& w, ServerConfig& c) {
       STEAD_ASSIGN_OR_RETURN(c.replace_silent_member_after, ParsePositiveDuration(v, w));
       return absl::OkStatus();
     }},
    {"watch-history-revisions", "N", "100000",
     "watches can start this many revisions back (at least); the same on every member",
     [](const std::string& v, const std::string& w, ServerConfig& c) {
       int revisions = 0;
       STEAD_ASSIGN_OR_RETURN(revisions, ParsePositiveInt(v, w));
       c.watch_history_revisions = revisions;
       return absl::OkStatus();
     }},
    {"watch-history-age", "DURATION", "0 (no limit)",
     "also drop watch history older than this (log time); the same on every member",
     [](const std::string& v, const std::string& w, ServerConfig& c) {
       if (v == "0") {
         c.watch_history_age = absl::ZeroDuration();
         return absl::OkStatus();
       }
       STEAD_ASSIGN_OR_RETURN(c.watch_history_age, ParsePositiveDuration(v, w));
       return absl::OkStatus();
     }},
    {"snapshot-entries", "N", "50000",
     "take a checkpoint every N applied entries; the log keeps the entries after the one "
     "before it",
     [](const std::string& v, const std::string& w, ServerConfig& c) {
       int entries = 0;
       STEAD_ASSIGN_OR_RETURN(entries, ParsePositiveInt(v, w));
       c.snapshot_entries = entries;
       return absl::OkStatus();
     }},
    {"memory-limit", "BYTES", "0 (RocksDB's defaults)",
     "memory this member may use, e.g. 268435456 or 256Mi (in Kubernetes the container's "
     "limits.memory); RocksDB's block cache and memtables are held to half of it",
     [](const std::string& v, const std::string& w, ServerConfig& c) {
       STEAD_ASSIGN_OR_RETURN(c.memory_limit_bytes, ParseMemoryLimit(v, w));
       return absl::OkStatus();
     }},
    {"io-threads", "N", "half the CPUs this process may use, 1 to 8",
     "threads that run the raft core and the client, peer and HTTP ports (the applier and "
     "the WAL have their own); the CPUs count the cgroup's CPU quota",
     [](const std::string& v, const std::string& w, ServerConfig& c) {
       STEAD_ASSIGN_OR_RETURN(c.io_threads, ParsePositiveInt(v, w));
       if (c.io_threads > 64) {
         return absl::InvalidArgumentError(absl::StrCat(w, ": '", v, "' is above 64"));
       }
       return absl::OkStatus();
     }},
    {"max-response-bytes", "BYTES", "4Mi",
     "most bytes of keys and values in one page of a range read, e.g. 4194304 or 4Mi "
     "(1Ki..32Mi); a page holds at least one pair, and the client continues with the next",
     [](const std::string& v, const std::string& w, ServerConfig& c) {
       STEAD_ASSIGN_OR_RETURN(c.max_response_bytes, ParseMaxResponseBytes(v, w));
       return absl::OkStatus();
     }},
    {"max-client-connections", "N", "from the open file limit",
     "connections the client port holds at once; when it is full a new one closes the one "
     "idle longest (of the address holding the most)",
     [](const std::string& v, const std::string& w, ServerConfig& c) {
       int connections = 0;
       STEAD_ASSIGN_OR_RETURN(connections, ParsePositiveInt(v, w));
       c.max_client_connections = static_cast<size_t>(connections);
       return absl::OkStatus();
     }},
    {"client-idle-timeout", "DURATION", "5m",
     "close a client connection with nothing in flight (no request, watch or snapshot save) "
     "for this long; clients reconnect when they need to",
     [](const std::string& v, const std::string& w, ServerConfig& c) {
       STEAD_ASSIGN_OR_RETURN(c.client_idle_timeout, ParsePositiveDuration(v, w));
       return absl::OkStatus();
     }},
    {"client-read-timeout", "DURATION", "10s",
     "close a client connection whose request frame, once started, does not arrive whole "
     "within this long",
     [](const std::string& v, const std::string& w, ServerConfig& c) {
       STEAD_ASSIGN_OR_RETURN(c.client_read_timeout, ParsePositiveDuration(v, w));
       return absl::OkStatus();
     }},
    {"snapshot-send-rate", "MB/s", "0 (no limit)",
     "rate limit of one Raft snapshot sent to a follower",
     [](const std::string& v, const std::string& w, ServerConfig& c) {
       if (v == "0") {
         c.snapshot_send_mb_per_second = 0;
         return absl::OkStatus();
       }
       int rate = 0;
       STEAD_ASSIGN_OR_RETURN(rate, ParsePositiveInt(v, w));
       c.snapshot_send_mb_per_second = rate;
       return absl::OkStatus();
     }},
    // TLS, each port on its own (etcd's names). See server/README.md, "TLS".
    {"client-cert-file", "FILE", "", "client port: PEM certificate (chain) of this member; setting it makes the port speak TLS only",
     [](const std::string& v, const std::string&, ServerConfig& c) {
       c.client_tls.cert_file = v;
       return absl::OkStatus();
     }},
    {"client-key-file", "FILE", "", "client port: PEM private key of --client-cert-file",
     [](const std::string& v, const std::string&, ServerConfig& c) {
       c.client_tls.key_file = v;
       return absl::OkStatus();
     }},
    {"client-trusted-ca-file", "FILE", "",
     "client port: PEM CA certificates that issue client certificates (verified when presented)",
     [](const std::string& v, const std::string&, ServerConfig& c) {
       c.client_tls.trusted_ca_file = v;
       return absl::OkStatus();
     }},
    {"client-cert-auth", "BOOL", "false",
     "client port: refuse clients without a certificate from --client-trusted-ca-file",
     [](const std::string& v, const std::string& w, ServerConfig& c) {
       STEAD_ASSIGN_OR_RETURN(c.client_tls.require_peer_certificate, ParseBool(v, w));
       return absl::OkStatus();
     },
     true},
    {"peer-cert-file", "FILE", "",
     "peer port: PEM certificate (chain) of this member, naming its advertised host; setting "
     "it makes members speak mutual TLS (served, and presented when dialing peers)",
     [](const std::string& v, const std::string&, ServerConfig& c) {
       c.peer_tls.cert_file = v;
       return absl::OkStatus();
     }},
    {"peer-key-file", "FILE", "", "peer port: PEM private key of --peer-cert-file",
     [](const std::string& v, const std::string&, ServerConfig& c) {
       c.peer_tls.key_file = v;
       return absl::OkStatus();
     }},
    {"peer-trusted-ca-file", "FILE", "",
     "peer port: PEM CA certificates that issue the members' certificates (required with "
     "--peer-cert-file)",
     [](const std::string& v, const std::string&, ServerConfig& c) {
       c.peer_tls.trusted_ca_file = v;
       return absl::OkStatus();
     }},
    {"peer-cert-auth", "BOOL", "true with --peer-cert-file",
     "peer port: members always require each other's certificates under TLS; only true is "
     "accepted",
     ApplyPeerCertAuth, true},
    {"http-cert-file", "FILE", "",
     "HTTP port: PEM certificate (chain); setting it serves /healthz, /readyz and /metrics "
     "over HTTPS only",
     [](const std::string& v, const std::string&, ServerConfig& c) {
       c.http_tls.cert_file = v;
       return absl::OkStatus();
     }},
    {"http-key-file", "FILE", "", "HTTP port: PEM private key of --http-cert-file",
     [](const std::string& v, const std::string&, ServerConfig& c) {
       c.http_tls.key_file = v;
       return absl::OkStatus();
     }},
    {"http-trusted-ca-file", "FILE", "",
     "HTTP port: PEM CA certificates that issue client certificates (verified when presented)",
     [](const std::string& v, const std::string&, ServerConfig& c) {
       c.http_tls.trusted_ca_file = v;
       return absl::OkStatus();
     }},
    {"http-cert-auth", "BOOL", "false",
     "HTTP port: refuse clients without a certificate from --http-trusted-ca-file (probes "
     "then need one too)",
     [](const std::string& v, const std::string& w, ServerConfig& c) {
       STEAD_ASSIGN_OR_RETURN(c.http_tls.require_peer_certificate, ParseBool(v, w));
       return absl::OkStatus();
     },
     true},
    {"tls-transition", "BOOL", "false",
     "while switching a running cluster to or from TLS by rolling restarts: ports with TLS "
     "also accept plain connections, and this member falls back to plain to ports without "
     "TLS (docs/security.md); turn it off once every member has switched",
     [](const std::string& v, const std::string& w, ServerConfig& c) {
       STEAD_ASSIGN_OR_RETURN(c.tls_transition, ParseBool(v, w));
       return absl::OkStatus();
     },
     true},
};

const FlagSpec* FindFlag(absl::string_view name) {
  for (const FlagSpec& flag : kFlags) {
    if (name == flag.name) return &flag;
  }
  return nullptr;
}

// Each port's TLS settings, checked by reading the files as the port will: a missing
// file, a key that does not match, an expired certificate stop the start here with
// the flag named, before anything listens.
absl::Status ValidateTls(ServerConfig& config) {
  const absl::Time now = absl::Now();
  for (wire::TlsOptions* options : {&config.client_tls, &config.peer_tls, &config.http_tls}) {
    const bool any = !options->cert_file.empty() || !options->key_file.empty() ||
                     !options->trusted_ca_file.empty() || options->require_peer_certificate;
    if (!any) continue;
    if (options == &config.peer_tls) {
      if (options->trusted_ca_file.empty()) {
        return absl::InvalidArgumentError(absl::StrCat(
            options->names.trusted_ca_file, " is required with ", options->names.cert_file,
            ": members verify each other's certificates (mutual TLS) against it"));
      }
      options->require_peer_certificate = true;
    }
    STEAD_RETURN_IF_ERROR(wire::ValidateTlsOptions(*options, wire::TlsRole::kServer, now));
  }
  if (config.tls_transition) {
    bool any_tls = false;
    for (wire::TlsOptions* options : {&config.client_tls, &config.peer_tls, &config.http_tls}) {
      options->allow_plain = TlsEnabled(*options);
      any_tls = any_tls || options->allow_plain;
    }
    if (!any_tls) {
      return absl::InvalidArgumentError(
          "--tls-transition needs TLS on a port (--client-cert-file, --peer-cert-file or "
          "--http-cert-file): it lets those ports accept plain connections too while a "
          "cluster switches");
    }
  }
  return absl::OkStatus();
}

absl::Status Validate(ServerConfig& config) {
  if (config.name.empty()) {
    return absl::InvalidArgumentError(
        "--name (STEAD_NAME, or POD_NAME in Kubernetes) is required: the member name, "
        "e.g. stead-0");
  }
  STEAD_ASSIGN_OR_RETURN(const MemberName member, Annotate(ParseMemberName(config.name), "--name"));
  if (config.data_dir.empty()) {
    return absl::InvalidArgumentError("--data-dir (STEAD_DATA_DIR) is required");
  }
  if (config.wal_dir.empty()) {
    return absl::InvalidArgumentError("--wal-dir (STEAD_WAL_DIR) is required");
  }
  if (config.data_dir == config.wal_dir) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--data-dir and --wal-dir are both ", config.data_dir,
        ": the Raft log and the state machine need separate directories (volumes)"));
  }
  if (config.peers.empty() == config.peer_service.empty()) {
    return absl::InvalidArgumentError(
        config.peers.empty()
            ? "give --peers name=host:port,... (outside Kubernetes) or --peer-service NAME "
              "(in a StatefulSet)"
            : "--peers and --peer-service exclude each other: use one");
  }
  if (!config.peers.empty()) {
    if (config.initial_cluster_size > static_cast<int>(config.peers.size())) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--initial-cluster-size ", config.initial_cluster_size, " but --peers lists only ",
          config.peers.size(), " members"));
    }
    const bool listed = std::any_of(config.peers.begin(), config.peers.end(),
                                    [&](const PeerSpec& peer) { return peer.name == config.name; });
    if (!listed && member.ordinal < config.initial_cluster_size) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--name ", config.name, " is an initial member (ordinal below --initial-cluster-size ",
          config.initial_cluster_size, ") but is missing from --peers"));
    }
  }
  if (!config.new_cluster_identity.empty() &&
      (!config.restore_from.empty() || !config.force_new_cluster.empty())) {
    // Each of them decides on its own what the volumes become: a restore seeds a new
    // cluster from a file, --force-new-cluster keeps this cluster and its log, a
    // re-identification makes a new cluster of the data volume's state.
    return absl::InvalidArgumentError(absl::StrCat(
        "--new-cluster-identity excludes ",
        config.restore_from.empty() ? "--force-new-cluster" : "--restore-from",
        ": re-identify a cloned volume, restore a backup or force a new cluster, one at a "
        "time"));
  }
  if (config.heartbeat_ticks >= config.election_ticks) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--heartbeat-ticks (", config.heartbeat_ticks, ") must be below --election-ticks (",
        config.election_ticks, "); the usual ratio is 1:10"));
  }
  if (config.advertise_host.empty()) config.advertise_host = config.PeerAddressOf(member).host;
  return ValidateTls(config);
}

}  // namespace

std::string HostPort::ToString() const {
  const bool v6 = host.find(':') != std::string::npos;
  return absl::StrCat(v6 ? "[" : "", host, v6 ? "]" : "", ":", port);
}

absl::StatusOr<HostPort> ParseHostPort(const std::string& text, const std::string& what,
                                       const std::string& default_host) {
  const size_t colon = text.rfind(':');
  auto invalid = [&](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": '", text, "' is not host:port (", why, ")"));
  };
  if (colon == std::string::npos) return invalid("no port");
  absl::string_view host_text = absl::string_view(text).substr(0, colon);
  if (absl::ConsumePrefix(&host_text, "[") && !absl::ConsumeSuffix(&host_text, "]")) {
    return invalid("unbalanced brackets");
  }
  std::string host = host_text.empty() ? default_host : std::string(host_text);
  uint32_t port = 0;
  if (!absl::SimpleAtoi(text.substr(colon + 1), &port) || port == 0 || port > 65535) {
    return invalid("port must be 1-65535");
  }
  return HostPort{host, static_cast<uint16_t>(port)};
}

absl::Status ValidateIdentityToken(const std::string& token, const std::string& what) {
  if (token.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " is empty: give the token of the clone (e.g. its name)"));
  }
  if (token.size() > kMaxIdentityTokenBytes) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": the token has ", token.size(),
                                                   " characters, more than ",
                                                   kMaxIdentityTokenBytes));
  }
  for (const char c : token) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-') {
      return absl::InvalidArgumentError(absl::StrCat(
          what, ": '", token, "' holds '", std::string(1, c),
          "'; a token has only letters, digits, '.', '_' and '-' (e.g. the clone's name)"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<MemberName> ParseMemberName(const std::string& name) {
  const size_t dash = name.rfind('-');
  int ordinal = -1;
  if (dash == std::string::npos || dash == 0 ||
      !absl::SimpleAtoi(name.substr(dash + 1), &ordinal) || ordinal < 0 ||
      name.substr(dash + 1) != std::to_string(ordinal)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "member name '", name, "' is not <statefulset>-<ordinal> (e.g. stead-0)"));
  }
  // The StatefulSet name is a DNS label: lowercase letters, digits and '-', starting and
  // ending with a letter or digit.
  const std::string set = name.substr(0, dash);
  const bool valid_label =
      set.size() <= 63 && absl::ascii_isalnum(static_cast<unsigned char>(set.front())) &&
      absl::ascii_isalnum(static_cast<unsigned char>(set.back())) &&
      std::all_of(set.begin(), set.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
      });
  if (!valid_label) {
    return absl::InvalidArgumentError(absl::StrCat(
        "member name '", name, "' is not <statefulset>-<ordinal> with a DNS-label set name"));
  }
  return MemberName{set, ordinal};
}

absl::StatusOr<std::vector<PeerSpec>> ParsePeerList(const std::string& text) {
  std::vector<PeerSpec> peers;
  std::set<std::string> names;
  std::map<std::string, std::string> name_of_address;
  for (absl::string_view item : absl::StrSplit(text, ',', absl::SkipWhitespace())) {
    const std::vector<std::string> parts = absl::StrSplit(absl::StripAsciiWhitespace(item), '=');
    if (parts.size() != 2 || parts[0].empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("peer '", item, "' is not name=host:port"));
    }
    STEAD_ASSIGN_OR_RETURN(HostPort address,
                           ParseHostPort(parts[1], absl::StrCat("peer ", parts[0]), ""));
    if (address.host.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("peer ", parts[0], " has no host"));
    }
    if (!names.insert(parts[0]).second) {
      return absl::InvalidArgumentError(absl::StrCat("peer ", parts[0], " is listed twice"));
    }
    // Two names at one address would be one process answering for two members: every
    // hello to the second would reach the first and be refused.
    const auto [other, added] = name_of_address.emplace(address.ToString(), parts[0]);
    if (!added) {
      return absl::InvalidArgumentError(absl::StrCat("peers ", other->second, " and ", parts[0],
                                                     " have the same address ",
                                                     address.ToString(), ": give each its own"));
    }
    peers.push_back(PeerSpec{parts[0], std::move(address)});
  }
  if (peers.empty()) return absl::InvalidArgumentError("the peer list is empty");
  return peers;
}

HostPort ServerConfig::PeerAddressOf(const MemberName& member) const {
  const std::string member_name = absl::StrCat(member.set, "-", member.ordinal);
  for (const PeerSpec& peer : peers) {
    if (peer.name == member_name) return peer.address;
  }
  return HostPort{absl::StrCat(member_name, ".", peer_service, ".", namespace_name, ".svc.",
                               cluster_domain),
                  peer_addr.port};
}

EnvLookup ProcessEnvironment() {
  return [](const std::string& name) -> std::optional<std::string> {
    const char* value = std::getenv(name.c_str());
    if (value == nullptr) return std::nullopt;
    return std::string(value);
  };
}

absl::StatusOr<ParsedCommandLine> ParseServerCommandLine(const std::vector<std::string>& args,
                                                         const EnvLookup& env) {
  ParsedCommandLine parsed;
  // --help and --version anywhere win over everything else, mistakes included.
  for (const std::string& arg : args) {
    parsed.help = parsed.help || arg == "--help" || arg == "-h";
    parsed.version = parsed.version || arg == "--version";
  }
  if (parsed.help || parsed.version) return parsed;

  std::map<std::string, std::string> given;  // flag name -> value from the command line
  for (size_t i = 0; i < args.size(); ++i) {
    absl::string_view arg = args[i];
    if (!absl::ConsumePrefix(&arg, "--")) {
      return absl::InvalidArgumentError(
          absl::StrCat("unexpected argument '", arg, "' (see stead --help)"));
    }
    const size_t equals = arg.find('=');
    const std::string name(arg.substr(0, equals));
    if (FindFlag(name) == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag --", name, " (see stead --help)"));
    }
    std::string value;
    if (equals != absl::string_view::npos) {
      value = std::string(arg.substr(equals + 1));
    } else if (FindFlag(name)->boolean) {
      value = "true";  // a switch takes no separate value: --client-cert-auth
    } else if (i + 1 < args.size()) {
      value = args[++i];
    } else {
      return absl::InvalidArgumentError(absl::StrCat("flag --", name, " needs a value"));
    }
    if (!given.emplace(name, value).second) {
      return absl::InvalidArgumentError(absl::StrCat("flag --", name, " given twice"));
    }
  }

  ServerConfig& config = parsed.config;
  if (auto pod_name = env("POD_NAME")) config.name = *pod_name;
  if (auto pod_namespace = env("POD_NAMESPACE")) config.namespace_name = *pod_namespace;
  for (const FlagSpec& flag : kFlags) {
    std::string what = absl::StrCat("--", flag.name);
    std::optional<std::string> value;
    if (auto it = given.find(flag.name); it != given.end()) {
      value = it->second;
    } else if ((value = env(EnvName(flag.name)))) {
      what = EnvName(flag.name);
    }
    if (value) STEAD_RETURN_IF_ERROR(flag.apply(*value, what, config));
  }
  STEAD_RETURN_IF_ERROR(Validate(config));
  return parsed;
}

std::string ServerUsage() {
  std::string usage =
      "stead: a member of a stead cluster (replicated key-value store).\n\n"
      "usage: stead --name NAME --data-dir DIR --wal-dir DIR (--peers LIST | --peer-service SVC) "
      "[flags]\n\n"
      "Each flag may also be set with the environment variable shown.\n\n";
  for (const FlagSpec& flag : kFlags) {
    absl::StrAppend(&usage, "  --", flag.name, "=", flag.value_name, "\n      ", flag.help,
                    "\n      default: ", *flag.default_text ? flag.default_text : "(none)",
                    "; env: ", EnvName(flag.name), "\n");
  }
  absl::StrAppend(&usage,
                  "  --help       print this text\n"
                  "  --version    print the version\n\n"
                  "Exit status: 0 after a clean shutdown, 2 for a configuration error, 1 for a "
                  "runtime failure (the log says what to do).\n");
  return usage;
}

}  // namespace stead::server
