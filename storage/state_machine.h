// The replicated state machine: RocksDB on the data volume (`--data-dir`).
//
// What it holds. One RocksDB column family per keyspace (options.keyspaces, default
// {"kv"} for user keys; the key-value service may add e.g. revision history without
// changing this layer), plus `meta` holding the applied Raft state (index, term, conf
// state) and the node metadata (storage/node_metadata.h). Every Apply writes its
// mutations and the new applied state in ONE rocksdb::WriteBatch, so after any crash
// the applied index describes exactly the data present.
//
// RocksDB's own WAL is DISABLED. The Raft log on the WAL volume already holds every
// committed entry durably, so after a crash the runtime replays the log from
// applied_index() + 1, which is cheaper than writing every byte twice (and fsyncing
// both volumes). This needs two things, both done here:
//   * `atomic_flush`: all column families are flushed together, so the flushed applied
//     index never runs ahead of (or behind) the flushed data. Without it, a crash could
//     leave `meta` saying index 100 while `kv` only holds 1..50, and entries 51..100
//     would never be replayed.
//   * Anything that must be durable on its own (node metadata, a checkpoint, an
//     installed snapshot) is followed by an explicit flush of all column families.
// Consequence for the runtime: the Raft log must keep entries above the flushed applied
// index; Flush() makes the current state durable before the log is compacted below it
// (a checkpoint flushes too).
//
// Data dir layout (all names below are stead's; "lost+found" is tolerated):
//   <data-dir>/LOCK        flock held while a StateMachine (or an install) uses the dir
//   <data-dir>/ACTIVE      names the live database directory, e.g. "db-000003"
//   <data-dir>/db-000003/  the RocksDB database
//   <data-dir>/checkpoints/ checkpoints and incoming transfers (kept by the runtime)
// ACTIVE is replaced atomically (write, fsync, rename, fsync dir). A "db-*" directory
// it does not name is a leftover of an interrupted first start or install, or of a
// database replaced while snapshots still read it, and is removed at Open. No ACTIVE
// file means "not initialised": the first start creates a database, writes and flushes
// the node metadata, and only then writes ACTIVE, so a crash at any point of the first
// start leaves a dir that is initialised again cleanly.
//
// Thread-safety: Apply, Flush, CreateCheckpoint and ReplaceWithCheckpoint are
// serialised internally (call them from the applier); Get, Scan, NewSnapshot,
// keyspaces() and applied() may run concurrently with them and with each other from any
// thread. CreateCheckpoint holds up Apply only while it flushes and links files, not
// while it checksums them.
#ifndef STEAD_STORAGE_STATE_MACHINE_H_
#define STEAD_STORAGE_STATE_MACHINE_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "base/log.h"
#include "proto/raft.pb.h"
#include "proto/snapshot.pb.h"
#include "raft/types.h"
#include "storage/content_hash.h"
#include "storage/limits.h"
#include "storage/node_metadata.h"
#include "storage/state_reader.h"

