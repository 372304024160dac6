// ApplyCache: the values the applier read or wrote lately, kept exactly as the live
// database holds them, so that the next command on the same key (a put reads the
// key's previous version, a session write its record) does not search RocksDB's
// memtables and files again. Least recently used entries go first once the values and
// keys held exceed the capacity.
//
// Only the applier's StagedApply reads it, and it is updated with what each commit
// wrote, so it never holds a value the database does not: a key is cached after a read
// of the database, and a cached key follows every later write to it.
//
// Thread-safety: thread-safe (one mutex; the applier is its only user in practice).
#ifndef STEAD_STORAGE_APPLY_CACHE_H_
#define STEAD_STORAGE_APPLY_CACHE_H_

#include <cstddef>
#include <list>
#include <optional>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "base/mutex.h"

namespace stead::storage {

class ApplyCache {
 public:
  // A capacity of 0 caches nothing.
  explicit ApplyCache(size_t capacity_bytes) : capacity_bytes_(capacity_bytes) {}
  ApplyCache(const ApplyCache&) = delete;
  ApplyCache& operator=(const ApplyCache&) = delete;

  // What is cached for `key`: nullopt when nothing is, else the value (nullopt inside
  // for a key known to be absent).
  std::optional<std::optional<std::string>> Find(absl::string_view keyspace,
                                                 absl::string_view key);
  // Caches what a read of the database found for `key` (nullopt: absent).
  void Insert(absl::string_view keyspace, absl::string_view key,
              std::optional<std::string> value);
  // A committed write: `key` now holds `value` (nullopt: deleted). Changes the entry
  // only if `key` is cached.
  void Update(absl::string_view keyspace, absl::string_view key,
              std::optional<std::string> value);
  // A committed delete of [begin, end) in `keyspace`: forgets what it covers.
  void EraseRange(absl::string_view keyspace, absl::string_view begin, absl::string_view end);

  size_t bytes() const;
  size_t entries() const;

 private:
  struct Entry {
    std::string id;  // keyspace, '\0', key
    size_t keyspace_size = 0;
    std::optional<std::string> value;
    size_t bytes() const { return id.size() + (value ? value->size() : 0) + sizeof(Entry); }
    absl::string_view keyspace() const { return absl::string_view(id).substr(0, keyspace_size); }
  };
  using List = std::list<Entry>;

  void EvictLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void EraseLocked(List::iterator entry) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const size_t capacity_bytes_;
  mutable Mutex mu_;
  List entries_ ABSL_GUARDED_BY(mu_);  // most recently used first
  absl::flat_hash_map<std::string, List::iterator> index_ ABSL_GUARDED_BY(mu_);
  // Entries per keyspace: a range delete in a keyspace with none (the watch history,
  // which is only ever scanned) costs nothing.
  absl::flat_hash_map<std::string, size_t> keyspace_entries_ ABSL_GUARDED_BY(mu_);
  size_t bytes_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace stead::storage

#endif  // STEAD_STORAGE_APPLY_CACHE_H_
