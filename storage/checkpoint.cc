#include "storage/checkpoint.h"

#include <algorithm>
#include <cstring>
#include <set>
#include <tuple>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/status_macros.h"
#include "storage/checkpoint_files.h"
#include "storage/crc32c.h"
#include "storage/node_metadata.h"

namespace stead::storage {
namespace {

void PutFixed32(std::string* out, uint32_t value) {
  for (int shift = 0; shift < 32; shift += 8) {
    out->push_back(static_cast<char>((value >> shift) & 0xffu));
  }
}

uint32_t GetFixed32(absl::string_view bytes) {
  uint32_t value = 0;
  for (int i = 3; i >= 0; --i) {
    value = (value << 8) | static_cast<unsigned char>(bytes[static_cast<size_t>(i)]);
  }
  return value;
}

absl::Status ValidateFileName(absl::string_view name) {
  if (name.empty()) return absl::DataLossError("manifest lists a file with an empty name");
  // Names come from disk or the network and become paths: anything that could step out
  // of the checkpoint directory is refused.
  if (absl::StrContains(name, "/") || name == "." || name == ".." ||
      absl::StrContains(name, absl::string_view("\0", 1))) {
    return absl::DataLossError(absl::StrCat("manifest lists an invalid file name '", name, "'"));
  }
  if (name == kManifestFileName) {
    return absl::DataLossError("manifest lists the manifest file itself");
  }
  return absl::OkStatus();
}

}  // namespace

std::string EncodeManifestFile(const pb::SnapshotManifest& manifest) {
  const std::string body = SerializeDeterministically(manifest);
  std::string out(kManifestMagic, kManifestMagicBytes);
  PutFixed32(&out, static_cast<uint32_t>(body.size()));
  PutFixed32(&out, Crc32c(body));
  out += body;
  return out;
}

absl::StatusOr<pb::SnapshotManifest> DecodeManifestFile(absl::string_view bytes) {
  if (bytes.size() < kManifestHeaderBytes ||
      bytes.substr(0, kManifestMagicBytes) != absl::string_view(kManifestMagic, kManifestMagicBytes)) {
    return absl::DataLossError("manifest: bad magic (not a stead checkpoint manifest)");
  }
  const uint32_t body_bytes = GetFixed32(bytes.substr(kManifestMagicBytes, 4));
  const uint32_t expected_crc = GetFixed32(bytes.substr(kManifestMagicBytes + 4, 4));
  const absl::string_view body = bytes.substr(kManifestHeaderBytes);
  if (body.size() != body_bytes) {
    return absl::DataLossError(absl::StrCat("manifest: header says ", body_bytes,
                                            " bytes, file has ", body.size()));
  }
  const uint32_t actual_crc = Crc32c(body);
  if (actual_crc != expected_crc) {
    return absl::DataLossError(absl::StrFormat("manifest: crc32c mismatch (stored %08x, computed %08x)",
                                               expected_crc, actual_crc));
  }
  pb::SnapshotManifest manifest;
  if (!manifest.ParseFromArray(body.data(), static_cast<int>(body.size()))) {
    return absl::DataLossError("manifest: bytes do not parse");
  }
  if (manifest.format_version() > kCheckpointFormatVersion) {
    return absl::FailedPreconditionError(
        absl::StrCat("manifest: format version ", manifest.format_version(),
                     " is newer than this build understands (", kCheckpointFormatVersion,
                     "): use a newer stead"));
  }
  STEAD_RETURN_IF_ERROR(ValidateManifest(manifest));
  return manifest;
}

absl::Status ValidateManifest(const pb::SnapshotManifest& manifest) {
  if (manifest.format_version() == 0 || manifest.format_version() > kCheckpointFormatVersion) {
    return absl::DataLossError(
        absl::StrCat("manifest: unknown format_version ", manifest.format_version()));
  }
  if (manifest.cluster_id() == 0) return absl::DataLossError("manifest: cluster_id is 0");
  if (manifest.raft().index() == 0 || manifest.raft().term() == 0) {
    return absl::DataLossError(absl::StrCat("manifest: raft index ", manifest.raft().index(),
                                            " term ", manifest.raft().term(),
                                            " (both must be > 0)"));
  }
  uint64_t total_bytes = 0;
  for (int i = 0; i < manifest.files_size(); ++i) {
    const pb::SnapshotFile& file = manifest.files(i);
    STEAD_RETURN_IF_ERROR(ValidateFileName(file.name()));
    if (i > 0 && !(manifest.files(i - 1).name() < file.name())) {
      return absl::DataLossError(absl::StrCat("manifest: files not sorted and unique at '",
                                              file.name(), "'"));
    }
    total_bytes += file.size_bytes();
  }
  if (total_bytes != manifest.total_bytes()) {
    return absl::DataLossError(absl::StrCat("manifest: total_bytes ", manifest.total_bytes(),
                                            " but files sum to ", total_bytes));
  }
  return absl::OkStatus();
}

absl::StatusOr<pb::SnapshotManifest> ReadManifest(const std::string& dir) {
  const std::string path = files::JoinPath(dir, kManifestFileName);
  STEAD_ASSIGN_OR_RETURN(const std::string bytes, files::ReadFile(path, kMaxManifestFileBytes));
  return Annotate(DecodeManifestFile(bytes), path);
}

absl::StatusOr<pb::SnapshotManifest> VerifyCheckpoint(const std::string& dir) {
  STEAD_ASSIGN_OR_RETURN(pb::SnapshotManifest manifest, ReadManifest(dir));
  STEAD_ASSIGN_OR_RETURN(const std::vector<std::string> present, files::ListDirectory(dir));
  std::set<std::string> listed;
  for (const pb::SnapshotFile& file : manifest.files()) listed.insert(file.name());
  for (const std::string& name : present) {
    if (name != kManifestFileName && listed.count(name) == 0) {
      return absl::DataLossError(
          absl::StrCat("checkpoint ", dir, ": file ", name, " is not in the manifest"));
    }
  }
  for (const pb::SnapshotFile& file : manifest.files()) {
    const std::string path = files::JoinPath(dir, file.name());
    if (!files::Exists(path)) {
      return absl::DataLossError(
          absl::StrCat("checkpoint ", dir, ": file ", file.name(), " is missing"));
    }
    STEAD_ASSIGN_OR_RETURN(const files::FileChecksum sum,
                           files::ChecksumFile(path, /*sync=*/false));
    if (sum.size_bytes != file.size_bytes()) {
      return absl::DataLossError(absl::StrCat("checkpoint ", dir, ": file ", file.name(),
                                              " is ", sum.size_bytes, " bytes, manifest says ",
                                              file.size_bytes()));
    }
    if (sum.crc32c != file.crc32c()) {
      return absl::DataLossError(absl::StrFormat(
          "checkpoint %s: file %s crc32c mismatch (manifest %08x, file %08x)", dir, file.name(),
          file.crc32c(), sum.crc32c));
    }
  }
  return manifest;
}

absl::StatusOr<pb::SnapshotManifest> DescribeCheckpointFiles(const std::string& dir,
                                                             pb::SnapshotManifest base) {
  STEAD_ASSIGN_OR_RETURN(const std::vector<std::string> names, files::ListDirectory(dir));
  base.clear_files();
  uint64_t total_bytes = 0;
  for (const std::string& name : names) {  // Sorted by ListDirectory.
    if (name == kManifestFileName) continue;
    const std::string path = files::JoinPath(dir, name);
    if (files::IsDirectory(path)) {
      return absl::FailedPreconditionError(
          absl::StrCat("checkpoint ", dir, " has a subdirectory ", name));
    }
    STEAD_ASSIGN_OR_RETURN(const files::FileChecksum sum, files::ChecksumFile(path, /*sync=*/true));
    pb::SnapshotFile* file = base.add_files();
    file->set_name(name);
    file->set_size_bytes(sum.size_bytes);
    file->set_crc32c(sum.crc32c);
    total_bytes += sum.size_bytes;
  }
  base.set_total_bytes(total_bytes);
  return base;
}

absl::Status WriteManifest(const std::string& dir, const pb::SnapshotManifest& manifest) {
  STEAD_RETURN_IF_ERROR(ValidateManifest(manifest));
  return files::WriteFileAtomically(files::JoinPath(dir, kManifestFileName),
                                    EncodeManifestFile(manifest));
}

std::string CheckpointDirName(raft::Index index, raft::Term term) {
  return absl::StrFormat("checkpoint-%020u-%020u", index, term);
}

absl::StatusOr<std::vector<CheckpointInfo>> ListCheckpoints(const std::string& parent) {
  STEAD_ASSIGN_OR_RETURN(const std::vector<std::string> names, files::ListDirectory(parent));
  std::vector<CheckpointInfo> found;
  for (const std::string& name : names) {
    const std::string path = files::JoinPath(parent, name);
    if (absl::StrContains(name, kPartialSuffix) || !files::IsDirectory(path)) continue;
    absl::StatusOr<pb::SnapshotManifest> manifest = ReadManifest(path);
    if (!manifest.ok()) continue;  // Not a checkpoint, or a damaged one: not ours to list.
    found.push_back(CheckpointInfo{path, *std::move(manifest)});
  }
  std::sort(found.begin(), found.end(), [](const CheckpointInfo& a, const CheckpointInfo& b) {
    return std::make_tuple(a.manifest.raft().index(), a.manifest.raft().term(),
                           a.manifest.created_unix_ms(), a.path) <
           std::make_tuple(b.manifest.raft().index(), b.manifest.raft().term(),
                           b.manifest.created_unix_ms(), b.path);
  });
  return found;
}

absl::StatusOr<size_t> RemoveOldCheckpoints(const std::string& parent, size_t keep_count) {
  STEAD_ASSIGN_OR_RETURN(const std::vector<std::string> names, files::ListDirectory(parent));
  for (const std::string& name : names) {
    // "<dir>.partial" is ours; "<dir>.partial.tmp" is where RocksDB stages it.
    if (absl::EndsWith(name, kPartialSuffix) ||
        absl::EndsWith(name, absl::StrCat(kPartialSuffix, ".tmp"))) {
      STEAD_RETURN_IF_ERROR(files::RemoveAll(files::JoinPath(parent, name)));
    }
  }
  STEAD_ASSIGN_OR_RETURN(const std::vector<CheckpointInfo> checkpoints, ListCheckpoints(parent));
  size_t removed = 0;
  for (size_t i = 0; i + keep_count < checkpoints.size(); ++i) {
    STEAD_RETURN_IF_ERROR(files::RemoveAll(checkpoints[i].path));
    ++removed;
  }
  STEAD_RETURN_IF_ERROR(files::SyncPath(parent));
  return removed;
}

}  // namespace stead::storage