namespace stead::storage {

// Name of the column family holding the applied state and node metadata. Not a valid
// keyspace name.
inline constexpr char kMetaColumnFamily[] = "meta";

// What an operator must do about a state machine that failed a checksum; the end of
// every error such a state machine returns (docs/lost-volume.md quotes it).
inline constexpr char kCorruptStateAdvice[] =
    "the state machine on this member's data volume is corrupt and this member serves "
    "nothing: wipe its data and WAL volumes and restart it; it rejoins under a new id and "
    "receives a snapshot from the leader (docs/lost-volume.md)";

// The steps of switching a data dir to a checkpoint after which a crash leaves a
// distinct state on disk (see storage/state_machine_install.cc).
enum class InstallStep {
  kStaged,    // the checkpoint's files are in a new db-N; ACTIVE names the old one
  kAdopted,   // db-N holds this node's metadata, flushed; ACTIVE names the old one
  kSwitched,  // ACTIVE names db-N; the old database is not removed yet
};

struct StateMachineOptions {
  // Root of the data volume. Created if missing. Required.
  std::string data_dir;
  // Who this node is; written on first start, checked at every start. Required.
  NodeIdentity identity;
  // User keyspaces, one column family each. Names must be non-empty, unique, and not
  // "meta" or "default". Keyspaces found on disk but not listed stay readable.
  // Default: {"kv"}.
  std::vector<std::string> keyspaces = {kDefaultKeyspace};
  // Size limits checked by Apply. Default: see storage/limits.h.
  Limits limits;
  // Memtable size per column family before RocksDB flushes it. Default: 64 MiB.
  size_t write_buffer_bytes = 64 * 1024 * 1024;
  // Memory RocksDB may hold, in bytes (in Kubernetes the container's memory limit,
  // `--memory-limit`). 0: RocksDB's defaults, which grow with the number of keyspaces
  // (memtables of write_buffer_bytes each, an 8 MiB block cache each). Otherwise one
  // block cache of half of it serves every keyspace and also holds the memtables (at
  // most a quarter of it, each at most a sixteenth); the other half is left to the
  // process. While ReplaceWithCheckpoint has two databases open, each has its own.
  size_t memory_limit_bytes = 0;
  // Values the applier read or wrote lately, kept so the next command on the same key
  // need not search RocksDB for it (storage/apply_cache.h); with memory_limit_bytes set,
  // at most a sixteenth of it. Default: 32 MiB.
  size_t apply_cache_bytes = size_t{32} << 20;
  // Wall clock, only for the human-readable creation times in metadata and manifests.
  // Default: absl::Now.
  std::function<absl::Time()> clock = [] { return absl::Now(); };
  // Flush memtables when the state machine is closed. Tests set false to simulate a
  // crash: whatever was applied since the last flush is lost, as after a kill -9, and
  // must come back from the Raft log. Default: true.
  bool flush_on_close = true;
  // Where events (first start, install, cleanup of leftovers) are logged.
  // Default: stderr at info.
  Logger logger;
  // Called on the installing thread after each InstallStep of InstallCheckpoint and
  // ReplaceWithCheckpoint; crash tests kill the process there. Default: none.
  std::function<void(InstallStep)> install_step_for_testing;
};

// One change to one key.
struct Mutation {
  enum class Type { kPut, kDelete, kDeleteRange };
  Type type = Type::kPut;
  std::string keyspace = kDefaultKeyspace;
  std::string key;    // kDeleteRange: the first key deleted
  std::string value;  // kPut: the value; kDeleteRange: the end of the range (exclusive)

  static Mutation Put(std::string keyspace, std::string key, std::string value) {
    return Mutation{Type::kPut, std::move(keyspace), std::move(key), std::move(value)};
  }
  static Mutation Delete(std::string keyspace, std::string key) {
    return Mutation{Type::kDelete, std::move(keyspace), std::move(key), {}};
  }
  // Every key of [begin, end): one range tombstone, however many keys it covers.
  static Mutation DeleteRange(std::string keyspace, std::string begin, std::string end) {
    return Mutation{Type::kDeleteRange, std::move(keyspace), std::move(begin), std::move(end)};
  }
};

// Everything one committed Raft entry does to the state machine.
struct ApplyBatch {
  raft::Index index = 0;  // the entry's index; > 0
  raft::Term term = 0;    // the entry's term; > 0
  std::vector<Mutation> mutations;  // applied in order; may be empty (no-op entry)
  // Set when the entry is a membership change: the configuration after it.
  std::optional<pb::ConfState> conf_state;
};

// A consistent read-only view of the state at one applied index. It keeps reading that
// state even after ReplaceWithCheckpoint switched the state machine away from it (the
// replaced database is closed and removed when its last view is destroyed). Must be
// destroyed before the StateMachine that created it. Thread-safe.
class StateSnapshot : public StateReader {
 public:
  class Impl;
  explicit StateSnapshot(std::unique_ptr<Impl> impl);
  ~StateSnapshot();
  StateSnapshot(const StateSnapshot&) = delete;
  StateSnapshot& operator=(const StateSnapshot&) = delete;

