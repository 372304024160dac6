// StateMachine::ReplaceWithCheckpoint on one thread: what a follower serves after it
// installed a leader's snapshot while open, what is refused without changing anything,
// and how views taken before the switch keep the old state. The concurrent readers are
// in state_machine_concurrency_test.cc, crashes at each step in
// state_machine_crash_test.cc.
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "storage/checkpoint.h"
#include "storage/checkpoint_files.h"
#include "storage/state_machine.h"
#include "storage/state_machine_testing.h"
#include "tests/testing/status_matchers.h"

namespace stead::storage {
namespace {

using ::stead::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::Optional;
using testing::PutBatch;
using testing::TempDir;
using testing::TestOptions;

constexpr raft::Term kTerm = 3;

// A leader (node 1) whose state differs from the follower (node 2) in every way a
// replace must carry over: values, keys only on one side, a keyspace only on each side,
// the conf state.
class ReplaceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    StateMachineOptions leader_options = TestOptions(dir_.Sub("leader"), 1);
    leader_options.keyspaces = {"kv", "leader-only"};
    ASSERT_OK_AND_ASSIGN(leader_, StateMachine::Open(leader_options));
    for (raft::Index i = 1; i <= 20; ++i) {
      ApplyBatch batch = PutBatch(i, kTerm, {{absl::StrCat("key", i), "new"}, {"shared", "new"}});
      batch.mutations.push_back(Mutation::Put("leader-only", "x", absl::StrCat(i)));
      if (i == 7) {
        pb::ConfState conf_state;
        conf_state.add_voters(1);
        conf_state.add_voters(2);
        conf_state.add_learners(3);
        batch.conf_state = conf_state;
      }
      ASSERT_OK(leader_->Apply(batch));
    }
    ASSERT_OK_AND_ASSIGN(follower_, StateMachine::Open(FollowerOptions()));
    for (raft::Index i = 1; i <= 5; ++i) {
      ASSERT_OK(follower_->Apply(PutBatch(i, kTerm, {{"old-only", "x"}, {"shared", "old"}})));
    }
  }

  StateMachineOptions FollowerOptions() const {
    StateMachineOptions options = TestOptions(dir_.Sub("follower"), 2);
    options.keyspaces = {"kv", "follower-only"};
    return options;
  }

  // A checkpoint of the leader's current state under "checkpoints/<name>".
  std::string Checkpoint(const std::string& name) {
    const std::string path = dir_.Sub("checkpoints/" + name);
    EXPECT_OK(leader_->CreateCheckpoint(path).status());
    return path;
  }

  std::vector<std::string> FollowerDirEntries() const {
    return files::ListDirectory(dir_.Sub("follower")).value_or(std::vector<std::string>{"?"});
  }

  TempDir dir_;
  std::unique_ptr<StateMachine> leader_;
  std::unique_ptr<StateMachine> follower_;
};

