#include "storage/state_machine_db.h"

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "base/check.h"
#include "base/status_macros.h"
#include "rocksdb/cache.h"
#include "rocksdb/filter_policy.h"
#include "rocksdb/table.h"
#include "rocksdb/metadata.h"
#include "rocksdb/options.h"
#include "rocksdb/sst_file_reader.h"
#include "rocksdb/table.h"
#include "rocksdb/write_buffer_manager.h"
#include "storage/checkpoint_files.h"
#include "storage/node_metadata.h"

namespace stead::storage::internal {
namespace {

// RocksDB's info log, passed to the state machine's Logger (errors only, as warnings:
// stead reports the failures that matter itself, with what to do, and RocksDB warns of
// routine events, e.g. at every checkpoint) instead of a LOG file in the database
// directory. That file is on the data volume: once a
// write to it fails (the volume is full), RocksDB's file writer refuses every later
// line with an assertion, and a librocksdb built with assertions (Debian's) aborts the
// process at the next line logged, e.g. while closing the database.
class RocksLogger final : public rocksdb::Logger {
 public:
  explicit RocksLogger(stead::Logger logger)
      : rocksdb::Logger(rocksdb::InfoLogLevel::ERROR_LEVEL), logger_(std::move(logger)) {}

  void Logv(const char* format, va_list arguments) override {
    Logv(rocksdb::InfoLogLevel::INFO_LEVEL, format, arguments);
  }
  void Logv(const rocksdb::InfoLogLevel level, const char* format, va_list arguments) override {
    // Header lines (version, options) rank above errors but say nothing is wrong.
    if (level < GetInfoLogLevel() || level == rocksdb::InfoLogLevel::HEADER_LEVEL) return;
    char line[1024];
    std::vsnprintf(line, sizeof(line), format, arguments);
    STEAD_LOG(logger_, Warning) << "rocksdb: " << absl::StripTrailingAsciiWhitespace(line);
  }

