// Options of stead::Client and of its calls. Plain values; see client.h.
#ifndef STEAD_OPTIONS_H_
#define STEAD_OPTIONS_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/time/time.h"

namespace stead {

// TLS to the members' client ports (their --client-cert-file and related flags).
// Every connection verifies the member's certificate chain and that the certificate
// names the host of the endpoint dialed (or server_name). A certificate refused by
// either side, or a member that does not speak TLS, fails the connection with
// FailedPrecondition saying why: retrying cannot help until the configuration changes.
struct ClientTlsOptions {
  // Speak TLS to the members. Implied when any file below is set. Default: false.
  bool enabled = false;
  // PEM file of the CA certificates that issue the members' certificates.
  // Default: empty (the system's CA store).
  std::string trusted_ca_file = {};
  // PEM files of this client's certificate and its unencrypted key, presented when the
  // members require client certificates (--client-cert-auth). Both or neither.
  // Default: empty (no client certificate).
  std::string cert_file = {};
  std::string key_file = {};
  // The name every member's certificate must hold, instead of each endpoint's host:
  // for endpoints given as IP addresses whose certificates name only the Service.
  // Default: empty (the endpoint's host).
  std::string server_name = {};
};

struct ClientOptions {
  // Members to talk to, "host:port" of their client ports (a pod list, or one client
  // Service). Leader hints may add the leader's advertised address. Required, non-empty.
  std::vector<std::string> endpoints;
  // Deadline of a call whose CallOptions set none: the whole call, retries included.
  // Default: 5 s.
  absl::Duration default_timeout = absl::Seconds(5);
  // Longest single attempt; after it the call is retried (a write with the same client
  // id and sequence) on the next member while its deadline allows. Default: 2 s.
  absl::Duration attempt_timeout = absl::Seconds(2);
  // Longest TCP connect to one member. Default: 1 s.
  absl::Duration connect_timeout = absl::Seconds(1);
  // Pause before retrying after an error without a leader hint; doubles per attempt up
  // to max_backoff. Default: 20 ms, up to 500 ms.
  absl::Duration initial_backoff = absl::Milliseconds(20);
  absl::Duration max_backoff = absl::Milliseconds(500);
  // TCP connections per member; requests are pipelined on each and spread over them.
  // Default: 1.
  int connections_per_endpoint = 1;
  // Threads running the network loop and the callbacks of asynchronous calls.
  // Default: 1.
  int io_threads = 1;
  // Send writes and linearizable reads to the leader once it is known (from a leader
  // hint or a member list), saving the forwarding hop. When false every request goes
  // to the endpoints round-robin and a member that is not the leader forwards it.
  // Default: true.
  bool route_to_leader = true;
  // Calls in flight at once; one more fails at once with ResourceExhausted.
  // Default: 65536.
  size_t max_inflight_calls = 65536;
  // Largest response frame accepted; a bigger one closes the connection.
  // Default: 64 MiB.
  uint32_t max_frame_bytes = 64u << 20;
  // TLS to the members' client ports. Default: off (plain TCP).
  ClientTlsOptions tls = {};
  // With auth enabled on the cluster (docs/security.md): the user, and its password
  // or a file holding it (its first line). The client exchanges them for a token
  // (`authenticate`) before its first call, attaches it to every request, and gets a
  // new one when it expires or a member answers UNAUTHENTICATED. While auth is off
  // the client sends no token. Without a user, a client certificate (tls.cert_file)
  // may be the identity. Default: empty (no user).
  std::string user = {};
  std::string password = {};
  std::string password_file = {};
};

// Options common to every call.
struct CallOptions {
  // The whole call's deadline, retries included; zero means
  // ClientOptions::default_timeout. Default: zero.
  absl::Duration timeout = absl::ZeroDuration();
};

struct GetOptions {
  // Serve from whichever member answers, from its local state (may be stale) instead
  // of a linearizable read confirmed by the leader. Default: false.
  bool serializable = false;
  // As CallOptions::timeout. Default: zero (the client's default).
  absl::Duration timeout = absl::ZeroDuration();
};

struct RangeOptions {
  // Keys in [begin, range_end). Empty: the single key `begin`; "\0" (one NUL byte):
  // every key >= begin. PrefixEnd(prefix) gives the end of a prefix scan.
  // Default: empty.
  std::string range_end;
  // At most this many keys in one result; 0 means the server's maximum. When more keys
  // exist, RangeResult::more is set and next_key continues the scan; a result may hold
  // fewer keys, as a page also ends at the member's --max-response-bytes. Default: 0.
  int64_t limit = 0;
  // Keys and counters without values. Default: false.
  bool keys_only = false;
  // As GetOptions::serializable. Default: false.
  bool serializable = false;
  // As CallOptions::timeout. Default: zero (the client's default).
  absl::Duration timeout = absl::ZeroDuration();
};

}  // namespace stead

#endif  // STEAD_OPTIONS_H_