// Goal: after a replace the follower is the leader's state at the checkpoint, applies
// on from it, and is still itself (node metadata) across a restart.
TEST_F(ReplaceTest, ServesTheCheckpointAndAppliesOnFromIt) {
  const std::string checkpoint = Checkpoint("one");
  const pb::NodeMetadata metadata_before = follower_->node_metadata();
  ASSERT_OK_AND_ASSIGN(const pb::SnapshotManifest manifest,
                       follower_->ReplaceWithCheckpoint(checkpoint));
  EXPECT_EQ(manifest.raft().index(), 20u);

  const pb::SnapshotMetadata applied = follower_->applied();
  EXPECT_EQ(applied.SerializeAsString(), manifest.raft().SerializeAsString());
  EXPECT_EQ(applied.index(), 20u);
  EXPECT_EQ(applied.term(), kTerm);
  EXPECT_THAT(applied.conf_state().voters(), ElementsAre(1, 2));
  EXPECT_THAT(applied.conf_state().learners(), ElementsAre(3));
  EXPECT_THAT(*follower_->Get("kv", "shared"), Optional(std::string("new")));
  EXPECT_THAT(*follower_->Get("kv", "key20"), Optional(std::string("new")));
  EXPECT_EQ(*follower_->Get("kv", "old-only"), std::nullopt);
  EXPECT_THAT(*follower_->Get("leader-only", "x"), Optional(std::string("20")));
  // Its configured keyspace exists although the checkpoint lacked it.
  EXPECT_THAT(follower_->keyspaces(), ElementsAre("follower-only", "kv", "leader-only"));
  EXPECT_EQ(follower_->node_metadata().SerializeAsString(), metadata_before.SerializeAsString());
  // The old database is gone at once: nothing else held it.
  EXPECT_THAT(FollowerDirEntries(), ElementsAre("ACTIVE", "LOCK", "db-000002"));

  // Entries at or below the checkpoint are skipped; the next one is index + 1.
  EXPECT_OK(follower_->Apply(PutBatch(20, kTerm, {{"shared", "replayed"}})));
  EXPECT_OK(follower_->Apply(PutBatch(3, kTerm, {{"shared", "replayed"}})));
  EXPECT_THAT(*follower_->Get("kv", "shared"), Optional(std::string("new")));
  EXPECT_THAT(follower_->Apply(PutBatch(22, kTerm, {{"shared", "gap"}})),
              StatusIs(absl::StatusCode::kFailedPrecondition, "would be skipped"));
  ApplyBatch next = PutBatch(21, kTerm, {{"shared", "after"}});
  next.mutations.push_back(Mutation::Put("follower-only", "y", "1"));
  ASSERT_OK(follower_->Apply(next));
  EXPECT_EQ(follower_->applied_index(), 21u);
  // The checkpoint is untouched.
  EXPECT_OK(VerifyCheckpoint(checkpoint).status());

  follower_.reset();
  ASSERT_OK_AND_ASSIGN(follower_, StateMachine::Open(FollowerOptions()));
  EXPECT_EQ(follower_->applied_index(), 21u);
  EXPECT_THAT(follower_->applied().conf_state().learners(), ElementsAre(3));
  EXPECT_THAT(*follower_->Get("kv", "shared"), Optional(std::string("after")));
  EXPECT_EQ(*follower_->Get("kv", "old-only"), std::nullopt);
  EXPECT_THAT(*follower_->Get("follower-only", "y"), Optional(std::string("1")));
  EXPECT_EQ(follower_->node_metadata().node_id(), 2u);
  EXPECT_EQ(follower_->node_metadata().node_name(), "stead-1");
  EXPECT_EQ(follower_->node_metadata().SerializeAsString(), metadata_before.SerializeAsString());
}

