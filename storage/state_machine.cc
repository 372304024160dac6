#include "storage/state_machine.h"

#include <algorithm>
#include <filesystem>
#include <set>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/check.h"
#include "base/mutex.h"
#include "base/status_macros.h"
#include "rocksdb/utilities/checkpoint.h"
#include "storage/checkpoint.h"
#include "storage/checkpoint_files.h"
#include "storage/state_machine_db.h"
#include "storage/state_machine_dir.h"
#include "storage/state_machine_install.h"

namespace stead::storage {

using internal::Database;

namespace {

absl::Status ValidateOptions(const StateMachineOptions& options) {
  if (options.data_dir.empty()) return absl::InvalidArgumentError("data dir is empty");
  STEAD_RETURN_IF_ERROR(ValidateNodeIdentity(options.identity));
  std::set<std::string> seen;
  for (const std::string& name : options.keyspaces) {
    if (name.empty() || name == kMetaColumnFamily || name == "default") {
      return absl::InvalidArgumentError(absl::StrCat("invalid keyspace name '", name, "'"));
    }
    if (!seen.insert(name).second) {
      return absl::InvalidArgumentError(absl::StrCat("keyspace '", name, "' listed twice"));
    }
  }
  if (!options.clock) return absl::InvalidArgumentError("clock is not set");
  return absl::OkStatus();
}

// First start: create a database, make the node metadata durable in it, and only then
// publish it through ACTIVE. See "Data dir layout" in state_machine.h for why a crash
// anywhere in here is harmless.
absl::StatusOr<std::unique_ptr<Database>> InitialiseDataDir(const StateMachineOptions& options,
                                                            std::string* database_dir_name) {
  STEAD_RETURN_IF_ERROR(CheckNoForeignEntries(options.data_dir));
  STEAD_RETURN_IF_ERROR(RemoveStrayDatabases(options.data_dir, "", options.logger));
  STEAD_ASSIGN_OR_RETURN(*database_dir_name, NextDatabaseDirName(options.data_dir));
  const std::string path = files::JoinPath(options.data_dir, *database_dir_name);
  STEAD_ASSIGN_OR_RETURN(std::unique_ptr<Database> database,
                         Database::Open(path, options, Database::Mode::kCreate));
  STEAD_RETURN_IF_ERROR(database->EnsureKeyspaces(options.keyspaces));
  STEAD_RETURN_IF_ERROR(
      database->WriteNodeMetadata(MakeNodeMetadata(options.identity, options.clock())));
  STEAD_RETURN_IF_ERROR(files::SyncPath(path));
  STEAD_RETURN_IF_ERROR(WriteActive(options.data_dir, *database_dir_name));
  STEAD_LOG(options.logger, Info) << "data_dir=" << options.data_dir << " initialised for "
                                  << DescribeIdentity(options.identity.cluster_id,
                                                      options.identity.node_name,
                                                      options.identity.node_id);
  return database;
}

// Reads the node metadata of `database` and checks it against the expected identity.
absl::StatusOr<pb::NodeMetadata> CheckIdentity(const Database& database,
                                               const StateMachineOptions& options) {
  STEAD_ASSIGN_OR_RETURN(const std::optional<pb::NodeMetadata> stored,
                         database.ReadNodeMetadata());
  if (!stored.has_value()) {
    // ACTIVE is written only after the metadata is flushed, so this is not a crash
    // during the first start: the database lost its meta records.
    return absl::DataLossError(absl::StrCat(
        "data dir ", options.data_dir, ": database ", database.path(),
        " has no node metadata: the volume is damaged; wipe it to rejoin as a new member"));
  }
  STEAD_RETURN_IF_ERROR(CheckNodeMetadata(*stored, options.identity, options.data_dir));
  return *stored;
}

// A snapshot from the leader moves the state forward or not at all: an older one would
// undo applied entries that the Raft log may no longer hold.
absl::Status CheckCheckpointIsAhead(const pb::SnapshotManifest& manifest,
                                    const pb::SnapshotMetadata& current,
                                    const std::string& checkpoint_dir) {
  if (manifest.raft().index() <= current.index()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "checkpoint ", checkpoint_dir, " is at index ", manifest.raft().index(),
        ", not above the applied index ", current.index(), ": a snapshot never rolls back"));
  }
  if (manifest.raft().term() < current.term()) {
    return absl::FailedPreconditionError(absl::StrCat("checkpoint ", checkpoint_dir, " has term ",
                                                      manifest.raft().term(),
                                                      " below the applied term ", current.term()));
  }
  return absl::OkStatus();
}

