// The steps that switch a data dir to a checkpoint, shared by the two ways of doing it:
// StateMachine::InstallCheckpoint (no state machine open on the dir) and
// StateMachine::ReplaceWithCheckpoint (an open one, which keeps serving reads). The
// crash analysis of the steps is at the top of state_machine_install.cc.
//
// Thread-safety: none of these may run concurrently on one data dir; the caller holds
// the DataDirLock (install) or the state machine's write mutex (replace).
#ifndef STEAD_STORAGE_STATE_MACHINE_INSTALL_H_
#define STEAD_STORAGE_STATE_MACHINE_INSTALL_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "proto/snapshot.pb.h"
#include "storage/state_machine.h"
#include "storage/state_machine_db.h"

namespace stead::storage::internal {

// Step 1: verifies the checkpoint in full (DataLoss as VerifyCheckpoint) and checks it
// is of cluster `cluster_id` (FailedPrecondition) unless `allow_other_cluster`.
// Returns its manifest.
absl::StatusOr<pb::SnapshotManifest> VerifyCheckpointForInstall(const std::string& checkpoint_dir,
                                                                uint64_t cluster_id,
                                                                bool allow_other_cluster);

// A checkpoint staged beside the live database, adopted, still open.
struct StagedDatabase {
  std::string name;  // its directory under the data dir, "db-N"
  std::unique_ptr<Database> database;
  pb::SnapshotMetadata applied;  // as stored in it; index and term are the manifest's
};

// Steps 2 and 3: stages the verified checkpoint as a new "db-N" in options.data_dir (SST
// files hard-linked, the rest copied, fsynced), opens it, checks it holds the index and
// term of `manifest` (DataLoss otherwise), creates the keyspaces of options, writes
// `metadata` into it and flushes. On error the staged directory is removed (best
// effort; the next Open removes a leftover).
absl::StatusOr<StagedDatabase> StageCheckpoint(const StateMachineOptions& options,
                                               const std::string& checkpoint_dir,
                                               const pb::SnapshotManifest& manifest,
                                               const pb::NodeMetadata& metadata);

// Calls options.install_step_for_testing, if set, at `step`.
void ReachedStep(const StateMachineOptions& options, InstallStep step);

}  // namespace stead::storage::internal

#endif  // STEAD_STORAGE_STATE_MACHINE_INSTALL_H_
