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
#include "storage/checkpoint_stream.h"
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

std::string DescribeChunk(const pb::SnapshotChunk& chunk) {
  if (chunk.kind() == pb::SNAPSHOT_CHUNK_KIND_MANIFEST) {
    return absl::StrCat("manifest chunk at offset ", chunk.offset());
  }
  return absl::StrCat("chunk of file ", chunk.file_index(), " (", chunk.file_name(),
                      ") at offset ", chunk.offset());
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
  // The magic first, on its own: a short file of something else is named as foreign,
  // not as a truncated backup.
  STEAD_RETURN_IF_ERROR(in.ReadExactly(fixed, kMagicBytes, "the magic"));
  if (absl::string_view(fixed, kMagicBytes) != absl::string_view(kBackupMagic, kMagicBytes)) {
    return absl::DataLossError(
        absl::StrCat("backup ", in.path(), ": bad magic (not a stead backup file)"));
  }
  STEAD_RETURN_IF_ERROR(in.ReadExactly(fixed + kMagicBytes, 8, "the header"));
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
                        const std::optional<std::string>& out_dir, std::string& buffer,
                        const BackupProgress& progress, uint64_t& bytes_done, uint64_t total_bytes) {
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
    bytes_done += length;
    if (progress) progress(bytes_done, total_bytes);
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
                                            const std::optional<std::string>& out_dir,
                                            const BackupProgress& progress) {
  STEAD_ASSIGN_OR_RETURN(std::unique_ptr<BackupReader> in, BackupReader::Open(path));
  STEAD_ASSIGN_OR_RETURN(pb::SnapshotManifest manifest, ReadHeader(*in));
  std::string buffer(kCopyBufferBytes, '\0');
  uint64_t bytes_done = 0;
  for (const pb::SnapshotFile& file : manifest.files()) {
    STEAD_RETURN_IF_ERROR(
        UnpackFile(*in, file, out_dir, buffer, progress, bytes_done, manifest.total_bytes()));
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

// The fixed part and header of a backup file holding `manifest`.
std::string EncodeBackupHead(const pb::SnapshotManifest& manifest) {
  pb::BackupHeader header;
  *header.mutable_manifest() = manifest;
  const std::string header_bytes = SerializeDeterministically(header);
  std::string head(kBackupMagic, kMagicBytes);
  PutFixed32(&head, static_cast<uint32_t>(header_bytes.size()));
  PutFixed32(&head, Crc32c(header_bytes));
  head += header_bytes;
  return head;
}

}  // namespace

// ---------------------------------------------------------------------------------------
// BackupStreamWriter

class BackupStreamWriter::Impl {
 public:
  std::string path;
  std::string temp_path;
  std::unique_ptr<BackupWriter> out;  // reset once closed
  bool finished = false;
  bool failed = false;
  // The manifest file as it arrives, its CRC (from the first chunk; identifies the
  // checkpoint) and, once complete, the decoded manifest.
  std::string manifest_bytes;
  uint64_t manifest_part_bytes = 0;
  std::optional<uint32_t> manifest_crc;
  std::optional<pb::SnapshotManifest> manifest;
  // The next file byte expected: byte `file_offset` of manifest->files(file_index).
  int file_index = 0;
  uint64_t file_offset = 0;
  uint32_t file_crc = 0;  // of the current file's bytes so far
  uint64_t bytes_done = 0;

  std::string Expected() const {
    if (!manifest.has_value()) {
      return absl::StrCat("the manifest chunk at offset ", manifest_bytes.size());
    }
    if (file_index >= manifest->files_size()) return "nothing (the stream is complete)";
    return absl::StrCat("file ", file_index, " (", manifest->files(file_index).name(),
                        ") at offset ", file_offset);
  }
  absl::Status WriteManifestChunk(const pb::SnapshotChunk& chunk);
  absl::Status WriteFileChunk(const pb::SnapshotChunk& chunk);
};

absl::StatusOr<std::unique_ptr<BackupStreamWriter>> BackupStreamWriter::Create(
    const std::string& path, bool replace) {
  if (!replace && files::Exists(path)) {
    return absl::AlreadyExistsError(absl::StrCat("backup ", path, " already exists"));
  }
  auto impl = std::make_unique<Impl>();
  impl->path = path;
  impl->temp_path = path + ".tmp";
  STEAD_RETURN_IF_ERROR(files::RemoveAll(impl->temp_path));  // Leftover of an interrupted save.
  STEAD_ASSIGN_OR_RETURN(impl->out, BackupWriter::Create(impl->temp_path));
  return std::unique_ptr<BackupStreamWriter>(new BackupStreamWriter(std::move(impl)));
}

BackupStreamWriter::BackupStreamWriter(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

BackupStreamWriter::~BackupStreamWriter() {
  if (impl_->finished) return;
  impl_->out.reset();
  // The partial file is useless; removing it is best effort (the next save replaces it).
  files::RemoveAll(impl_->temp_path).IgnoreError();
}

const pb::SnapshotManifest* BackupStreamWriter::manifest() const {
  return impl_->manifest.has_value() ? &*impl_->manifest : nullptr;
}

uint64_t BackupStreamWriter::bytes_done() const { return impl_->bytes_done; }

bool BackupStreamWriter::complete() const {
  return impl_->manifest.has_value() && impl_->file_index == impl_->manifest->files_size();
}

absl::Status BackupStreamWriter::Write(const pb::SnapshotChunk& chunk) {
  if (impl_->failed || impl_->finished) {
    return absl::FailedPreconditionError(absl::StrCat(
        "backup ", impl_->path, ": the stream ", impl_->finished ? "is finished" : "failed earlier"));
  }
  absl::Status status = [&]() -> absl::Status {
    if (Crc32c(chunk.data()) != chunk.data_crc32c()) {
      return absl::DataLossError(absl::StrCat("backup ", impl_->path, ": ",
                                              DescribeChunk(chunk), " fails its crc32c"));
    }
    if (impl_->manifest_crc.has_value() && chunk.manifest_crc32c() != *impl_->manifest_crc) {
      return absl::FailedPreconditionError(absl::StrCat(
          "backup ", impl_->path, ": ", DescribeChunk(chunk), " is of another checkpoint"));
    }
    switch (chunk.kind()) {
      case pb::SNAPSHOT_CHUNK_KIND_MANIFEST:
        return impl_->WriteManifestChunk(chunk);
      case pb::SNAPSHOT_CHUNK_KIND_FILE:
        return impl_->WriteFileChunk(chunk);
      default:
        return absl::InvalidArgumentError(
            absl::StrCat("backup ", impl_->path, ": chunk of unknown kind ", chunk.kind()));
    }
  }();
  if (!status.ok()) impl_->failed = true;
  return status;
}

absl::Status BackupStreamWriter::Impl::WriteManifestChunk(const pb::SnapshotChunk& chunk) {
  if (manifest.has_value() || chunk.offset() != manifest_bytes.size()) {
    return absl::InvalidArgumentError(absl::StrCat("backup ", path, ": got ", DescribeChunk(chunk),
                                                   ", expected ", Expected()));
  }
  if (manifest_bytes.empty()) {
    if (chunk.part_bytes() == 0 || chunk.part_bytes() > kMaxManifestFileBytes) {
      return absl::InvalidArgumentError(absl::StrCat("backup ", path, ": manifest of ",
                                                     chunk.part_bytes(), " bytes"));
    }
    manifest_part_bytes = chunk.part_bytes();
    manifest_crc = chunk.manifest_crc32c();
  }
  if (chunk.part_bytes() != manifest_part_bytes ||
      chunk.data().size() > manifest_part_bytes - manifest_bytes.size() ||
      chunk.data().empty()) {
    return absl::InvalidArgumentError(absl::StrCat("backup ", path, ": ", DescribeChunk(chunk),
                                                   " does not fit the manifest's size ",
                                                   manifest_part_bytes));
  }
  manifest_bytes += chunk.data();
  if (manifest_bytes.size() < manifest_part_bytes) return absl::OkStatus();
  if (Crc32c(manifest_bytes) != *manifest_crc) {
    return absl::DataLossError(absl::StrCat("backup ", path, ": the manifest fails its crc32c"));
  }
  STEAD_ASSIGN_OR_RETURN(pb::SnapshotManifest decoded,
                         Annotate(DecodeManifestFile(manifest_bytes), absl::StrCat("backup ", path)));
  STEAD_RETURN_IF_ERROR(out->Write(EncodeBackupHead(decoded)));
  manifest = std::move(decoded);
  return absl::OkStatus();
}

absl::Status BackupStreamWriter::Impl::WriteFileChunk(const pb::SnapshotChunk& chunk) {
  if (!manifest.has_value() || file_index >= manifest->files_size() ||
      chunk.file_index() != static_cast<uint32_t>(file_index) || chunk.offset() != file_offset) {
    if (manifest.has_value() && file_index >= manifest->files_size()) {
      return absl::FailedPreconditionError(
          absl::StrCat("backup ", path, ": ", DescribeChunk(chunk), " after the last file"));
    }
    return absl::InvalidArgumentError(absl::StrCat("backup ", path, ": got ", DescribeChunk(chunk),
                                                   ", expected ", Expected()));
  }
  const pb::SnapshotFile& file = manifest->files(file_index);
  const uint64_t remaining = file.size_bytes() - file_offset;
  if (chunk.file_name() != file.name() || chunk.part_bytes() != file.size_bytes() ||
      chunk.data().size() > remaining || (chunk.data().empty() && remaining > 0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "backup ", path, ": ", DescribeChunk(chunk), " does not match file ", file.name(),
        " of ", file.size_bytes(), " bytes in the manifest"));
  }
  STEAD_RETURN_IF_ERROR(out->Write(chunk.data()));
  file_crc = Crc32cExtend(file_crc, chunk.data());
  file_offset += chunk.data().size();
  bytes_done += chunk.data().size();
  if (file_offset < file.size_bytes()) return absl::OkStatus();
  if (file_crc != file.crc32c()) {
    return absl::DataLossError(absl::StrFormat(
        "backup %s: file %s crc32c mismatch (manifest %08x, received %08x)", path, file.name(),
        file.crc32c(), file_crc));
  }
  ++file_index;
  file_offset = 0;
  file_crc = 0;
  return absl::OkStatus();
}

absl::StatusOr<pb::SnapshotManifest> BackupStreamWriter::Finish() {
  if (impl_->failed || impl_->finished) {
    return absl::FailedPreconditionError(absl::StrCat("backup ", impl_->path, ": the stream ",
                                                      impl_->finished ? "is finished" : "failed"));
  }
  if (!complete()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "backup ", impl_->path, ": the stream is incomplete, expected ", impl_->Expected()));
  }
  absl::Status status = [&]() -> absl::Status {
    std::string trailer;
    PutFixed32(&trailer, impl_->out->crc());
    trailer.append(kBackupEndMagic, kMagicBytes);
    STEAD_RETURN_IF_ERROR(impl_->out->Write(trailer));
    STEAD_RETURN_IF_ERROR(impl_->out->SyncAndClose());
    STEAD_RETURN_IF_ERROR(files::Rename(impl_->temp_path, impl_->path));
    const std::string parent = std::filesystem::path(impl_->path).parent_path().string();
    return files::SyncPath(parent.empty() ? "." : parent);
  }();
  if (!status.ok()) {
    impl_->failed = true;
    return status;
  }
  impl_->finished = true;
  return *impl_->manifest;
}