// `result`, with a DataLoss recorded as the damage of `database` (Database::Observe).
template <typename T>
absl::StatusOr<T> Observed(const Database& database, absl::StatusOr<T> result) {
  if (result.ok()) return result;
  return database.Observe(result.status());
}

}  // namespace

// ---------------------------------------------------------------------------------------
// StateSnapshot

class StateSnapshot::Impl {
 public:
  Impl(std::shared_ptr<const Database> database, const rocksdb::Snapshot* snapshot,
       pb::SnapshotMetadata applied)
      : database_(std::move(database)), snapshot_(snapshot), applied_(std::move(applied)) {}
  ~Impl() { database_->db()->ReleaseSnapshot(snapshot_); }
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;

  // Shared, so a view taken before ReplaceWithCheckpoint keeps the replaced database
  // open (and its directory on disk) until the view is gone.
  const std::shared_ptr<const Database> database_;
  const rocksdb::Snapshot* snapshot_;   // released by the destructor
  const pb::SnapshotMetadata applied_;  // read at snapshot_
};

StateSnapshot::StateSnapshot(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
StateSnapshot::~StateSnapshot() = default;

const pb::SnapshotMetadata& StateSnapshot::applied() const { return impl_->applied_; }

absl::StatusOr<std::optional<std::string>> StateSnapshot::Get(absl::string_view keyspace,
                                                              absl::string_view key) const {
  const Database& database = *impl_->database_;
  STEAD_RETURN_IF_ERROR(database.damage());
  return Observed(database, internal::GetAt(database, impl_->snapshot_, keyspace, key));
}

absl::StatusOr<ScanResult> StateSnapshot::Scan(const ScanOptions& options) const {
  const Database& database = *impl_->database_;
  STEAD_RETURN_IF_ERROR(database.damage());
  return Observed(database, internal::ScanAt(database, impl_->snapshot_, options));
}

absl::StatusOr<ContentHash> StateSnapshot::Hash(const std::vector<std::string>& excluded) const {
  const Database& database = *impl_->database_;
  STEAD_RETURN_IF_ERROR(database.damage());
  return Observed(database, database.HashUserKeys(impl_->snapshot_, excluded));
}

// ---------------------------------------------------------------------------------------
// StateMachine

class StateMachine::Impl {
 public:
  StateMachineOptions options;
  std::unique_ptr<DataDirLock> lock;  // held for the life of the state machine
  // As stored; never changes while open (ReplaceWithCheckpoint writes it into the new
  // database unchanged).
  pb::NodeMetadata node_metadata;

  // Serialises Apply, Flush, the flush-and-link step of CreateCheckpoint and the switch
  // of ReplaceWithCheckpoint: a checkpoint must see no apply between reading the
  // applied state and linking files, and no apply may go to a database being replaced.
  Mutex write_mu;
  // Guards the pair below, which ReplaceWithCheckpoint switches together. Held only to
  // copy or swap them, never across I/O, so reads stay cheap. Taken after write_mu.
  mutable Mutex state_mu;
  // The live database. Readers copy the pointer and work on their copy, so a replaced
  // database stays open until its last reader lets go. Changes only while write_mu is
  // held as well, so a copy taken under write_mu stays the live one until it is
  // released.
  std::shared_ptr<Database> database ABSL_GUARDED_BY(state_mu);
  // Mirrors the applied state in the meta column family of `database`; increases with
  // each Apply (updated after the WriteBatch that carries it succeeded) and jumps to a
  // checkpoint's state when `database` is replaced.
  pb::SnapshotMetadata applied ABSL_GUARDED_BY(state_mu);
  // Set once VerifyChecksums succeeded; never cleared (an installed snapshot was
  // verified in full before it went live).
  std::atomic<bool> checksums_verified{false};

  std::shared_ptr<Database> CurrentDatabase() const {
    MutexLock state_lock(&state_mu);
    return database;
  }
  absl::Status ValidateBatch(const Database& live, const ApplyBatch& batch) const;
  absl::StatusOr<pb::SnapshotManifest> DescribeState(const Database& live,
                                                     const pb::SnapshotMetadata& state,
                                                     const rocksdb::Snapshot* snapshot) const;
  // Publishes `staged` as the live database, retiring the current one.
  void SwitchTo(internal::StagedDatabase staged);
};

absl::Status StateMachine::Impl::ValidateBatch(const Database& live,
                                               const ApplyBatch& batch) const {
  size_t batch_bytes = 0;
  for (const Mutation& mutation : batch.mutations) {
    batch_bytes += mutation.keyspace.size() + mutation.key.size() + mutation.value.size();
  }
  STEAD_RETURN_IF_ERROR(Annotate(CheckBatchSize(batch.mutations.size(), batch_bytes,
                                                options.limits),
                                 absl::StrCat("entry ", batch.index)));
  for (const Mutation& mutation : batch.mutations) {
    if (live.Keyspace(mutation.keyspace) == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("entry ", batch.index, ": unknown keyspace '",
                                                     mutation.keyspace, "'"));
    }
    STEAD_RETURN_IF_ERROR(
        Annotate(CheckKeySize(mutation.key, options.limits), absl::StrCat("entry ", batch.index)));
    if (mutation.type == Mutation::Type::kPut) {
      STEAD_RETURN_IF_ERROR(Annotate(CheckValueSize(mutation.value, options.limits),
                                     absl::StrCat("entry ", batch.index)));
    }
    if (mutation.type == Mutation::Type::kDeleteRange) {
      STEAD_RETURN_IF_ERROR(Annotate(CheckKeySize(mutation.value, options.limits),
                                     absl::StrCat("entry ", batch.index, ": range end")));
      if (mutation.value < mutation.key) {
        return absl::InvalidArgumentError(
            absl::StrCat("entry ", batch.index, ": delete range ends before it begins"));
      }
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<StateMachine>> StateMachine::Open(StateMachineOptions options) {
  STEAD_RETURN_IF_ERROR(ValidateOptions(options));
  auto impl = std::make_unique<Impl>();
  STEAD_ASSIGN_OR_RETURN(impl->lock, DataDirLock::Acquire(options.data_dir));
  STEAD_ASSIGN_OR_RETURN(const std::optional<std::string> active, ReadActive(options.data_dir));
  std::shared_ptr<Database> database;
  if (!active.has_value()) {
    std::string database_dir_name;
    STEAD_ASSIGN_OR_RETURN(database, InitialiseDataDir(options, &database_dir_name));
  } else {
    const std::string path = files::JoinPath(options.data_dir, *active);
    {
      // Identity first, read-only: a volume that is not ours is refused before
      // anything on it changes (a read-write open writes a new RocksDB MANIFEST).
      STEAD_ASSIGN_OR_RETURN(const std::unique_ptr<Database> read_only,
                             Database::Open(path, options, Database::Mode::kReadOnly));
      STEAD_RETURN_IF_ERROR(CheckIdentity(*read_only, options).status());
    }
    STEAD_RETURN_IF_ERROR(RemoveStrayDatabases(options.data_dir, *active, options.logger));
    STEAD_ASSIGN_OR_RETURN(database, Database::Open(path, options, Database::Mode::kExisting));
  }
  // Checked again on the database actually opened, before new keyspaces are created.
  STEAD_ASSIGN_OR_RETURN(impl->node_metadata, CheckIdentity(*database, options));
  STEAD_RETURN_IF_ERROR(database->EnsureKeyspaces(options.keyspaces));
  STEAD_ASSIGN_OR_RETURN(pb::SnapshotMetadata applied, database->ReadApplied(nullptr));
  {
    MutexLock lock(&impl->state_mu);
    impl->database = std::move(database);
    impl->applied = applied;
  }
  STEAD_LOG(options.logger, Info) << "data_dir=" << options.data_dir << " opened "
                                  << DescribeIdentity(options.identity.cluster_id,
                                                      options.identity.node_name,
                                                      options.identity.node_id)
                                  << " applied_index=" << applied.index()
                                  << " applied_term=" << applied.term();
  impl->options = std::move(options);
  return std::unique_ptr<StateMachine>(new StateMachine(std::move(impl)));
}

absl::StatusOr<std::optional<pb::NodeMetadata>> StateMachine::ReadNodeMetadata(
    const std::string& data_dir) {
  if (!files::IsDirectory(data_dir)) return std::optional<pb::NodeMetadata>();
  STEAD_ASSIGN_OR_RETURN(const std::optional<std::string> active, ReadActive(data_dir));
  if (!active.has_value()) return std::optional<pb::NodeMetadata>();
  StateMachineOptions options;
  options.data_dir = data_dir;
  STEAD_ASSIGN_OR_RETURN(const std::unique_ptr<Database> database,
                         Database::Open(files::JoinPath(data_dir, *active), options,
                                        Database::Mode::kReadOnly));
  STEAD_ASSIGN_OR_RETURN(std::optional<pb::NodeMetadata> stored,
                         Observed(*database, database->ReadNodeMetadata()));
  if (!stored.has_value()) {
    return absl::DataLossError(absl::StrCat("data dir ", data_dir, ": database ", *active,
                                            " has no node metadata; wipe the volume"));
  }
  return stored;
}

StateMachine::StateMachine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

// Closing the database flushes the memtables (RocksDB does so on close when the WAL is
// off), before the lock is released.
StateMachine::~StateMachine() {
  std::shared_ptr<Database> database;
  {
    MutexLock lock(&impl_->state_mu);
    database = std::move(impl_->database);
  }
  database.reset();
}

absl::Status StateMachine::Apply(const ApplyBatch& batch) {
  const std::unique_ptr<StagedApply> staged = StartApply();
  STEAD_RETURN_IF_ERROR(staged->Stage(batch));
  return staged->Commit();
}

// ---------------------------------------------------------------------------------------
// StagedApply

namespace {

bool HasDeleteRange(const ApplyBatch& batch) {
  return std::any_of(batch.mutations.begin(), batch.mutations.end(), [](const Mutation& mutation) {
    return mutation.type == Mutation::Type::kDeleteRange;
  });
}

size_t MutationBytes(const ApplyBatch& batch) {
  size_t bytes = 0;
  for (const Mutation& mutation : batch.mutations) {
    bytes += mutation.key.size() + mutation.value.size();
  }
  return bytes;
}

// Adds the mutations of `batch` to `write_batch`; their keyspaces were validated.
absl::Status AddMutations(const Database& database, const ApplyBatch& batch,
                          rocksdb::WriteBatch* write_batch) {
  for (const Mutation& mutation : batch.mutations) {
    rocksdb::ColumnFamilyHandle* handle = database.Keyspace(mutation.keyspace);
    STEAD_CHECK(handle != nullptr);  // ValidateBatch checked every keyspace.
    rocksdb::Status added;
    switch (mutation.type) {
      case Mutation::Type::kPut:
        added = write_batch->Put(handle, mutation.key, mutation.value);
        break;
      case Mutation::Type::kDelete:
        added = write_batch->Delete(handle, mutation.key);
        break;
      case Mutation::Type::kDeleteRange:
        added = write_batch->DeleteRange(handle, mutation.key, mutation.value);
        break;
    }
    STEAD_RETURN_IF_ERROR(internal::FromRocks(added, "build write batch"));
  }
  return absl::OkStatus();
}

}  // namespace

class StagedApply::Impl {
 public:
  Impl(StateMachine::Impl* owner, std::shared_ptr<Database> live, pb::SnapshotMetadata applied)
      : machine(owner),
        database(std::move(live)),
        committed(applied),
        staged(std::move(applied)) {}

  // Writes `write_batch` with the applied state `next`, if the state machine is still at
  // `committed` on the same database, and publishes `next`.
  absl::Status Write(rocksdb::WriteBatch* write_batch, const pb::SnapshotMetadata& next) {
    // The applied state travels in the same batch as the data: they are never apart.
    STEAD_RETURN_IF_ERROR(internal::FromRocks(
        write_batch->Put(database->meta(), internal::kAppliedKey, next.SerializeAsString()),
        "build write batch"));
    MutexLock write_lock(&machine->write_mu);
    {
      MutexLock lock(&machine->state_mu);
      if (machine->database != database || machine->applied.index() != committed.index()) {
        return absl::FailedPreconditionError(absl::StrCat(
            "apply: the state machine moved to index ", machine->applied.index(),
            " while entries after ", committed.index(), " were staged"));
      }
    }
    rocksdb::WriteOptions write_options;
    write_options.disableWAL = true;  // The Raft log replays; see state_machine.h.
    STEAD_RETURN_IF_ERROR(database->Observe(internal::FromRocks(
        database->db()->Write(write_options, write_batch),
        absl::StrCat("apply entries ", committed.index() + 1, "..", next.index()))));
    MutexLock lock(&machine->state_mu);
    machine->applied = next;
    committed = next;
    return absl::OkStatus();
  }

  // The final value of every key the staged entries wrote, by keyspace and key
  // (nullopt: deleted). Later entries read it first; the commit writes only it, so a
  // key written by many entries of a run (the service's meta record, written by every
  // command) reaches the memtable once.
  struct StagedValue {
    rocksdb::ColumnFamilyHandle* keyspace = nullptr;
    size_t keyspace_size = 0;  // the id is keyspace, '\0', key
    std::optional<std::string> value;
  };
  static std::string StagedId(absl::string_view keyspace, absl::string_view key) {
    return absl::StrCat(keyspace, absl::string_view("\0", 1), key);
  }
  // Stages the puts and deletes of `entry`; ValidateBatch checked its keyspaces.
  void StageValues(const ApplyBatch& entry) {
    for (const Mutation& mutation : entry.mutations) {
      std::optional<std::string> value;
      if (mutation.type == Mutation::Type::kPut) value = mutation.value;
      rocksdb::ColumnFamilyHandle* keyspace = database->Keyspace(mutation.keyspace);
      STEAD_CHECK(keyspace != nullptr);
      staged_values.insert_or_assign(
          StagedId(mutation.keyspace, mutation.key),
          StagedValue{keyspace, mutation.keyspace.size(), std::move(value)});
    }
    staged_bytes += MutationBytes(entry);
    ++staged_entries;
  }

  // Writes what is staged with the applied state of the last staged entry, then hands
  // it to the cache.
  absl::Status Commit() {
    if (staged_entries == 0) return absl::OkStatus();
    rocksdb::WriteBatch write_batch;
    for (const auto& [id, staged_value] : staged_values) {
      const rocksdb::Slice key(id.data() + staged_value.keyspace_size + 1,
                               id.size() - staged_value.keyspace_size - 1);
      STEAD_RETURN_IF_ERROR(internal::FromRocks(
          staged_value.value ? write_batch.Put(staged_value.keyspace, key, *staged_value.value)
                             : write_batch.Delete(staged_value.keyspace, key),
          "build write batch"));
    }
    STEAD_RETURN_IF_ERROR(Write(&write_batch, staged));
    ApplyCache& cache = database->apply_cache();
    for (auto& [id, staged_value] : staged_values) {
      const absl::string_view whole(id);
      cache.Update(whole.substr(0, staged_value.keyspace_size),
                   whole.substr(staged_value.keyspace_size + 1), std::move(staged_value.value));
    }
    staged_values.clear();
    staged_bytes = 0;
    staged_entries = 0;
    return absl::OkStatus();
  }

  StateMachine::Impl* const machine;
  // Captured at the start: a commit checks it is still the live one.
  const std::shared_ptr<Database> database;
  pb::SnapshotMetadata committed;  // the applied state written last
  pb::SnapshotMetadata staged;     // the applied state after the last staged entry
  absl::flat_hash_map<std::string, StagedValue> staged_values;
  size_t staged_bytes = 0;
  size_t staged_entries = 0;
};

std::unique_ptr<StagedApply> StateMachine::StartApply() {
  std::shared_ptr<Database> database;
  pb::SnapshotMetadata applied;
  {
    MutexLock lock(&impl_->state_mu);
    database = impl_->database;
    applied = impl_->applied;
  }
  return std::unique_ptr<StagedApply>(new StagedApply(
      std::make_unique<StagedApply::Impl>(impl_.get(), std::move(database), std::move(applied))));
}

StagedApply::StagedApply(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
StagedApply::~StagedApply() = default;

size_t StagedApply::staged_entries() const { return impl_->staged_entries; }
size_t StagedApply::staged_bytes() const { return impl_->staged_bytes; }

absl::Status StagedApply::Stage(const ApplyBatch& batch) {
  const pb::SnapshotMetadata& current = impl_->staged;
  if (batch.index == 0 || batch.term == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("apply: index ", batch.index, " term ", batch.term, " (both must be > 0)"));
  }
  // Replay after a crash re-delivers entries the flushed state already holds.
  if (batch.index <= current.index()) return absl::OkStatus();
  if (batch.index != current.index() + 1) {
    return absl::FailedPreconditionError(absl::StrCat("apply: entry ", batch.index,
                                                      " after applied index ", current.index(),
                                                      ": entries in between would be skipped"));
  }
  if (batch.term < current.term()) {
    return absl::FailedPreconditionError(absl::StrCat("apply: entry ", batch.index, " has term ",
                                                      batch.term, " below applied term ",
                                                      current.term()));
  }
  const Database& database = *impl_->database;
  // Nothing is applied on a damaged state: it could not answer as the other members do.
  STEAD_RETURN_IF_ERROR(database.damage());
  STEAD_RETURN_IF_ERROR(impl_->machine->ValidateBatch(database, batch));

  pb::SnapshotMetadata next = current;
  next.set_index(batch.index);
  next.set_term(batch.term);
  if (batch.conf_state.has_value()) *next.mutable_conf_state() = *batch.conf_state;
  if (HasDeleteRange(batch)) {
    STEAD_RETURN_IF_ERROR(Commit());
    rocksdb::WriteBatch write_batch;
    STEAD_RETURN_IF_ERROR(AddMutations(database, batch, &write_batch));
    STEAD_RETURN_IF_ERROR(impl_->Write(&write_batch, next));
    impl_->staged = std::move(next);
    for (const Mutation& mutation : batch.mutations) {
      if (mutation.type == Mutation::Type::kDeleteRange) {
        database.apply_cache().EraseRange(mutation.keyspace, mutation.key, mutation.value);
      } else {
        database.apply_cache().Update(mutation.keyspace, mutation.key,
                                      mutation.type == Mutation::Type::kPut
                                          ? std::optional<std::string>(mutation.value)
                                          : std::nullopt);
      }
    }
    return absl::OkStatus();
  }
  impl_->StageValues(batch);
  impl_->staged = std::move(next);
  return absl::OkStatus();
}

absl::Status StagedApply::Commit() { return impl_->Commit(); }

absl::StatusOr<std::optional<std::string>> StagedApply::Get(absl::string_view keyspace,
                                                            absl::string_view key) const {
  const Database& database = *impl_->database;
  STEAD_RETURN_IF_ERROR(database.damage());
  if (database.Keyspace(keyspace) == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("unknown keyspace '", keyspace, "'"));
  }
  const auto staged = impl_->staged_values.find(Impl::StagedId(keyspace, key));
  if (staged != impl_->staged_values.end()) return staged->second.value;
  if (std::optional<std::optional<std::string>> cached =
          database.apply_cache().Find(keyspace, key)) {
    return *std::move(cached);
  }
  // The database holds what was committed: nothing of this run is in it.
  STEAD_ASSIGN_OR_RETURN(std::optional<std::string> stored,
                         Observed(database, internal::GetAt(database, nullptr, keyspace, key)));
  database.apply_cache().Insert(keyspace, key, stored);
  return stored;
}

absl::StatusOr<ScanResult> StagedApply::Scan(const ScanOptions& options) const {
  const Database& database = *impl_->database;
  STEAD_RETURN_IF_ERROR(database.damage());
  // Scans are rare in the apply path (expiring sessions, compacting history, range
  // reads of a txn): the run is written first and the scan reads the database alone.
  STEAD_RETURN_IF_ERROR(impl_->Commit());
  return Observed(database, internal::ScanAt(database, nullptr, options));
}

pb::SnapshotMetadata StateMachine::applied() const {
  MutexLock lock(&impl_->state_mu);
  return impl_->applied;
}

raft::Index StateMachine::applied_index() const {
  MutexLock lock(&impl_->state_mu);
  return impl_->applied.index();
}

const pb::NodeMetadata& StateMachine::node_metadata() const { return impl_->node_metadata; }

absl::StatusOr<std::optional<std::string>> StateMachine::Get(absl::string_view keyspace,
                                                             absl::string_view key) const {
  const std::shared_ptr<const Database> database = impl_->CurrentDatabase();
  STEAD_RETURN_IF_ERROR(database->damage());
  return Observed(*database, internal::GetAt(*database, nullptr, keyspace, key));
}

absl::StatusOr<ScanResult> StateMachine::Scan(const ScanOptions& options) const {
  const std::shared_ptr<const Database> database = impl_->CurrentDatabase();
  STEAD_RETURN_IF_ERROR(database->damage());
  return Observed(*database, internal::ScanAt(*database, nullptr, options));
}

absl::Status StateMachine::damage() const { return impl_->CurrentDatabase()->damage(); }

absl::Status StateMachine::VerifyChecksums(const std::atomic<bool>& stop) {
  const std::shared_ptr<const Database> database = impl_->CurrentDatabase();
  STEAD_RETURN_IF_ERROR(database->damage());
  STEAD_RETURN_IF_ERROR(database->Observe(database->VerifyChecksums(stop)));
  impl_->checksums_verified.store(true);
  return absl::OkStatus();
}

bool StateMachine::checksums_verified() const { return impl_->checksums_verified.load(); }

absl::StatusOr<std::unique_ptr<StateSnapshot>> StateMachine::NewSnapshot() const {
  std::shared_ptr<const Database> database = impl_->CurrentDatabase();
  STEAD_RETURN_IF_ERROR(database->damage());
  const rocksdb::Snapshot* snapshot = database->db()->GetSnapshot();
  // The applied record is read at the snapshot, so it matches the data the view shows
  // even while Apply runs concurrently.
  absl::StatusOr<pb::SnapshotMetadata> applied = database->ReadApplied(snapshot);
  if (!applied.ok()) {
    database->db()->ReleaseSnapshot(snapshot);
    return database->Observe(applied.status());
  }
  return std::make_unique<StateSnapshot>(
      std::make_unique<StateSnapshot::Impl>(std::move(database), snapshot, *std::move(applied)));
}

absl::StatusOr<pb::SnapshotManifest> StateMachine::CreateCheckpoint(const std::string& dir) {
  if (files::Exists(dir)) {
    return absl::AlreadyExistsError(absl::StrCat("checkpoint ", dir, " already exists"));
  }
  // RocksDB wants an absolute path and creates the directory itself.
  std::error_code error;
  const std::string absolute = std::filesystem::absolute(dir, error).lexically_normal().string();
  if (error) return files::ErrnoStatus(error.value(), "absolute", dir);
  const std::string parent = std::filesystem::path(absolute).parent_path().string();
  STEAD_RETURN_IF_ERROR(files::CreateDirectories(parent));
  const std::string partial = absl::StrCat(absolute, kPartialSuffix);
  STEAD_RETURN_IF_ERROR(files::RemoveAll(partial));  // Leftover of a crash.
  STEAD_RETURN_IF_ERROR(files::RemoveAll(absl::StrCat(partial, ".tmp")));  // RocksDB's own.

  pb::SnapshotMetadata state;
  const rocksdb::Snapshot* snapshot = nullptr;
  std::shared_ptr<Database> database;
  {
    // Apply waits only for the flush and the hard links; checksums and the key count
    // run afterwards on files and a snapshot that no longer change.
    MutexLock write_lock(&impl_->write_mu);
    database = impl_->CurrentDatabase();
    STEAD_RETURN_IF_ERROR(database->damage());
    state = applied();
    if (state.index() == 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          "checkpoint ", dir, ": nothing applied yet, a snapshot at index 0 is meaningless"));
    }
    // Without the WAL the memtables exist nowhere else: flush all column families
    // together so the files hold exactly `state`.
    STEAD_RETURN_IF_ERROR(database->FlushAll());
    rocksdb::Checkpoint* raw_checkpoint = nullptr;
    STEAD_RETURN_IF_ERROR(internal::FromRocks(
        rocksdb::Checkpoint::Create(database->db(), &raw_checkpoint), "create checkpoint"));
    const std::unique_ptr<rocksdb::Checkpoint> checkpoint(raw_checkpoint);
    STEAD_RETURN_IF_ERROR(internal::FromRocks(checkpoint->CreateCheckpoint(partial),
                                              absl::StrCat("checkpoint ", partial)));
    snapshot = database->db()->GetSnapshot();
  }
  absl::StatusOr<pb::SnapshotManifest> described =
      Observed(*database, impl_->DescribeState(*database, state, snapshot));
  database->db()->ReleaseSnapshot(snapshot);
  STEAD_ASSIGN_OR_RETURN(pb::SnapshotManifest manifest, std::move(described));
  STEAD_ASSIGN_OR_RETURN(manifest, DescribeCheckpointFiles(partial, std::move(manifest)));
  STEAD_RETURN_IF_ERROR(WriteManifest(partial, manifest));
  STEAD_RETURN_IF_ERROR(files::Rename(partial, absolute));
  STEAD_RETURN_IF_ERROR(files::SyncPath(parent));
  STEAD_LOG(impl_->options.logger, Info)
      << "checkpoint=" << absolute << " index=" << state.index() << " term=" << state.term()
      << " files=" << manifest.files_size() << " bytes=" << manifest.total_bytes()
      << " keys=" << manifest.key_count();
  return manifest;
}

