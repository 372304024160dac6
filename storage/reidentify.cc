#include "storage/reidentify.h"

#include <algorithm>
#include <memory>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "base/status_macros.h"
#include "storage/checkpoint.h"
#include "storage/checkpoint_files.h"
#include "storage/state_machine.h"
#include "storage/state_machine_dir.h"

namespace stead::storage {
namespace {

// A token is one short line; anything bigger is not ours.
constexpr uint64_t kMaxTokenFileBytes = 256;
constexpr char kStagingDirName[] = "reidentify";

std::string TokenPath(const std::string& data_dir) {
  return files::JoinPath(data_dir, kIdentityTokenFileName);
}

std::string StagingDir(const std::string& data_dir) {
  return files::JoinPath(files::JoinPath(data_dir, kCheckpointsDirName), kStagingDirName);
}

std::string StagedCheckpoint(const std::string& data_dir) {
  return files::JoinPath(StagingDir(data_dir), "checkpoint");
}

// Written once the checkpoint is complete, before anything is cleared: from then on the
// staged checkpoint is the member's state, whatever else the volumes hold.
std::string ClearingMarker(const std::string& data_dir) {
  return files::JoinPath(StagingDir(data_dir), "CLEARING");
}

// Whether `dir` holds nothing but "lost+found" and the names in `ignored`.
absl::StatusOr<bool> HoldsNothingBut(const std::string& dir,
                                     const std::vector<std::string>& ignored) {
  if (!files::IsDirectory(dir)) return !files::Exists(dir);
  STEAD_ASSIGN_OR_RETURN(const std::vector<std::string> names, files::ListDirectory(dir));
  for (const std::string& name : names) {
    if (name == "lost+found") continue;
    if (std::find(ignored.begin(), ignored.end(), name) == ignored.end()) return false;
  }
  return true;
}

void Report(const ReidentifyOptions& options, absl::string_view phase) {
  if (options.member.progress) options.member.progress(phase, 0, 0);
}

absl::Status Reached(const ReidentifyOptions& options, ReidentifyStep step) {
  return options.step_for_testing ? options.step_for_testing(step) : absl::OkStatus();
}

// Step 1: the state machine of the data volume, opened under its own identity, as a
// checkpoint in the staging dir. Leaves the old member as it was.
absl::StatusOr<pb::SnapshotManifest> TakeState(const ReidentifyOptions& options) {
  const std::string& data_dir = options.member.data_dir;
  STEAD_ASSIGN_OR_RETURN(const std::optional<pb::NodeMetadata> metadata,
                         StateMachine::ReadNodeMetadata(data_dir));
  if (!metadata.has_value()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "data dir ", data_dir,
        " holds no state machine to re-identify (its member never started serving): wipe "
        "both volumes to start this member empty"));
  }
  Report(options, "take");
  // Leftovers of an interrupted take (a partial checkpoint) go first.
  STEAD_RETURN_IF_ERROR(files::RemoveAll(StagingDir(data_dir)));
  STEAD_RETURN_IF_ERROR(files::CreateDirectories(StagingDir(data_dir)));
  STEAD_RETURN_IF_ERROR(files::SyncPath(files::JoinPath(data_dir, kCheckpointsDirName)));
  STEAD_RETURN_IF_ERROR(files::SyncPath(data_dir));
  StateMachineOptions state_options;
  state_options.data_dir = data_dir;
  state_options.identity = {metadata->cluster_id(), metadata->node_id(), metadata->node_name()};
  state_options.keyspaces = options.member.keyspaces;
  state_options.logger = options.member.logger;
  STEAD_ASSIGN_OR_RETURN(std::unique_ptr<StateMachine> state, StateMachine::Open(state_options));
  // Appears whole or not at all (built under .partial, fsynced, renamed, parent fsynced).
  return Annotate(state->CreateCheckpoint(StagedCheckpoint(data_dir)),
                  "take a checkpoint of the cloned state");
}

// Step 2: the marker, then everything but the staging checkpoint goes.
absl::Status ClearAllButStaging(const ReidentifyOptions& options) {
  const std::string& data_dir = options.member.data_dir;
  Report(options, "clear");
  STEAD_RETURN_IF_ERROR(files::WriteFileAtomically(ClearingMarker(data_dir), "clearing\n"));
  STEAD_RETURN_IF_ERROR(files::RemoveAll(TokenPath(data_dir)));
  STEAD_RETURN_IF_ERROR(files::SyncPath(data_dir));
  STEAD_RETURN_IF_ERROR(ClearVolume(files::JoinPath(data_dir, kCheckpointsDirName), kStagingDirName));
  STEAD_RETURN_IF_ERROR(ClearVolume(data_dir, kCheckpointsDirName));
  return ClearVolume(options.member.wal_dir);
}

}  // namespace

