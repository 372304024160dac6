#include "storage/file.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"

namespace stead::storage {
namespace {

absl::StatusCode CodeForErrno(int error_number) {
  switch (error_number) {
    case ENOSPC:
    case EDQUOT:
      return absl::StatusCode::kResourceExhausted;
    case ENOENT:
      return absl::StatusCode::kNotFound;
    case EEXIST:
      return absl::StatusCode::kAlreadyExists;
    case EACCES:
    case EPERM:
    case EROFS:
      return absl::StatusCode::kPermissionDenied;
    case EINVAL:
      return absl::StatusCode::kInvalidArgument;
    default:
      return absl::StatusCode::kInternal;
  }
}

// Consults the injector; returns the injected errno or 0.
int Injected(FileFaultInjector* faults, FileFaultInjector::Op op, absl::string_view path) {
  return faults == nullptr ? 0 : faults->Inject(op, path);
}

absl::StatusOr<std::unique_ptr<File>> OpenWithFlags(std::string path, int flags,
                                                    FileFaultInjector* faults);

}  // namespace

absl::Status ErrnoToStatus(int error_number, absl::string_view op, absl::string_view path) {
  std::string message =
      absl::StrCat(op, " ", path, ": ", std::strerror(error_number), " (errno ", error_number, ")");
  if (error_number == ENOSPC || error_number == EDQUOT) {
    absl::StrAppend(&message, "; the volume is full: free space, then retry");
  }
  return absl::Status(CodeForErrno(error_number), message);
}

class FileFactory {
 public:
  static std::unique_ptr<File> Make(int fd, std::string path, FileFaultInjector* faults) {
    return std::unique_ptr<File>(new File(fd, std::move(path), faults));
  }
};

namespace {
absl::StatusOr<std::unique_ptr<File>> OpenWithFlags(std::string path, int flags,
                                                    FileFaultInjector* faults) {
  int fd;
  do {
    fd = ::open(path.c_str(), flags | O_CLOEXEC, 0644);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) return ErrnoToStatus(errno, "open", path);
  return FileFactory::Make(fd, std::move(path), faults);
}
}  // namespace

absl::StatusOr<std::unique_ptr<File>> File::OpenExisting(std::string path,
                                                         FileFaultInjector* faults) {
  return OpenWithFlags(std::move(path), O_RDWR, faults);
}

absl::StatusOr<std::unique_ptr<File>> File::CreateNew(std::string path, FileFaultInjector* faults) {
  return OpenWithFlags(std::move(path), O_RDWR | O_CREAT | O_EXCL, faults);
}

File::~File() { ::close(fd_); }

absl::Status File::WriteAt(uint64_t offset, absl::string_view data) {
  if (int injected = Injected(faults_, FileFaultInjector::Op::kWrite, path_); injected != 0) {
    return ErrnoToStatus(injected, "pwrite", path_);
  }
  while (!data.empty()) {
    const ssize_t written = ::pwrite(fd_, data.data(), data.size(), static_cast<off_t>(offset));
    if (written < 0) {
      if (errno == EINTR) continue;
      return ErrnoToStatus(errno, absl::StrCat("pwrite at offset ", offset, " of"), path_);
    }
    // A short write is not an error (e.g. interrupted by a signal); continue after it.
    data.remove_prefix(static_cast<size_t>(written));
    offset += static_cast<uint64_t>(written);
  }
  return absl::OkStatus();
}

absl::Status File::ReadAt(uint64_t offset, uint64_t size, std::string* out) const {
  out->resize(size);
  uint64_t done = 0;
  while (done < size) {
    const ssize_t got =
        ::pread(fd_, out->data() + done, size - done, static_cast<off_t>(offset + done));
    if (got < 0) {
      if (errno == EINTR) continue;
      return ErrnoToStatus(errno, absl::StrCat("pread at offset ", offset + done, " of"), path_);
    }
    if (got == 0) {
      out->resize(done);
      return absl::OutOfRangeError(absl::StrCat("read ", path_, ": end of file at offset ",
                                                offset + done, " (wanted ", size, " bytes at ",
                                                offset, ")"));
    }
    done += static_cast<uint64_t>(got);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> File::ReadAll() const {
  std::string out;
  absl::StatusOr<uint64_t> size = Size();
  if (!size.ok()) return size.status();
  absl::Status status = ReadAt(0, *size, &out);
  // The file may shrink underneath us only if someone else truncates it; report that.
  if (!status.ok()) return status;
  return out;
}

absl::Status File::DataSync() {
  if (int injected = Injected(faults_, FileFaultInjector::Op::kSync, path_); injected != 0) {
    return ErrnoToStatus(injected, "fdatasync", path_);
  }
  // No EINTR retry loop: fdatasync is not interruptible on Linux, and retrying any
  // other failure would be exactly the fsyncgate mistake.
  if (::fdatasync(fd_) != 0) return ErrnoToStatus(errno, "fdatasync", path_);
  return absl::OkStatus();
}

absl::Status File::Preallocate(uint64_t size) {
  if (int injected = Injected(faults_, FileFaultInjector::Op::kAllocate, path_); injected != 0) {
    return ErrnoToStatus(injected, "fallocate", path_);
  }
  int result;
  do {
    result = ::fallocate(fd_, FALLOC_FL_KEEP_SIZE, 0, static_cast<off_t>(size));
  } while (result != 0 && errno == EINTR);
  if (result != 0) {
    // Preallocation is an optimisation; a file system without it still works.
    if (errno == EOPNOTSUPP || errno == ENOSYS) return absl::OkStatus();
    return ErrnoToStatus(errno, "fallocate", path_);
  }
  return absl::OkStatus();
}

absl::Status File::Truncate(uint64_t size) {
  int result;
  do {
    result = ::ftruncate(fd_, static_cast<off_t>(size));
  } while (result != 0 && errno == EINTR);
  if (result != 0) return ErrnoToStatus(errno, absl::StrCat("ftruncate to ", size), path_);
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> File::Size() const {
  struct stat st;
  if (::fstat(fd_, &st) != 0) return ErrnoToStatus(errno, "fstat", path_);
  return static_cast<uint64_t>(st.st_size);
}

absl::Status SyncDir(const std::string& path, FileFaultInjector* faults) {
  if (int injected = Injected(faults, FileFaultInjector::Op::kSync, path); injected != 0) {
    return ErrnoToStatus(injected, "fsync directory", path);
  }
  const int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ErrnoToStatus(errno, "open directory", path);
  const int result = ::fsync(fd);
  const int saved_errno = errno;
  ::close(fd);
  if (result != 0) return ErrnoToStatus(saved_errno, "fsync directory", path);
  return absl::OkStatus();
}

absl::Status CreateDirIfMissing(const std::string& path) {
  if (::mkdir(path.c_str(), 0755) == 0) {
    const size_t slash = path.find_last_of('/');
    const std::string parent =
        slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
    return SyncDir(parent);
  }
  if (errno != EEXIST) return ErrnoToStatus(errno, "mkdir", path);
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return ErrnoToStatus(errno, "stat", path);
  if (!S_ISDIR(st.st_mode)) {
    return absl::FailedPreconditionError(absl::StrCat(path, " exists and is not a directory"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> ListDir(const std::string& path) {
  DIR* dir = ::opendir(path.c_str());
  if (dir == nullptr) return ErrnoToStatus(errno, "opendir", path);
  std::vector<std::string> names;
  errno = 0;
  while (struct dirent* entry = ::readdir(dir)) {
    const absl::string_view name = entry->d_name;
    if (name != "." && name != "..") names.emplace_back(name);
  }
  const int saved_errno = errno;
  ::closedir(dir);
  if (saved_errno != 0) return ErrnoToStatus(saved_errno, "readdir", path);
  std::sort(names.begin(), names.end());
  return names;
}

absl::Status RemoveFile(const std::string& path) {
  if (::unlink(path.c_str()) != 0) return ErrnoToStatus(errno, "unlink", path);
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<FileLock>> FileLock::Acquire(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoToStatus(errno, "open lock file", path);
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int saved_errno = errno;
    ::close(fd);
    if (saved_errno == EWOULDBLOCK) {
      return absl::FailedPreconditionError(absl::StrCat(
          path, " is locked: another process has this WAL directory open; stop it first"));
    }
    return ErrnoToStatus(saved_errno, "flock", path);
  }
  return std::unique_ptr<FileLock>(new FileLock(fd));
}

FileLock::~FileLock() { ::close(fd_); }

}  // namespace stead::storage
