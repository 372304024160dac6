#include "storage/checkpoint.h"

#include <sys/stat.h>

#include <filesystem>
#include <random>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "storage/checkpoint_files.h"
#include "storage/crc32c.h"
#include "storage/node_metadata.h"
#include "storage/state_machine.h"
#include "storage/state_machine_dir.h"
#include "storage/state_machine_testing.h"
#include "tests/testing/status_matchers.h"

namespace stead::storage {
namespace {

using ::stead::testing::StatusIs;
using ::testing::ElementsAre;
using testing::FirstSst;
using testing::FlipByte;
using ::testing::HasSubstr;
using testing::PutBatch;
using testing::TempDir;
using testing::TestOptions;

// Applies entries 1..count, each putting "key<i>" = "value<i>" plus some filler so the
// checkpoint has real SST content.
void Fill(StateMachine& machine, raft::Index first, raft::Index last, raft::Term term = 2) {
  for (raft::Index i = first; i <= last; ++i) {
    ASSERT_OK(machine.Apply(
        PutBatch(i, term, {{absl::StrCat("key", i), absl::StrCat("value", i, std::string(200, 'x'))}})));
  }
}

class CheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(source_, StateMachine::Open(TestOptions(dir_.Sub("node1"), 1)));
    Fill(*source_, 1, 50);
  }

  // Creates a checkpoint of the source node under "checkpoints/".
  pb::SnapshotManifest Checkpoint(const std::string& name) {
    absl::StatusOr<pb::SnapshotManifest> manifest =
        source_->CreateCheckpoint(dir_.Sub("checkpoints/" + name));
    EXPECT_OK(manifest);
    return manifest.value_or(pb::SnapshotManifest());
  }

  TempDir dir_;
  std::unique_ptr<StateMachine> source_;
};

TEST_F(CheckpointTest, CreateWritesAManifestThatVerifies) {
  ApplyBatch conf;
  conf.index = 51;
  conf.term = 3;
  conf.conf_state.emplace();
  conf.conf_state->add_voters(1);
  conf.conf_state->add_voters(2);
  ASSERT_OK(source_->Apply(conf));
  ASSERT_OK(files::CreateDirectories(dir_.Sub("checkpoints")));
  const pb::SnapshotManifest manifest = Checkpoint("one");

  EXPECT_EQ(manifest.format_version(), kCheckpointFormatVersion);
  EXPECT_EQ(manifest.cluster_id(), testing::kTestClusterId);
  EXPECT_EQ(manifest.raft().index(), 51u);
  EXPECT_EQ(manifest.raft().term(), 3u);
  EXPECT_THAT(manifest.raft().conf_state().voters(), ElementsAre(1u, 2u));
  EXPECT_EQ(manifest.key_count(), 50u);
  EXPECT_EQ(manifest.created_by_node_id(), 1u);
  EXPECT_EQ(manifest.created_by_name(), "stead-0");
  EXPECT_EQ(manifest.created_unix_ms(), 1800000000000);
  EXPECT_FALSE(FirstSst(manifest).empty());
  uint64_t total_bytes = 0;
  for (int i = 0; i < manifest.files_size(); ++i) {
    if (i > 0) {
      EXPECT_LT(manifest.files(i - 1).name(), manifest.files(i).name());
    }
    total_bytes += manifest.files(i).size_bytes();
  }
  EXPECT_EQ(manifest.total_bytes(), total_bytes);

  ASSERT_OK_AND_ASSIGN(const pb::SnapshotManifest verified,
                       VerifyCheckpoint(dir_.Sub("checkpoints/one")));
  EXPECT_EQ(EncodeManifestFile(verified), EncodeManifestFile(manifest));
  EXPECT_FALSE(files::Exists(dir_.Sub("checkpoints/one.partial")));
}

TEST_F(CheckpointTest, CreateRefusesAnExistingDirAndAnEmptyState) {
  ASSERT_OK(files::CreateDirectories(dir_.Sub("checkpoints/taken")));
  EXPECT_THAT(source_->CreateCheckpoint(dir_.Sub("checkpoints/taken")),
              StatusIs(absl::StatusCode::kAlreadyExists));
  ASSERT_OK_AND_ASSIGN(auto empty, StateMachine::Open(TestOptions(dir_.Sub("node9"), 9)));
  EXPECT_THAT(empty->CreateCheckpoint(dir_.Sub("checkpoints/empty")),
              StatusIs(absl::StatusCode::kFailedPrecondition, "index 0"));
}