// Goal: each refusal leaves the follower exactly as it was: same applied state, same
// data, no staged copy left in the data dir, and Apply goes on.
TEST_F(ReplaceTest, RefusalsChangeNothing) {
  const std::string good = Checkpoint("good");
  const std::string corrupt = dir_.Sub("corrupt");
  std::filesystem::copy(good, corrupt);
  ASSERT_OK_AND_ASSIGN(const pb::SnapshotManifest good_manifest, ReadManifest(good));
  testing::FlipByte(corrupt + "/" + testing::FirstSst(good_manifest), 100);
  // Verifies, but its database is not at the index its manifest claims: found only once
  // staged, so the staged copy must be removed again.
  const std::string misdescribed = dir_.Sub("misdescribed");
  std::filesystem::copy(good, misdescribed);
  pb::SnapshotManifest wrong_index = good_manifest;
  wrong_index.mutable_raft()->set_index(40);
  ASSERT_OK(WriteManifest(misdescribed, wrong_index));

  // Checkpoints of other leaders: another cluster; one at the follower's own index;
  // an older one; one past it in a lower term. The follower applies one probe entry
  // per case, so case k meets it at index 5 + k.
  const auto checkpoint_of = [&](const std::string& name, uint64_t cluster_id,
                                 raft::Index last_index, raft::Term term) {
    auto other = StateMachine::Open(TestOptions(dir_.Sub(name), 1, cluster_id));
    EXPECT_OK(other);
    for (raft::Index i = 1; i <= last_index; ++i) {
      EXPECT_OK((*other)->Apply(PutBatch(i, term, {{"shared", name}})));
    }
    const std::string path = dir_.Sub("checkpoints/" + name);
    EXPECT_OK((*other)->CreateCheckpoint(path).status());
    return path;
  };
  const struct {
    const char* name;
    std::string checkpoint;
    absl::StatusCode code;
    const char* message;
  } cases[] = {
      {"corrupt", corrupt, absl::StatusCode::kDataLoss, "crc32c mismatch"},
      {"other cluster", checkpoint_of("foreign", 0xdef, 20, kTerm),
       absl::StatusCode::kFailedPrecondition, "is of cluster 0xdef"},
      {"same index", checkpoint_of("same", testing::kTestClusterId, 7, kTerm),
       absl::StatusCode::kFailedPrecondition, "at index 7, not above the applied index 7"},
      {"older index", checkpoint_of("older", testing::kTestClusterId, 2, kTerm),
       absl::StatusCode::kFailedPrecondition, "at index 2, not above the applied index 8"},
      {"lower term", checkpoint_of("lower-term", testing::kTestClusterId, 12, kTerm - 1),
       absl::StatusCode::kFailedPrecondition, "below the applied term 3"},
      {"misdescribed", misdescribed, absl::StatusCode::kDataLoss,
       "holds index 20 term 3 but its manifest says index 40"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    const pb::SnapshotMetadata before = follower_->applied();
    EXPECT_THAT(follower_->ReplaceWithCheckpoint(c.checkpoint), StatusIs(c.code, c.message));
    EXPECT_EQ(follower_->applied().SerializeAsString(), before.SerializeAsString());
    EXPECT_THAT(*follower_->Get("kv", "old-only"), Optional(std::string("x")));
    EXPECT_THAT(*follower_->Get("kv", "shared"), Optional(std::string("old")));
    EXPECT_THAT(follower_->Get("leader-only", "x"),
                StatusIs(absl::StatusCode::kInvalidArgument, "unknown keyspace"));
    EXPECT_THAT(FollowerDirEntries(), ElementsAre("ACTIVE", "LOCK", "db-000001"));
    const raft::Index next = before.index() + 1;
    ASSERT_OK(follower_->Apply(PutBatch(next, kTerm, {{"probe", c.name}})));
    EXPECT_EQ(follower_->applied_index(), next);
    EXPECT_THAT(*follower_->Get("kv", "probe"), Optional(std::string(c.name)));
  }
  // The refusals left nothing a restart would pick up either.
  follower_.reset();
  ASSERT_OK_AND_ASSIGN(follower_, StateMachine::Open(FollowerOptions()));
  EXPECT_EQ(follower_->applied_index(), 11u);
  EXPECT_THAT(*follower_->Get("kv", "shared"), Optional(std::string("old")));
  // Still able to take a good one afterwards.
  ASSERT_OK(follower_->ReplaceWithCheckpoint(good).status());
  EXPECT_EQ(follower_->applied_index(), 20u);
  EXPECT_EQ(*follower_->Get("kv", "probe"), std::nullopt);
}

// Goal: an I/O error before ACTIVE is repointed changes nothing and removes the staged
// copy. Method: ACTIVE.tmp is made a directory, so writing ACTIVE fails at its open.
TEST_F(ReplaceTest, AFailedSwitchKeepsTheOldStateAndRemovesTheStagedCopy) {
  const std::string checkpoint = Checkpoint("one");
  const std::string active_tmp = dir_.Sub("follower/ACTIVE.tmp");
  std::filesystem::create_directory(active_tmp);
  std::ofstream(active_tmp + "/blocker") << "x";  // Not removable as an empty dir.
  EXPECT_FALSE(follower_->ReplaceWithCheckpoint(checkpoint).ok());
  EXPECT_EQ(follower_->applied_index(), 5u);
  EXPECT_THAT(*follower_->Get("kv", "shared"), Optional(std::string("old")));
  EXPECT_THAT(FollowerDirEntries(), ElementsAre("ACTIVE", "ACTIVE.tmp", "LOCK", "db-000001"));
  ASSERT_OK(follower_->Apply(PutBatch(6, kTerm, {{"shared", "still old"}})));

  std::filesystem::remove_all(active_tmp);
  ASSERT_OK(follower_->ReplaceWithCheckpoint(checkpoint).status());
  EXPECT_THAT(*follower_->Get("kv", "shared"), Optional(std::string("new")));
  // Named one past the highest present: the failed attempt's number is taken again.
  EXPECT_THAT(FollowerDirEntries(), ElementsAre("ACTIVE", "LOCK", "db-000002"));
}

// Goal: a view taken before the replace keeps reading the old state, and the old
// database directory lives exactly as long as such views.
TEST_F(ReplaceTest, ASnapshotTakenBeforeKeepsTheOldStateUntilReleased) {
  const std::string checkpoint = Checkpoint("one");
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<StateSnapshot> before, follower_->NewSnapshot());
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<StateSnapshot> also_before, follower_->NewSnapshot());
  ASSERT_OK(follower_->ReplaceWithCheckpoint(checkpoint).status());

  EXPECT_EQ(before->applied().index(), 5u);
  EXPECT_THAT(*before->Get("kv", "shared"), Optional(std::string("old")));
  EXPECT_THAT(*before->Get("kv", "old-only"), Optional(std::string("x")));
  ASSERT_OK_AND_ASSIGN(const ScanResult old_scan, before->Scan(ScanOptions()));
  EXPECT_EQ(old_scan.pairs.size(), 2u);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<StateSnapshot> after, follower_->NewSnapshot());
  EXPECT_EQ(after->applied().index(), 20u);
  EXPECT_THAT(*after->Get("kv", "shared"), Optional(std::string("new")));
  EXPECT_THAT(*follower_->Get("kv", "shared"), Optional(std::string("new")));
  EXPECT_THAT(FollowerDirEntries(), ElementsAre("ACTIVE", "LOCK", "db-000001", "db-000002"));

  // Applies go to the new database only.
  ASSERT_OK(follower_->Apply(PutBatch(21, kTerm, {{"shared", "21"}})));
  EXPECT_THAT(*before->Get("kv", "shared"), Optional(std::string("old")));

  before.reset();
  EXPECT_THAT(FollowerDirEntries(), ElementsAre("ACTIVE", "LOCK", "db-000001", "db-000002"));
  EXPECT_THAT(*also_before->Get("kv", "shared"), Optional(std::string("old")));
  also_before.reset();
  EXPECT_THAT(FollowerDirEntries(), ElementsAre("ACTIVE", "LOCK", "db-000002"));
  EXPECT_THAT(*after->Get("kv", "shared"), Optional(std::string("new")));
}

