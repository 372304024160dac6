// RocksDB plumbing shared by the state machine and checkpoint install: opening a
// database with all its column families, the meta records, flushing. Private to
// storage/ (the only header outside .cc files that includes RocksDB).
//
// Thread-safety: a Database may be read from any thread; writes are serialised by the
// caller (StateMachine holds its write mutex). Its set of column families only changes
// (EnsureKeyspaces) before it is shared with readers.
#ifndef STEAD_STORAGE_STATE_MACHINE_DB_H_
#define STEAD_STORAGE_STATE_MACHINE_DB_H_

#include <atomic>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "base/log.h"
#include "base/mutex.h"
#include "proto/raft.pb.h"
#include "proto/snapshot.pb.h"
#include "rocksdb/cache.h"
#include "rocksdb/db.h"
#include "storage/apply_cache.h"
#include "storage/content_hash.h"
#include "storage/state_machine.h"

namespace stead::storage::internal {

// Keys in the meta column family.
inline constexpr char kAppliedKey[] = "raft/applied";   // pb::SnapshotMetadata
inline constexpr char kNodeMetadataKey[] = "node/metadata";  // pb::NodeMetadata

// RocksDB status -> house code: Corruption -> DataLoss, NoSpace -> ResourceExhausted,
// NotFound -> NotFound, Busy/TryAgain -> Unavailable, InvalidArgument ->
// InvalidArgument, anything else (IOError, ...) -> Internal. `context` is prepended.
absl::Status FromRocks(const rocksdb::Status& status, absl::string_view context);

// `damage` (a DataLoss: RocksDB found a checksum mismatch) with kCorruptStateAdvice.
absl::Status WithCorruptStateAdvice(const absl::Status& damage);

// An open RocksDB database and its column family handles, closed on destruction.
class Database {
 public:
  enum class Mode {
    kCreate,    // create the database and the standard column families if missing
    kExisting,  // the database must exist; open exactly the column families it has
    kReadOnly,  // as kExisting, read-only (nothing on disk changes)
  };
  static absl::StatusOr<std::unique_ptr<Database>> Open(const std::string& path,
                                                        const StateMachineOptions& options,
                                                        Mode mode);
  ~Database();
  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;

  // Creates a column family for every name in `keyspaces` that does not exist yet. Only
  // before the Database is shared: readers look up handles without a lock.
  absl::Status EnsureKeyspaces(const std::vector<std::string>& keyspaces);

  rocksdb::DB* db() const { return db_.get(); }
  const std::string& path() const { return path_; }
  rocksdb::ColumnFamilyHandle* meta() const { return meta_; }
  // The handle of a user keyspace; nullptr if there is none of that name ("meta" and
  // "default" are not user keyspaces).
  rocksdb::ColumnFamilyHandle* Keyspace(absl::string_view name) const;
  std::vector<std::string> KeyspaceNames() const;

  // What the applier read or wrote lately in this database (StagedApply).
  ApplyCache& apply_cache() const { return *apply_cache_; }

  // Flushes every column family in one atomic flush and waits for it.
  absl::Status FlushAll();
  // Bytes in every column family's memtables; bytes in the block cache(s).
  uint64_t MemtableBytes() const;
  uint64_t BlockCacheBytes() const;

  // The applied state in the meta column family (index 0 if never written), read at
  // `snapshot` (nullptr: latest). DataLoss if it does not parse.
  absl::StatusOr<pb::SnapshotMetadata> ReadApplied(const rocksdb::Snapshot* snapshot) const;
  // The stored node metadata; nullopt if none. DataLoss if it does not parse.
  absl::StatusOr<std::optional<pb::NodeMetadata>> ReadNodeMetadata() const;
  // Stores `metadata` and flushes, so it is durable on its own.
  absl::Status WriteNodeMetadata(const pb::NodeMetadata& metadata);
  // Counts the keys of all user keyspaces at `snapshot`.
  absl::StatusOr<uint64_t> CountUserKeys(const rocksdb::Snapshot* snapshot) const;
  // The content hash (storage/content_hash.h) of the user keyspaces at `snapshot`,
  // but those named in `excluded`.
  absl::StatusOr<ContentHash> HashUserKeys(const rocksdb::Snapshot* snapshot,
                                           const std::vector<std::string>& excluded) const;

  // Reads every block of every live SST file and checks its checksum, file by file,
  // until done or `stop` is set (Cancelled): DataLoss naming the file that failed.
  // Compactions keep running, but delete no file meanwhile.
  absl::Status VerifyChecksums(const std::atomic<bool>& stop) const;

  // OK until RocksDB reported a checksum mismatch in this database (DataLoss); from
  // then on that DataLoss, with kCorruptStateAdvice, which every read and write of the
  // state machine returns. Any thread.
  absl::Status damage() const;
  // Passes `status` through, except a DataLoss: that is recorded as the damage (logged
  // once, at error) and the damage is returned instead. Any thread.
  absl::Status Observe(absl::Status status) const;

  // Marks the directory for removal when the database is closed: ACTIVE no longer
  // names it (a checkpoint replaced it), but readers may still hold it. Any thread.
  void RemoveDirectoryOnClose() { remove_on_close_.store(true); }

 private:
  Database() = default;
  absl::Status Close();
  // The sum over every column family of a RocksDB integer property.
  uint64_t SumIntProperty(const std::string& property) const;

  std::string path_;
  Logger logger_;
  std::unique_ptr<rocksdb::DB> db_;
  // Every open column family by name; handles are destroyed before db_ is closed.
  std::map<std::string, rocksdb::ColumnFamilyHandle*, std::less<>> handles_;
  rocksdb::ColumnFamilyHandle* meta_ = nullptr;
  rocksdb::ColumnFamilyOptions column_family_options_;
  // With StateMachineOptions::memory_limit_bytes: the cache every column family shares.
  std::shared_ptr<rocksdb::Cache> block_cache_;
  std::unique_ptr<ApplyCache> apply_cache_;
  // Set once the database was replaced; read by the destructor, which may run on any
  // thread that dropped the last reference.
  std::atomic<bool> remove_on_close_{false};
  // Set once, by the first DataLoss Observe sees; never cleared (a new database replaces
  // a damaged one).
  mutable Mutex damage_mu_;
  mutable absl::Status damage_ ABSL_GUARDED_BY(damage_mu_);
  mutable std::atomic<bool> damaged_{false};  // damage_ is not OK; read without the lock
};

// Get and Scan over `database` at `snapshot` (nullptr: latest), shared by
// StateMachine, StateSnapshot and StagedApply. Contracts as in state_machine.h.
absl::StatusOr<std::optional<std::string>> GetAt(const Database& database,
                                                 const rocksdb::Snapshot* snapshot,
                                                 absl::string_view keyspace,
                                                 absl::string_view key);
absl::StatusOr<ScanResult> ScanAt(const Database& database, const rocksdb::Snapshot* snapshot,
                                  const ScanOptions& options);

}  // namespace stead::storage::internal

#endif  // STEAD_STORAGE_STATE_MACHINE_DB_H_
