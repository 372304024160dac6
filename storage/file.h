// Small POSIX file helpers for the WAL: every failure is an absl::Status that names
// the operation, the path and the errno text, with a stable errno -> code mapping:
//
//   ENOSPC, EDQUOT        -> ResourceExhausted (disk full: back off, free space)
//   ENOENT                -> NotFound
//   EEXIST                -> AlreadyExists
//   EACCES, EPERM, EROFS  -> PermissionDenied
//   EINVAL                -> InvalidArgument
//   anything else (EIO)   -> Internal
//
// A FileFaultInjector may be attached for tests: it is consulted before each write,
// sync and preallocation and can fail them with a chosen errno, as the disk would.
#ifndef STEAD_STORAGE_FILE_H_
#define STEAD_STORAGE_FILE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace stead::storage {

// The status for a failed system call: "<op> <path>: <strerror> (errno N)".
absl::Status ErrnoToStatus(int error_number, absl::string_view op, absl::string_view path);

// Test seam: decides whether an operation on `path` fails. Return 0 to let it proceed
// or an errno value (EIO, ENOSPC, ...) to fail it without touching the disk.
// Implementations must be thread-safe.
class FileFaultInjector {
 public:
  enum class Op { kWrite, kSync, kAllocate };
  virtual ~FileFaultInjector() = default;
  virtual int Inject(Op op, absl::string_view path) = 0;
};

// An open file descriptor, closed on destruction. Positional reads and writes make it
// safe to share between one writer and many readers: Read and the const members are
// thread-safe; the mutating calls must be serialised by the caller.
class File {
 public:
  // Opens an existing file for reading and writing. NotFound when it does not exist.
  static absl::StatusOr<std::unique_ptr<File>> OpenExisting(std::string path,
                                                            FileFaultInjector* faults = nullptr);
  // Creates a new file (mode 0644); AlreadyExists when one is there. The caller must
  // SyncDir() the parent to make the name durable.
  static absl::StatusOr<std::unique_ptr<File>> CreateNew(std::string path,
                                                         FileFaultInjector* faults = nullptr);

  File(const File&) = delete;
  File& operator=(const File&) = delete;
  ~File();

  const std::string& path() const { return path_; }

  // Writes all of `data` at `offset` (retries short writes and EINTR).
  absl::Status WriteAt(uint64_t offset, absl::string_view data);
  // Reads exactly `size` bytes at `offset` into `out` (resized). OutOfRange when the
  // file ends first, with the count actually read in the message.
  absl::Status ReadAt(uint64_t offset, uint64_t size, std::string* out) const;
  // Reads the whole file.
  absl::StatusOr<std::string> ReadAll() const;
  // fdatasync(2). After a failure the file's page cache state is unknown (the kernel
  // may have dropped the dirty pages): callers must never retry and trust the result.
  absl::Status DataSync();
  // Reserves disk blocks for [0, size) without changing the file size
  // (FALLOC_FL_KEEP_SIZE), so later appends do not allocate. File systems that cannot
  // preallocate (EOPNOTSUPP) are tolerated; ENOSPC is ResourceExhausted.
  absl::Status Preallocate(uint64_t size);
  // ftruncate(2).
  absl::Status Truncate(uint64_t size);
  absl::StatusOr<uint64_t> Size() const;

 private:
  friend class FileFactory;
  File(int fd, std::string path, FileFaultInjector* faults)
      : fd_(fd), path_(std::move(path)), faults_(faults) {}

  const int fd_;
  const std::string path_;
  FileFaultInjector* const faults_;
};

// fsync of a directory: makes creations, renames and deletions in it durable.
absl::Status SyncDir(const std::string& path, FileFaultInjector* faults = nullptr);
// Creates `path` (one level) when missing and syncs its parent; OK when it exists.
absl::Status CreateDirIfMissing(const std::string& path);
// Names (not paths) of the entries of a directory, sorted, without "." and "..".
absl::StatusOr<std::vector<std::string>> ListDir(const std::string& path);
// unlink(2).
absl::Status RemoveFile(const std::string& path);

// An exclusive advisory lock (flock) on a file, held until destruction; keeps two
// processes from opening the same WAL directory.
class FileLock {
 public:
  // FailedPrecondition when another process holds the lock.
  static absl::StatusOr<std::unique_ptr<FileLock>> Acquire(const std::string& path);
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;
  ~FileLock();

 private:
  explicit FileLock(int fd) : fd_(fd) {}
  const int fd_;
};

}  // namespace stead::storage

#endif  // STEAD_STORAGE_FILE_H_