absl::StatusOr<pb::SnapshotManifest> StateMachine::Impl::DescribeState(
    const Database& live, const pb::SnapshotMetadata& state,
    const rocksdb::Snapshot* snapshot) const {
  pb::SnapshotManifest manifest;
  manifest.set_format_version(kCheckpointFormatVersion);
  manifest.set_cluster_id(node_metadata.cluster_id());
  *manifest.mutable_raft() = state;
  manifest.set_created_unix_ms(absl::ToUnixMillis(options.clock()));
  manifest.set_created_by_node_id(node_metadata.node_id());
  manifest.set_created_by_name(node_metadata.node_name());
  // `snapshot` was taken with `state` applied and nothing after it.
  STEAD_ASSIGN_OR_RETURN(const uint64_t key_count, live.CountUserKeys(snapshot));
  manifest.set_key_count(key_count);
  return manifest;
}

absl::StatusOr<raft::Index> StateMachine::Flush() {
  MutexLock write_lock(&impl_->write_mu);
  // Under write_mu no Apply runs, so everything up to this index is in the flush.
  const raft::Index index = applied_index();
  STEAD_RETURN_IF_ERROR(impl_->CurrentDatabase()->FlushAll());
  return index;
}

std::vector<std::string> StateMachine::keyspaces() const {
  return impl_->CurrentDatabase()->KeyspaceNames();
}

