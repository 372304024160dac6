#include "storage/restore.h"

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "storage/backup_file.h"
#include "storage/state_machine.h"
#include "storage/state_machine_testing.h"
#include "storage/wal.h"
#include "tests/testing/status_matchers.h"

namespace stead::storage {
namespace {

using ::stead::testing::StatusIs;
using testing::PutBatch;
using testing::TempDir;
using testing::TestMember;
using testing::TestOptions;

constexpr uint64_t kNewCluster = 0x5eed;
constexpr raft::NodeId kNewNode = 77;

std::string ReadAllBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void WriteAllBytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

// Every path under `dir` (recursively) with its size; empty when `dir` is absent.
std::vector<std::string> Listing(const std::string& dir) {
  std::vector<std::string> out;
  if (!std::filesystem::exists(dir)) return out;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(dir)) {
    out.push_back(absl::StrCat(entry.path().string(), " ",
                               entry.is_regular_file() ? entry.file_size() : 0));
  }
  std::sort(out.begin(), out.end());
  return out;
}

// A backup of a 3-member cluster's state: 50 keys and the member records.
class RestoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    StateMachineOptions options = TestOptions(dir_.Sub("source"), 1);
    options.keyspaces = {"kv", kMembersKeyspace};
    ASSERT_OK_AND_ASSIGN(auto source, StateMachine::Open(options));
    ApplyBatch members;
    members.index = 1;
    members.term = 2;
    pb::ConfState conf;
    for (raft::NodeId id : {raft::NodeId{1}, raft::NodeId{2}, raft::NodeId{3}}) {
      members.mutations.push_back(Mutation::Put(kMembersKeyspace, MemberRecordKey(id),
                                                TestMember(id, absl::StrCat("stead-", id - 1)).SerializeAsString()));
      conf.add_voters(id);
    }
    members.conf_state = conf;
    ASSERT_OK(source->Apply(members));
    for (raft::Index i = 2; i <= 50; ++i) {
      ASSERT_OK(source->Apply(PutBatch(i, 3, {{absl::StrCat("key", i), absl::StrCat("value", i)}})));
    }
    ASSERT_OK_AND_ASSIGN(auto snapshot, source->NewSnapshot());
    ASSERT_OK_AND_ASSIGN(source_hash_, snapshot->Hash({kMembersKeyspace}));
    snapshot.reset();
    ASSERT_OK(source->CreateCheckpoint(dir_.Sub("cp")).status());
    ASSERT_OK(WriteBackupFile(dir_.Sub("cp"), backup_).status());
  }

  RestoreOptions Options(const std::string& name = "target") const {
    RestoreOptions options;
    options.backup_path = backup_;
    options.data_dir = dir_.Sub(name + "-data");
    options.wal_dir = dir_.Sub(name + "-wal");
    options.self = TestMember(kNewNode, "stead-0");
    options.cluster_id = kNewCluster;
    options.logger = Logger(LogLevel::kError);
    return options;
  }

  TempDir dir_;
  const std::string backup_ = dir_.Sub("backup.stead");
  ContentHash source_hash_;
};

// Goal: a restored member is a one-voter cluster of its own, with the backup's data,
// whose Raft log starts right after the restored state.
TEST_F(RestoreTest, RestoresTheDataAsANewClusterOfOne) {
  std::vector<std::string> phases;
  RestoreOptions options = Options();
  options.progress = [&](absl::string_view phase, uint64_t, uint64_t) {
    if (phases.empty() || phases.back() != phase) phases.emplace_back(phase);
  };
  ASSERT_OK_AND_ASSIGN(const RestoreResult result, RestoreFromBackup(options));
  EXPECT_EQ(phases, (std::vector<std::string>{"verify", "unpack", "install", "wal"}));
  EXPECT_EQ(result.manifest.raft().index(), 50u);
  EXPECT_EQ(result.index, 51u);
  EXPECT_EQ(result.term, 3u);
  EXPECT_FALSE(std::filesystem::exists(options.data_dir + "/checkpoints/restore"));

  ASSERT_OK_AND_ASSIGN(const auto metadata, StateMachine::ReadNodeMetadata(options.data_dir));
  ASSERT_TRUE(metadata.has_value());
  EXPECT_EQ(metadata->cluster_id(), kNewCluster);
  EXPECT_EQ(metadata->node_id(), kNewNode);
  StateMachineOptions state_options = TestOptions(options.data_dir, kNewNode, kNewCluster);
  state_options.identity.node_name = "stead-0";
  state_options.keyspaces = {"kv", kMembersKeyspace};
  {
    ASSERT_OK_AND_ASSIGN(auto state, StateMachine::Open(state_options));
    EXPECT_EQ(state->applied_index(), 51u);
    ASSERT_EQ(state->applied().conf_state().voters_size(), 1);
    EXPECT_EQ(state->applied().conf_state().voters(0), kNewNode);
    EXPECT_EQ(state->applied().conf_state().learners_size(), 0);
    EXPECT_EQ(*state->Get("kv", "key50"), std::optional<std::string>("value50"));
    ScanOptions scan;
    scan.keyspace = kMembersKeyspace;
    ASSERT_OK_AND_ASSIGN(const ScanResult records, state->Scan(scan));
    ASSERT_EQ(records.pairs.size(), 1u);
    EXPECT_EQ(records.pairs[0].key, MemberRecordKey(kNewNode));
    pb::MemberInfo self;
    ASSERT_TRUE(self.ParseFromString(records.pairs[0].value));
    EXPECT_EQ(self.client_address(), "stead-0:2479");
    // Only the member records differ from the source.
    ASSERT_OK_AND_ASSIGN(auto snapshot, state->NewSnapshot());
    ASSERT_OK_AND_ASSIGN(const ContentHash hash, snapshot->Hash({kMembersKeyspace}));
    EXPECT_EQ(hash, source_hash_);
    EXPECT_EQ(hash.key_count, 49u);
  }
  WalOptions wal_options;
  wal_options.dir = options.wal_dir;
  wal_options.identity = MemberWalIdentity(kNewCluster, kNewNode, "stead-0");
  wal_options.logger = Logger(LogLevel::kError);
  ASSERT_OK_AND_ASSIGN(auto wal, Wal::Open(wal_options));
  EXPECT_EQ(wal->LatestSnapshot().index(), 51u);
  EXPECT_EQ(wal->LatestSnapshot().term(), 3u);
  EXPECT_EQ(wal->LatestSnapshot().conf_state().voters(0), kNewNode);
  EXPECT_EQ(wal->InitialState().hard_state.term(), 3u);
  EXPECT_EQ(wal->InitialState().hard_state.commit(), 51u);
  EXPECT_EQ(wal->LastIndex(), 51u);
}

