// A small blocking client of the client port for tests, and a minimal HTTP GET for the
// health and metrics endpoints.
//
// KvTestClient speaks the frame protocol (server/frame.h) directly: one request at a
// time, one connection per endpoint, every call bounded by its timeout. Single-attempt
// calls (Put, Get, Delete) show a test exactly what one member answered; the
// *WithRetry calls follow leader hints and rotate through the endpoints, for tests
// where retries are allowed.
//
//   KvTestClient client({"127.0.0.1:24790", "127.0.0.1:24791", "127.0.0.1:24792"});
//   ASSERT_OK(client.PutWithRetry("colour", "blue", absl::Seconds(10)));
//   absl::Status status = client.Put("colour", "red", absl::Seconds(1), /*endpoint=*/2);
//   if (absl::IsUnavailable(status)) hint = LeaderHintOf(status);  // "127.0.0.1:24790"
#ifndef STEAD_TESTS_TESTING_KV_TEST_CLIENT_H_
#define STEAD_TESTS_TESTING_KV_TEST_CLIENT_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "proto/kv.pb.h"

namespace stead::testing {

// Status payload type URL under which KvTestClient stores the leader hint of an
// UNAVAILABLE answer.
inline constexpr char kLeaderHintPayloadUrl[] = "type.stead/stead.testing.LeaderHint";

// The leader's client address ("host:port") carried by `status`, from a member that
// answered UNAVAILABLE because it is not the leader and knew who is; std::nullopt
// otherwise.
std::optional<std::string> LeaderHintOf(const absl::Status& status);

// The status a pb::Error describes: its code (Unknown for a value that is not an
// absl::StatusCode) and message, with the leader hint as a payload when
// leader_address is set.
absl::Status StatusFromError(const pb::Error& error);

struct KvGetOptions {
  // Serve from the member's local state (may be stale) instead of a linearizable read
  // through the leader. Default: false.
  bool serializable = false;
};

// Blocking client of the client port. Each call uses one connection per endpoint,
// opened on first use and reopened after any failure on it (a timed-out request's
// answer is never mistaken for the next one's: its connection is closed).
//
// Errors of a single attempt: the member's answer as StatusFromError (with its leader
// hint), Unavailable for a refused, reset or closed connection, DeadlineExceeded when
// `timeout` passed first (for a write: its outcome is unknown), InvalidArgument for an
// endpoint index out of range or an unparsable endpoint, Internal for an answer that
// does not fit the request.
//
// Writes carry this client's random client_id and a sequence that increases by one
// per new write; every attempt of one *WithRetry write reuses its pair.
//
// Not thread-safe: use one KvTestClient per thread.
class KvTestClient {
 public:
  // `endpoints` are "host:port" with an IPv4 or bracketed IPv6 address, or a host name
  // (resolved without a deadline: prefer addresses). Requires at least one endpoint.
  // The current endpoint starts at 0.
  explicit KvTestClient(std::vector<std::string> endpoints);
  KvTestClient(const KvTestClient&) = delete;
  KvTestClient& operator=(const KvTestClient&) = delete;
  ~KvTestClient();

  // Single attempts against endpoint `endpoint`, or the current endpoint when omitted.
  absl::Status Put(absl::string_view key, absl::string_view value, absl::Duration timeout,
                   std::optional<size_t> endpoint = std::nullopt);
  // The key's value, std::nullopt when it does not exist.
  absl::StatusOr<std::optional<std::string>> Get(absl::string_view key, KvGetOptions options,
                                                 absl::Duration timeout,
                                                 std::optional<size_t> endpoint = std::nullopt);
  // Whether the key existed (and was deleted).
  absl::StatusOr<bool> Delete(absl::string_view key, absl::Duration timeout,
                              std::optional<size_t> endpoint = std::nullopt);

