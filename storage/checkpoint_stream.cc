#include "storage/checkpoint_stream.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/check.h"
#include "base/status_macros.h"
#include "storage/checkpoint.h"
#include "storage/checkpoint_files.h"
#include "storage/crc32c.h"

namespace stead::storage {
namespace {

// An owned file descriptor; -1 when closed.
class FileHandle {
 public:
  FileHandle() = default;
  FileHandle(const FileHandle&) = delete;
  FileHandle& operator=(const FileHandle&) = delete;
  ~FileHandle() { Reset(); }
  bool open() const { return fd_ >= 0; }
  int fd() const { return fd_; }
  void Reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

std::string DescribeChunk(const pb::SnapshotChunk& chunk) {
  if (chunk.kind() == pb::SNAPSHOT_CHUNK_KIND_MANIFEST) {
    return absl::StrCat("manifest chunk at offset ", chunk.offset());
  }
  return absl::StrCat("chunk of file ", chunk.file_index(), " (", chunk.file_name(),
                      ") at offset ", chunk.offset());
}

}  // namespace

// ---------------------------------------------------------------------------------------
// CheckpointReader

class CheckpointReader::Impl {
 public:
  std::string dir;
  CheckpointReaderOptions options;
  pb::SnapshotManifest manifest;
  std::string manifest_bytes;  // the manifest file as stored
  uint32_t manifest_crc = 0;
  uint64_t manifest_offset = 0;  // next manifest byte to send
  StreamPosition position;       // next file byte to send, once the manifest is sent
  FileHandle file;               // open on manifest.files(position.file_index) while sending it
  // CRC of the current file so far; only meaningful when the file is sent from byte 0.
  uint32_t file_crc = 0;
  bool file_crc_from_start = true;