// Goal: a bad backup or a volume in use is refused before anything is written.
TEST_F(RestoreTest, RefusesBadFilesAndUsedVolumesChangingNothing) {
  const std::string bytes = ReadAllBytes(backup_);
  std::string flipped = bytes;
  flipped[bytes.size() / 2] = static_cast<char>(flipped[bytes.size() / 2] ^ 0x10);
  WriteAllBytes(dir_.Sub("flipped.stead"), flipped);
  WriteAllBytes(dir_.Sub("truncated.stead"), bytes.substr(0, bytes.size() - 100));
  WriteAllBytes(dir_.Sub("foreign.stead"), "not a backup at all");
  const struct {
    const char* name;
    std::string file;
    absl::StatusCode code;
    const char* message;
  } cases[] = {
      {"flipped byte", dir_.Sub("flipped.stead"), absl::StatusCode::kDataLoss, "crc32c"},
      {"truncated", dir_.Sub("truncated.stead"), absl::StatusCode::kDataLoss, "truncated"},
      {"foreign", dir_.Sub("foreign.stead"), absl::StatusCode::kDataLoss, "not a stead backup"},
      {"missing", dir_.Sub("missing.stead"), absl::StatusCode::kNotFound, "missing.stead"},
  };
  std::filesystem::create_directories(dir_.Sub("empty-data/lost+found"));
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    RestoreOptions options = Options("empty");  // the data dir exists, the WAL dir not
    options.backup_path = c.file;
    const std::vector<std::string> before = Listing(options.data_dir);
    EXPECT_THAT(RestoreFromBackup(options), StatusIs(c.code, c.message));
    EXPECT_EQ(Listing(options.data_dir), before);
    EXPECT_FALSE(std::filesystem::exists(options.wal_dir));
  }

  RestoreOptions used = Options("used");
  std::filesystem::create_directories(used.wal_dir);
  WriteAllBytes(used.wal_dir + "/000001-1.wal", "somebody's log");
  const std::vector<std::string> before = Listing(used.wal_dir);
  EXPECT_THAT(RestoreFromBackup(used), StatusIs(absl::StatusCode::kFailedPrecondition, "not empty"));
  EXPECT_EQ(Listing(used.wal_dir), before);
  EXPECT_FALSE(std::filesystem::exists(used.data_dir));
  ASSERT_OK_AND_ASSIGN(const bool accepts, VolumesAcceptRestore(used.data_dir, used.wal_dir));
  EXPECT_FALSE(accepts);

  // A restored member's volumes are in use too.
  ASSERT_OK(RestoreFromBackup(Options()).status());
  EXPECT_THAT(RestoreFromBackup(Options()), StatusIs(absl::StatusCode::kFailedPrecondition));
}

// Goal: a restore that stopped half-way (its restore dir is still there) is done again
// from the start, not taken for a member's volumes.
TEST_F(RestoreTest, AnInterruptedRestoreStartsOver) {
  RestoreOptions options = Options();
  std::filesystem::create_directories(options.data_dir + "/checkpoints/restore/checkpoint.partial");
  std::filesystem::create_directories(options.data_dir + "/db-000001");
  std::filesystem::create_directories(options.wal_dir);
  WriteAllBytes(options.wal_dir + "/000001-1.wal", "half a log");
  ASSERT_OK_AND_ASSIGN(const bool accepts, VolumesAcceptRestore(options.data_dir, options.wal_dir));
  EXPECT_TRUE(accepts);
  ASSERT_OK_AND_ASSIGN(const RestoreResult result, RestoreFromBackup(options));
  EXPECT_EQ(result.index, 51u);
  EXPECT_FALSE(std::filesystem::exists(options.data_dir + "/checkpoints/restore"));
  ASSERT_OK_AND_ASSIGN(const auto metadata, StateMachine::ReadNodeMetadata(options.data_dir));
  EXPECT_TRUE(metadata.has_value());
}

}  // namespace
}  // namespace stead::storage