 private:
  const stead::Logger logger_;
};

rocksdb::DBOptions MakeDbOptions(const StateMachineOptions& options, bool create,
                                 const std::shared_ptr<rocksdb::Cache>& cache) {
  rocksdb::DBOptions db_options;
  if (cache != nullptr) {
    // Memtables are charged to the block cache, so the two stay within its capacity.
    db_options.write_buffer_manager = std::make_shared<rocksdb::WriteBufferManager>(
        options.memory_limit_bytes / 4, cache);
  }
  db_options.create_if_missing = create;
  db_options.create_missing_column_families = create;
  // The WAL is disabled on every write (see state_machine.h), so flushes of the column
  // families must be atomic: the applied index in `meta` must never be durable without
  // the data it covers, nor the other way round.
  db_options.atomic_flush = true;
  db_options.info_log = std::make_shared<RocksLogger>(options.logger);
  // RocksDB flushes unpersisted memtables on close unless told not to; crash tests turn
  // that off so closing behaves like a crash (memtables lost, the Raft log replays).
  db_options.avoid_flush_during_shutdown = !options.flush_on_close;
  return db_options;
}

rocksdb::ColumnFamilyOptions MakeColumnFamilyOptions(const StateMachineOptions& options,
                                                     const std::shared_ptr<rocksdb::Cache>& cache) {
  rocksdb::ColumnFamilyOptions cf_options;
  cf_options.write_buffer_size = options.write_buffer_bytes;
  // Every applied write reads the key's previous version first (its revisions): a
  // bloom filter per SST file, and one over each memtable, let that read skip the
  // files and memtables that do not hold the key instead of searching each.
  rocksdb::BlockBasedTableOptions table;
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  cf_options.memtable_whole_key_filtering = true;
  cf_options.memtable_prefix_bloom_size_ratio = 0.02;
  if (cache != nullptr) {
    cf_options.write_buffer_size =
        std::min(options.write_buffer_bytes, std::max<size_t>(options.memory_limit_bytes / 16, 1 << 20));
    table.block_cache = cache;
    // The filters count against the memory limit too.
    table.cache_index_and_filter_blocks = true;
    table.pin_l0_filter_and_index_blocks_in_cache = true;
  }
  cf_options.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  return cf_options;
}

// StateMachineOptions::apply_cache_bytes, within the memory limit.
size_t ApplyCacheBytes(const StateMachineOptions& options) {
  if (options.memory_limit_bytes == 0) return options.apply_cache_bytes;
  return std::min(options.apply_cache_bytes, options.memory_limit_bytes / 16);
}

bool IsUserKeyspace(absl::string_view name) {
  return name != kMetaColumnFamily && name != rocksdb::kDefaultColumnFamilyName;
}

}  // namespace

absl::Status WithCorruptStateAdvice(const absl::Status& damage) {
  return absl::DataLossError(absl::StrCat(damage.message(), ": ", kCorruptStateAdvice));
}

absl::Status FromRocks(const rocksdb::Status& status, absl::string_view context) {
  if (status.ok()) return absl::OkStatus();
  const std::string message = absl::StrCat(context, ": rocksdb: ", status.ToString());
  if (status.IsCorruption()) return absl::DataLossError(message);
  if (status.IsNoSpace()) return absl::ResourceExhaustedError(message);
  if (status.IsNotFound()) return absl::NotFoundError(message);
  if (status.IsBusy() || status.IsTryAgain()) return absl::UnavailableError(message);
  if (status.IsInvalidArgument()) return absl::InvalidArgumentError(message);
  return absl::InternalError(message);
}

absl::StatusOr<std::unique_ptr<Database>> Database::Open(const std::string& path,
                                                        const StateMachineOptions& options,
                                                        Mode mode) {
  std::unique_ptr<Database> database(new Database());
  database->path_ = path;
  database->logger_ = options.logger;
  if (options.memory_limit_bytes != 0) {
    database->block_cache_ = rocksdb::NewLRUCache(options.memory_limit_bytes / 2);
  }
  database->column_family_options_ = MakeColumnFamilyOptions(options, database->block_cache_);
  database->apply_cache_ = std::make_unique<ApplyCache>(ApplyCacheBytes(options));
  const rocksdb::DBOptions db_options =
      MakeDbOptions(options, mode == Mode::kCreate, database->block_cache_);

  std::vector<std::string> names;
  const rocksdb::Status listed = rocksdb::DB::ListColumnFamilies(db_options, path, &names);
  if (!listed.ok()) {
    // A database that does not exist yet has nothing to list; anything else is real.
    if (mode != Mode::kCreate || files::Exists(files::JoinPath(path, "CURRENT"))) {
      return FromRocks(listed, absl::StrCat("list column families of ", path));
    }
    names.clear();
  }
  if (mode == Mode::kCreate) {
    for (const std::string& wanted :
         {std::string(rocksdb::kDefaultColumnFamilyName), std::string(kMetaColumnFamily)}) {
      if (std::find(names.begin(), names.end(), wanted) == names.end()) names.push_back(wanted);
    }
  }
  if (std::find(names.begin(), names.end(), kMetaColumnFamily) == names.end()) {
    return absl::DataLossError(absl::StrCat("database ", path, " has no '", kMetaColumnFamily,
                                            "' column family: not a stead state machine"));
  }
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  for (const std::string& name : names) {
    descriptors.emplace_back(name, database->column_family_options_);
  }
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw_db = nullptr;
  const rocksdb::Status opened =
      mode == Mode::kReadOnly
          ? rocksdb::DB::OpenForReadOnly(db_options, path, descriptors, &handles, &raw_db)
          : rocksdb::DB::Open(db_options, path, descriptors, &handles, &raw_db);
  if (!opened.ok()) {
    const absl::Status status = FromRocks(opened, absl::StrCat("open ", path));
    // Opening reads the files' metadata blocks: damage found there is damage all the same.
    return opened.IsCorruption() ? WithCorruptStateAdvice(status) : status;
  }
  database->db_.reset(raw_db);
  STEAD_CHECK_EQ(handles.size(), names.size());
  for (size_t i = 0; i < names.size(); ++i) database->handles_[names[i]] = handles[i];
  database->meta_ = database->handles_.at(kMetaColumnFamily);
  return database;
}

Database::~Database() {
  const absl::Status closed = Close();
  // A destructor cannot report: a close error (a failed final flush) loses nothing the
  // Raft log cannot replay, since the WAL is disabled by design.
  if (!closed.ok()) STEAD_LOG(logger_, Error) << "closing " << path_ << ": " << closed;
  if (!remove_on_close_.load()) return;
  const absl::Status removed = files::RemoveAll(path_);
  // Nothing depends on the removal: the next Open removes any database ACTIVE does not
  // name.
  if (!removed.ok()) {
    STEAD_LOG(logger_, Warning) << "could not remove replaced database " << path_ << ": "
                                << removed;
    return;
  }
  STEAD_LOG(logger_, Info) << "removed replaced database " << path_;
}

absl::Status Database::Close() {
  if (db_ == nullptr) return absl::OkStatus();
  for (auto& [name, handle] : handles_) {
    const rocksdb::Status destroyed = db_->DestroyColumnFamilyHandle(handle);
    STEAD_CHECK(destroyed.ok()) << destroyed.ToString();
  }
  handles_.clear();
  meta_ = nullptr;
  const rocksdb::Status closed = db_->Close();
  db_.reset();
  return FromRocks(closed, absl::StrCat("close ", path_));
}

absl::Status Database::VerifyChecksums(const std::atomic<bool>& stop) const {
  STEAD_RETURN_IF_ERROR(FromRocks(db_->DisableFileDeletions(), "hold off file deletions"));
  std::vector<rocksdb::LiveFileMetaData> live_files;
  db_->GetLiveFilesMetaData(&live_files);
  const absl::Status verified = [&]() -> absl::Status {
    const rocksdb::Options options(db_->GetDBOptions(), column_family_options_);
    rocksdb::ReadOptions read_options;
    read_options.fill_cache = false;  // A one-off full read must not evict hot blocks.
    for (const rocksdb::LiveFileMetaData& file : live_files) {
      if (stop.load()) return absl::CancelledError("checksum verification stopped");
      const std::string path = files::JoinPath(file.directory, file.relative_filename);
      rocksdb::SstFileReader reader(options);
      STEAD_RETURN_IF_ERROR(FromRocks(reader.Open(path), absl::StrCat("open ", path)));
      STEAD_RETURN_IF_ERROR(FromRocks(reader.VerifyChecksum(read_options),
                                      absl::StrCat("verify the checksums of ", path)));
    }
    return absl::OkStatus();
  }();
  // Deletions resume at once; the files verified stay what they were (SSTs are immutable).
  const absl::Status resumed = FromRocks(db_->EnableFileDeletions(/*force=*/false),
                                         "resume file deletions");
  STEAD_RETURN_IF_ERROR(verified);
  return resumed;
}

absl::Status Database::damage() const {
  if (!damaged_.load(std::memory_order_acquire)) return absl::OkStatus();
  MutexLock lock(&damage_mu_);
  return damage_;
}

absl::Status Database::Observe(absl::Status status) const {
  if (!absl::IsDataLoss(status)) return status;
  MutexLock lock(&damage_mu_);
  if (damage_.ok()) {
    damage_ = WithCorruptStateAdvice(status);
    damaged_.store(true, std::memory_order_release);
    STEAD_LOG(logger_, Error) << damage_.message();
  }
  return damage_;
}

absl::Status Database::EnsureKeyspaces(const std::vector<std::string>& keyspaces) {
  for (const std::string& name : keyspaces) {
    if (handles_.count(name) != 0) continue;
    rocksdb::ColumnFamilyHandle* handle = nullptr;
    STEAD_RETURN_IF_ERROR(FromRocks(db_->CreateColumnFamily(column_family_options_, name, &handle),
                                    absl::StrCat("create keyspace ", name, " in ", path_)));
    handles_[name] = handle;
  }
  return absl::OkStatus();
}

rocksdb::ColumnFamilyHandle* Database::Keyspace(absl::string_view name) const {
  if (!IsUserKeyspace(name)) return nullptr;
  const auto it = handles_.find(name);
  return it == handles_.end() ? nullptr : it->second;
}

std::vector<std::string> Database::KeyspaceNames() const {
  std::vector<std::string> names;
  for (const auto& [name, handle] : handles_) {
    if (IsUserKeyspace(name)) names.push_back(name);
  }
  return names;  // std::map keeps them sorted.
}

uint64_t Database::SumIntProperty(const std::string& property) const {
  uint64_t total = 0;
  for (const auto& [name, handle] : handles_) {
    uint64_t bytes = 0;
    if (db_->GetIntProperty(handle, property, &bytes)) total += bytes;
  }
  return total;
}

uint64_t Database::MemtableBytes() const {
  return SumIntProperty(rocksdb::DB::Properties::kSizeAllMemTables);
}

uint64_t Database::BlockCacheBytes() const {
  if (block_cache_ != nullptr) return block_cache_->GetUsage();
  return SumIntProperty(rocksdb::DB::Properties::kBlockCacheUsage);
}

absl::Status Database::FlushAll() {
  std::vector<rocksdb::ColumnFamilyHandle*> all;
  for (const auto& [name, handle] : handles_) all.push_back(handle);
  rocksdb::FlushOptions flush_options;
  flush_options.wait = true;
  return FromRocks(db_->Flush(flush_options, all), absl::StrCat("flush ", path_));
}

absl::StatusOr<pb::SnapshotMetadata> Database::ReadApplied(
    const rocksdb::Snapshot* snapshot) const {
  rocksdb::ReadOptions read_options;
  read_options.snapshot = snapshot;
  std::string bytes;
  const rocksdb::Status got = db_->Get(read_options, meta_, kAppliedKey, &bytes);
  pb::SnapshotMetadata applied;
  if (got.IsNotFound()) return applied;
  STEAD_RETURN_IF_ERROR(FromRocks(got, absl::StrCat("read applied index in ", path_)));
  if (!applied.ParseFromString(bytes)) {
    return absl::DataLossError(absl::StrCat(path_, ": applied state in meta does not parse"));
  }
  return applied;
}

absl::StatusOr<std::optional<pb::NodeMetadata>> Database::ReadNodeMetadata() const {
  std::string bytes;
  const rocksdb::Status got = db_->Get(rocksdb::ReadOptions(), meta_, kNodeMetadataKey, &bytes);
  if (got.IsNotFound()) return std::optional<pb::NodeMetadata>();
  if (got.IsCorruption()) {
    return WithCorruptStateAdvice(FromRocks(got, absl::StrCat("read node metadata in ", path_)));
  }
  STEAD_RETURN_IF_ERROR(FromRocks(got, absl::StrCat("read node metadata in ", path_)));
  STEAD_ASSIGN_OR_RETURN(pb::NodeMetadata metadata,
                         Annotate(DecodeNodeMetadata(bytes), absl::StrCat(path_, ": meta")));
  return std::optional<pb::NodeMetadata>(std::move(metadata));
}

absl::Status Database::WriteNodeMetadata(const pb::NodeMetadata& metadata) {
  rocksdb::WriteOptions write_options;
  write_options.disableWAL = true;
  STEAD_RETURN_IF_ERROR(
      FromRocks(db_->Put(write_options, meta_, kNodeMetadataKey, EncodeNodeMetadata(metadata)),
                absl::StrCat("write node metadata in ", path_)));
  // With the WAL off a Put is only in the memtable: flush so the identity is durable
  // before anything (ACTIVE, a vote) depends on it.
  return FlushAll();
}

absl::StatusOr<uint64_t> Database::CountUserKeys(const rocksdb::Snapshot* snapshot) const {
  uint64_t count = 0;
  for (const auto& [name, handle] : handles_) {
    if (!IsUserKeyspace(name)) continue;
    rocksdb::ReadOptions read_options;
    read_options.snapshot = snapshot;
    read_options.fill_cache = false;  // A one-off full scan must not evict hot blocks.
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(read_options, handle));
    for (it->SeekToFirst(); it->Valid(); it->Next()) ++count;
    STEAD_RETURN_IF_ERROR(FromRocks(it->status(), absl::StrCat("count keys of ", name)));
  }
  return count;
}