  absl::StatusOr<pb::SnapshotChunk> NextManifestChunk();
  absl::StatusOr<pb::SnapshotChunk> NextFileChunk();
  absl::Status OpenCurrentFile();
};

absl::StatusOr<std::unique_ptr<CheckpointReader>> CheckpointReader::Open(
    const std::string& dir, const CheckpointReaderOptions& options) {
  if (options.max_chunk_bytes == 0 || options.max_chunk_bytes > kMaxSnapshotChunkBytes) {
    return absl::InvalidArgumentError(absl::StrCat("max_chunk_bytes ", options.max_chunk_bytes,
                                                   " is outside 1..", kMaxSnapshotChunkBytes));
  }
  auto impl = std::make_unique<Impl>();
  impl->dir = dir;
  impl->options = options;
  const std::string path = files::JoinPath(dir, kManifestFileName);
  STEAD_ASSIGN_OR_RETURN(impl->manifest_bytes, files::ReadFile(path, kMaxManifestFileBytes));
  STEAD_ASSIGN_OR_RETURN(impl->manifest, Annotate(DecodeManifestFile(impl->manifest_bytes), path));
  impl->manifest_crc = Crc32c(impl->manifest_bytes);

  const StreamPosition& start = options.start;
  const auto file_count = static_cast<uint32_t>(impl->manifest.files_size());
  const bool at_end = start.file_index == file_count && start.offset == 0;
  if (!at_end) {
    if (start.file_index >= file_count) {
      return absl::InvalidArgumentError(absl::StrCat("start file index ", start.file_index,
                                                     " is past the last file (", file_count, ")"));
    }
    const uint64_t size = impl->manifest.files(static_cast<int>(start.file_index)).size_bytes();
    if (start.offset >= size && !(size == 0 && start.offset == 0)) {
      return absl::InvalidArgumentError(absl::StrCat("start offset ", start.offset,
                                                     " is past the end of file ", start.file_index,
                                                     " (", size, " bytes)"));
    }
  }
  impl->position = start;
  impl->file_crc_from_start = start.offset == 0;
  return std::unique_ptr<CheckpointReader>(new CheckpointReader(std::move(impl)));
}

CheckpointReader::CheckpointReader(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
CheckpointReader::~CheckpointReader() = default;

const pb::SnapshotManifest& CheckpointReader::manifest() const { return impl_->manifest; }

absl::StatusOr<std::optional<pb::SnapshotChunk>> CheckpointReader::Next() {
  if (impl_->manifest_offset < impl_->manifest_bytes.size()) {
    STEAD_ASSIGN_OR_RETURN(pb::SnapshotChunk chunk, impl_->NextManifestChunk());
    return std::optional<pb::SnapshotChunk>(std::move(chunk));
  }
  if (impl_->position.file_index >= static_cast<uint32_t>(impl_->manifest.files_size())) {
    return std::optional<pb::SnapshotChunk>();
  }
  STEAD_ASSIGN_OR_RETURN(pb::SnapshotChunk chunk, impl_->NextFileChunk());
  return std::optional<pb::SnapshotChunk>(std::move(chunk));
}

absl::StatusOr<pb::SnapshotChunk> CheckpointReader::Impl::NextManifestChunk() {
  const size_t length =
      std::min<uint64_t>(options.max_chunk_bytes, manifest_bytes.size() - manifest_offset);
  pb::SnapshotChunk chunk;
  chunk.set_kind(pb::SNAPSHOT_CHUNK_KIND_MANIFEST);
  chunk.set_offset(manifest_offset);
  chunk.set_part_bytes(manifest_bytes.size());
  chunk.set_data(manifest_bytes.substr(manifest_offset, length));
  chunk.set_data_crc32c(Crc32c(chunk.data()));
  chunk.set_manifest_crc32c(manifest_crc);
  manifest_offset += length;
  return chunk;
}

absl::Status CheckpointReader::Impl::OpenCurrentFile() {
  const pb::SnapshotFile& entry = manifest.files(static_cast<int>(position.file_index));
  const std::string path = files::JoinPath(dir, entry.name());
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return files::ErrnoStatus(errno, "open", path);
  file.Reset(fd);
  struct stat info;
  if (::fstat(fd, &info) != 0) return files::ErrnoStatus(errno, "fstat", path);
  if (static_cast<uint64_t>(info.st_size) != entry.size_bytes()) {
    return absl::DataLossError(absl::StrCat("checkpoint ", dir, ": file ", entry.name(), " is ",
                                            info.st_size, " bytes, manifest says ",
                                            entry.size_bytes()));
  }
  return absl::OkStatus();
}

absl::StatusOr<pb::SnapshotChunk> CheckpointReader::Impl::NextFileChunk() {
  const pb::SnapshotFile& entry = manifest.files(static_cast<int>(position.file_index));
  if (!file.open()) STEAD_RETURN_IF_ERROR(OpenCurrentFile());
  const size_t length =
      std::min<uint64_t>(options.max_chunk_bytes, entry.size_bytes() - position.offset);
  std::string data(length, '\0');
  size_t done = 0;
  while (done < length) {
    const ssize_t got = ::pread(file.fd(), data.data() + done, length - done,
                                static_cast<off_t>(position.offset + done));
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) return files::ErrnoStatus(errno, "read", files::JoinPath(dir, entry.name()));
    if (got == 0) {
      return absl::DataLossError(absl::StrCat("checkpoint ", dir, ": file ", entry.name(),
                                              " ended early at offset ", position.offset + done));
    }
    done += static_cast<size_t>(got);
  }
  pb::SnapshotChunk chunk;
  chunk.set_kind(pb::SNAPSHOT_CHUNK_KIND_FILE);
  chunk.set_file_index(position.file_index);
  chunk.set_file_name(entry.name());
  chunk.set_offset(position.offset);
  chunk.set_part_bytes(entry.size_bytes());
  chunk.set_data_crc32c(Crc32c(data));
  chunk.set_manifest_crc32c(manifest_crc);
  file_crc = Crc32cExtend(file_crc, data);
  chunk.set_data(std::move(data));
  position.offset += length;
  if (position.offset == entry.size_bytes()) {
    if (file_crc_from_start && file_crc != entry.crc32c()) {
      return absl::DataLossError(
          absl::StrFormat("checkpoint %s: file %s crc32c mismatch (manifest %08x, file %08x)",
                          dir, entry.name(), entry.crc32c(), file_crc));
    }
    file.Reset();
    ++position.file_index;
    position.offset = 0;
    file_crc = 0;
    file_crc_from_start = true;
  }
  return chunk;
}

// ---------------------------------------------------------------------------------------
// CheckpointWriter

class CheckpointWriter::Impl {
 public:
  std::string staging_dir;
  // The manifest, once received (or read back by Resume).
  std::optional<pb::SnapshotManifest> manifest;
  std::string manifest_bytes;
  uint32_t manifest_crc = 0;
  // Every stream starts with the manifest, also a resumed one; until it is complete no
  // file chunk is accepted.
  bool awaiting_manifest = true;
  std::string incoming_manifest;      // manifest bytes received so far in this stream
  uint64_t incoming_part_bytes = 0;   // their announced total
  uint32_t incoming_manifest_crc = 0; // their announced CRC