// Goal: replaces in a row each move the state forward, and a leftover of a replaced
// database that could not be removed (here: one still open at a crash) goes at the
// next Open.
TEST_F(ReplaceTest, RepeatedReplacesAndALeftoverRemovedAtOpen) {
  ASSERT_OK(follower_->ReplaceWithCheckpoint(Checkpoint("one")).status());
  ASSERT_OK(leader_->Apply(PutBatch(21, kTerm, {{"shared", "newer"}})));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<StateSnapshot> held, follower_->NewSnapshot());
  ASSERT_OK(follower_->ReplaceWithCheckpoint(Checkpoint("two")).status());
  EXPECT_EQ(follower_->applied_index(), 21u);
  EXPECT_THAT(*follower_->Get("kv", "shared"), Optional(std::string("newer")));
  EXPECT_THAT(FollowerDirEntries(), ElementsAre("ACTIVE", "LOCK", "db-000002", "db-000003"));
  // A process killed now leaves db-000002 behind; simulate by copying it aside.
  std::filesystem::copy(dir_.Sub("follower/db-000002"), dir_.Sub("leftover"),
                        std::filesystem::copy_options::recursive);
  held.reset();
  follower_.reset();
  std::filesystem::rename(dir_.Sub("leftover"), dir_.Sub("follower/db-000002"));
  ASSERT_OK_AND_ASSIGN(follower_, StateMachine::Open(FollowerOptions()));
  EXPECT_EQ(follower_->applied_index(), 21u);
  EXPECT_THAT(FollowerDirEntries(), ElementsAre("ACTIVE", "LOCK", "db-000003"));
}

}  // namespace
}  // namespace stead::storage