absl::StatusOr<ContentHash> Database::HashUserKeys(
    const rocksdb::Snapshot* snapshot, const std::vector<std::string>& excluded) const {
  ContentHasher hasher;
  // handles_ is ordered by name: keyspaces are hashed in byte order of their names.
  for (const auto& [name, handle] : handles_) {
    if (!IsUserKeyspace(name)) continue;
    if (std::find(excluded.begin(), excluded.end(), name) != excluded.end()) continue;
    rocksdb::ReadOptions read_options;
    read_options.snapshot = snapshot;
    read_options.fill_cache = false;  // A one-off full scan must not evict hot blocks.
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(read_options, handle));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      hasher.Add(name, absl::string_view(it->key().data(), it->key().size()),
                 absl::string_view(it->value().data(), it->value().size()));
    }
    STEAD_RETURN_IF_ERROR(FromRocks(it->status(), absl::StrCat("hash keys of ", name)));
  }
  return hasher.result();
}

absl::StatusOr<std::optional<std::string>> GetAt(const Database& database,
                                                 const rocksdb::Snapshot* snapshot,
                                                 absl::string_view keyspace,
                                                 absl::string_view key) {
  rocksdb::ColumnFamilyHandle* handle = database.Keyspace(keyspace);
  if (handle == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("unknown keyspace '", keyspace, "'"));
  }
  rocksdb::ReadOptions read_options;
  read_options.snapshot = snapshot;
  std::string value;
  const rocksdb::Status got =
      database.db()->Get(read_options, handle, rocksdb::Slice(key.data(), key.size()), &value);
  if (got.IsNotFound()) return std::optional<std::string>();
  STEAD_RETURN_IF_ERROR(FromRocks(got, absl::StrCat("get from keyspace ", keyspace)));
  return std::optional<std::string>(std::move(value));
}

