// Re-identifying cloned volumes (`stead --new-cluster-identity=TOKEN`).
//
// A clone's first member starts on volumes copied (VolumeSnapshots) from a member of
// another cluster: they carry that cluster's id, a node id and member addresses of
// that cluster. The token, chosen per clone, tells the two apart: every member records
// the token it was born under in <data-dir>/IDENTITY_TOKEN, so volumes recorded under
// another token, or none, are a copy.
//
// Re-identification turns such volumes into the first member of a NEW cluster holding
// exactly the data volume's state machine, as a restore would (storage/restore.h): a
// new cluster id and node id, a configuration of this member alone, a WAL that starts
// after a snapshot marker at the state's index. The WAL of the copy is not read: it
// may be of another instant than the data volume. Steps, each durable before the next:
//   1. take: a checkpoint of the data volume's state machine (opened under its own old
//      identity) in <data-dir>/checkpoints/reidentify/checkpoint, which appears whole
//      or not at all (StateMachine::CreateCheckpoint). The rest is untouched;
//   2. clear: mark the staging dir (CLEARING), then remove the recorded token and
//      everything on both volumes but the staging dir (and "lost+found");
//   3. install: InstallCheckpointAsNewCluster from the staging checkpoint (its SST
//      files are hard links, so this needs little space);
//   4. remove the staging dir, then record the token: done.
// A crash anywhere is repaired by the next call with the same options: before the
// marker of step 2 it starts over from the untouched old member (a staged checkpoint
// left behind may be older than the member, if it ran in between, and is taken again);
// from the marker on, the staged checkpoint is the state and the call continues at
// step 2 (clearing what an interrupted step 3 wrote); between the two halves of step 4 the volumes are a complete new
// member without a token, which no one has seen yet, and are re-identified once more.
// A member is never half old, half new, and the data is always in the old member, the
// staging checkpoint or the new member.
//
// Thread-safety: not for concurrent use on the same volumes; nothing else may use them.
#ifndef STEAD_STORAGE_REIDENTIFY_H_
#define STEAD_STORAGE_REIDENTIFY_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "base/log.h"
#include "proto/peer.pb.h"
#include "proto/snapshot.pb.h"
#include "raft/types.h"
#include "storage/restore.h"

namespace stead::storage {

// The token recorded in `data_dir`; nullopt when there is none. DataLoss when the file
// holds anything but a short line of printable characters.
absl::StatusOr<std::optional<std::string>> ReadIdentityToken(const std::string& data_dir);

// Records `token` in `data_dir` durably and atomically, creating the dir if needed.
absl::Status WriteIdentityToken(const std::string& data_dir, absl::string_view token);

// What the volumes hold, measured against the token a member starts with.
enum class VolumeIdentity {
  kEmpty,      // nothing but "lost+found" (and a token): a new member
  kSameToken,  // a member recorded under this token: an ordinary restart
  kOther,      // a member recorded under another token or none, or an interrupted
               // re-identification (whatever token is left): re-identify
};

// Looks at the volumes only; changes nothing. I/O errors; DataLoss as ReadIdentityToken.
absl::StatusOr<VolumeIdentity> InspectVolumeIdentity(const std::string& data_dir,
                                                     const std::string& wal_dir,
                                                     absl::string_view token);

// Whether the volumes hold a re-identification that began clearing and did not
// finish: only Reidentify may touch them (the runtime refuses to start otherwise).
bool ReidentificationInterrupted(const std::string& data_dir);

// Removes the staging dir of a take that never reached the clearing marker (the old
// member is whole; the checkpoint only holds its files alive). OK if there is none.
absl::Status RemoveAbandonedTake(const std::string& data_dir);

// The points after which a crash leaves a distinct state on disk.
enum class ReidentifyStep {
  kTaken,      // the staging checkpoint is complete; the old member is untouched
  kCleared,    // both volumes hold only the staging checkpoint
  kInstalled,  // the new member is installed; the staging dir is still there
  kUnstaged,   // the staging dir is removed; the token is not recorded yet
};

struct ReidentifyOptions {
  // The new member and its cluster as for a restore (`backup_path` unused): data and
  // WAL dirs, `self` with a new node id, a new `cluster_id`, keyspaces, logger.
  // Required. Its `progress` hears the phases "take" and "clear" (0 of 0 bytes), then
  // those of InstallCheckpointAsNewCluster ("install", "wal").
  RestoreOptions member;
  // The token to record when done. Required.
  std::string token;
  // Called after each ReidentifyStep; a non-OK status stops the call there as a crash
  // would (nothing is cleaned up) and is returned. Default: none.
  std::function<absl::Status(ReidentifyStep)> step_for_testing;
};

struct ReidentifyResult {
  uint64_t old_cluster_id = 0;    // the cluster the volumes belonged to
  pb::SnapshotManifest manifest;  // of the state taken (index, key count, bytes)
  raft::Index index = 0;          // where the new member's Raft log starts after
  raft::Term term = 0;
  bool resumed = false;           // an interrupted re-identification was continued
};

// Re-identifies the volumes as described above. InvalidArgument: options incomplete.
// FailedPrecondition: the data volume holds no state machine (and no staging
// checkpoint) to re-identify; nothing is changed. Other codes: errors of the state
// machine, the WAL or the file system; call again to continue.
absl::StatusOr<ReidentifyResult> Reidentify(const ReidentifyOptions& options);

}  // namespace stead::storage

#endif  // STEAD_STORAGE_REIDENTIFY_H_