  // The applied state this view shows.
  const pb::SnapshotMetadata& applied() const;
  // As StateMachine::Get / Scan, at this view.
  absl::StatusOr<std::optional<std::string>> Get(absl::string_view keyspace,
                                                 absl::string_view key) const override;
  absl::StatusOr<ScanResult> Scan(const ScanOptions& options) const override;
  // The content hash of every user keyspace at this view (storage/content_hash.h)
  // except those in `excluded`: equal on members that applied the same index. Reads
  // every pair: O(data size).
  absl::StatusOr<ContentHash> Hash(const std::vector<std::string>& excluded = {}) const;

 private:
  std::unique_ptr<Impl> impl_;
};

class StagedApply;

class StateMachine : public StateReader {
 public:
  // Opens (or, on an uninitialised dir, creates) the state machine in
  // options.data_dir and checks the node metadata against options.identity.
  //   InvalidArgument: options are incomplete (identity, keyspace names).
  //   FailedPrecondition: the volume belongs to another cluster or node (the message
  //     says what to do), was written by a newer format, holds foreign files, or is
  //     in use by another StateMachine (LOCK held).
  //   DataLoss: ACTIVE names a missing database, the meta column family is corrupt, or
  //     a block RocksDB reads while opening fails its checksum (the message then ends
  //     with kCorruptStateAdvice, as it does from ReadNodeMetadata). Open does not read
  //     every block: VerifyChecksums does.
  //   Other codes: I/O errors from the file system or RocksDB.
  static absl::StatusOr<std::unique_ptr<StateMachine>> Open(StateMachineOptions options);

  // Switches options.data_dir to the checkpoint in `checkpoint_dir`: verifies it in
  // full, links/copies it into a new database directory, writes this node's metadata
  // into it, flushes, and atomically repoints ACTIVE; the old database is then removed.
  // A crash at any step leaves either the old state or the new one. The data dir may be
  // uninitialised (a new member); if it is initialised its metadata must match
  // options.identity. No StateMachine may be open on the data dir.
  // `checkpoint_dir` is left untouched; on the data volume (e.g. under
  // <data-dir>/checkpoints) its SST files are hard-linked, elsewhere copied.
  //   DataLoss: the checkpoint fails verification (nothing is switched in), or its
  //     database does not hold the index its manifest claims.
  //   FailedPrecondition: the checkpoint is of another cluster (unless
  //     `allow_other_cluster`, for restoring a backup into a new cluster), the data dir
  //     belongs to another node, or it is locked.
  // Returns the installed checkpoint's manifest.
  static absl::StatusOr<pb::SnapshotManifest> InstallCheckpoint(
      const StateMachineOptions& options, const std::string& checkpoint_dir,
      bool allow_other_cluster = false);

  // The node metadata stored in `data_dir`, read without changing anything (a running
  // node may hold the dir). For a runtime that learns its node id from its volume at a
  // restart, and for inspection tools. nullopt if the dir is not initialised; DataLoss
  // as Open.
  static absl::StatusOr<std::optional<pb::NodeMetadata>> ReadNodeMetadata(
      const std::string& data_dir);

  // InstallCheckpoint, then Open.
  static absl::StatusOr<std::unique_ptr<StateMachine>> OpenFromCheckpoint(
      StateMachineOptions options, const std::string& checkpoint_dir);

  ~StateMachine();
  StateMachine(const StateMachine&) = delete;
  StateMachine& operator=(const StateMachine&) = delete;

