// Small POSIX file helpers for the data volume: durable writes, directory fsync,
// checksummed reads and copies. Used by checkpoints and the state machine's data dir.
//
// Errors map errno to the house codes: ENOSPC/EDQUOT -> ResourceExhausted, ENOENT ->
// NotFound, EEXIST -> AlreadyExists, EACCES/EPERM/EROFS -> PermissionDenied, anything
// else (EIO, ...) -> Internal. Every message names the path and the failed call.
//
// Thread-safety: every function is safe to call concurrently on different paths.
#ifndef STEAD_STORAGE_CHECKPOINT_FILES_H_
#define STEAD_STORAGE_CHECKPOINT_FILES_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace stead::storage::files {

// The status for a failed system call `call` on `path` with `error` (an errno value).
absl::Status ErrnoStatus(int error, absl::string_view call, absl::string_view path);

// True if `path` exists (file, directory or anything else).
bool Exists(const std::string& path);
// True if `path` is a directory.
bool IsDirectory(const std::string& path);

// Creates `path` and missing parents; OK if it already is a directory.
absl::Status CreateDirectories(const std::string& path);
// Removes `path` and everything below it; OK if it does not exist.
absl::Status RemoveAll(const std::string& path);
// rename(2): atomic replacement of `to` by `from` on one file system. Does not fsync.
absl::Status Rename(const std::string& from, const std::string& to);

// fsync(2) of a file or directory. A directory must be synced after creating, renaming
// or removing entries in it, or a power loss can forget the change.
absl::Status SyncPath(const std::string& path);

// Names of the entries in `dir` (no "." or ".."), sorted bytewise.
absl::StatusOr<std::vector<std::string>> ListDirectory(const std::string& dir);

// The size of the regular file `path`.
absl::StatusOr<uint64_t> FileSize(const std::string& path);

// Reads all of `path`. DataLoss if the file is larger than `max_bytes` (checked before
// reading, so a corrupt or foreign file cannot exhaust memory).
absl::StatusOr<std::string> ReadFile(const std::string& path, uint64_t max_bytes);

// Writes `data` to `path` durably and atomically: a temporary file beside it is written
// and fsynced, renamed over `path`, and the directory fsynced. After a crash `path`
// holds either the old or the new contents.
absl::Status WriteFileAtomically(const std::string& path, absl::string_view data);

// Size and CRC32C of a whole file, read in bounded buffers.
struct FileChecksum {
  uint64_t size_bytes = 0;
  uint32_t crc32c = 0;
};
// Reads `path` and returns its size and CRC32C. With `sync`, also fsyncs it (cheap when
// the data was already written back; used to make hard links and copies durable).
absl::StatusOr<FileChecksum> ChecksumFile(const std::string& path, bool sync);

// Copies `from` to a new file `to` (which must not exist), fsyncs it and returns the
// checksum of the bytes copied.
absl::StatusOr<FileChecksum> CopyFile(const std::string& from, const std::string& to);

// Hard-links `from` as `to`; falls back to CopyFile when the two are on different file
// systems (EXDEV) or the file system has no hard links. Does not fsync the directory.
absl::Status LinkOrCopyFile(const std::string& from, const std::string& to);

// `dir` + "/" + `name`.
std::string JoinPath(absl::string_view dir, absl::string_view name);

}  // namespace stead::storage::files

#endif  // STEAD_STORAGE_CHECKPOINT_FILES_H_
