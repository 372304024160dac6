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
//   InvalidArgument    malformed request; a key, value or request over stead's limits
//                      (README, "Limits"), refused before anything is sent
//   Unavailable        no member answered or none knows a leader, until the deadline
//   DeadlineExceeded   the call's deadline passed; a write's outcome is unknown
//   ResourceExhausted  too many calls in flight (ClientOptions::max_inflight_calls)
//   NotFound           MemberRemove, MemberPromote, LeaderTransfer: no such member
//   FailedPrecondition the cluster refused the request as asked (see the message), e.g.
//                      a learner not caught up for MemberPromote
//   Cancelled          the Client was destroyed with the call in flight
//   PermissionDenied   auth is enabled and the user lacks the permission (not retried)
//   Unauthenticated    auth is enabled and the user, password or certificate is not
//                      accepted (not retried, but for one new token)
// A missing key is not an error: Get returns an empty optional; nor is a compare of a
// transaction that does not hold: Txn returns succeeded == false.
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

// What Client::LeaderTransfer did.
struct LeaderTransferResult {
  Member previous_leader;  // the member that handed leadership over
  Member leader;           // the leader now; the same member when it led already
};

// What Client::MemberPromote did.
struct MemberPromoteResult {
  std::vector<Member> members;  // the configuration afterwards
  bool already_voter = false;   // the member was a voter already: nothing changed
};

// The content hash of one member's state (Client::Hash): members that applied the same
// index have the same hash (FNV-1a 64 over every stored pair; storage/content_hash.h).
struct ContentHash {
  std::string endpoint;        // the member asked, "host:port"
  uint64_t member_id = 0;      // its Raft id
  uint64_t hash = 0;
  uint64_t applied_index = 0;  // the index the hash was computed at
  int64_t revision = 0;        // the store revision at that index
  uint64_t key_count = 0;      // pairs hashed (user keys and the service's own records)
};

// Auth management (docs/security.md). A permission: read or read-write access to the
// key `key`, or with range_end to [key, range_end) ("\0": every key >= key); a prefix
// is [prefix, PrefixEnd(prefix)).
struct Permission {
  enum class Type { kRead, kReadWrite };
  Type type = Type::kRead;
  std::string key = {};
  std::string range_end = {};
};
struct AuthUser {
  std::string name;
  std::vector<std::string> roles;
};
struct AuthRole {
  std::string name;
  std::vector<Permission> permissions;
};
struct AuthStatus {
  bool enabled = false;
  int64_t revision = 0;  // +1 with every change of users, roles or the switch
};

// One condition of a transaction (Client::Txn) on the key `key`, or with range_end on
// every key of [key, range_end) (it holds when it holds for each key of the range).
// Build one with the factories:
//   Compare::Value("k", Compare::Result::kEqual, "v")       the value of k is "v"
//   Compare::Version("k", Compare::Result::kGreater, 3)     k was written more than 3 times
//   Compare::ModRevision("k", Compare::Result::kLess, 812)  k last written before revision 812
//   Compare::Exists("k"), Compare::Missing("k")
// As in etcd, an absent key never satisfies a kValue compare (not even kNotEqual) and
// counts as 0 for kVersion, kCreateRevision and kModRevision (so Version == 0 holds
// exactly when the key is absent). Values compare as byte strings.
struct Compare {
  enum class Target { kValue, kVersion, kCreateRevision, kModRevision, kExists };
  enum class Result { kEqual, kNotEqual, kGreater, kLess };

  Target target = Target::kExists;
  // kExists takes only kEqual and kNotEqual (else the call fails with InvalidArgument).
  Result result = Result::kEqual;
  std::string key;
  // Empty: the single key; "\0": every key >= key; PrefixEnd(p): every key with prefix p.
  std::string range_end;
  std::string value;   // the operand of kValue
  int64_t number = 0;  // the operand of kVersion, kCreateRevision and kModRevision
  bool exists = true;  // the operand of kExists

  static Compare Value(std::string_view key, Result result, std::string_view value);
  static Compare Version(std::string_view key, Result result, int64_t version);
  static Compare CreateRevision(std::string_view key, Result result, int64_t revision);
  static Compare ModRevision(std::string_view key, Result result, int64_t revision);
  static Compare Exists(std::string_view key);
  static Compare Missing(std::string_view key);
  bool operator==(const Compare&) const = default;
};

// One operation of a transaction branch: TxnOp::Put("k", "v"), TxnOp::Delete("k"),
// TxnOp::Get("k"); Get and Delete take a range_end with the rules of
// RangeOptions::range_end.
struct TxnOp {
  enum class Kind { kGet, kPut, kDelete };

  Kind kind = Kind::kGet;
  std::string key;
  std::string value;      // kPut: the new value
  std::string range_end;  // kGet, kDelete: empty for the single key `key`
  int64_t limit = 0;      // kGet: at most this many keys; 0 means the server's maximum

  static TxnOp Get(std::string_view key, std::string_view range_end = {}, int64_t limit = 0);
  static TxnOp Put(std::string_view key, std::string_view value);
  static TxnOp Delete(std::string_view key, std::string_view range_end = {});
  bool operator==(const TxnOp&) const = default;
};

