#include "storage/backup_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <memory>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/status_macros.h"
#include "storage/checkpoint.h"
#include "storage/checkpoint_files.h"
#include "storage/crc32c.h"
#include "storage/node_metadata.h"

namespace stead::storage {
namespace {

constexpr char kBackupMagic[] = "STEADBK1";
constexpr char kBackupEndMagic[] = "STEADEND";
constexpr size_t kMagicBytes = 8;
constexpr size_t kCopyBufferBytes = 1 << 20;

void PutFixed32(std::string* out, uint32_t value) {
  for (int shift = 0; shift < 32; shift += 8) {
    out->push_back(static_cast<char>((value >> shift) & 0xffu));
  }
}

uint32_t GetFixed32(const char* bytes) {
  uint32_t value = 0;
  for (int i = 3; i >= 0; --i) value = (value << 8) | static_cast<unsigned char>(bytes[i]);
  return value;
}

// A file read sequentially, keeping the CRC32C of every byte read so far.
class BackupReader {
 public:
  static absl::StatusOr<std::unique_ptr<BackupReader>> Open(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return files::ErrnoStatus(errno, "open", path);
    return std::unique_ptr<BackupReader>(new BackupReader(fd, path));
  }
  ~BackupReader() { ::close(fd_); }
  BackupReader(const BackupReader&) = delete;
  BackupReader& operator=(const BackupReader&) = delete;

  // Reads exactly `size` bytes into `out`; DataLoss "truncated in <what>" at an early end.
  absl::Status ReadExactly(char* out, size_t size, absl::string_view what) {
    size_t done = 0;
    while (done < size) {
      const ssize_t got = ::read(fd_, out + done, size - done);
      if (got < 0 && errno == EINTR) continue;
      if (got < 0) return files::ErrnoStatus(errno, "read", path_);
      if (got == 0) {
        return absl::DataLossError(absl::StrCat("backup ", path_, " is truncated in ", what,
                                                " (ends at byte ", offset_ + done, ")"));
      }
      done += static_cast<size_t>(got);
    }
    crc_ = Crc32cExtend(crc_, absl::string_view(out, size));
    offset_ += size;
    return absl::OkStatus();
  }
  // True if the file has no bytes left.
  absl::StatusOr<bool> AtEnd() {
    char byte;
    for (;;) {
      const ssize_t got = ::read(fd_, &byte, 1);
      if (got < 0 && errno == EINTR) continue;
      if (got < 0) return files::ErrnoStatus(errno, "read", path_);
      return got == 0;
    }
  }
  uint32_t crc() const { return crc_; }
  const std::string& path() const { return path_; }

 private:
  BackupReader(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  int fd_;
  std::string path_;
  uint32_t crc_ = 0;
  uint64_t offset_ = 0;
};

// A new file written sequentially, keeping the CRC32C of every byte written so far.
class BackupWriter {
 public:
  static absl::StatusOr<std::unique_ptr<BackupWriter>> Create(const std::string& path) {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) return files::ErrnoStatus(errno, "open", path);
    return std::unique_ptr<BackupWriter>(new BackupWriter(fd, path));
  }
  ~BackupWriter() {
    if (fd_ >= 0) ::close(fd_);
  }
  BackupWriter(const BackupWriter&) = delete;
  BackupWriter& operator=(const BackupWriter&) = delete;

  absl::Status Write(absl::string_view data) {
    crc_ = Crc32cExtend(crc_, data);
    while (!data.empty()) {
      const ssize_t written = ::write(fd_, data.data(), data.size());
      if (written < 0 && errno == EINTR) continue;
      if (written < 0) return files::ErrnoStatus(errno, "write", path_);
      data.remove_prefix(static_cast<size_t>(written));
    }
    return absl::OkStatus();
  }
  // fsync and close; the writer is unusable afterwards.
  absl::Status SyncAndClose() {
    if (::fsync(fd_) != 0) return files::ErrnoStatus(errno, "fsync", path_);
    const int result = ::close(fd_);
    fd_ = -1;
    if (result != 0) return files::ErrnoStatus(errno, "close", path_);
    return absl::OkStatus();
  }
  uint32_t crc() const { return crc_; }

