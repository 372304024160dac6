// The stored form of the key-value data model, and KvView: the keys as one command
// (or one read) sees them.
//
// Layout in the state machine (one RocksDB column family per keyspace):
//   `kv`       user key -> pb::KeyValue without its key: value, create_revision,
//              mod_revision, version.
//   `kvmeta`   "state"  -> pb::KvMeta: the store revision and the log time.
//   `sessions` exactly-once client records (server/kv_session.h).
//   `history`  revision (8 bytes, big-endian) -> pb::RevisionEvents: what each revision
//              changed, for watches; compacted from the oldest end (kv_apply.h).
//   `auth`     users, roles and the auth switch (server/auth_store.h).
// The runtime must open the state machine with every keyspace of KvKeyspaces().
//
// Thread-safety: a KvView is used by one thread at a time; it borrows a StateReader (a
// snapshot for a read, the staged apply for a command), which must outlive it.
#ifndef STEAD_SERVER_KV_STORE_H_
#define STEAD_SERVER_KV_STORE_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "proto/kv.pb.h"
#include "storage/state_machine.h"

namespace stead::server {

inline constexpr char kKvMetaKeyspace[] = "kvmeta";
inline constexpr char kSessionsKeyspace[] = "sessions";
inline constexpr char kHistoryKeyspace[] = "history";
// Users, roles and the auth switch (server/auth_store.h).
inline constexpr char kAuthKeyspace[] = "auth";

// The keyspaces the key-value service needs: kv, kvmeta, sessions, history and auth.
std::vector<std::string> KvKeyspaces();

// The service's meta record; a default KvMeta (revision 0) before the first write.
// DataLoss if it does not decode.
absl::StatusOr<pb::KvMeta> ReadKvMeta(const storage::StateReader& state);
// The mutation that stores `meta`.
storage::Mutation WriteKvMeta(const pb::KvMeta& meta);

// The key of `revision` (>= 0) in the history keyspace: big-endian, so keys sort as
// revisions do.
std::string HistoryKey(int64_t revision);
// The revision of a history key; DataLoss if it is not one.
absl::StatusOr<int64_t> ParseHistoryKey(absl::string_view key);

// The bytes of a pair that page and response limits count: its key and its value.
inline size_t PairBytes(const pb::KeyValue& kv) { return kv.key().size() + kv.value().size(); }

// A page of a range scan.
struct KvPage {
  std::vector<pb::KeyValue> kvs;  // in key order (descending when reverse), keys set
  bool more = false;              // the range holds keys after the last one returned
};

// The `kv` keyspace of a snapshot with the writes of the current command laid over it,
// so that later operations of a transaction see the earlier ones.
class KvView {
 public:
  explicit KvView(const storage::StateReader* state) : state_(state) {}

  // The pair of `key`, nullopt if absent. DataLoss if the stored value does not decode.
  absl::StatusOr<std::optional<pb::KeyValue>> Get(absl::string_view key) const;
  // Pairs of [start, end) in order (an empty `end` means no end), at most `limit` (>= 1)
  // and, with max_bytes > 0, at most max_bytes of PairBytes, but always at least one
  // pair: the page ends before the pair that would take it over max_bytes. Reads at most
  // about max_bytes plus one pair from storage. InvalidArgument when this command has
  // changed too many keys to merge with a scan; DataLoss as Get.
  absl::StatusOr<KvPage> Scan(absl::string_view start, absl::string_view end, bool reverse,
                              size_t limit, size_t max_bytes = 0) const;

  // Records a write of `kv` (its key set) / a delete of `key`, visible to later reads.
  void Put(pb::KeyValue kv);
  void Delete(std::string key);

  // Whether any key was written or deleted.
  bool changed() const { return !pending_.empty(); }
  // Appends the recorded writes as mutations of the `kv` keyspace, in key order.
  void AppendMutations(std::vector<storage::Mutation>* mutations) const;
  // Appends the recorded writes as watch events of `revision`, in key order: a PUT with
  // the new pair, a DELETE for each deleted key that existed before this command.
  absl::Status AppendEvents(int64_t revision, pb::RevisionEvents* events) const;

 private:
  // Scan, reading from storage until `read_max_bytes` (0: by count alone).
  absl::StatusOr<KvPage> ScanPage(absl::string_view start, absl::string_view end, bool reverse,
                                  size_t limit, size_t max_bytes, size_t read_max_bytes) const;

  const storage::StateReader* const state_;
  // Writes of this command by key: the new pair, or nullopt for a delete.
  std::map<std::string, std::optional<pb::KeyValue>, std::less<>> pending_;
};

}  // namespace stead::server

#endif  // STEAD_SERVER_KV_STORE_H_