// If every compare holds, `success` runs, else `failure`; at most 128 entries in each
// list (the server's limit). The `{}` initializers let a designated initializer name
// only some lists (`{.compare = {...}, .success = {...}}`) under -Wextra.
struct TxnRequest {
  std::vector<Compare> compare = {};
  std::vector<TxnOp> success = {};
  std::vector<TxnOp> failure = {};
};

// The answer to one TxnOp, of the same kind.
struct TxnOpResult {
  TxnOp::Kind kind = TxnOp::Kind::kGet;
  // kGet: the keys read, as Client::Range answers them. A read sees the state before
  // the transaction with the branch's earlier writes applied over it.
  RangeResult range;
  int64_t deleted = 0;  // kDelete: how many keys it deleted
};

struct TxnResult {
  // Whether every compare held, that is whether `success` ran (else `failure` did).
  bool succeeded = false;
  // One per operation of the branch that ran, in its order.
  std::vector<TxnOpResult> responses;
  // The store revision after the transaction (unchanged by one that wrote nothing).
  int64_t revision = 0;
};

// One change of a watched key.
struct WatchEvent {
  enum class Type { kPut, kDelete };
  Type type = Type::kPut;
  // kPut: the pair after the write. kDelete: the key, and mod_revision = the revision
  // of the delete (the other counters 0).
  KeyValue kv;
};

struct WatchOptions {
  // The keys watched: `key` alone when empty, else [key, range_end) ("\0": every key
  // >= key); PrefixEnd(prefix) watches a prefix.
  std::string range_end;
  // The first revision delivered; 0: the changes after the current revision.
  int64_t start_revision = 0;
};

// Events of a watch, in revision order (key order within a revision), and the revision
// through which every change of the watched keys has now been delivered.
using WatchCallback =
    std::function<void(const std::vector<WatchEvent>& events, int64_t progress_revision)>;