absl::StatusOr<pb::SnapshotManifest> WriteBackupFile(const std::string& checkpoint_dir,
                                                     const std::string& path) {
  if (files::Exists(path)) return absl::AlreadyExistsError(absl::StrCat("backup ", path, " already exists"));
  STEAD_ASSIGN_OR_RETURN(std::unique_ptr<CheckpointReader> reader,
                         CheckpointReader::Open(checkpoint_dir, CheckpointReaderOptions()));
  STEAD_ASSIGN_OR_RETURN(std::unique_ptr<BackupStreamWriter> writer,
                         BackupStreamWriter::Create(path, /*replace=*/false));
  // Bounded by the checkpoint's size: every chunk carries at least one byte or ends a file.
  for (;;) {
    STEAD_ASSIGN_OR_RETURN(std::optional<pb::SnapshotChunk> chunk,
                           Annotate(reader->Next(), absl::StrCat("checkpoint ", checkpoint_dir)));
    if (!chunk.has_value()) break;
    STEAD_RETURN_IF_ERROR(writer->Write(*chunk));
  }
  return writer->Finish();
}

uint64_t BackupFileBytes(const pb::SnapshotManifest& manifest) {
  return EncodeBackupHead(manifest).size() + manifest.total_bytes() + 4 + kMagicBytes;
}

absl::StatusOr<pb::SnapshotManifest> ReadBackupHeader(const std::string& path) {
  STEAD_ASSIGN_OR_RETURN(std::unique_ptr<BackupReader> in, BackupReader::Open(path));
  return ReadHeader(*in);
}

absl::StatusOr<pb::SnapshotManifest> VerifyBackupFile(const std::string& path,
                                                      const BackupProgress& progress) {
  return Unpack(path, std::nullopt, progress);
}

absl::StatusOr<pb::SnapshotManifest> RestoreBackupFile(const std::string& path,
                                                       const std::string& dir,
                                                       const BackupProgress& progress) {
  if (files::Exists(dir)) return absl::AlreadyExistsError(absl::StrCat("checkpoint ", dir, " already exists"));
  const std::string partial = absl::StrCat(dir, kPartialSuffix);
  STEAD_RETURN_IF_ERROR(files::RemoveAll(partial));
  STEAD_RETURN_IF_ERROR(files::CreateDirectories(partial));
  absl::StatusOr<pb::SnapshotManifest> manifest = Unpack(path, partial, progress);
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
