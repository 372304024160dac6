// StateMachine::InstallCheckpoint: switching a data dir to a verified checkpoint.
//
// The steps, and what a crash after each leaves behind:
//   1. verify the checkpoint in full               -> nothing changed
//   2. stage it as a new "db-N" beside the live one -> ACTIVE still names the old db;
//      (SSTs hard-linked, the rest copied, fsynced)     the next Open removes db-N
//   3. open the staged db, check it holds the index  -> same as 2
//      the manifest claims, write this node's
//      metadata into it, flush, close
//   4. repoint ACTIVE at db-N (atomic rename, fsync) -> the new state is live
//   5. remove the old db                             -> the next Open removes it
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "storage/checkpoint.h"
#include "storage/checkpoint_files.h"
#include "storage/state_machine.h"
#include "storage/state_machine_db.h"
#include "storage/state_machine_dir.h"

namespace stead::storage {
namespace {

using internal::Database;

// SST and blob files are immutable once written, so the staged database may share them
// with the checkpoint through hard links. Everything else (MANIFEST, CURRENT, OPTIONS,
// WAL) RocksDB may append to or rewrite, so it gets a private copy.
bool IsImmutableRocksFile(absl::string_view name) {
  return absl::EndsWith(name, ".sst") || absl::EndsWith(name, ".blob");
}

absl::Status StageCheckpointFiles(const std::string& checkpoint_dir,
                                  const pb::SnapshotManifest& manifest,
                                  const std::string& staged) {
  STEAD_RETURN_IF_ERROR(files::CreateDirectories(staged));
  for (const pb::SnapshotFile& file : manifest.files()) {
    const std::string from = files::JoinPath(checkpoint_dir, file.name());
    const std::string to = files::JoinPath(staged, file.name());
    if (IsImmutableRocksFile(file.name())) {
      STEAD_RETURN_IF_ERROR(files::LinkOrCopyFile(from, to));
      continue;
    }
    STEAD_ASSIGN_OR_RETURN(const files::FileChecksum copied, files::CopyFile(from, to));
    // The checkpoint was verified a moment ago; a mismatch now means it changed under
    // us (or the disk is failing). Either way it must not go live.
    if (copied.size_bytes != file.size_bytes() || copied.crc32c != file.crc32c()) {
      return absl::DataLossError(absl::StrCat("checkpoint ", checkpoint_dir, ": file ",
                                              file.name(), " changed while being installed"));
    }
  }
  return files::SyncPath(staged);
}

// Checks that the data dir may take the checkpoint and returns the node metadata to
// write into it: the stored one if the dir is initialised (keeping its creation time),
// a new one otherwise.
absl::StatusOr<pb::NodeMetadata> MetadataForInstall(const StateMachineOptions& options,
                                                    const std::optional<std::string>& active) {
  if (!active.has_value()) {
    STEAD_RETURN_IF_ERROR(CheckNoForeignEntries(options.data_dir));
    return MakeNodeMetadata(options.identity, options.clock());
  }
  STEAD_ASSIGN_OR_RETURN(std::unique_ptr<Database> current,
                         Database::Open(files::JoinPath(options.data_dir, *active), options,
                                        Database::Mode::kReadOnly));
  STEAD_ASSIGN_OR_RETURN(const std::optional<pb::NodeMetadata> stored, current->ReadNodeMetadata());
  if (!stored.has_value()) {
    return absl::DataLossError(absl::StrCat("data dir ", options.data_dir, ": database ", *active,
                                            " has no node metadata; wipe the volume"));
  }
  STEAD_RETURN_IF_ERROR(CheckNodeMetadata(*stored, options.identity, options.data_dir));
  return *stored;
}

// Opens the staged database, checks it against the manifest and makes it this node's.
absl::Status AdoptStagedDatabase(const StateMachineOptions& options, const std::string& staged,
                                 const pb::SnapshotManifest& manifest,
                                 const pb::NodeMetadata& metadata) {
  STEAD_ASSIGN_OR_RETURN(std::unique_ptr<Database> database,
                         Database::Open(staged, options, Database::Mode::kExisting));
  STEAD_ASSIGN_OR_RETURN(const pb::SnapshotMetadata applied, database->ReadApplied(nullptr));
  if (applied.index() != manifest.raft().index() || applied.term() != manifest.raft().term()) {
    return absl::DataLossError(absl::StrCat(
        "checkpoint database holds index ", applied.index(), " term ", applied.term(),
        " but its manifest says index ", manifest.raft().index(), " term ",
        manifest.raft().term()));
  }
  // The checkpoint carries the metadata of the node that created it; this volume is ours.
  STEAD_RETURN_IF_ERROR(database->WriteNodeMetadata(metadata));  // Flushes.
  return absl::OkStatus();  // Closing `database` here makes the staged dir final.
}

}  // namespace

absl::StatusOr<pb::SnapshotManifest> StateMachine::InstallCheckpoint(
    const StateMachineOptions& options, const std::string& checkpoint_dir,
    bool allow_other_cluster) {
  if (options.data_dir.empty()) return absl::InvalidArgumentError("data dir is empty");
  STEAD_RETURN_IF_ERROR(ValidateNodeIdentity(options.identity));
  STEAD_ASSIGN_OR_RETURN(const pb::SnapshotManifest manifest, VerifyCheckpoint(checkpoint_dir));
  if (!allow_other_cluster && manifest.cluster_id() != options.identity.cluster_id) {
    return absl::FailedPreconditionError(absl::StrCat(
        "checkpoint ", checkpoint_dir, " is of cluster 0x", absl::Hex(manifest.cluster_id()),
        ", this node is in cluster 0x", absl::Hex(options.identity.cluster_id),
        ": install only snapshots of this cluster (restoring a backup into a new cluster "
        "must say so explicitly)"));
  }
  STEAD_ASSIGN_OR_RETURN(const std::unique_ptr<DataDirLock> lock,
                         DataDirLock::Acquire(options.data_dir));
  STEAD_ASSIGN_OR_RETURN(const std::optional<std::string> active, ReadActive(options.data_dir));
  STEAD_ASSIGN_OR_RETURN(const pb::NodeMetadata metadata, MetadataForInstall(options, active));
  STEAD_RETURN_IF_ERROR(RemoveStrayDatabases(options.data_dir, active.value_or(""), options.logger));

  STEAD_ASSIGN_OR_RETURN(const std::string staged_name, NextDatabaseDirName(options.data_dir));
  const std::string staged = files::JoinPath(options.data_dir, staged_name);
  STEAD_RETURN_IF_ERROR(StageCheckpointFiles(checkpoint_dir, manifest, staged));
  STEAD_RETURN_IF_ERROR(AdoptStagedDatabase(options, staged, manifest, metadata));
  STEAD_RETURN_IF_ERROR(files::SyncPath(staged));
  STEAD_RETURN_IF_ERROR(WriteActive(options.data_dir, staged_name));  // The switch.
  STEAD_LOG(options.logger, Info) << "data_dir=" << options.data_dir << " installed checkpoint "
                                  << checkpoint_dir << " index=" << manifest.raft().index()
                                  << " term=" << manifest.raft().term() << " as " << staged_name;
  if (active.has_value()) {
    const absl::Status removed = files::RemoveAll(files::JoinPath(options.data_dir, *active));
    // The switch already happened; a leftover old database is removed at the next Open.
    if (!removed.ok()) {
      STEAD_LOG(options.logger, Warning) << "data_dir=" << options.data_dir
                                         << " could not remove old database: " << removed;
    }
  }
  return manifest;
}

absl::StatusOr<std::unique_ptr<StateMachine>> StateMachine::OpenFromCheckpoint(
    StateMachineOptions options, const std::string& checkpoint_dir) {
  STEAD_RETURN_IF_ERROR(InstallCheckpoint(options, checkpoint_dir).status());
  return Open(std::move(options));
}

}  // namespace stead::storage