  // Applies one committed entry: its mutations and the new applied state in one atomic
  // write. An entry at or below the applied index is skipped and returns OK (replay
  // after a crash re-delivers entries the flushed state already holds).
  //   InvalidArgument: index or term is 0, a keyspace is unknown, a key/value/batch is
  //     over options.limits (message names the limit and size); nothing is written.
  //   FailedPrecondition: index > applied + 1 (an entry would be skipped) or the term
  //     is lower than the applied term; nothing is written.
  //   DataLoss: the state machine is damaged (damage()); nothing is written.
  //   Other codes: RocksDB write errors.
  absl::Status Apply(const ApplyBatch& batch);
  // Starts applying a run of entries in one write (StagedApply). The applier uses at
  // most one at a time and commits or drops it before any other Apply, Flush,
  // checkpoint or ReplaceWithCheckpoint of its own.
  std::unique_ptr<StagedApply> StartApply();

  // The last applied index, its term and the conf state in force there.
  pb::SnapshotMetadata applied() const;
  raft::Index applied_index() const;
  // The node metadata of this data dir.
  const pb::NodeMetadata& node_metadata() const;

  // OK, or the DataLoss (ending with kCorruptStateAdvice) this state machine returns
  // since RocksDB found a checksum mismatch in its database: on a read, an apply, a
  // checkpoint or a hash, here or in a StateSnapshot of it. From then on every Get,
  // Scan, NewSnapshot, StateSnapshot read, Apply and CreateCheckpoint fails with it (a
  // damaged state may answer differently from the other members), and the error is
  // logged once. A snapshot installed by ReplaceWithCheckpoint brings a sound database.
  absl::Status damage() const;

  // Reads every block of every SST file of the database and checks its checksum, file
  // by file, until done or `stop` is set (Cancelled). A full read of the database: in
  // our measurement 2.5-4.5 s per GiB from the page cache and 7.5-14 s from disk on a
  // loaded machine. A mismatch damages the state machine (damage()) and is returned;
  // success sets checksums_verified(). Any thread, concurrently with everything else
  // (every read checks the checksums of the blocks it reads anyway): the runtime runs
  // it after each start, and serves no client reads until it succeeded.
  absl::Status VerifyChecksums(const std::atomic<bool>& stop);
  bool checksums_verified() const;

  // Value of `key` in `keyspace` at the latest applied state; nullopt if absent.
  // InvalidArgument for an unknown keyspace.
  absl::StatusOr<std::optional<std::string>> Get(absl::string_view keyspace,
                                                 absl::string_view key) const override;
  // Pairs of a key range in order. InvalidArgument for an unknown keyspace or a limit
  // outside 1..kMaxScanLimit.
  absl::StatusOr<ScanResult> Scan(const ScanOptions& options) const override;
  // A consistent view of the current state for several reads. Errors only if the
  // applied record cannot be read back (I/O error, DataLoss).
  absl::StatusOr<std::unique_ptr<StateSnapshot>> NewSnapshot() const;

  // Makes everything applied so far durable (flushes all column families together,
  // fsyncing the files) and returns the applied index that is now durable: the Raft
  // log may drop entries up to it. Errors are RocksDB's (ResourceExhausted when the
  // disk is full, Internal on I/O errors); after one, RocksDB refuses further writes
  // until the state machine is reopened.
  absl::StatusOr<raft::Index> Flush();

  // Writes a checkpoint of the current applied state to `dir`, which must not exist
  // and must be on the data volume for hard links (elsewhere files are copied); its
  // parent is created if missing.
  // Flushes first, builds under "<dir>.partial", fsyncs, renames. Returns its manifest.
  //   FailedPrecondition: nothing applied yet (a snapshot at index 0 is meaningless).
  //   AlreadyExists: `dir` exists.
  // Two calls must not use the same `dir` concurrently.
  absl::StatusOr<pb::SnapshotManifest> CreateCheckpoint(const std::string& dir);

  // Keyspaces readable in this state machine (options plus any found on disk), sorted.
  std::vector<std::string> keyspaces() const;

