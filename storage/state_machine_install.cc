// Switching a data dir to a verified checkpoint: StateMachine::InstallCheckpoint (the
// dir is closed) and StateMachine::ReplaceWithCheckpoint (an open state machine; see
// state_machine.cc) share the steps below.
//
// The steps, and what a crash after each leaves behind:
//   1. verify the checkpoint in full               -> nothing changed
//   2. stage it as a new "db-N" beside the live one -> ACTIVE still names the old db;
//      (SSTs hard-linked, the rest copied, fsynced)     the next Open removes db-N
//      [InstallStep::kStaged]
//   3. open the staged db, check it holds the index  -> same as 2
//      the manifest claims, write this node's
//      metadata into it, flush [InstallStep::kAdopted]
//   4. repoint ACTIVE at db-N (atomic rename, fsync) -> the new state is live
//      [InstallStep::kSwitched]
//   5. remove the old db (replace: once its last     -> the next Open removes it
//      reader is gone)
#include "storage/state_machine_install.h"

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
namespace internal {
namespace {

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
absl::StatusOr<StagedDatabase> AdoptStagedDatabase(const StateMachineOptions& options,
                                                   const std::string& staged_path,
                                                   const pb::SnapshotManifest& manifest,
                                                   const pb::NodeMetadata& metadata) {
  StagedDatabase staged;
  STEAD_ASSIGN_OR_RETURN(staged.database,
                         Database::Open(staged_path, options, Database::Mode::kExisting));
  STEAD_ASSIGN_OR_RETURN(staged.applied, staged.database->ReadApplied(nullptr));
  if (staged.applied.index() != manifest.raft().index() ||
      staged.applied.term() != manifest.raft().term()) {
    return absl::DataLossError(
        absl::StrCat("checkpoint database holds index ", staged.applied.index(), " term ",
                     staged.applied.term(), " but its manifest says index ",
                     manifest.raft().index(), " term ", manifest.raft().term()));
  }
  // A replaced state machine serves its configured keyspaces at once, so they exist
  // before the switch; keyspaces only in the checkpoint stay readable.
  STEAD_RETURN_IF_ERROR(staged.database->EnsureKeyspaces(options.keyspaces));
  // The checkpoint carries the metadata of the node that created it; this volume is ours.
  STEAD_RETURN_IF_ERROR(staged.database->WriteNodeMetadata(metadata));  // Flushes.
  return staged;
}

}  // namespace

absl::StatusOr<pb::SnapshotManifest> VerifyCheckpointForInstall(const std::string& checkpoint_dir,
                                                                uint64_t cluster_id,
                                                                bool allow_other_cluster) {
  STEAD_ASSIGN_OR_RETURN(pb::SnapshotManifest manifest, VerifyCheckpoint(checkpoint_dir));
  if (!allow_other_cluster && manifest.cluster_id() != cluster_id) {
    return absl::FailedPreconditionError(absl::StrCat(
        "checkpoint ", checkpoint_dir, " is of cluster 0x", absl::Hex(manifest.cluster_id()),
        ", this node is in cluster 0x", absl::Hex(cluster_id),
        ": install only snapshots of this cluster (restoring a backup into a new cluster "
        "must say so explicitly)"));
  }
  return manifest;
}

absl::StatusOr<StagedDatabase> StageCheckpoint(const StateMachineOptions& options,
                                               const std::string& checkpoint_dir,
                                               const pb::SnapshotManifest& manifest,
                                               const pb::NodeMetadata& metadata) {
  STEAD_ASSIGN_OR_RETURN(const std::string staged_name, NextDatabaseDirName(options.data_dir));
  const std::string staged_path = files::JoinPath(options.data_dir, staged_name);
  absl::StatusOr<StagedDatabase> staged = [&]() -> absl::StatusOr<StagedDatabase> {
    STEAD_RETURN_IF_ERROR(StageCheckpointFiles(checkpoint_dir, manifest, staged_path));
    ReachedStep(options, InstallStep::kStaged);
    STEAD_ASSIGN_OR_RETURN(StagedDatabase adopted,
                           AdoptStagedDatabase(options, staged_path, manifest, metadata));
    STEAD_RETURN_IF_ERROR(files::SyncPath(staged_path));
    ReachedStep(options, InstallStep::kAdopted);
    return adopted;
  }();
  if (!staged.ok()) {
    // A running node may not restart for a long time: do not leave a copy of the
    // checkpoint behind. The lambda's database, if any, is closed by now.
    const absl::Status removed = files::RemoveAll(staged_path);
    if (!removed.ok()) {
      STEAD_LOG(options.logger, Warning) << "data_dir=" << options.data_dir << " could not remove "
                                         << staged_name << ": " << removed;
    }
    return staged;
  }
  staged->name = staged_name;
  return staged;
}

void ReachedStep(const StateMachineOptions& options, InstallStep step) {
  if (options.install_step_for_testing) options.install_step_for_testing(step);
}

}  // namespace internal

absl::StatusOr<pb::SnapshotManifest> StateMachine::InstallCheckpoint(
    const StateMachineOptions& options, const std::string& checkpoint_dir,
    bool allow_other_cluster) {
  if (options.data_dir.empty()) return absl::InvalidArgumentError("data dir is empty");
  STEAD_RETURN_IF_ERROR(ValidateNodeIdentity(options.identity));
  STEAD_ASSIGN_OR_RETURN(const pb::SnapshotManifest manifest,
                         internal::VerifyCheckpointForInstall(
                             checkpoint_dir, options.identity.cluster_id, allow_other_cluster));
  STEAD_ASSIGN_OR_RETURN(const std::unique_ptr<DataDirLock> lock,
                         DataDirLock::Acquire(options.data_dir));
  STEAD_ASSIGN_OR_RETURN(const std::optional<std::string> active, ReadActive(options.data_dir));
  STEAD_ASSIGN_OR_RETURN(const pb::NodeMetadata metadata,
                         internal::MetadataForInstall(options, active));
  STEAD_RETURN_IF_ERROR(RemoveStrayDatabases(options.data_dir, active.value_or(""), options.logger));

  STEAD_ASSIGN_OR_RETURN(internal::StagedDatabase staged,
                         internal::StageCheckpoint(options, checkpoint_dir, manifest, metadata));
  staged.database.reset();  // Closed: nothing of this process writes to it any more.
  STEAD_RETURN_IF_ERROR(WriteActive(options.data_dir, staged.name));  // The switch.
  internal::ReachedStep(options, InstallStep::kSwitched);
  STEAD_LOG(options.logger, Info) << "data_dir=" << options.data_dir << " installed checkpoint "
                                  << checkpoint_dir << " index=" << manifest.raft().index()
                                  << " term=" << manifest.raft().term() << " as " << staged.name;
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
