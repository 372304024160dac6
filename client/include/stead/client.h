// stead::Client — the C++ client of a stead cluster.
//
// A Client talks to the members listed in ClientOptions::endpoints over a few TCP
// connections, with many requests in flight on each (answers are matched by request
// id). It finds the leader, follows leader hints, reconnects after a lost connection
// and retries a failed attempt on the next member until the call's deadline:
//
//   stead::ClientOptions options;
//   options.endpoints = {"127.0.0.1:2479", "127.0.0.1:2489", "127.0.0.1:2499"};
//   absl::StatusOr<std::unique_ptr<stead::Client>> client = stead::Client::Create(options);
//   if (!client.ok()) return client.status();
//   STEAD_RETURN_IF_ERROR((*client)->Put("greeting", "hello"));
//   absl::StatusOr<std::optional<std::string>> value = (*client)->Get("greeting");
//
// Retries are safe. Every write carries a client id and a sequence number and every
// attempt of one write reuses the pair, so the cluster applies it at most once and a
// retry receives the first attempt's answer. The cluster keeps one sequence per client
// id, so the Client holds a pool of random client ids ("sessions") and gives each
// write in flight its own.
//
// Errors (absl::Status codes, as in STYLE.md):
//   InvalidArgument    malformed request, key or value over the server's limits
//   Unavailable        no member answered or none knows a leader, until the deadline
//   DeadlineExceeded   the call's deadline passed; a write's outcome is unknown
//   ResourceExhausted  too many calls in flight (ClientOptions::max_inflight_calls)
//   NotFound           MemberRemove: no such member
//   FailedPrecondition the cluster refused the request as asked (see the message)
//   Cancelled          the Client was destroyed with the call in flight
// A missing key is not an error: Get returns an empty optional.
//
// Thread-safety: every method may be called from any thread at once. Callbacks of the
// *Async methods run on the client's I/O threads: they must not block and must not
// destroy the Client.
#ifndef STEAD_CLIENT_H_
#define STEAD_CLIENT_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "stead/options.h"

namespace stead {

// A key with its value and history counters.
struct KeyValue {
  std::string key;
  std::string value;            // empty with RangeOptions::keys_only
  int64_t create_revision = 0;  // revision of the write that created the key
  int64_t mod_revision = 0;     // revision of the last write to the key
  int64_t version = 0;          // writes since creation; 1 after the first put
};

struct RangeResult {
  std::vector<KeyValue> kvs;  // in ascending key order
  // More keys exist in the range after the last one returned: call Range again with
  // `next_key` as the begin key (same range_end) to continue.
  bool more = false;
  std::string next_key;
  int64_t count = 0;     // keys in the range, as counted by the server (bounded)
  int64_t revision = 0;  // store revision the answer reflects
};

// One member of the cluster.
struct Member {
  uint64_t id = 0;
  std::string name;            // e.g. "stead-0"
  std::string peer_address;    // "host:port"
  std::string client_address;  // "host:port"
  bool is_learner = false;
  bool is_leader = false;
  // Reported by the leader: the highest log index known replicated on the member.
  uint64_t match_index = 0;
};

// The end of a prefix scan: the smallest key greater than every key starting with
// `prefix`; "\0" (every key) for an empty prefix or one of only 0xff bytes.
std::string PrefixEnd(std::string_view prefix);

class Client {
 public:
  template <typename T>
  using Callback = std::function<void(absl::StatusOr<T>)>;

  // Starts the I/O threads; connects lazily on the first call. InvalidArgument for no
  // endpoints, an endpoint that is not "host:port", or an option out of range.
  static absl::StatusOr<std::unique_ptr<Client>> Create(ClientOptions options);

  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;
  // Closes the connections; calls still in flight end with Cancelled (their callbacks
  // run before the destructor returns, or never if they do not finish within a second).
  // Must not run on one of the client's I/O threads.
  ~Client();

  // ---- Blocking calls: wait for the answer or the deadline. ----

  // The value of `key`; std::nullopt when it does not exist.
  absl::StatusOr<std::optional<std::string>> Get(std::string_view key, GetOptions options = {});
  // Sets `key` to `value`; OK once committed and applied by the leader.
  absl::Status Put(std::string_view key, std::string_view value, CallOptions options = {});
  // Deletes `key`; whether it existed.
  absl::StatusOr<bool> Delete(std::string_view key, CallOptions options = {});
  // Keys from `begin` (see RangeOptions), one page of at most options.limit keys.
  absl::StatusOr<RangeResult> Range(std::string_view begin, RangeOptions options = {});
  // Every key starting with `prefix`, one page of at most `limit` keys (0: the
  // server's maximum); continue with Range(result.next_key, {.range_end = PrefixEnd(prefix)}).
  absl::StatusOr<RangeResult> Scan(std::string_view prefix, int64_t limit = 0,
                                   GetOptions options = {});
  // The members as the answering member knows them; is_leader set on the leader.
  absl::StatusOr<std::vector<Member>> MemberList(CallOptions options = {});
  // Removes the member with this name (or id): the configuration afterwards. NotFound
  // for an unknown member.
  absl::StatusOr<std::vector<Member>> MemberRemoveByName(std::string_view name,
                                                         CallOptions options = {});
  absl::StatusOr<std::vector<Member>> MemberRemoveById(uint64_t id, CallOptions options = {});

  // ---- Asynchronous calls: `done` runs exactly once, on an I/O thread. ----

  void GetAsync(std::string_view key, GetOptions options,
                Callback<std::optional<std::string>> done);
  void PutAsync(std::string_view key, std::string_view value, CallOptions options,
                std::function<void(absl::Status)> done);
  void DeleteAsync(std::string_view key, CallOptions options, Callback<bool> done);
  void RangeAsync(std::string_view begin, RangeOptions options, Callback<RangeResult> done);
  void MemberListAsync(CallOptions options, Callback<std::vector<Member>> done);

  // The leader's client address as last learned; empty when unknown.
  std::string LeaderAddressForTesting() const;

 private:
  class Impl;
  explicit Client(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace stead

#endif  // STEAD_CLIENT_H_