absl::StatusOr<ScanResult> ScanAt(const Database& database, const rocksdb::Snapshot* snapshot,
                                  const ScanOptions& options) {
  rocksdb::ColumnFamilyHandle* handle = database.Keyspace(options.keyspace);
  if (handle == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("unknown keyspace '", options.keyspace, "'"));
  }
  if (options.limit == 0 || options.limit > kMaxScanLimit) {
    return absl::InvalidArgumentError(absl::StrCat("scan limit ", options.limit,
                                                   " is outside 1..", kMaxScanLimit));
  }
  ScanResult result;
  if (!options.end_key.empty() && options.end_key <= options.start_key) return result;

  // Both bounds go to RocksDB so it can skip whole files, and so SeekToLast lands on
  // the last key below end_key for reverse scans.
  const rocksdb::Slice lower(options.start_key);
  const rocksdb::Slice upper(options.end_key);
  rocksdb::ReadOptions read_options;
  read_options.snapshot = snapshot;
  if (!options.start_key.empty()) read_options.iterate_lower_bound = &lower;
  if (!options.end_key.empty()) read_options.iterate_upper_bound = &upper;
  std::unique_ptr<rocksdb::Iterator> it(database.db()->NewIterator(read_options, handle));
  if (options.reverse) {
    it->SeekToLast();
  } else {
    it->SeekToFirst();
  }
  size_t bytes = 0;
  while (it->Valid() && result.pairs.size() < options.limit &&
         (options.max_bytes == 0 || bytes < options.max_bytes)) {
    bytes += it->key().size() + it->value().size();
    result.pairs.push_back(KeyValue{it->key().ToString(), it->value().ToString()});
    if (options.reverse) {
      it->Prev();
    } else {
      it->Next();
    }
  }
  result.more = it->Valid();
  STEAD_RETURN_IF_ERROR(FromRocks(it->status(), absl::StrCat("scan keyspace ", options.keyspace)));
  return result;
}

}  // namespace stead::storage::internal
