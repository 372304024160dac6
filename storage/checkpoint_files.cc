#include "storage/checkpoint_files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <memory>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "storage/crc32c.h"

namespace stead::storage::files {
namespace {

// Large enough to read at disk speed, small enough to keep on every stack of callers.
constexpr size_t kIoBufferBytes = 1 << 20;

// Closes a file descriptor when it goes out of scope. Close errors on read-only
// descriptors are meaningless; writers call Close() explicitly and check it.
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int Close() {
    const int result = ::close(fd_);
    fd_ = -1;
    return result;
  }

 private:
  int fd_;
};

absl::Status WriteAll(int fd, absl::string_view data, const std::string& path) {
  while (!data.empty()) {
    const ssize_t written = ::write(fd, data.data(), data.size());
    if (written < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(errno, "write", path);
    }
    data.remove_prefix(static_cast<size_t>(written));
  }
  return absl::OkStatus();
}

absl::Status FromErrorCode(const std::error_code& error, absl::string_view call,
                           const std::string& path) {
  if (!error) return absl::OkStatus();
  return ErrnoStatus(error.value(), call, path);
}

}  // namespace

absl::Status ErrnoStatus(int error, absl::string_view call, absl::string_view path) {
  const std::string message = absl::StrCat(call, " ", path, ": ", std::strerror(error));
  switch (error) {
    case ENOSPC:
    case EDQUOT:
      return absl::ResourceExhaustedError(message);
    case ENOENT:
      return absl::NotFoundError(message);
    case EEXIST:
      return absl::AlreadyExistsError(message);
    case EACCES:
    case EPERM:
    case EROFS:
      return absl::PermissionDeniedError(message);
    default:
      return absl::InternalError(message);
  }
}

bool Exists(const std::string& path) {
  struct stat info;
  return ::lstat(path.c_str(), &info) == 0;
}

bool IsDirectory(const std::string& path) {
  struct stat info;
  return ::stat(path.c_str(), &info) == 0 && S_ISDIR(info.st_mode);
}

absl::Status CreateDirectories(const std::string& path) {
  std::error_code error;
  std::filesystem::create_directories(path, error);
  STEAD_RETURN_IF_ERROR(FromErrorCode(error, "mkdir", path));
  if (!IsDirectory(path)) {
    return absl::FailedPreconditionError(absl::StrCat(path, " exists and is not a directory"));
  }
  return absl::OkStatus();
}

absl::Status RemoveAll(const std::string& path) {
  std::error_code error;
  std::filesystem::remove_all(path, error);
  return FromErrorCode(error, "remove", path);
}

absl::Status Rename(const std::string& from, const std::string& to) {
  if (::rename(from.c_str(), to.c_str()) != 0) {
    return ErrnoStatus(errno, "rename", absl::StrCat(from, " -> ", to));
  }
  return absl::OkStatus();
}

absl::Status SyncPath(const std::string& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return ErrnoStatus(errno, "open", path);
  if (::fsync(fd.get()) != 0) return ErrnoStatus(errno, "fsync", path);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> ListDirectory(const std::string& dir) {
  std::vector<std::string> names;
  std::error_code error;
  std::filesystem::directory_iterator it(dir, error);
  STEAD_RETURN_IF_ERROR(FromErrorCode(error, "opendir", dir));
  // Bounded by the directory's size; increment() reports read errors through `error`.
  for (; it != std::filesystem::directory_iterator(); it.increment(error)) {
    names.push_back(it->path().filename().string());
  }
  STEAD_RETURN_IF_ERROR(FromErrorCode(error, "readdir", dir));
  std::sort(names.begin(), names.end());
  return names;
}

absl::StatusOr<uint64_t> FileSize(const std::string& path) {
  struct stat info;
  if (::stat(path.c_str(), &info) != 0) return ErrnoStatus(errno, "stat", path);
  if (!S_ISREG(info.st_mode)) {
    return absl::FailedPreconditionError(absl::StrCat(path, " is not a regular file"));
  }
  return static_cast<uint64_t>(info.st_size);
}

absl::StatusOr<std::string> ReadFile(const std::string& path, uint64_t max_bytes) {
  STEAD_ASSIGN_OR_RETURN(const uint64_t size, FileSize(path));
  if (size > max_bytes) {
    return absl::DataLossError(
        absl::StrCat(path, " is ", size, " bytes, more than the ", max_bytes, " expected"));
  }
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return ErrnoStatus(errno, "open", path);
  std::string data(size, '\0');
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t got = ::read(fd.get(), data.data() + done, data.size() - done);
    if (got < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(errno, "read", path);
    }
    if (got == 0) break;  // Shrank while reading: return what is there.
    done += static_cast<size_t>(got);
  }
  data.resize(done);
  return data;
}

