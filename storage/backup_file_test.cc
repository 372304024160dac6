#include "storage/backup_file.h"

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "storage/checkpoint.h"
#include "storage/checkpoint_files.h"
#include "storage/checkpoint_stream.h"
#include "storage/crc32c.h"
#include "storage/state_machine.h"
#include "storage/state_machine_testing.h"
#include "tests/testing/status_matchers.h"

namespace stead::storage {
namespace {

using ::stead::testing::StatusIs;
using testing::PutBatch;
using testing::TempDir;
using testing::TestOptions;

std::string ReadAllBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void WriteAllBytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

uint32_t LittleEndian32(const std::string& bytes, size_t offset) {
  uint32_t value = 0;
  for (int i = 3; i >= 0; --i) {
    value = (value << 8) | static_cast<unsigned char>(bytes[offset + static_cast<size_t>(i)]);
  }
  return value;
}

class BackupFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(source_, StateMachine::Open(TestOptions(dir_.Sub("node1"), 1)));
    for (raft::Index i = 1; i <= 100; ++i) {
      ASSERT_OK(source_->Apply(PutBatch(i, 1, {{absl::StrCat("key", i), std::string(100, 'v')}})));
    }
    ASSERT_OK_AND_ASSIGN(manifest_, source_->CreateCheckpoint(dir_.Sub("cp")));
    ASSERT_OK(WriteBackupFile(dir_.Sub("cp"), dir_.Sub("backup.stead")).status());
    bytes_ = ReadAllBytes(dir_.Sub("backup.stead"));
  }

  // Offset in the backup of the first byte of manifest file `index`.
  size_t FileOffset(int index) const {
    size_t offset = 16 + LittleEndian32(bytes_, 8);
    for (int i = 0; i < index; ++i) offset += manifest_.files(i).size_bytes();
    return offset;
  }

  TempDir dir_;
  std::unique_ptr<StateMachine> source_;
  pb::SnapshotManifest manifest_;
  std::string bytes_;
};

TEST_F(BackupFileTest, RoundTripRestoresAnInstallableCheckpoint) {
  ASSERT_OK_AND_ASSIGN(const pb::SnapshotManifest header, ReadBackupHeader(dir_.Sub("backup.stead")));
  EXPECT_EQ(EncodeManifestFile(header), EncodeManifestFile(manifest_));
  ASSERT_OK(VerifyBackupFile(dir_.Sub("backup.stead")).status());
  EXPECT_EQ(bytes_.size(), 16 + LittleEndian32(bytes_, 8) + manifest_.total_bytes() + 12);
  EXPECT_EQ(BackupFileBytes(manifest_), bytes_.size());

  ASSERT_OK(RestoreBackupFile(dir_.Sub("backup.stead"), dir_.Sub("restored")).status());
  ASSERT_OK_AND_ASSIGN(const pb::SnapshotManifest restored, VerifyCheckpoint(dir_.Sub("restored")));
  EXPECT_EQ(EncodeManifestFile(restored), EncodeManifestFile(manifest_));
  // Restoring into a new cluster, as `stead --restore-from` does for a clone.
  StateMachineOptions clone = TestOptions(dir_.Sub("clone"), 1, 0x5eed);
  ASSERT_OK(StateMachine::InstallCheckpoint(clone, dir_.Sub("restored"), /*allow_other_cluster=*/true)
                .status());
  ASSERT_OK_AND_ASSIGN(auto machine, StateMachine::Open(clone));
  EXPECT_EQ(machine->applied_index(), 100u);
  EXPECT_EQ(*machine->Get("kv", "key100"), std::optional<std::string>(std::string(100, 'v')));
}