class Watcher;

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
  // Keys from `begin` (see RangeOptions), one page of at most options.limit keys. A
  // page also ends before the member's --max-response-bytes of keys and values (with
  // at least one pair), so it may hold fewer keys than asked with `more` set: continue
  // from next_key until `more` is false.
  absl::StatusOr<RangeResult> Range(std::string_view begin, RangeOptions options = {});
  // Every key starting with `prefix`, one page as Range's of at most `limit` keys (0:
  // the server's maximum); continue with Range(result.next_key, {.range_end = PrefixEnd(prefix)}).
  absl::StatusOr<RangeResult> Scan(std::string_view prefix, int64_t limit = 0,
                                   GetOptions options = {});
  // The members as the answering member knows them; is_leader set on the leader.
  absl::StatusOr<std::vector<Member>> MemberList(CallOptions options = {});
  // Removes the member with this name (or id): the configuration afterwards. NotFound
  // for an unknown member.
  absl::StatusOr<std::vector<Member>> MemberRemoveByName(std::string_view name,
                                                         CallOptions options = {});
  absl::StatusOr<std::vector<Member>> MemberRemoveById(uint64_t id, CallOptions options = {});
  // Hands leadership to the voter named `to`, or with `to` empty to the most caught-up
  // voter the leader heard from recently; returns once the answering member follows
  // the new leader (later calls of this Client go straight to it). NotFound for an
  // unknown member; FailedPrecondition for a learner, a member the leader has not
  // heard from recently, or no voter to take over; Unavailable or DeadlineExceeded
  // when no handover was seen by the deadline. A call retried after a lost answer is
  // harmless with `to` (the target leads already: the result has previous_leader ==
  // leader); without it, leadership may move once more.
  absl::StatusOr<LeaderTransferResult> LeaderTransfer(std::string_view to = "",
                                                      CallOptions options = {});
  // Makes the learner `name` a voter now, rather than when the leader would promote it
  // (or never, on a cluster run with --promote-learners=manual). A voter already is
  // not an error: already_voter is set. NotFound for an unknown member;
  // FailedPrecondition when the learner is not caught up (the message gives its lag)
  // or the leader has not heard from it recently.
  absl::StatusOr<MemberPromoteResult> MemberPromote(std::string_view name,
                                                    CallOptions options = {});
  // Atomically, at one store revision: if every compare of `request` holds, runs its
  // `success` operations, else its `failure` operations. A compare that does not hold
  // is a result (succeeded == false), not an error. Every transaction, even one that
  // only reads, is a write to the cluster: it goes through the leader's log and is
  // applied exactly once, like Put, so a retried attempt receives the first attempt's
  // result. InvalidArgument for a malformed request (empty key, kExists with kGreater
  // or kLess, a list over the limit, a key or value over the server's limits).
  absl::StatusOr<TxnResult> Txn(const TxnRequest& request, CallOptions options = {});
  // Sets `key` to `new_value` if its value is `expected` (std::nullopt: if `key` does
  // not exist); whether it did. One Txn; the same errors.
  absl::StatusOr<bool> CompareAndSwap(std::string_view key,
                                      const std::optional<std::string>& expected,
                                      std::string_view new_value, CallOptions options = {});

  // The content hash of the state of the member at `endpoint` ("host:port", need not
  // be one of ClientOptions::endpoints), computed by that member over its own state at
  // its applied index; never answered by another member. Retried on the same member
  // until the deadline. InvalidArgument for an endpoint that is not host:port;
  // ResourceExhausted when the member is busy with other hash requests. Reads the
  // member's whole state: for checks and tests, not a hot path.
  absl::StatusOr<ContentHash> Hash(std::string_view endpoint, CallOptions options = {});

  // The token this client attaches to its requests (ClientOptions::user), getting one
  // first if it has none or it is about to expire: for a request sent on a connection
  // of one's own (steadctl's snapshot save). Empty without a user or while auth is
  // off. Unauthenticated for a wrong user or password.
  absl::StatusOr<std::string> AuthToken(CallOptions options = {});

  // ---- Auth management: every call needs the root role once auth is enabled. ----
  // Changes go through the leader's log; FailedPrecondition for a user or role that
  // does not exist (or already does), and for enabling auth without a user `root`
  // holding the role `root`. A user without a password can authenticate only with a
  // client certificate naming it. The role `root` is built in.
  absl::Status UserAdd(std::string_view name, std::string_view password, CallOptions options = {});
  absl::Status UserDelete(std::string_view name, CallOptions options = {});
  absl::Status UserChangePassword(std::string_view name, std::string_view password,
                                  CallOptions options = {});
  absl::Status UserGrantRole(std::string_view user, std::string_view role,
                             CallOptions options = {});
  absl::Status UserRevokeRole(std::string_view user, std::string_view role,
                              CallOptions options = {});
  absl::StatusOr<std::vector<AuthUser>> UserList(CallOptions options = {});
  absl::Status RoleAdd(std::string_view name, CallOptions options = {});
  absl::Status RoleDelete(std::string_view name, CallOptions options = {});
  // Grants `permission` (replacing the type of one on the same key and range).
  absl::Status RoleGrantPermission(std::string_view role, const Permission& permission,
                                   CallOptions options = {});
  absl::Status RoleRevokePermission(std::string_view role, std::string_view key,
                                    std::string_view range_end = "", CallOptions options = {});
  absl::StatusOr<std::vector<AuthRole>> RoleList(CallOptions options = {});
  absl::Status AuthEnable(CallOptions options = {});
  absl::Status AuthDisable(CallOptions options = {});
  absl::StatusOr<AuthStatus> GetAuthStatus(CallOptions options = {});

  // Watches `key` (or the range of options.range_end) from options.start_revision:
  // `on_events` receives every change exactly once, in revision order, on an I/O
  // thread, one batch at a time. A lost connection, a member that stops or a watch the
  // member cancelled as too slow is resumed transparently on another member from the
  // last progress revision, retrying until the Watcher is destroyed. The watch ends,
  // with `on_end(status)`, only when it cannot go on: OutOfRange when the revision to
  // resume from is compacted (the message names the oldest available), InvalidArgument
  // for a malformed range, or DataLoss. The Watcher must be destroyed before the Client.
  std::unique_ptr<Watcher> Watch(std::string_view key, WatchOptions options,
                                 WatchCallback on_events,
                                 std::function<void(absl::Status)> on_end = nullptr);

  // ---- Asynchronous calls: `done` runs exactly once, on an I/O thread. ----

  void GetAsync(std::string_view key, GetOptions options,
                Callback<std::optional<std::string>> done);
  void PutAsync(std::string_view key, std::string_view value, CallOptions options,
                std::function<void(absl::Status)> done);
  void DeleteAsync(std::string_view key, CallOptions options, Callback<bool> done);
  void RangeAsync(std::string_view begin, RangeOptions options, Callback<RangeResult> done);
  void MemberListAsync(CallOptions options, Callback<std::vector<Member>> done);
  // A request with an enumerator out of range, or over a limit, is refused with
  // InvalidArgument before it is sent: then `done` runs at once, on the calling thread
  // (as for every *Async call over a limit).
  void TxnAsync(const TxnRequest& request, CallOptions options, Callback<TxnResult> done);

  // The leader's client address as last learned; empty when unknown.
  std::string LeaderAddressForTesting() const;

 private:
  class Impl;
  explicit Client(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// An open watch (Client::Watch). Destroying it cancels the watch: no callback runs
// after the destructor returns. Must not be destroyed from its own callbacks.
class Watcher {
 public:
  class State;
  explicit Watcher(std::shared_ptr<State> state);
  Watcher(const Watcher&) = delete;
  Watcher& operator=(const Watcher&) = delete;
  ~Watcher();

  // Every change at or below this revision has been delivered (0 before the first
  // answer of a watch that started at the current revision).
  int64_t progress_revision() const;
  // OK while the watch runs; why it ended otherwise.
  absl::Status status() const;

 private:
  std::shared_ptr<State> state_;
};

}  // namespace stead

#endif  // STEAD_CLIENT_H_