absl::Status WriteFileAtomically(const std::string& path, absl::string_view data) {
  const std::string temp_path = path + ".tmp";
  {
    Fd fd(::open(temp_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (!fd.valid()) return ErrnoStatus(errno, "open", temp_path);
    STEAD_RETURN_IF_ERROR(WriteAll(fd.get(), data, temp_path));
    if (::fsync(fd.get()) != 0) return ErrnoStatus(errno, "fsync", temp_path);
    if (fd.Close() != 0) return ErrnoStatus(errno, "close", temp_path);
  }
  STEAD_RETURN_IF_ERROR(Rename(temp_path, path));
  return SyncPath(std::filesystem::path(path).parent_path().string());
}

absl::StatusOr<FileChecksum> ChecksumFile(const std::string& path, bool sync) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return ErrnoStatus(errno, "open", path);
  auto buffer = std::make_unique<char[]>(kIoBufferBytes);
  FileChecksum sum;
  for (;;) {
    const ssize_t got = ::read(fd.get(), buffer.get(), kIoBufferBytes);
    if (got < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(errno, "read", path);
    }
    if (got == 0) break;
    sum.crc32c =
        Crc32cExtend(sum.crc32c, absl::string_view(buffer.get(), static_cast<size_t>(got)));
    sum.size_bytes += static_cast<uint64_t>(got);
  }
  if (sync && ::fsync(fd.get()) != 0) return ErrnoStatus(errno, "fsync", path);
  return sum;
}

absl::StatusOr<FileChecksum> CopyFile(const std::string& from, const std::string& to) {
  Fd in(::open(from.c_str(), O_RDONLY | O_CLOEXEC));
  if (!in.valid()) return ErrnoStatus(errno, "open", from);
  Fd out(::open(to.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
  if (!out.valid()) return ErrnoStatus(errno, "open", to);
  auto buffer = std::make_unique<char[]>(kIoBufferBytes);
  FileChecksum sum;
  for (;;) {
    const ssize_t got = ::read(in.get(), buffer.get(), kIoBufferBytes);
    if (got < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(errno, "read", from);
    }
    if (got == 0) break;
    const absl::string_view chunk(buffer.get(), static_cast<size_t>(got));
    STEAD_RETURN_IF_ERROR(WriteAll(out.get(), chunk, to));
    sum.crc32c = Crc32cExtend(sum.crc32c, chunk);
    sum.size_bytes += chunk.size();
  }
  if (::fsync(out.get()) != 0) return ErrnoStatus(errno, "fsync", to);
  if (out.Close() != 0) return ErrnoStatus(errno, "close", to);
  return sum;
}

absl::Status LinkOrCopyFile(const std::string& from, const std::string& to) {
  if (::link(from.c_str(), to.c_str()) == 0) return absl::OkStatus();
  const int error = errno;
  if (error != EXDEV && error != EPERM && error != EMLINK && error != ENOTSUP) {
    return ErrnoStatus(error, "link", absl::StrCat(from, " -> ", to));
  }
  return CopyFile(from, to).status();
}

std::string JoinPath(absl::string_view dir, absl::string_view name) {
  if (!dir.empty() && dir.back() == '/') return absl::StrCat(dir, name);
  return absl::StrCat(dir, "/", name);
}

}  // namespace stead::storage::files
