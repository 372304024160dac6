#include "storage/backup_file.h"

#include <filesystem>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "storage/checkpoint.h"
#include "storage/checkpoint_files.h"
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

}  // namespace
}  // namespace stead::storage