  StreamPosition position;  // next file byte expected
  uint32_t file_crc = 0;    // CRC of manifest.files(position.file_index) bytes before offset
  FileHandle file;          // open on that file while it is being received

  bool complete() const {
    return manifest.has_value() &&
           position.file_index == static_cast<uint32_t>(manifest->files_size());
  }
  std::string FilePath(uint32_t file_index) const {
    return files::JoinPath(staging_dir, manifest->files(static_cast<int>(file_index)).name());
  }

  absl::Status WriteManifestChunk(const pb::SnapshotChunk& chunk);
  absl::Status AcceptManifest();
  absl::Status CheckFileChunk(const pb::SnapshotChunk& chunk) const;
  absl::Status WriteFileChunk(const pb::SnapshotChunk& chunk);
  absl::Status CompleteFile();
  absl::Status FindResumePosition();
};

absl::StatusOr<std::unique_ptr<CheckpointWriter>> CheckpointWriter::Create(
    const std::string& staging_dir) {
  STEAD_RETURN_IF_ERROR(files::RemoveAll(staging_dir));
  STEAD_RETURN_IF_ERROR(files::CreateDirectories(staging_dir));
  auto impl = std::make_unique<Impl>();
  impl->staging_dir = staging_dir;
  return std::unique_ptr<CheckpointWriter>(new CheckpointWriter(std::move(impl)));
}

absl::StatusOr<std::unique_ptr<CheckpointWriter>> CheckpointWriter::Resume(
    const std::string& staging_dir) {
  auto impl = std::make_unique<Impl>();
  impl->staging_dir = staging_dir;
  const std::string path = files::JoinPath(staging_dir, kManifestFileName);
  STEAD_ASSIGN_OR_RETURN(impl->manifest_bytes, files::ReadFile(path, kMaxManifestFileBytes));
  STEAD_ASSIGN_OR_RETURN(impl->manifest, Annotate(DecodeManifestFile(impl->manifest_bytes), path));
  impl->manifest_crc = Crc32c(impl->manifest_bytes);
  STEAD_RETURN_IF_ERROR(impl->FindResumePosition());
  return std::unique_ptr<CheckpointWriter>(new CheckpointWriter(std::move(impl)));
}

// Files arrive strictly in order, so the staging dir holds complete files, then at most
// one partial file. The partial file's bytes may be torn after a power loss; that is
// caught by the file's CRC when it completes (and by Finish), never trusted silently.
absl::Status CheckpointWriter::Impl::FindResumePosition() {
  const int file_count = manifest->files_size();
  std::set<std::string> keep = {kManifestFileName};
  position = StreamPosition{static_cast<uint32_t>(file_count), 0};
  for (int i = 0; i < file_count; ++i) {
    const pb::SnapshotFile& entry = manifest->files(i);
    const std::string path = files::JoinPath(staging_dir, entry.name());
    const auto index = static_cast<uint32_t>(i);
    if (!files::Exists(path)) {
      position = StreamPosition{index, 0};
      break;
    }
    STEAD_ASSIGN_OR_RETURN(const files::FileChecksum sum, files::ChecksumFile(path, false));
    if (sum.size_bytes < entry.size_bytes()) {
      keep.insert(entry.name());
      position = StreamPosition{index, sum.size_bytes};
      file_crc = sum.crc32c;
      break;
    }
    if (sum.size_bytes > entry.size_bytes() || sum.crc32c != entry.crc32c()) {
      position = StreamPosition{index, 0};  // Received in full but wrong: start it over.
      break;
    }
    keep.insert(entry.name());
  }
  // Anything else (a discarded file, files past the position) is removed, so the dir
  // always holds exactly the manifest, the complete files and one partial file.
  STEAD_ASSIGN_OR_RETURN(const std::vector<std::string> present, files::ListDirectory(staging_dir));
  for (const std::string& name : present) {
    if (keep.count(name) == 0) {
      STEAD_RETURN_IF_ERROR(files::RemoveAll(files::JoinPath(staging_dir, name)));
    }
  }
  return absl::OkStatus();
}

CheckpointWriter::CheckpointWriter(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
CheckpointWriter::~CheckpointWriter() = default;

StreamPosition CheckpointWriter::position() const { return impl_->position; }

CheckpointWriterProgress CheckpointWriter::progress() const {
  CheckpointWriterProgress progress;
  progress.manifest_received = impl_->manifest.has_value();
  progress.position = impl_->position;
  progress.complete = impl_->complete();
  if (!impl_->manifest.has_value()) return progress;
  progress.total_bytes = impl_->manifest->total_bytes();
  for (uint32_t i = 0; i < impl_->position.file_index; ++i) {
    progress.bytes_done += impl_->manifest->files(static_cast<int>(i)).size_bytes();
  }
  progress.bytes_done += impl_->position.offset;
  if (!progress.complete) {
    progress.file_name = impl_->manifest->files(static_cast<int>(impl_->position.file_index)).name();
  }
  return progress;
}

absl::Status CheckpointWriter::Write(const pb::SnapshotChunk& chunk) {
  if (chunk.data().size() > kMaxSnapshotChunkBytes) {
    return absl::InvalidArgumentError(absl::StrCat(DescribeChunk(chunk), ": ", chunk.data().size(),
                                                   " bytes, over the chunk limit of ",
                                                   kMaxSnapshotChunkBytes));
  }
  const uint32_t data_crc = Crc32c(chunk.data());
  if (data_crc != chunk.data_crc32c()) {
    return absl::DataLossError(absl::StrFormat("%s: data crc32c mismatch (chunk says %08x, data "
                                               "has %08x): resend it",
                                               DescribeChunk(chunk), chunk.data_crc32c(), data_crc));
  }
  switch (chunk.kind()) {
    case pb::SNAPSHOT_CHUNK_KIND_MANIFEST:
      return impl_->WriteManifestChunk(chunk);
    case pb::SNAPSHOT_CHUNK_KIND_FILE:
      return impl_->WriteFileChunk(chunk);
    default:
      return absl::InvalidArgumentError(absl::StrCat("chunk of unknown kind ", chunk.kind()));
  }
}

absl::Status CheckpointWriter::Impl::WriteManifestChunk(const pb::SnapshotChunk& chunk) {
  if (!awaiting_manifest) {
    return absl::InvalidArgumentError(absl::StrCat(
        DescribeChunk(chunk), " after the manifest was complete (duplicate or out of order)"));
  }
  if (chunk.file_index() != 0 || !chunk.file_name().empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(DescribeChunk(chunk), " names a file (index ", chunk.file_index(), ")"));
  }
  if (chunk.part_bytes() == 0 || chunk.part_bytes() > kMaxManifestFileBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(DescribeChunk(chunk), ": manifest size ", chunk.part_bytes(),
                     " is outside 1..", kMaxManifestFileBytes));
  }
  if (incoming_manifest.empty() && chunk.offset() == 0) {
    incoming_part_bytes = chunk.part_bytes();
    incoming_manifest_crc = chunk.manifest_crc32c();
  } else if (chunk.part_bytes() != incoming_part_bytes ||
             chunk.manifest_crc32c() != incoming_manifest_crc) {
    return absl::FailedPreconditionError(
        absl::StrCat(DescribeChunk(chunk), " belongs to another checkpoint"));
  }
  if (chunk.offset() != incoming_manifest.size()) {
    return absl::InvalidArgumentError(absl::StrCat("out of order: expected manifest chunk at offset ",
                                                   incoming_manifest.size(), ", got ",
                                                   DescribeChunk(chunk)));
  }
  if (chunk.data().empty() || chunk.offset() + chunk.data().size() > incoming_part_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(DescribeChunk(chunk), ": ", chunk.data().size(),
                                                   " bytes do not fit the manifest's ",
                                                   incoming_part_bytes));
  }
  incoming_manifest += chunk.data();
  if (incoming_manifest.size() < incoming_part_bytes) return absl::OkStatus();
  const absl::Status accepted = AcceptManifest();
  incoming_manifest.clear();  // Accepted, or refused as a whole: start it again.
  return accepted;
}