TEST_F(CheckpointTest, ManifestFileIsDeterministicAndChecksummed) {
  const pb::SnapshotManifest manifest = Checkpoint("one");
  const std::string bytes = EncodeManifestFile(manifest);
  EXPECT_EQ(bytes, EncodeManifestFile(manifest));
  ASSERT_OK(DecodeManifestFile(bytes).status());
  for (size_t offset : {size_t{0}, size_t{9}, size_t{13}, bytes.size() - 1}) {
    SCOPED_TRACE(offset);
    std::string damaged = bytes;
    damaged[offset] = static_cast<char>(~damaged[offset]);
    EXPECT_THAT(DecodeManifestFile(damaged), StatusIs(absl::StatusCode::kDataLoss, "manifest"));
  }
  EXPECT_THAT(DecodeManifestFile(bytes.substr(0, bytes.size() - 1)),
              StatusIs(absl::StatusCode::kDataLoss, "manifest"));
}

TEST(CheckpointManifest, ValidateRefusesBadNamesOrderAndTotals) {
  pb::SnapshotManifest good;
  good.set_format_version(kCheckpointFormatVersion);
  good.set_cluster_id(1);
  good.mutable_raft()->set_index(5);
  good.mutable_raft()->set_term(1);
  auto* a = good.add_files();
  a->set_name("a.sst");
  a->set_size_bytes(10);
  auto* b = good.add_files();
  b->set_name("b.sst");
  b->set_size_bytes(5);
  good.set_total_bytes(15);
  ASSERT_OK(ValidateManifest(good));

  const struct {
    const char* name;
    void (*damage)(pb::SnapshotManifest*);
    const char* want;
  } cases[] = {
      {"path", [](pb::SnapshotManifest* m) { m->mutable_files(0)->set_name("../a.sst"); }, "invalid file name"},
      {"dotdot", [](pb::SnapshotManifest* m) { m->mutable_files(0)->set_name(".."); }, "invalid file name"},
      {"self", [](pb::SnapshotManifest* m) { m->mutable_files(0)->set_name(kManifestFileName); }, "manifest file itself"},
      {"order", [](pb::SnapshotManifest* m) { m->mutable_files(0)->set_name("c.sst"); }, "sorted"},
      {"dup", [](pb::SnapshotManifest* m) { m->mutable_files(0)->set_name("b.sst"); }, "sorted"},
      {"total", [](pb::SnapshotManifest* m) { m->set_total_bytes(16); }, "total_bytes"},
      {"cluster", [](pb::SnapshotManifest* m) { m->set_cluster_id(0); }, "cluster_id"},
      {"index", [](pb::SnapshotManifest* m) { m->mutable_raft()->set_index(0); }, "index"},
      {"version", [](pb::SnapshotManifest* m) { m->set_format_version(0); }, "format_version"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    pb::SnapshotManifest damaged = good;
    c.damage(&damaged);
    EXPECT_THAT(ValidateManifest(damaged), StatusIs(absl::StatusCode::kDataLoss, c.want));
  }
}

// Goal: a new member opened from a leader's checkpoint holds the same state and index,
// under its own identity, and goes on applying from index + 1.
TEST_F(CheckpointTest, OpenFromCheckpointOnANewMember) {
  const pb::SnapshotManifest manifest = Checkpoint("one");
  Fill(*source_, 51, 60);  // Later writes on the source do not leak into the checkpoint.

  ASSERT_OK_AND_ASSIGN(auto member, StateMachine::OpenFromCheckpoint(
                                        TestOptions(dir_.Sub("node2"), 2), dir_.Sub("checkpoints/one")));
  EXPECT_EQ(member->applied_index(), 50u);
  EXPECT_EQ(member->applied().term(), 2u);
  EXPECT_EQ(member->node_metadata().node_id(), 2u);
  EXPECT_EQ(member->node_metadata().node_name(), "stead-1");
  EXPECT_EQ(*member->Get("kv", "key50"), std::optional<std::string>(absl::StrCat("value50", std::string(200, 'x'))));
  EXPECT_EQ(*member->Get("kv", "key51"), std::nullopt);
  ASSERT_OK_AND_ASSIGN(const ScanResult all, member->Scan({"kv", "", "", false, 1000}));
  EXPECT_EQ(all.pairs.size(), manifest.key_count());
  Fill(*member, 51, 52);
  EXPECT_EQ(member->applied_index(), 52u);
  // The checkpoint itself is untouched and still verifies.
  EXPECT_OK(VerifyCheckpoint(dir_.Sub("checkpoints/one")).status());
  // And the member keeps its own identity across restarts.
  member.reset();
  ASSERT_OK_AND_ASSIGN(member, StateMachine::Open(TestOptions(dir_.Sub("node2"), 2)));
  EXPECT_EQ(member->applied_index(), 52u);
}

TEST_F(CheckpointTest, InstallReplacesAnOlderStateAndRemovesTheOldDatabase) {
  const std::string data = dir_.Sub("node2");
  {
    ASSERT_OK_AND_ASSIGN(auto member, StateMachine::Open(TestOptions(data, 2)));
    ASSERT_OK(member->Apply(PutBatch(1, 1, {{"stale", "yes"}})));
  }
  Checkpoint("one");
  ASSERT_OK_AND_ASSIGN(const pb::SnapshotManifest installed,
                       StateMachine::InstallCheckpoint(TestOptions(data, 2), dir_.Sub("checkpoints/one")));
  EXPECT_EQ(installed.raft().index(), 50u);
  ASSERT_OK_AND_ASSIGN(const std::vector<std::string> names, files::ListDirectory(data));
  EXPECT_THAT(names, ElementsAre("ACTIVE", "LOCK", "db-000002"));
  ASSERT_OK_AND_ASSIGN(auto member, StateMachine::Open(TestOptions(data, 2)));
  EXPECT_EQ(member->applied_index(), 50u);
  EXPECT_EQ(*member->Get("kv", "stale"), std::nullopt);
  EXPECT_EQ(member->node_metadata().created_unix_ms(), 1800000000000);
}

TEST_F(CheckpointTest, InstallRefusesAnotherClusterAnotherOwnerAndAnOpenDir) {
  Checkpoint("one");
  const std::string checkpoint = dir_.Sub("checkpoints/one");
  EXPECT_THAT(StateMachine::InstallCheckpoint(TestOptions(dir_.Sub("x"), 2, 0xdef), checkpoint),
              StatusIs(absl::StatusCode::kFailedPrecondition, "is of cluster 0xabc"));
  // Restoring a backup into a new cluster is allowed when asked for.
  EXPECT_OK(StateMachine::InstallCheckpoint(TestOptions(dir_.Sub("x"), 2, 0xdef), checkpoint,
                                            /*allow_other_cluster=*/true)
                .status());
  // A data dir owned by node 3 does not take a checkpoint for node 2.
  { ASSERT_OK(StateMachine::Open(TestOptions(dir_.Sub("node3"), 3)).status()); }
  EXPECT_THAT(StateMachine::InstallCheckpoint(TestOptions(dir_.Sub("node3"), 2), checkpoint),
              StatusIs(absl::StatusCode::kFailedPrecondition, "belongs to"));
  // The source's own data dir is open: the lock refuses.
  EXPECT_THAT(StateMachine::InstallCheckpoint(TestOptions(dir_.Sub("node1"), 1), checkpoint),
              StatusIs(absl::StatusCode::kFailedPrecondition, "in use"));
}

// Goal: a corrupt checkpoint is reported with the file at fault and never switched in.
TEST_F(CheckpointTest, CorruptionIsDataLossNamingTheFileAndNothingIsSwitchedIn) {
  const pb::SnapshotManifest manifest = Checkpoint("one");
  const std::string sst = FirstSst(manifest);
  const std::string data = dir_.Sub("node2");
  {
    ASSERT_OK_AND_ASSIGN(auto member, StateMachine::Open(TestOptions(data, 2)));
    ASSERT_OK(member->Apply(PutBatch(1, 1, {{"mine", "yes"}})));
  }
  const struct {
    const char* name;
    std::function<void(const std::string& dir)> damage;
    std::string want;
  } cases[] = {
      {"flipped byte", [&](const std::string& d) { FlipByte(d + "/" + sst, 100); },
       absl::StrCat("file ", sst, " crc32c mismatch")},
      {"truncated", [&](const std::string& d) { std::filesystem::resize_file(d + "/" + sst, 10); },
       absl::StrCat("file ", sst, " is 10 bytes")},
      {"missing", [&](const std::string& d) { std::filesystem::remove(d + "/" + sst); },
       absl::StrCat("file ", sst, " is missing")},
      {"extra", [&](const std::string& d) { std::ofstream(d + "/000999.sst") << "x"; },
       "file 000999.sst is not in the manifest"},
      {"manifest", [&](const std::string& d) { FlipByte(d + "/" + kManifestFileName, 20); },
       "manifest: crc32c mismatch"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string copy = dir_.Sub(absl::StrCat("damaged-", c.name));
    std::filesystem::copy(dir_.Sub("checkpoints/one"), copy);
    c.damage(copy);
    EXPECT_THAT(VerifyCheckpoint(copy), StatusIs(absl::StatusCode::kDataLoss, c.want));
    EXPECT_THAT(StateMachine::InstallCheckpoint(TestOptions(data, 2), copy),
                StatusIs(absl::StatusCode::kDataLoss, c.want));
    ASSERT_OK_AND_ASSIGN(auto member, StateMachine::Open(TestOptions(data, 2)));
    EXPECT_EQ(member->applied_index(), 1u);
    EXPECT_EQ(*member->Get("kv", "mine"), std::optional<std::string>("yes"));
  }
  // The original, whose SSTs are hard links shared with the live database, is intact.
  EXPECT_OK(VerifyCheckpoint(dir_.Sub("checkpoints/one")).status());
}

// Goal: a crash in the middle of an install (staged database written, ACTIVE not yet
// switched) leaves the old state live and the leftover is removed at the next Open.
TEST_F(CheckpointTest, InterruptedInstallLeavesTheOldStateLive) {
  Checkpoint("one");
  const std::string data = dir_.Sub("node2");
  {
    ASSERT_OK_AND_ASSIGN(auto member, StateMachine::Open(TestOptions(data, 2)));
    ASSERT_OK(member->Apply(PutBatch(1, 1, {{"mine", "yes"}})));
  }
  // What step 2 of an install leaves: the checkpoint staged as db-000002.
  std::filesystem::copy(dir_.Sub("checkpoints/one"), data + "/db-000002");
  ASSERT_OK_AND_ASSIGN(auto member, StateMachine::Open(TestOptions(data, 2)));
  EXPECT_EQ(member->applied_index(), 1u);
  EXPECT_FALSE(files::Exists(data + "/db-000002"));
}

TEST_F(CheckpointTest, ListAndRemoveOldCheckpoints) {
  const std::string parent = dir_.Sub("checkpoints");
  for (const raft::Index index : std::vector<raft::Index>{60, 70, 80, 90}) {
    Fill(*source_, source_->applied_index() + 1, index);
    Checkpoint(CheckpointDirName(index, 2));
  }
  ASSERT_OK(files::CreateDirectories(parent + "/leftover.partial"));
  ASSERT_OK(files::CreateDirectories(parent + "/other.partial.tmp"));
  ASSERT_OK(files::CreateDirectories(parent + "/not-a-checkpoint"));
  ASSERT_OK_AND_ASSIGN(std::vector<CheckpointInfo> listed, ListCheckpoints(parent));
  ASSERT_EQ(listed.size(), 4u);
  EXPECT_EQ(listed[0].manifest.raft().index(), 60u);
  EXPECT_EQ(listed[3].manifest.raft().index(), 90u);
  EXPECT_EQ(listed[3].path, parent + "/" + CheckpointDirName(90, 2));

  ASSERT_OK_AND_ASSIGN(const size_t removed, RemoveOldCheckpoints(parent, 2));
  EXPECT_EQ(removed, 2u);
  ASSERT_OK_AND_ASSIGN(listed, ListCheckpoints(parent));
  ASSERT_EQ(listed.size(), 2u);
  EXPECT_EQ(listed[0].manifest.raft().index(), 80u);
  EXPECT_EQ(listed[1].manifest.raft().index(), 90u);
  ASSERT_OK_AND_ASSIGN(const std::vector<std::string> names, files::ListDirectory(parent));
  EXPECT_THAT(names, ElementsAre(CheckpointDirName(80, 2), CheckpointDirName(90, 2), "not-a-checkpoint"));
  // The survivors still open.
  EXPECT_OK(VerifyCheckpoint(listed[0].path).status());
}

// Goal: the manifest decoder, which reads files from disk and bytes from peers, never
// crashes and never accepts a manifest that breaks its invariants. Method: seeded random
// bodies wrapped in a valid header and CRC (so the parser and validation are reached),
// plus random truncations of a real one; every result is DataLoss/FailedPrecondition or
// a manifest that passes ValidateManifest.
TEST(CheckpointManifest, DecoderSurvivesRandomInput) {
  std::mt19937_64 random(42);
  pb::SnapshotManifest real;
  real.set_format_version(kCheckpointFormatVersion);
  real.set_cluster_id(9);
  real.mutable_raft()->set_index(3);
  real.mutable_raft()->set_term(1);
  real.add_files()->set_name("000001.sst");
  const std::string real_bytes = EncodeManifestFile(real);
  for (int i = 0; i < 5000; ++i) {
    std::string body(random() % 64, '\0');
    for (char& c : body) c = static_cast<char>(random() & 0xff);
    if (i % 2 == 0) body = real_bytes.substr(kManifestHeaderBytes) + body.substr(0, body.size() % 4);
    std::string file(kManifestMagic, kManifestMagicBytes);
    for (const uint32_t word : {static_cast<uint32_t>(body.size()), Crc32c(body)}) {
      for (int shift = 0; shift < 32; shift += 8) file.push_back(static_cast<char>((word >> shift) & 0xff));
    }
    file += body;
    if (i % 3 == 0) file.resize(random() % (file.size() + 1));
    const absl::StatusOr<pb::SnapshotManifest> decoded = DecodeManifestFile(file);
    if (decoded.ok()) {
      EXPECT_OK(ValidateManifest(*decoded));
    } else {
      EXPECT_TRUE(decoded.status().code() == absl::StatusCode::kDataLoss ||
                  decoded.status().code() == absl::StatusCode::kFailedPrecondition)
          << decoded.status();
    }
  }
}

// The fuzz corpus's seeds are real, decodable records, so fuzzing starts from inputs
// that reach past the header checks (and the format stays readable as it evolves).
TEST(CheckpointManifest, FuzzCorpusSeedsDecode) {
  const std::string corpus = STEAD_MANIFEST_CORPUS_DIR;
  ASSERT_OK_AND_ASSIGN(const std::string manifest_bytes,
                       files::ReadFile(corpus + "/manifest", kMaxManifestFileBytes));
  ASSERT_OK_AND_ASSIGN(const pb::SnapshotManifest manifest, DecodeManifestFile(manifest_bytes));
  EXPECT_EQ(manifest.raft().index(), 812u);
  EXPECT_EQ(manifest.files_size(), 4);
  EXPECT_EQ(EncodeManifestFile(manifest), manifest_bytes);
  ASSERT_OK_AND_ASSIGN(const std::string empty_bytes,
                       files::ReadFile(corpus + "/manifest_no_files", kMaxManifestFileBytes));
  EXPECT_OK(DecodeManifestFile(empty_bytes).status());
  ASSERT_OK_AND_ASSIGN(const std::string node_bytes, files::ReadFile(corpus + "/node_metadata", 1024));
  ASSERT_OK_AND_ASSIGN(const pb::NodeMetadata node, DecodeNodeMetadata(node_bytes));
  EXPECT_EQ(node.node_name(), "stead-2");
}

TEST(CheckpointName, SortsByIndex) {
  EXPECT_EQ(CheckpointDirName(812, 7), "checkpoint-00000000000000000812-00000000000000000007");
  EXPECT_LT(CheckpointDirName(99, 9), CheckpointDirName(100, 1));
}

}  // namespace
}  // namespace stead::storage