StateMachine::MemoryUsage StateMachine::memory_usage() const {
  const auto database = impl_->CurrentDatabase();
  return MemoryUsage{.memtable_bytes = database->MemtableBytes(),
                     .block_cache_bytes = database->BlockCacheBytes()};
}

absl::StatusOr<pb::SnapshotManifest> StateMachine::ReplaceWithCheckpoint(
    const std::string& checkpoint_dir) {
  const StateMachineOptions& options = impl_->options;
  // Verified before Apply is held up: reading every file of a large checkpoint takes
  // long, and nothing else may write to it meanwhile (contract of VerifyCheckpoint).
  STEAD_ASSIGN_OR_RETURN(
      const pb::SnapshotManifest manifest,
      internal::VerifyCheckpointForInstall(checkpoint_dir, impl_->node_metadata.cluster_id(),
                                           /*allow_other_cluster=*/false));
  MutexLock write_lock(&impl_->write_mu);
  STEAD_RETURN_IF_ERROR(CheckCheckpointIsAhead(manifest, applied(), checkpoint_dir));
  STEAD_ASSIGN_OR_RETURN(
      internal::StagedDatabase staged,
      internal::StageCheckpoint(options, checkpoint_dir, manifest, impl_->node_metadata));
  const absl::Status switched = WriteActive(options.data_dir, staged.name);
  if (!switched.ok()) {
    // The rename may have happened before the error (a failed fsync of the dir): then
    // the next Open serves the new state, and so must this one from now on.
    const absl::StatusOr<std::optional<std::string>> active = ReadActive(options.data_dir);
    if (!active.ok() || *active != staged.name) {
      // Removing the staged copy is only safe when ACTIVE surely names another one.
      if (active.ok()) staged.database->RemoveDirectoryOnClose();
      return switched;
    }
    STEAD_LOG(options.logger, Error) << "data_dir=" << options.data_dir << " ACTIVE names "
                                     << staged.name << " but writing it failed: " << switched
                                     << "; serving the new state, check the data volume";
  }
  internal::ReachedStep(options, InstallStep::kSwitched);
  STEAD_LOG(options.logger, Info) << "data_dir=" << options.data_dir
                                  << " replaced the state with checkpoint " << checkpoint_dir
                                  << " index=" << manifest.raft().index()
                                  << " term=" << manifest.raft().term() << " as " << staged.name;
  impl_->SwitchTo(std::move(staged));
  if (!switched.ok()) return switched;
  return manifest;
}

void StateMachine::Impl::SwitchTo(internal::StagedDatabase staged) {
  std::shared_ptr<Database> retired;
  {
    MutexLock state_lock(&state_mu);
    retired = std::move(database);
    database = std::move(staged.database);
    applied = std::move(staged.applied);
  }
  // ACTIVE no longer names it. Closed and removed here, or by the last StateSnapshot
  // still reading it; outside state_mu, as closing flushes and removing is I/O.
  retired->RemoveDirectoryOnClose();
}

}  // namespace stead::storage
