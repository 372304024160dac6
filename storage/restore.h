// Restoring a backup file into the empty volumes of a new cluster's first member
// (`steadctl snapshot restore`, `stead --restore-from`).
//
// The restored member gets a NEW cluster id and node id: it can never join the cluster
// the backup came from (peers check cluster ids), and that cluster's members can never
// vote with it. Steps, each checked before the next:
//   1. the targets are checked (empty, apart from "lost+found") and the whole backup is
//      verified: a bad file or non-empty volume is refused with nothing written;
//   2. <data-dir>/checkpoints/restore/ is created: while it exists the restore is
//      incomplete, and a later restore into the same volumes starts over (it wipes
//      what the interrupted one wrote, which was all there was);
//   3. the backup is unpacked there as a checkpoint and installed as the state machine
//      (StateMachine::InstallCheckpoint with allow_other_cluster);
//   4. one more applied entry, at the backup's index + 1 in its term, rewrites the
//      membership: the configuration becomes this member alone as a voter and the
//      member records (kMembersKeyspace) become this member's record;
//   5. the WAL gets a snapshot marker at that index and term (with the new
//      configuration) and a hard state {term, commit = that index}: Raft starts right
//      after the restored state, as after a log compaction. Members that join later
//      receive the state as a Raft snapshot;
//   6. the restore directory is removed: the volumes are now a normal member's.
//
// Thread-safety: not for concurrent use on the same volumes.
#ifndef STEAD_STORAGE_RESTORE_H_
#define STEAD_STORAGE_RESTORE_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "base/log.h"
#include "proto/peer.pb.h"
#include "proto/snapshot.pb.h"
#include "raft/types.h"

namespace stead::storage {

// Where the runtime records the members (server/node.cc): this keyspace, one record per
// member keyed by MemberRecordKey(id), holding its pb::MemberInfo.
inline constexpr char kMembersKeyspace[] = "members";
// The node id as 16 lower-case hex digits.
std::string MemberRecordKey(raft::NodeId id);
// The identity the runtime writes into the WAL segments of a member.
std::string MemberWalIdentity(uint64_t cluster_id, raft::NodeId node_id, absl::string_view name);

struct RestoreOptions {
  std::string backup_path;  // the backup file; required
  std::string data_dir;     // the new member's --data-dir; required
  std::string wal_dir;      // its --wal-dir; required, not data_dir
  // The new member: `self.id` its node id and `cluster_id` the new cluster's id (both
  // non-zero and drawn at random by the caller), `self.name` its name, and the peer
  // and client addresses other members and clients use to reach it (recorded in its
  // member record). Required.
  pb::MemberInfo self;
  uint64_t cluster_id = 0;
  // Keyspaces the state machine is opened with (those of the backup are kept
  // whatever this says). Default: {"kv", kMembersKeyspace}.
  std::vector<std::string> keyspaces = {"kv", kMembersKeyspace};
  // Called as the restore goes: the phase ("verify", "unpack", "install", "wal") and
  // bytes done of the total (0 of 0 for phases without a byte count). Default: none.
  std::function<void(absl::string_view phase, uint64_t done, uint64_t total)> progress;
  // Default: stderr at warning.
  Logger logger = Logger(LogLevel::kWarning);
};

// What a restore produced.
struct RestoreResult {
  pb::SnapshotManifest manifest;  // of the backup
  raft::Index index = 0;          // where the new member's Raft log starts after
  raft::Term term = 0;
};

// Whether the volumes are empty, or hold an interrupted restore: where a restore may
// go. False for volumes holding anything else (a member, files of someone else).
absl::StatusOr<bool> VolumesAcceptRestore(const std::string& data_dir, const std::string& wal_dir);

// OK if the options name a new member: data and WAL dirs (distinct), a name, non-zero
// node and cluster ids; InvalidArgument naming what is missing. `backup_path` is not
// checked.
absl::Status ValidateNewMemberOptions(const RestoreOptions& options);

// Steps 3-5 above for a checkpoint already on the data volume (a restore after it
// unpacked the backup; a re-identification, storage/reidentify.h): installs
// `checkpoint_dir` into the uninitialised data dir as member `options.self` of the new
// cluster `options.cluster_id`, rewrites the membership to that member alone and starts
// the empty WAL dir after it. `options.backup_path` is not read; `checkpoint_dir` is
// left in place. Returns the applied state the new log starts after. Errors as
// StateMachine::InstallCheckpoint and Wal::Open; the caller owns the cleanup (or the
// retry) of a failure.
absl::StatusOr<pb::SnapshotMetadata> InstallCheckpointAsNewCluster(
    const RestoreOptions& options, const std::string& checkpoint_dir);

// Removes every entry of `dir` but "lost+found" (a fresh volume's) and `keep` (none
// when empty), then fsyncs `dir`. OK when `dir` does not exist.
absl::Status ClearVolume(const std::string& dir, absl::string_view keep = "");

// Restores as described above. InvalidArgument: options incomplete.
// FailedPrecondition: a target holds anything but "lost+found" (and is not an
// interrupted restore); nothing is changed. DataLoss: the backup is corrupt or
// truncated (named as by VerifyBackupFile); nothing is changed. NotFound: no backup
// file. Other codes: I/O errors; what this call wrote is removed again (best effort),
// and a later restore starts over in any case.
absl::StatusOr<RestoreResult> RestoreFromBackup(const RestoreOptions& options);

}  // namespace stead::storage

#endif  // STEAD_STORAGE_RESTORE_H_