 private:
  BackupWriter(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  int fd_;
  std::string path_;
  uint32_t crc_ = 0;
};

absl::StatusOr<pb::SnapshotManifest> ReadHeader(BackupReader& in) {
  char fixed[kMagicBytes + 8];
  STEAD_RETURN_IF_ERROR(in.ReadExactly(fixed, sizeof(fixed), "the header"));
  if (absl::string_view(fixed, kMagicBytes) != absl::string_view(kBackupMagic, kMagicBytes)) {
    return absl::DataLossError(
        absl::StrCat("backup ", in.path(), ": bad magic (not a stead backup file)"));
  }
  const uint32_t header_bytes = GetFixed32(fixed + kMagicBytes);
  const uint32_t header_crc = GetFixed32(fixed + kMagicBytes + 4);
  if (header_bytes > kMaxManifestFileBytes) {
    return absl::DataLossError(absl::StrCat("backup ", in.path(), ": header length ",
                                            header_bytes, " is over the limit"));
  }
  std::string header(header_bytes, '\0');
  STEAD_RETURN_IF_ERROR(in.ReadExactly(header.data(), header.size(), "the header"));
  if (Crc32c(header) != header_crc) {
    return absl::DataLossError(absl::StrCat("backup ", in.path(), ": header crc32c mismatch"));
  }
  pb::BackupHeader parsed;
  if (!parsed.ParseFromString(header)) {
    return absl::DataLossError(absl::StrCat("backup ", in.path(), ": header does not parse"));
  }
  STEAD_RETURN_IF_ERROR(Annotate(ValidateManifest(parsed.manifest()), absl::StrCat("backup ", in.path())));
  return std::move(*parsed.mutable_manifest());
}

// Reads `file`'s bytes from `in`, checks them against the manifest and, with `out_dir`,
// writes them to a new file there.
absl::Status UnpackFile(BackupReader& in, const pb::SnapshotFile& file,
                        const std::optional<std::string>& out_dir, std::string& buffer) {
  std::unique_ptr<BackupWriter> out;
  if (out_dir.has_value()) {
    STEAD_ASSIGN_OR_RETURN(out, BackupWriter::Create(files::JoinPath(*out_dir, file.name())));
  }
  uint64_t remaining = file.size_bytes();
  uint32_t crc = 0;
  while (remaining > 0) {
    const size_t length = static_cast<size_t>(std::min<uint64_t>(remaining, buffer.size()));
    STEAD_RETURN_IF_ERROR(in.ReadExactly(buffer.data(), length, absl::StrCat("file ", file.name())));
    const absl::string_view data(buffer.data(), length);
    crc = Crc32cExtend(crc, data);
    if (out != nullptr) STEAD_RETURN_IF_ERROR(out->Write(data));
    remaining -= length;
  }
  if (crc != file.crc32c()) {
    return absl::DataLossError(absl::StrFormat("backup %s: file %s crc32c mismatch (manifest %08x, "
                                               "backup %08x)",
                                               in.path(), file.name(), file.crc32c(), crc));
  }
  if (out != nullptr) STEAD_RETURN_IF_ERROR(out->SyncAndClose());
  return absl::OkStatus();
}

// Reads a whole backup file, checking everything; unpacks into `out_dir` if given.
absl::StatusOr<pb::SnapshotManifest> Unpack(const std::string& path,
                                            const std::optional<std::string>& out_dir) {
  STEAD_ASSIGN_OR_RETURN(std::unique_ptr<BackupReader> in, BackupReader::Open(path));
  STEAD_ASSIGN_OR_RETURN(pb::SnapshotManifest manifest, ReadHeader(*in));
  std::string buffer(kCopyBufferBytes, '\0');
  for (const pb::SnapshotFile& file : manifest.files()) {
    STEAD_RETURN_IF_ERROR(UnpackFile(*in, file, out_dir, buffer));
  }
  const uint32_t expected_crc = in->crc();
  char trailer[4 + kMagicBytes];
  STEAD_RETURN_IF_ERROR(in->ReadExactly(trailer, sizeof(trailer), "the trailer"));
  if (GetFixed32(trailer) != expected_crc) {
    return absl::DataLossError(absl::StrCat("backup ", path, ": trailer crc32c mismatch"));
  }
  if (absl::string_view(trailer + 4, kMagicBytes) !=
      absl::string_view(kBackupEndMagic, kMagicBytes)) {
    return absl::DataLossError(absl::StrCat("backup ", path, ": bad end magic in the trailer"));
  }
  STEAD_ASSIGN_OR_RETURN(const bool at_end, in->AtEnd());
  if (!at_end) {
    return absl::DataLossError(absl::StrCat("backup ", path, ": bytes after the trailer"));
  }
  return manifest;
}

absl::Status WriteBackupBody(const std::string& checkpoint_dir, const pb::SnapshotManifest& manifest,
                             BackupWriter& out) {
  pb::BackupHeader header;
  *header.mutable_manifest() = manifest;
  const std::string header_bytes = SerializeDeterministically(header);
  std::string fixed(kBackupMagic, kMagicBytes);
  PutFixed32(&fixed, static_cast<uint32_t>(header_bytes.size()));
  PutFixed32(&fixed, Crc32c(header_bytes));
  STEAD_RETURN_IF_ERROR(out.Write(fixed));
  STEAD_RETURN_IF_ERROR(out.Write(header_bytes));
  std::string buffer(kCopyBufferBytes, '\0');
  for (const pb::SnapshotFile& file : manifest.files()) {
    // The source is checked against its manifest while copied, so a damaged checkpoint
    // never becomes a backup that looks healthy.
    STEAD_ASSIGN_OR_RETURN(std::unique_ptr<BackupReader> in,
                           BackupReader::Open(files::JoinPath(checkpoint_dir, file.name())));
    uint64_t remaining = file.size_bytes();
    uint32_t crc = 0;
    while (remaining > 0) {
      const size_t length = static_cast<size_t>(std::min<uint64_t>(remaining, buffer.size()));
      STEAD_RETURN_IF_ERROR(in->ReadExactly(buffer.data(), length, absl::StrCat("file ", file.name())));
      const absl::string_view data(buffer.data(), length);
      crc = Crc32cExtend(crc, data);
      STEAD_RETURN_IF_ERROR(out.Write(data));
      remaining -= length;
    }
    STEAD_ASSIGN_OR_RETURN(const bool at_end, in->AtEnd());
    if (!at_end || crc != file.crc32c()) {
      return absl::DataLossError(absl::StrCat("checkpoint ", checkpoint_dir, ": file ", file.name(),
                                              " does not match its manifest"));
    }
  }
  std::string trailer;
  PutFixed32(&trailer, out.crc());
  trailer.append(kBackupEndMagic, kMagicBytes);
  return out.Write(trailer);
}

}  // namespace

absl::StatusOr<pb::SnapshotManifest> WriteBackupFile(const std::string& checkpoint_dir,
                                                     const std::string& path) {
  if (files::Exists(path)) return absl::AlreadyExistsError(absl::StrCat("backup ", path, " already exists"));
  STEAD_ASSIGN_OR_RETURN(const pb::SnapshotManifest manifest, ReadManifest(checkpoint_dir));
  const std::string temp_path = path + ".tmp";
  STEAD_RETURN_IF_ERROR(files::RemoveAll(temp_path));  // Leftover of an interrupted save.
  absl::Status status = [&]() -> absl::Status {
    STEAD_ASSIGN_OR_RETURN(std::unique_ptr<BackupWriter> out, BackupWriter::Create(temp_path));
    STEAD_RETURN_IF_ERROR(WriteBackupBody(checkpoint_dir, manifest, *out));
    STEAD_RETURN_IF_ERROR(out->SyncAndClose());
    STEAD_RETURN_IF_ERROR(files::Rename(temp_path, path));
    const std::string parent = std::filesystem::path(path).parent_path().string();
    return files::SyncPath(parent.empty() ? "." : parent);
  }();
  if (!status.ok()) {
    // The partial file is useless; removing it is best effort, the status says why.
    files::RemoveAll(temp_path).IgnoreError();
    return status;
  }
  return manifest;
}

absl::StatusOr<pb::SnapshotManifest> ReadBackupHeader(const std::string& path) {
  STEAD_ASSIGN_OR_RETURN(std::unique_ptr<BackupReader> in, BackupReader::Open(path));
  return ReadHeader(*in);
}

absl::StatusOr<pb::SnapshotManifest> VerifyBackupFile(const std::string& path) {
  return Unpack(path, std::nullopt);
}

absl::StatusOr<pb::SnapshotManifest> RestoreBackupFile(const std::string& path,
                                                       const std::string& dir) {
  if (files::Exists(dir)) return absl::AlreadyExistsError(absl::StrCat("checkpoint ", dir, " already exists"));
  const std::string partial = absl::StrCat(dir, kPartialSuffix);
  STEAD_RETURN_IF_ERROR(files::RemoveAll(partial));
  STEAD_RETURN_IF_ERROR(files::CreateDirectories(partial));
  absl::StatusOr<pb::SnapshotManifest> manifest = Unpack(path, partial);
  absl::Status status = manifest.status();
  if (status.ok()) {
    status = WriteManifest(partial, *manifest);  // Fsyncs the manifest and the directory.
  }
  if (status.ok()) status = files::Rename(partial, dir);
  if (status.ok()) {
    const std::string parent = std::filesystem::path(dir).parent_path().string();
    status = files::SyncPath(parent.empty() ? "." : parent);
  }
  if (!status.ok()) {
    files::RemoveAll(partial).IgnoreError();  // Best effort; the status says why.
    return status;
  }
  return manifest;
}

}  // namespace stead::storage
