#include "storage/restore.h"

#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "storage/backup_file.h"
#include "storage/checkpoint_files.h"
#include "storage/state_machine.h"
#include "storage/state_machine_dir.h"
#include "storage/wal.h"

namespace stead::storage {
namespace {

// Names a fresh volume may hold (a new ext4 file system's).
bool IsVolumeFurniture(const std::string& name) { return name == "lost+found"; }

std::string RestoreDir(const std::string& data_dir) {
  return files::JoinPath(files::JoinPath(data_dir, kCheckpointsDirName), "restore");
}

// The first entry of `dir` that makes it not empty; "" when empty or absent.
absl::StatusOr<std::string> FirstEntry(const std::string& dir) {
  if (!files::Exists(dir)) return std::string();
  if (!files::IsDirectory(dir)) return dir;
  STEAD_ASSIGN_OR_RETURN(const std::vector<std::string> names, files::ListDirectory(dir));
  for (const std::string& name : names) {
    if (!IsVolumeFurniture(name)) return name;
  }
  return std::string();
}

}  // namespace

absl::Status ValidateNewMemberOptions(const RestoreOptions& options) {
  if (options.data_dir.empty()) return absl::InvalidArgumentError("no data dir given");
  if (options.wal_dir.empty()) return absl::InvalidArgumentError("no WAL dir given");
  if (options.data_dir == options.wal_dir) {
    return absl::InvalidArgumentError("the data dir and the WAL dir must differ");
  }
  if (options.self.name().empty()) return absl::InvalidArgumentError("no member name given");
  if (options.self.id() == 0 || options.cluster_id == 0) {
    return absl::InvalidArgumentError("the new node id and cluster id must not be 0");
  }
  return absl::OkStatus();
}

namespace {

absl::Status ValidateOptions(const RestoreOptions& options) {
  if (options.backup_path.empty()) return absl::InvalidArgumentError("no backup file given");
  return ValidateNewMemberOptions(options);
}

void Report(const RestoreOptions& options, absl::string_view phase, uint64_t done, uint64_t total) {
  if (options.progress) options.progress(phase, done, total);
}

// Steps 2-6 of the header, on volumes checked to be empty and a verified backup.
absl::StatusOr<RestoreResult> Restore(const RestoreOptions& options) {
  const std::string restore_dir = RestoreDir(options.data_dir);
  STEAD_RETURN_IF_ERROR(files::CreateDirectories(restore_dir));
  STEAD_RETURN_IF_ERROR(files::SyncPath(files::JoinPath(options.data_dir, kCheckpointsDirName)));
  STEAD_RETURN_IF_ERROR(files::SyncPath(options.data_dir));
  const std::string staging = files::JoinPath(restore_dir, "checkpoint");
  RestoreResult result;
  STEAD_ASSIGN_OR_RETURN(
      result.manifest,
      RestoreBackupFile(options.backup_path, staging, [&](uint64_t done, uint64_t total) {
        Report(options, "unpack", done, total);
      }));

  STEAD_ASSIGN_OR_RETURN(const pb::SnapshotMetadata restored,
                         InstallCheckpointAsNewCluster(options, staging));
  // The installed database holds its own links to the files.
  STEAD_RETURN_IF_ERROR(files::RemoveAll(staging));

  // The commit point: without the restore dir, the volumes are a member's.
  STEAD_RETURN_IF_ERROR(files::RemoveAll(restore_dir));
  STEAD_RETURN_IF_ERROR(files::SyncPath(files::JoinPath(options.data_dir, kCheckpointsDirName)));
  result.index = restored.index();
  result.term = restored.term();
  return result;
}

}  // namespace

std::string MemberRecordKey(raft::NodeId id) {
  return absl::StrCat(absl::Hex(id, absl::kZeroPad16));
}

std::string MemberWalIdentity(uint64_t cluster_id, raft::NodeId node_id, absl::string_view name) {
  return absl::StrCat("cluster=", absl::Hex(cluster_id), " node=", node_id, " name=", name);
}

absl::StatusOr<pb::SnapshotMetadata> InstallCheckpointAsNewCluster(
    const RestoreOptions& options, const std::string& checkpoint_dir) {
  Report(options, "install", 0, 0);
  StateMachineOptions state_options;
  state_options.data_dir = options.data_dir;
  state_options.identity = {options.cluster_id, options.self.id(), options.self.name()};
  state_options.keyspaces = options.keyspaces;
  state_options.logger = options.logger;
  STEAD_RETURN_IF_ERROR(
      StateMachine::InstallCheckpoint(state_options, checkpoint_dir, /*allow_other_cluster=*/true)
          .status());
  pb::SnapshotMetadata restored;
  {
    STEAD_ASSIGN_OR_RETURN(std::unique_ptr<StateMachine> state, StateMachine::Open(state_options));
    const pb::SnapshotMetadata applied = state->applied();
    ApplyBatch batch;
    batch.index = applied.index() + 1;
    batch.term = applied.term();
    ScanOptions scan;
    scan.keyspace = kMembersKeyspace;
    scan.limit = kMaxScanLimit;
    STEAD_ASSIGN_OR_RETURN(const ScanResult old_members, state->Scan(scan));
    for (const KeyValue& record : old_members.pairs) {
      batch.mutations.push_back(Mutation::Delete(kMembersKeyspace, record.key));
    }
    batch.mutations.push_back(Mutation::Put(kMembersKeyspace, MemberRecordKey(options.self.id()),
                                            options.self.SerializeAsString()));
    pb::ConfState conf;
    conf.add_voters(options.self.id());
    batch.conf_state = conf;
    STEAD_RETURN_IF_ERROR(Annotate(state->Apply(batch), "rewrite the membership"));
    STEAD_RETURN_IF_ERROR(state->Flush().status());
    restored = state->applied();
  }

  Report(options, "wal", 0, 0);
  {
    WalOptions wal_options;
    wal_options.dir = options.wal_dir;
    wal_options.identity =
        MemberWalIdentity(options.cluster_id, options.self.id(), options.self.name());
    wal_options.logger = options.logger;
    STEAD_ASSIGN_OR_RETURN(std::unique_ptr<Wal> wal, Wal::Open(wal_options));
    WalWrite write;
    write.snapshot = restored;
    pb::HardState hard_state;
    hard_state.set_term(restored.term());
    hard_state.set_commit(restored.index());
    write.hard_state = hard_state;
    STEAD_RETURN_IF_ERROR(Annotate(wal->Write(std::move(write)), "initialise the WAL"));
  }

  return restored;
}

absl::Status ClearVolume(const std::string& dir, absl::string_view keep) {
  if (!files::IsDirectory(dir)) return absl::OkStatus();
  STEAD_ASSIGN_OR_RETURN(const std::vector<std::string> names, files::ListDirectory(dir));
  for (const std::string& name : names) {
    if (IsVolumeFurniture(name) || (!keep.empty() && name == keep)) continue;
    STEAD_RETURN_IF_ERROR(files::RemoveAll(files::JoinPath(dir, name)));
  }
  return files::SyncPath(dir);
}

absl::StatusOr<bool> VolumesAcceptRestore(const std::string& data_dir, const std::string& wal_dir) {
  if (files::IsDirectory(RestoreDir(data_dir))) return true;
  STEAD_ASSIGN_OR_RETURN(const std::string in_data, FirstEntry(data_dir));
  STEAD_ASSIGN_OR_RETURN(const std::string in_wal, FirstEntry(wal_dir));
  return in_data.empty() && in_wal.empty();
}

absl::StatusOr<RestoreResult> RestoreFromBackup(const RestoreOptions& options) {
  STEAD_RETURN_IF_ERROR(ValidateOptions(options));
  const bool interrupted = files::IsDirectory(RestoreDir(options.data_dir));
  if (!interrupted) {
    for (const std::string* dir : {&options.data_dir, &options.wal_dir}) {
      STEAD_ASSIGN_OR_RETURN(const std::string entry, FirstEntry(*dir));
      if (!entry.empty()) {
        return absl::FailedPreconditionError(absl::StrCat(
            *dir, " is not empty (it holds '", entry,
            "'): restore only into the empty volumes of a new member"));
      }
    }
  }
  // Read the whole backup before writing anything: a bad file changes nothing.
  STEAD_RETURN_IF_ERROR(VerifyBackupFile(options.backup_path, [&](uint64_t done, uint64_t total) {
                          Report(options, "verify", done, total);
                        }).status());
  if (interrupted) {
    // Everything in these volumes was written by the restore that did not finish.
    STEAD_LOG(options.logger, Warning) << "an earlier restore into " << options.data_dir
                                       << " did not finish: starting over";
    STEAD_RETURN_IF_ERROR(ClearVolume(options.data_dir));
    STEAD_RETURN_IF_ERROR(ClearVolume(options.wal_dir));
  }
  const bool created_data = !files::Exists(options.data_dir);
  const bool created_wal = !files::Exists(options.wal_dir);
  absl::StatusOr<RestoreResult> result = Restore(options);
  if (!result.ok()) {
    // Leave the volumes as they were; best effort, the status says what went wrong.
    (created_data ? files::RemoveAll(options.data_dir) : ClearVolume(options.data_dir))
        .IgnoreError();
    (created_wal ? files::RemoveAll(options.wal_dir) : ClearVolume(options.wal_dir))
        .IgnoreError();
  }
  return result;
}

}  // namespace stead::storage