absl::Status CheckpointWriter::Impl::AcceptManifest() {
  if (Crc32c(incoming_manifest) != incoming_manifest_crc) {
    return absl::DataLossError("received manifest does not match its crc32c: resend it");
  }
  if (manifest.has_value()) {
    // A resumed transfer: the sender must be sending the same checkpoint.
    if (incoming_manifest != manifest_bytes) {
      return absl::FailedPreconditionError(
          "the sender's manifest differs from the one this transfer started with: "
          "it is another checkpoint; start the transfer over");
    }
    awaiting_manifest = false;
    return absl::OkStatus();
  }
  STEAD_ASSIGN_OR_RETURN(pb::SnapshotManifest decoded,
                         Annotate(DecodeManifestFile(incoming_manifest), "received manifest"));
  STEAD_RETURN_IF_ERROR(files::WriteFileAtomically(
      files::JoinPath(staging_dir, kManifestFileName), incoming_manifest));
  manifest = std::move(decoded);
  manifest_bytes = incoming_manifest;
  manifest_crc = incoming_manifest_crc;
  position = StreamPosition{0, 0};
  file_crc = 0;
  awaiting_manifest = false;
  return absl::OkStatus();
}

absl::Status CheckpointWriter::Impl::CheckFileChunk(const pb::SnapshotChunk& chunk) const {
  if (awaiting_manifest) {
    return absl::InvalidArgumentError(
        absl::StrCat("out of order: ", DescribeChunk(chunk), " before the manifest was complete"));
  }
  if (chunk.manifest_crc32c() != manifest_crc) {
    return absl::FailedPreconditionError(
        absl::StrCat(DescribeChunk(chunk), " belongs to another checkpoint"));
  }
  if (complete()) {
    return absl::FailedPreconditionError(
        absl::StrCat(DescribeChunk(chunk), " after every file was received"));
  }
  const pb::SnapshotFile& entry = manifest->files(static_cast<int>(position.file_index));
  if (chunk.file_index() != position.file_index || chunk.offset() != position.offset) {
    return absl::InvalidArgumentError(absl::StrCat(
        "out of order: expected file ", position.file_index, " (", entry.name(), ") at offset ",
        position.offset, ", got ", DescribeChunk(chunk)));
  }
  if (chunk.file_name() != entry.name() || chunk.part_bytes() != entry.size_bytes()) {
    return absl::InvalidArgumentError(absl::StrCat(DescribeChunk(chunk), " of ", chunk.part_bytes(),
                                                   " bytes does not match the manifest's ",
                                                   entry.name(), " of ", entry.size_bytes()));
  }
  if (chunk.offset() + chunk.data().size() > entry.size_bytes() ||
      (chunk.data().empty() && entry.size_bytes() != 0)) {
    return absl::InvalidArgumentError(absl::StrCat(DescribeChunk(chunk), ": ", chunk.data().size(),
                                                   " bytes do not fit the file's ",
                                                   entry.size_bytes()));
  }
  return absl::OkStatus();
}