  // Retrying versions: attempts until one succeeds, fails with a code other than
  // Unavailable or DeadlineExceeded, or `overall` has passed (then the last attempt's
  // error). After an Unavailable with a leader hint that names one of the endpoints,
  // the next attempt goes there at once; otherwise the next endpoint is tried after a
  // short pause. Each attempt gets at most `attempt_timeout` of what is left. The
  // current endpoint is left at the one that answered last.
  absl::Status PutWithRetry(absl::string_view key, absl::string_view value,
                            absl::Duration overall,
                            absl::Duration attempt_timeout = absl::Seconds(2));
  absl::StatusOr<std::optional<std::string>> GetWithRetry(
      absl::string_view key, KvGetOptions options, absl::Duration overall,
      absl::Duration attempt_timeout = absl::Seconds(2));
  absl::StatusOr<bool> DeleteWithRetry(absl::string_view key, absl::Duration overall,
                                       absl::Duration attempt_timeout = absl::Seconds(2));

  // One raw request/response exchange: sets request_id (and timeout_ms from
  // `timeout`) and returns the response with the same request_id, whether or not it
  // carries an error. The caller fills client_id and sequence if it wants them.
  absl::StatusOr<pb::ClientResponse> Call(pb::ClientRequest request, absl::Duration timeout,
                                          std::optional<size_t> endpoint = std::nullopt);

  size_t endpoint_count() const;
  size_t current_endpoint() const { return current_; }
  // Makes `endpoint` (taken modulo endpoint_count()) the current endpoint.
  void set_current_endpoint(size_t endpoint);
  // The index of the endpoint whose "host:port" equals `address`; nullopt if none.
  std::optional<size_t> EndpointIndexOf(absl::string_view address) const;

  uint64_t client_id() const { return client_id_; }
  // The sequence number the last write used (0 before the first).
  uint64_t last_sequence() const { return sequence_; }

  // Closes every open connection; the next call reconnects.
  void Disconnect();

 private:
  struct Connection;
  // What a write attempt carries: the same pair on every attempt of one write.
  struct WriteId {
    uint64_t client_id;
    uint64_t sequence;
  };
  WriteId NextWriteId();
  absl::StatusOr<pb::ClientResponse> Exchange(pb::ClientRequest request, absl::Duration timeout,
                                              std::optional<size_t> endpoint);
  absl::Status PutOnce(absl::string_view key, absl::string_view value, WriteId id,
                       absl::Duration timeout, std::optional<size_t> endpoint);
  absl::StatusOr<bool> DeleteOnce(absl::string_view key, WriteId id, absl::Duration timeout,
                                  std::optional<size_t> endpoint);
  // Runs `attempt(timeout, endpoint)` as described for the *WithRetry calls.
  template <typename Result, typename Attempt>
  Result Retry(absl::Duration overall, absl::Duration attempt_timeout, Attempt attempt);

  std::vector<std::unique_ptr<Connection>> connections_;  // one per endpoint
  size_t current_ = 0;
  const uint64_t client_id_;
  uint64_t sequence_ = 0;    // of the last write; the next new write uses sequence_ + 1
  uint64_t request_id_ = 0;  // of the last request on any connection
};

// The members as the cluster reports them (member_list through `client`'s current
// endpoint), by name; empty when that member does not answer in 2 s.
std::map<std::string, pb::Member> MembersByName(KvTestClient& client);

struct HttpResponse {
  int status_code = 0;
  std::string body;
};

// GET http://host:port/path over a fresh connection, bounded by `timeout`. Any HTTP
// status is a successful result; Unavailable when the connection fails or closes
// early, DeadlineExceeded when `timeout` passes, Internal for an unparsable answer or
// a body over 16 MiB.
absl::StatusOr<HttpResponse> HttpGet(const std::string& host, uint16_t port,
                                     const std::string& path, absl::Duration timeout);

}  // namespace stead::testing

#endif  // STEAD_TESTS_TESTING_KV_TEST_CLIENT_H_