TEST_F(BackupFileTest, DamageIsDataLossNamingWhatIsWrong) {
  int big = 0;  // The first file large enough to damage in its middle.
  while (manifest_.files(big).size_bytes() < 64) ++big;
  const std::string sst = manifest_.files(big).name();
  const struct {
    const char* name;
    std::string bytes;
    std::string want;
  } cases[] = {
      {"flipped file byte",
       [&] { std::string b = bytes_; b[FileOffset(big) + 7] ^= 0x20; return b; }(),
       absl::StrCat("file ", sst, " crc32c mismatch")},
      {"truncated", bytes_.substr(0, FileOffset(big) + 3), absl::StrCat("truncated in file ", sst)},
      {"no trailer", bytes_.substr(0, bytes_.size() - 12), "truncated in the trailer"},
      {"flipped trailer", [&] { std::string b = bytes_; b[b.size() - 12] ^= 1; return b; }(),
       "trailer crc32c mismatch"},
      {"extra bytes", bytes_ + "x", "bytes after the trailer"},
      {"bad magic", "NOTSTEAD" + bytes_.substr(8), "bad magic"},
      {"short foreign file", "garbage\n", "not a stead backup"},
      {"only the magic", bytes_.substr(0, 10), "truncated in the header"},
      {"flipped header", [&] { std::string b = bytes_; b[20] ^= 1; return b; }(),
       "header crc32c mismatch"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string path = dir_.Sub("damaged.stead");
    WriteAllBytes(path, c.bytes);
    EXPECT_THAT(VerifyBackupFile(path), StatusIs(absl::StatusCode::kDataLoss, c.want));
    EXPECT_THAT(RestoreBackupFile(path, dir_.Sub("out")), StatusIs(absl::StatusCode::kDataLoss, c.want));
    EXPECT_FALSE(files::Exists(dir_.Sub("out")));
    EXPECT_FALSE(files::Exists(dir_.Sub("out.partial")));
  }
}

TEST_F(BackupFileTest, WriteRefusesADamagedCheckpointAndAnExistingFile) {
  EXPECT_THAT(WriteBackupFile(dir_.Sub("cp"), dir_.Sub("backup.stead")),
              StatusIs(absl::StatusCode::kAlreadyExists));
  std::filesystem::copy(dir_.Sub("cp"), dir_.Sub("cp-damaged"));
  const std::string sst = dir_.Sub("cp-damaged/" + manifest_.files(0).name());
  std::string data = ReadAllBytes(sst);
  data[data.size() / 2] ^= 0x01;
  WriteAllBytes(sst, data);
  EXPECT_THAT(WriteBackupFile(dir_.Sub("cp-damaged"), dir_.Sub("bad.stead")),
              StatusIs(absl::StatusCode::kDataLoss, manifest_.files(0).name()));
  EXPECT_FALSE(files::Exists(dir_.Sub("bad.stead")));
  EXPECT_FALSE(files::Exists(dir_.Sub("bad.stead.tmp")));
}

// The chunks of the fixture's checkpoint, `chunk_bytes` data bytes at most each.
std::vector<pb::SnapshotChunk> StreamOf(const std::string& dir, size_t chunk_bytes) {
  CheckpointReaderOptions options;
  options.max_chunk_bytes = chunk_bytes;
  absl::StatusOr<std::unique_ptr<CheckpointReader>> reader = CheckpointReader::Open(dir, options);
  STEAD_CHECK_OK(reader.status());
  std::vector<pb::SnapshotChunk> chunks;
  for (;;) {
    absl::StatusOr<std::optional<pb::SnapshotChunk>> chunk = (*reader)->Next();
    STEAD_CHECK_OK(chunk.status());
    if (!chunk->has_value()) return chunks;
    chunks.push_back(**chunk);
  }
}

// Goal: a backup written from a stream as it arrives is the very file WriteBackupFile
// writes from the checkpoint directory, whatever the chunk size.
TEST_F(BackupFileTest, StreamWriterWritesTheSameFileAsTheCheckpointCopy) {
  for (const size_t chunk_bytes : {size_t{100}, size_t{4096}, size_t{1} << 20}) {
    SCOPED_TRACE(chunk_bytes);
    const std::string path = dir_.Sub(absl::StrCat("streamed-", chunk_bytes, ".stead"));
    ASSERT_OK_AND_ASSIGN(auto writer, BackupStreamWriter::Create(path, /*replace=*/false));
    const std::vector<pb::SnapshotChunk> chunks = StreamOf(dir_.Sub("cp"), chunk_bytes);
    for (const pb::SnapshotChunk& chunk : chunks) {
      EXPECT_FALSE(writer->complete());
      ASSERT_OK(writer->Write(chunk));
    }
    ASSERT_TRUE(writer->complete());
    ASSERT_NE(writer->manifest(), nullptr);
    EXPECT_EQ(writer->bytes_done(), manifest_.total_bytes());
    EXPECT_FALSE(std::filesystem::exists(path)) << "visible before Finish";
    ASSERT_OK_AND_ASSIGN(const pb::SnapshotManifest written, writer->Finish());
    EXPECT_EQ(EncodeManifestFile(written), EncodeManifestFile(manifest_));
    EXPECT_EQ(ReadAllBytes(path), bytes_);
    EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
  }
}

// Goal: whatever is wrong with a stream, the writer refuses it by name, refuses
// everything after, and leaves neither the backup nor its temp file behind.
TEST_F(BackupFileTest, StreamWriterRefusesABadStreamAndLeavesNothing) {
  const std::vector<pb::SnapshotChunk> good = StreamOf(dir_.Sub("cp"), 4096);
  ASSERT_GE(good.size(), 4u);
  ASSERT_EQ(good[0].kind(), pb::SNAPSHOT_CHUNK_KIND_MANIFEST);
  // The first file chunk with data, and that chunk's position in `good`.
  size_t data_at = 1;
  while (good[data_at].kind() != pb::SNAPSHOT_CHUNK_KIND_FILE || good[data_at].data().empty()) ++data_at;

  auto with_data = [](pb::SnapshotChunk chunk, std::string data, bool fix_crc) {
    chunk.set_data(std::move(data));
    if (fix_crc) chunk.set_data_crc32c(Crc32c(chunk.data()));
    return chunk;
  };
  std::string flipped = good[data_at].data();
  flipped[0] = static_cast<char>(flipped[0] ^ 1);
  pb::SnapshotChunk foreign = good[data_at];
  foreign.set_manifest_crc32c(foreign.manifest_crc32c() ^ 1);
  pb::SnapshotChunk skipped = good[data_at];
  skipped.set_offset(skipped.offset() + 1);
  const struct {
    const char* name;
    pb::SnapshotChunk chunk;  // sent in place of good[data_at]
    absl::StatusCode code;
    std::string message;
  } cases[] = {
      {"chunk crc", with_data(good[data_at], flipped, false), absl::StatusCode::kDataLoss,
       "fails its crc32c"},
      {"file crc", with_data(good[data_at], flipped, true), absl::StatusCode::kDataLoss,
       good[data_at].file_name()},
      {"another checkpoint", foreign, absl::StatusCode::kFailedPrecondition, "another checkpoint"},
      {"out of order", skipped, absl::StatusCode::kInvalidArgument, "expected file"},
      {"manifest again", good[0], absl::StatusCode::kInvalidArgument, "expected file"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string path = dir_.Sub("bad.stead");
    {
      ASSERT_OK_AND_ASSIGN(auto writer, BackupStreamWriter::Create(path, /*replace=*/false));
      for (size_t i = 0; i < data_at; ++i) ASSERT_OK(writer->Write(good[i]));
      absl::Status status = writer->Write(c.chunk);
      // A bad file shows once the file is complete: feed the rest of it.
      for (size_t i = data_at + 1; status.ok() && i < good.size(); ++i) status = writer->Write(good[i]);
      EXPECT_THAT(status, StatusIs(c.code, c.message));
      EXPECT_THAT(writer->Write(good[data_at]), StatusIs(absl::StatusCode::kFailedPrecondition));
      EXPECT_THAT(writer->Finish(), StatusIs(absl::StatusCode::kFailedPrecondition));
    }
    EXPECT_FALSE(std::filesystem::exists(path));
    EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
  }

  {
    ASSERT_OK_AND_ASSIGN(auto writer, BackupStreamWriter::Create(dir_.Sub("short.stead"), false));
    for (size_t i = 0; i + 1 < good.size(); ++i) ASSERT_OK(writer->Write(good[i]));
    EXPECT_THAT(writer->Finish(), StatusIs(absl::StatusCode::kFailedPrecondition, "incomplete"));
  }
  EXPECT_FALSE(std::filesystem::exists(dir_.Sub("short.stead")));
}

TEST_F(BackupFileTest, StreamWriterReplacesAnExistingFileOnlyWhenAskedAndOnlyAtFinish) {
  const std::string path = dir_.Sub("existing.stead");
  WriteAllBytes(path, "old contents");
  EXPECT_THAT(BackupStreamWriter::Create(path, /*replace=*/false),
              StatusIs(absl::StatusCode::kAlreadyExists));
  ASSERT_OK_AND_ASSIGN(auto writer, BackupStreamWriter::Create(path, /*replace=*/true));
  for (const pb::SnapshotChunk& chunk : StreamOf(dir_.Sub("cp"), 1 << 20)) ASSERT_OK(writer->Write(chunk));
  EXPECT_EQ(ReadAllBytes(path), "old contents");
  ASSERT_OK(writer->Finish().status());
  EXPECT_EQ(ReadAllBytes(path), bytes_);
}

}  // namespace
}  // namespace stead::storage