absl::Status CheckpointWriter::Impl::WriteFileChunk(const pb::SnapshotChunk& chunk) {
  STEAD_RETURN_IF_ERROR(CheckFileChunk(chunk));
  const std::string path = FilePath(position.file_index);
  if (!file.open()) {
    // Offset 0 starts the file afresh; a resumed offset keeps the bytes before it.
    const int flags = O_WRONLY | O_CREAT | O_CLOEXEC | (position.offset == 0 ? O_TRUNC : 0);
    const int fd = ::open(path.c_str(), flags, 0644);
    if (fd < 0) return files::ErrnoStatus(errno, "open", path);
    file.Reset(fd);
  }
  const std::string& data = chunk.data();
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t written = ::pwrite(file.fd(), data.data() + done, data.size() - done,
                                     static_cast<off_t>(position.offset + done));
    if (written < 0 && errno == EINTR) continue;
    // The position is unchanged: the same chunk can be written again.
    if (written < 0) return files::ErrnoStatus(errno, "write", path);
    done += static_cast<size_t>(written);
  }
  file_crc = Crc32cExtend(file_crc, data);
  position.offset += data.size();
  const pb::SnapshotFile& entry = manifest->files(static_cast<int>(position.file_index));
  if (position.offset < entry.size_bytes()) return absl::OkStatus();
  return CompleteFile();
}