absl::StatusOr<std::optional<std::string>> ReadIdentityToken(const std::string& data_dir) {
  const std::string path = TokenPath(data_dir);
  if (!files::Exists(path)) return std::optional<std::string>();
  STEAD_ASSIGN_OR_RETURN(const std::string contents, files::ReadFile(path, kMaxTokenFileBytes));
  const std::string token(absl::StripAsciiWhitespace(contents));
  for (const char c : token) {
    if (!absl::ascii_isgraph(static_cast<unsigned char>(c))) {
      return absl::DataLossError(absl::StrCat(path, " holds '", absl::CHexEscape(contents),
                                              "', not an identity token"));
    }
  }
  if (token.empty()) return absl::DataLossError(absl::StrCat(path, " is empty"));
  return std::optional<std::string>(token);
}

absl::Status WriteIdentityToken(const std::string& data_dir, absl::string_view token) {
  STEAD_RETURN_IF_ERROR(files::CreateDirectories(data_dir));
  return files::WriteFileAtomically(TokenPath(data_dir), absl::StrCat(token, "\n"));
}

bool ReidentificationInterrupted(const std::string& data_dir) {
  return files::Exists(ClearingMarker(data_dir));
}

absl::Status RemoveAbandonedTake(const std::string& data_dir) {
  if (ReidentificationInterrupted(data_dir) || !files::Exists(StagingDir(data_dir))) {
    return absl::OkStatus();
  }
  STEAD_RETURN_IF_ERROR(files::RemoveAll(StagingDir(data_dir)));
  return files::SyncPath(files::JoinPath(data_dir, kCheckpointsDirName));
}

absl::StatusOr<VolumeIdentity> InspectVolumeIdentity(const std::string& data_dir,
                                                     const std::string& wal_dir,
                                                     absl::string_view token) {
  STEAD_ASSIGN_OR_RETURN(const std::optional<std::string> recorded, ReadIdentityToken(data_dir));
  STEAD_ASSIGN_OR_RETURN(
      const bool data_empty,
      HoldsNothingBut(data_dir, {kIdentityTokenFileName, absl::StrCat(kIdentityTokenFileName, ".tmp")}));
  STEAD_ASSIGN_OR_RETURN(const bool wal_empty, HoldsNothingBut(wal_dir, {}));
  if (data_empty && wal_empty) return VolumeIdentity::kEmpty;
  // An interrupted clear may have left the old token behind; a re-identification
  // records the new one only when it is complete.
  if (ReidentificationInterrupted(data_dir)) return VolumeIdentity::kOther;
  if (recorded == token) return VolumeIdentity::kSameToken;
  return VolumeIdentity::kOther;
}

absl::StatusOr<ReidentifyResult> Reidentify(const ReidentifyOptions& options) {
  STEAD_RETURN_IF_ERROR(ValidateNewMemberOptions(options.member));
  if (options.token.empty()) return absl::InvalidArgumentError("no identity token given");
  const std::string& data_dir = options.member.data_dir;
  const std::string staged = StagedCheckpoint(data_dir);
  ReidentifyResult result;
  // Once clearing began, the old member may be partly gone: the staged checkpoint is
  // the only copy of the state. Before, the old member is whole and is taken again
  // (a staged checkpoint of an abandoned take may be older than it).
  result.resumed = ReidentificationInterrupted(data_dir);
  if (result.resumed) {
    STEAD_LOG(options.member.logger, Warning)
        << "an earlier re-identification of " << data_dir
        << " did not finish: continuing from its checkpoint " << staged;
    STEAD_ASSIGN_OR_RETURN(result.manifest, ReadManifest(staged));
  } else {
    STEAD_ASSIGN_OR_RETURN(result.manifest, TakeState(options));
    STEAD_RETURN_IF_ERROR(Reached(options, ReidentifyStep::kTaken));
  }
  result.old_cluster_id = result.manifest.cluster_id();

  STEAD_RETURN_IF_ERROR(ClearAllButStaging(options));
  STEAD_RETURN_IF_ERROR(Reached(options, ReidentifyStep::kCleared));
  // Verifies the checkpoint in full before it goes live.
  STEAD_ASSIGN_OR_RETURN(const pb::SnapshotMetadata installed,
                         InstallCheckpointAsNewCluster(options.member, staged));
  STEAD_RETURN_IF_ERROR(Reached(options, ReidentifyStep::kInstalled));
  result.index = installed.index();
  result.term = installed.term();

  // The installed database holds its own links to the checkpoint's files.
  STEAD_RETURN_IF_ERROR(files::RemoveAll(StagingDir(data_dir)));
  STEAD_RETURN_IF_ERROR(files::SyncPath(files::JoinPath(data_dir, kCheckpointsDirName)));
  STEAD_RETURN_IF_ERROR(Reached(options, ReidentifyStep::kUnstaged));
  STEAD_RETURN_IF_ERROR(WriteIdentityToken(data_dir, options.token));
  return result;
}

}  // namespace stead::storage