  // What RocksDB holds in memory now, for metrics.
  struct MemoryUsage {
    uint64_t memtable_bytes = 0;     // every keyspace's memtables, active and immutable
    uint64_t block_cache_bytes = 0;  // the block cache(s), memtables charged to it included
  };
  MemoryUsage memory_usage() const;

  // Switches this open state machine to the checkpoint in `checkpoint_dir` (a Raft
  // snapshot received from the leader), taking the crash-safe steps of
  // InstallCheckpoint: verify in full, stage a new database directory beside the live
  // one (SSTs hard-linked when on the data volume), check it holds the manifest's index
  // and term, write this node's metadata into it, flush, repoint ACTIVE atomically. A
  // crash at any step leaves the old or the new state for the next Open.
  // Afterwards applied() is the checkpoint's (index, term, conf state), Apply expects
  // index + 1 and skips entries at or below it, and every keyspace of the checkpoint
  // is readable (the configured ones are created if it lacks them). `checkpoint_dir`
  // is left untouched.
  // Serialised with Apply, Flush and CreateCheckpoint, which wait while the checkpoint
  // is staged and switched (not while it is verified). Reads on other threads go on
  // throughout: each Get, Scan or NewSnapshot sees wholly the old or wholly the new
  // state; a StateSnapshot taken before the switch keeps the old one, whose directory
  // is removed when the last such snapshot is destroyed.
  //   DataLoss: the checkpoint fails verification, or its database does not hold the
  //     index its manifest claims. Nothing changed.
  //   FailedPrecondition: the checkpoint is of another cluster than this node, or its
  //     index is not above applied_index() or its term below the applied term (a
  //     snapshot never rolls the state back). Nothing changed.
  //   Other codes: I/O errors. If the error hit after ACTIVE was repointed (its fsync
  //     failed), the new state is served, as the next Open would; otherwise nothing
  //     changed.
  // Returns the checkpoint's manifest.
  absl::StatusOr<pb::SnapshotManifest> ReplaceWithCheckpoint(const std::string& checkpoint_dir);

 private:
  friend class StagedApply;
  class Impl;
  explicit StateMachine(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// A run of committed entries applied in one RocksDB write. Each Stage() records the
// final value of every key an entry writes; Get reads the state as if every staged
// entry were applied (the staged values, then the database's ApplyCache, then RocksDB),
// which is what the next entry's command must see; Commit() writes the final values
// with the applied state of the last entry, so after a crash the applied index still
// describes exactly the data present, and a key written by many entries of the run is
// written once. A Scan (rare while applying) commits the run first and reads the
// database. Until a commit nothing is visible to other readers: the applier
// acknowledges an entry only after the commit that holds it.
//
// Thread-safety: the applier's alone; StateMachine readers on other threads run
// concurrently and see the state before a commit or after it.
class StagedApply : public StateReader {
 public:
  ~StagedApply() override;
  StagedApply(const StagedApply&) = delete;
  StagedApply& operator=(const StagedApply&) = delete;

  // Stages one entry. Errors as StateMachine::Apply; on an error nothing of the entry is
  // staged and the earlier ones stay. An entry with a kDeleteRange mutation commits
  // what is staged and is written on its own.
  absl::Status Stage(const ApplyBatch& batch);
  // Writes every staged entry and their applied state in one atomic write; OK and a
  // no-op with nothing staged. Errors are RocksDB's; then nothing staged was written.
  absl::Status Commit();

  size_t staged_entries() const;
  // Bytes of the staged mutations (what the commit writes).
  size_t staged_bytes() const;

  absl::StatusOr<std::optional<std::string>> Get(absl::string_view keyspace,
                                                 absl::string_view key) const override;
  absl::StatusOr<ScanResult> Scan(const ScanOptions& options) const override;

 private:
  friend class StateMachine;
  class Impl;
  explicit StagedApply(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace stead::storage

#endif  // STEAD_STORAGE_STATE_MACHINE_H_