absl::Status CheckpointWriter::Impl::CompleteFile() {
  const pb::SnapshotFile& entry = manifest->files(static_cast<int>(position.file_index));
  const std::string path = FilePath(position.file_index);
  // A failed earlier write may have left bytes past the end.
  if (::ftruncate(file.fd(), static_cast<off_t>(entry.size_bytes())) != 0) {
    return files::ErrnoStatus(errno, "ftruncate", path);
  }
  if (::fsync(file.fd()) != 0) return files::ErrnoStatus(errno, "fsync", path);
  file.Reset();
  if (file_crc != entry.crc32c()) {
    const uint32_t received_crc = file_crc;
    position.offset = 0;  // Rewind: the next chunk must be this file's first.
    file_crc = 0;
    STEAD_RETURN_IF_ERROR(files::RemoveAll(path));
    return absl::DataLossError(absl::StrFormat(
        "received file %s does not match the manifest (crc32c %08x, manifest %08x): "
        "resend it from offset 0",
        entry.name(), received_crc, entry.crc32c()));
  }
  ++position.file_index;
  position.offset = 0;
  file_crc = 0;
  return absl::OkStatus();
}

absl::StatusOr<pb::SnapshotManifest> CheckpointWriter::Finish() {
  if (!impl_->complete()) {
    const CheckpointWriterProgress now = progress();
    return absl::FailedPreconditionError(
        now.manifest_received
            ? absl::StrCat("transfer incomplete: next is file ", now.position.file_index, " (",
                           now.file_name, ") at offset ", now.position.offset)
            : std::string("transfer incomplete: the manifest has not arrived"));
  }
  STEAD_RETURN_IF_ERROR(files::SyncPath(impl_->staging_dir));
  return VerifyCheckpoint(impl_->staging_dir);
}

}  // namespace stead::storage
