// Checkpoints: the one on-disk snapshot format of stead (Raft snapshots, backups,
// clones).
//
// A checkpoint is a directory holding a RocksDB checkpoint of the state machine (SST
// files hard-linked from the live database, the rest copied) plus one manifest file,
// kManifestFileName, that lists every other file with its size and CRC32C and says
// which Raft state the files hold (cluster id, index, term, conf state):
//
//   checkpoint-00000000000000000812-00000000000000000007/
//     STEAD-MANIFEST      magic "STEADMF1" | u32 length | u32 crc32c | SnapshotManifest
//     000012.sst  CURRENT  MANIFEST-000015  OPTIONS-000017 ...
//
// The manifest is serialized deterministically and checksummed as a whole; the integers
// of the header are little-endian. A checkpoint directory only ever appears complete:
// it is built under "<dir>.partial", every file and the directory are fsynced, and the
// directory is renamed into place (StateMachine::CreateCheckpoint).
//
// Thread-safety: the functions here are safe to call concurrently on different
// directories; none may run concurrently with a writer of the same directory.
#ifndef STEAD_STORAGE_CHECKPOINT_H_
#define STEAD_STORAGE_CHECKPOINT_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "proto/snapshot.pb.h"
#include "raft/types.h"

namespace stead::storage {

// Name of the manifest file inside a checkpoint directory. Not a RocksDB name (those
// are "MANIFEST-<number>"), so the two never collide.
inline constexpr char kManifestFileName[] = "STEAD-MANIFEST";
// The manifest format this build writes; readers refuse newer ones.
inline constexpr uint32_t kCheckpointFormatVersion = 1;
// First bytes of a manifest file.
inline constexpr char kManifestMagic[] = "STEADMF1";  // 8 bytes, no terminator stored
inline constexpr size_t kManifestMagicBytes = 8;
inline constexpr size_t kManifestHeaderBytes = kManifestMagicBytes + 4 + 4;
// Largest manifest file accepted (about a million files). Checked before reading or
// buffering one, so a corrupt length cannot exhaust memory.
inline constexpr size_t kMaxManifestFileBytes = 64 * 1024 * 1024;
// Suffix of a checkpoint directory under construction. Such directories are never
// valid checkpoints; RemoveOldCheckpoints deletes leftovers of a crash.
inline constexpr char kPartialSuffix[] = ".partial";

// The bytes of a manifest file for `manifest` (header + deterministic serialization).
std::string EncodeManifestFile(const pb::SnapshotManifest& manifest);

// Parses and validates a manifest file. DataLoss (with "manifest" in the message) on a
// bad magic, a length that does not match, a CRC mismatch, unparsable bytes or an
// invalid manifest (see ValidateManifest); FailedPrecondition on a format version
// newer than kCheckpointFormatVersion.
absl::StatusOr<pb::SnapshotManifest> DecodeManifestFile(absl::string_view bytes);

// Checks the meaning of a parsed manifest: format version known, cluster id set, raft
// index > 0 with term > 0, file names valid (relative, no '/', no "..", not the
// manifest itself), sorted and unique, total_bytes equal to the sum of the sizes.
// DataLoss naming the offending field otherwise.
absl::Status ValidateManifest(const pb::SnapshotManifest& manifest);

// Reads and decodes `<dir>/STEAD-MANIFEST` (errors as DecodeManifestFile, NotFound if
// there is none).
absl::StatusOr<pb::SnapshotManifest> ReadManifest(const std::string& dir);

// Checks every file of the checkpoint in `dir` against its manifest by reading it in
// full. Returns the manifest if all match; DataLoss naming the file on a size or CRC
// mismatch, a missing file, or a file present in `dir` but not in the manifest.
absl::StatusOr<pb::SnapshotManifest> VerifyCheckpoint(const std::string& dir);

// Lists the files of `dir` (except the manifest), checksums and fsyncs each one, and
// returns `base` with `files` and `total_bytes` filled in. `dir` must be flat (RocksDB
// checkpoints are); a subdirectory is FailedPrecondition.
absl::StatusOr<pb::SnapshotManifest> DescribeCheckpointFiles(const std::string& dir,
                                                             pb::SnapshotManifest base);

// Writes the manifest file into `dir` durably (fsync of the file and of `dir`).
absl::Status WriteManifest(const std::string& dir, const pb::SnapshotManifest& manifest);

// "checkpoint-<index>-<term>", zero-padded to 20 digits so names sort by index.
std::string CheckpointDirName(raft::Index index, raft::Term term);

// One complete checkpoint found under a parent directory.
struct CheckpointInfo {
  std::string path;
  pb::SnapshotManifest manifest;
};

// The checkpoints directly under `parent` whose manifest decodes, oldest first (by
// raft index, then term, then creation time, then name). Directories without a valid
// manifest (partial or foreign ones) are skipped; files are not read. NotFound if
// `parent` does not exist.
absl::StatusOr<std::vector<CheckpointInfo>> ListCheckpoints(const std::string& parent);

// Removes all but the newest `keep_count` checkpoints under `parent` (order of
// ListCheckpoints), and every leftover "*.partial" directory of an interrupted
// CreateCheckpoint. Directories that are not checkpoints are left alone. Must not run
// concurrently with CreateCheckpoint into `parent`. Returns how many checkpoints were
// removed.
absl::StatusOr<size_t> RemoveOldCheckpoints(const std::string& parent, size_t keep_count);

}  // namespace stead::storage

#endif  // STEAD_STORAGE_CHECKPOINT_H_
