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

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "proto/snapshot.pb.h"

namespace stead::storage {

// Called as a backup file is read: file bytes done so far of the manifest's total.
using BackupProgress = std::function<void(uint64_t bytes_done, uint64_t total_bytes)>;

// Writes a backup file from the chunks of a checkpoint stream (storage/checkpoint_stream.h)
// as they arrive, without staging the checkpoint anywhere (`steadctl snapshot save`
// writes what a member streams; WriteBackupFile what a CheckpointReader reads). Every
// chunk's CRC is checked on arrival and every file's CRC once its last byte arrived.
// The file is built as `path`.tmp and appears as `path` only when Finish() succeeds
// (fsync, rename, fsync of the directory); a writer destroyed before that removes the
// temp file, so `path` never holds a partial backup.
//
// Not thread-safe: one thread writes.
class BackupStreamWriter {
 public:
  // Starts `path`.tmp (a leftover of an interrupted save is replaced). AlreadyExists if
  // `path` exists, unless `replace` (then the old file stays until Finish renames the
  // new one over it).
  static absl::StatusOr<std::unique_ptr<BackupStreamWriter>> Create(const std::string& path,
                                                                    bool replace);
  ~BackupStreamWriter();  // removes the temp file unless finished
  BackupStreamWriter(const BackupStreamWriter&) = delete;
  BackupStreamWriter& operator=(const BackupStreamWriter&) = delete;

  // Accepts the next chunk of the stream, strictly in order. A stream is one pass:
  // after any error the writer refuses everything (FailedPrecondition).
  //   InvalidArgument: a chunk out of order, of an unknown kind, or whose sizes or
  //     names do not match the manifest (the message says what was expected).
  //   FailedPrecondition: a chunk of another checkpoint, or one after the last.
  //   DataLoss: a chunk's data fails its CRC, the manifest is corrupt, or a completed
  //     file fails the manifest's CRC (naming the file).
  //   Other codes: I/O errors writing the temp file.
  absl::Status Write(const pb::SnapshotChunk& chunk);

  // The manifest once all its chunks arrived; nullptr before.
  const pb::SnapshotManifest* manifest() const;
  // File bytes received so far (of manifest()->total_bytes()).
  uint64_t bytes_done() const;
  // Every file was received: Finish() may be called.
  bool complete() const;

  // Writes the trailer and makes the backup durable at `path`. FailedPrecondition if
  // chunks are missing (naming the next one expected). Returns the manifest.
  absl::StatusOr<pb::SnapshotManifest> Finish();

 private:
  class Impl;
  explicit BackupStreamWriter(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Writes the checkpoint in `checkpoint_dir` to the backup file `path`, atomically
// (`path`.tmp, fsync, rename, fsync of the directory): a CheckpointReader feeding a
// BackupStreamWriter. Each file is checked against the manifest while it is copied:
// DataLoss naming the file on a mismatch, and no backup file appears. AlreadyExists if
// `path` exists. Returns the manifest.
absl::StatusOr<pb::SnapshotManifest> WriteBackupFile(const std::string& checkpoint_dir,
                                                     const std::string& path);

// The size in bytes of a whole backup file holding `manifest`: header, files, trailer.
uint64_t BackupFileBytes(const pb::SnapshotManifest& manifest);

// Reads only the header of a backup file (for `snapshot inspect`). DataLoss on a bad
// magic, header CRC or manifest.
absl::StatusOr<pb::SnapshotManifest> ReadBackupHeader(const std::string& path);

// Reads the whole backup file and checks the header, every file's size and CRC against
// the manifest, the trailer CRC, the end magic and the file's total size. DataLoss
// naming what is wrong (the checkpoint file at fault, "truncated", "trailer").
// `progress`, if set, is called after every block read.
absl::StatusOr<pb::SnapshotManifest> VerifyBackupFile(const std::string& path,
                                                      const BackupProgress& progress = nullptr);

// Unpacks the backup file into the new checkpoint directory `dir` (built under
// `dir`.partial, fsynced, verified as VerifyBackupFile does while unpacking, renamed).
// The result is a checkpoint for StateMachine::InstallCheckpoint. AlreadyExists if `dir`
// exists; DataLoss as VerifyBackupFile, leaving no `dir`.
absl::StatusOr<pb::SnapshotManifest> RestoreBackupFile(const std::string& path,
                                                       const std::string& dir,
                                                       const BackupProgress& progress = nullptr);

}  // namespace stead::storage

#endif  // STEAD_STORAGE_BACKUP_FILE_H_
