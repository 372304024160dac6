// Backup files: a whole checkpoint as one file (`steadctl snapshot save|verify|inspect|
// restore`, the backup CronJob, `stead --restore-from`).
//
// Layout (integers little-endian):
//   "STEADBK1"                      8 bytes
//   u32 header length, u32 crc32c   of the header bytes
//   pb::BackupHeader                deterministic; holds the checkpoint's manifest
//   the bytes of every file in manifest order, back to back (sizes from the manifest)
//   u32 crc32c                      of every byte before it
//   "STEADEND"                      8 bytes; a truncated file never ends with it
//
// The header comes first so `inspect` reads a few bytes; every file still has its own
// CRC in the manifest, so a damaged backup names the file at fault.
//
// Thread-safety: functions are safe to call concurrently on different paths.
#ifndef STEAD_STORAGE_BACKUP_FILE_H_
#define STEAD_STORAGE_BACKUP_FILE_H_

#include <string>

#include "absl/status/statusor.h"
#include "proto/snapshot.pb.h"

namespace stead::storage {

// Writes the checkpoint in `checkpoint_dir` to the backup file `path`, atomically
// (`path`.tmp, fsync, rename, fsync of the directory). Each file is checked against the
// manifest while it is copied: DataLoss naming the file on a mismatch, and no backup
// file appears. AlreadyExists if `path` exists. Returns the manifest.
absl::StatusOr<pb::SnapshotManifest> WriteBackupFile(const std::string& checkpoint_dir,
                                                     const std::string& path);

// Reads only the header of a backup file (for `snapshot inspect`). DataLoss on a bad
// magic, header CRC or manifest.
absl::StatusOr<pb::SnapshotManifest> ReadBackupHeader(const std::string& path);

// Reads the whole backup file and checks the header, every file's size and CRC against
// the manifest, the trailer CRC, the end magic and the file's total size. DataLoss
// naming what is wrong (the checkpoint file at fault, "truncated", "trailer").
absl::StatusOr<pb::SnapshotManifest> VerifyBackupFile(const std::string& path);

// Unpacks the backup file into the new checkpoint directory `dir` (built under
// `dir`.partial, fsynced, verified as VerifyBackupFile does while unpacking, renamed).
// The result is a checkpoint for StateMachine::InstallCheckpoint. AlreadyExists if `dir`
// exists; DataLoss as VerifyBackupFile, leaving no `dir`.
absl::StatusOr<pb::SnapshotManifest> RestoreBackupFile(const std::string& path,
                                                       const std::string& dir);

}  // namespace stead::storage

#endif  // STEAD_STORAGE_BACKUP_FILE_H_
