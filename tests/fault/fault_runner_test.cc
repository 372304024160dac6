// The pure parts of the fault runner: fault kinds, how a failed write is classified,
// and the summary numbers of a history.
#include <string>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/fault/history.h"
#include "tests/fault/nemesis.h"
#include "tests/fault/workload.h"

namespace stead::fault {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(FaultKindsTest, ParsesNamesAndAll) {
  absl::StatusOr<std::vector<FaultKind>> kinds = ParseFaultKinds("kill,stop,kill");
  ASSERT_TRUE(kinds.ok()) << kinds.status();
  EXPECT_THAT(*kinds, ElementsAre(FaultKind::kKill, FaultKind::kStop));
  kinds = ParseFaultKinds("all");
  ASSERT_TRUE(kinds.ok());
  EXPECT_EQ(kinds->size(), AllFaultKinds().size());
  for (FaultKind kind : AllFaultKinds()) {
    absl::StatusOr<std::vector<FaultKind>> one = ParseFaultKinds(FaultKindName(kind));
    ASSERT_TRUE(one.ok()) << FaultKindName(kind);
    EXPECT_THAT(*one, ElementsAre(kind));
  }
}

TEST(FaultKindsTest, RefusesUnknownAndEmpty) {
  absl::StatusOr<std::vector<FaultKind>> kinds = ParseFaultKinds("kill,flood");
  ASSERT_FALSE(kinds.ok());
  EXPECT_THAT(kinds.status().message(), HasSubstr("flood"));
  EXPECT_FALSE(ParseFaultKinds("").ok());
}

TEST(FaultKindsTest, NamesTheMembershipAndDiskFaults) {
  absl::StatusOr<std::vector<FaultKind>> kinds = ParseFaultKinds("membership,disk-full");
  ASSERT_TRUE(kinds.ok()) << kinds.status();
  EXPECT_THAT(*kinds, ElementsAre(FaultKind::kMembership, FaultKind::kDiskFull));
  EXPECT_THAT(AllFaultKinds(), ::testing::IsSupersetOf({FaultKind::kMembership,
                                                        FaultKind::kDiskFull}));
}

TEST(FaultKindsTest, DiskFullNeedsAWalTmpfs) {
  FaultClusterOptions plain;
  absl::StatusOr<std::vector<FaultKind>> kinds = FaultKindsFor("kill,disk-full", plain);
  ASSERT_FALSE(kinds.ok());
  EXPECT_EQ(kinds.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(kinds.status().message(), HasSubstr("--wal-tmpfs-mb"));
  // "all" means every kind this cluster can run.
  kinds = FaultKindsFor("all", plain);
  ASSERT_TRUE(kinds.ok()) << kinds.status();
  EXPECT_THAT(*kinds, ::testing::Not(::testing::Contains(FaultKind::kDiskFull)));
  EXPECT_THAT(*kinds, ::testing::Contains(FaultKind::kMembership));
  EXPECT_EQ(kinds->size(), AllFaultKinds().size() - 1);

  FaultClusterOptions tmpfs;
  tmpfs.wal_tmpfs_mb = kMinWalTmpfsMb;
  kinds = FaultKindsFor("all", tmpfs);
  ASSERT_TRUE(kinds.ok()) << kinds.status();
  EXPECT_EQ(kinds->size(), AllFaultKinds().size());
  kinds = FaultKindsFor("disk-full", tmpfs);
  ASSERT_TRUE(kinds.ok()) << kinds.status();
  EXPECT_THAT(*kinds, ElementsAre(FaultKind::kDiskFull));
  EXPECT_FALSE(FaultKindsFor("kill,flood", tmpfs).ok());
}

TEST(FaultKindsTest, DiskFullRunsOnADataTmpfsAlone) {
  FaultClusterOptions data;
  data.data_tmpfs_mb = kMinDataTmpfsMb;
  absl::StatusOr<std::vector<FaultKind>> kinds = FaultKindsFor("all", data);
  ASSERT_TRUE(kinds.ok()) << kinds.status();
  EXPECT_THAT(*kinds, ::testing::Contains(FaultKind::kDiskFull));
  EXPECT_TRUE(FaultKindsFor("disk-full", data).ok());
}

TEST(PickVolumeToFillTest, PicksOnlyTmpfsVolumesByTheDraw) {
  FaultClusterOptions options;
  EXPECT_EQ(PickVolumeToFill(options, 0).status().code(), absl::StatusCode::kFailedPrecondition);
  options.wal_tmpfs_mb = kMinWalTmpfsMb;
  for (uint64_t draw : {0, 1, 2, 7}) EXPECT_EQ(*PickVolumeToFill(options, draw), Volume::kWal);
  options.data_tmpfs_mb = kMinDataTmpfsMb;
  EXPECT_EQ(*PickVolumeToFill(options, 0), Volume::kWal);
  EXPECT_EQ(*PickVolumeToFill(options, 1), Volume::kData);
  EXPECT_EQ(*PickVolumeToFill(options, 3), Volume::kData);
  options.wal_tmpfs_mb = 0;
  for (uint64_t draw : {0, 1, 2, 7}) EXPECT_EQ(*PickVolumeToFill(options, draw), Volume::kData);
}

TEST(DiskFullHealTest, StopReasonIsTheLastStopLinesCode) {
  EXPECT_EQ(StopReason(""), "");
  EXPECT_EQ(StopReason("I0101 took checkpoint index=500\n"), "");
  EXPECT_EQ(StopReason("E0101 raft_node.cc:611] stopping this member: RESOURCE_EXHAUSTED: "
                       "apply: rocksdb: IO error: No space left on device; a volume is full\n"
                       "E0101 node.cc:1762] this member cannot continue: RESOURCE_EXHAUSTED: "
                       "apply\n"),
            "ResourceExhausted");
  // Without the verdict line, the first error: later apply batches fail after it.
  EXPECT_EQ(StopReason("stopping this member: RESOURCE_EXHAUSTED: apply: no space\n"
                       "stopping this member: FAILED_PRECONDITION: apply: entry 11015 after "
                       "applied index 11012\n"),
            "ResourceExhausted");
  EXPECT_EQ(StopReason("this member cannot continue: DATA_LOSS: x\n"
                       "this member cannot continue: INTERNAL: y"),
            "Internal");
  EXPECT_EQ(StopReason("stopping this member: no code here"), "");
}

TEST(DiskFullHealTest, NoteSaysWhichVolumeAndWhatTheMemberDid) {
  EXPECT_EQ(DiskFullHealNote(Volume::kData, testing::ExitStatus{.exit_code = 1},
                             "ResourceExhausted", false),
            "data volume: the member stopped (ResourceExhausted), restarted");
  EXPECT_EQ(DiskFullHealNote(Volume::kWal, std::nullopt, "", true),
            "wal volume: the member kept running (ready)");
  EXPECT_EQ(DiskFullHealNote(Volume::kData, std::nullopt, "", false),
            "data volume: the member kept running (not ready)");
  EXPECT_THAT(DiskFullHealNote(Volume::kData, testing::ExitStatus{.signal = 6}, "", false),
              HasSubstr("data volume: the member died (killed by signal 6"));
  EXPECT_THAT(DiskFullHealNote(Volume::kWal, testing::ExitStatus{.exit_code = 1}, "", false),
              HasSubstr("stopped (exited with code 1), restarted"));
}

TEST(PickMemberToReplaceTest, PicksThePreferredFollower) {
  const std::vector<MemberView> members = {
      {.name = "kv-0", .leader = true}, {.name = "kv-1"}, {.name = "kv-2"}};
  absl::StatusOr<std::string> picked = PickMemberToReplace(members, {"kv-0", "kv-2", "kv-1"});
  ASSERT_TRUE(picked.ok()) << picked.status();
  EXPECT_EQ(*picked, "kv-2");  // kv-0 leads
  picked = PickMemberToReplace(members, {"kv-1", "kv-2"});
  ASSERT_TRUE(picked.ok()) << picked.status();
  EXPECT_EQ(*picked, "kv-1");
}

TEST(PickMemberToReplaceTest, NeverTakesAVoterTheQuorumNeeds) {
  // Two voters: removing one would leave one that no fault may touch.
  absl::StatusOr<std::string> picked =
      PickMemberToReplace({{.name = "kv-0", .leader = true}, {.name = "kv-1"}}, {"kv-1"});
  ASSERT_FALSE(picked.ok());
  EXPECT_EQ(picked.status().code(), absl::StatusCode::kFailedPrecondition);
  // A member still joining as a learner: one replacement at a time.
  picked = PickMemberToReplace(
      {{.name = "kv-0", .leader = true}, {.name = "kv-1"}, {.name = "kv-2", .learner = true},
       {.name = "kv-3"}},
      {"kv-1"});
  ASSERT_FALSE(picked.ok());
  EXPECT_THAT(picked.status().message(), HasSubstr("kv-2"));
  // Only the leader is on the preference list.
  EXPECT_FALSE(PickMemberToReplace(
                   {{.name = "kv-0", .leader = true}, {.name = "kv-1"}, {.name = "kv-2"}}, {"kv-0"})
                   .ok());
}

TEST(ClassifyWriteErrorTest, OnlyRefusalsBeforeSendingAreDefiniteFailures) {
  EXPECT_EQ(ClassifyWriteError(absl::InvalidArgumentError("too big")), Outcome::kFailed);
  EXPECT_EQ(ClassifyWriteError(absl::ResourceExhaustedError("in flight")), Outcome::kFailed);
  EXPECT_EQ(ClassifyWriteError(absl::PermissionDeniedError("no")), Outcome::kFailed);
  // An earlier attempt may have reached a leader: the write may still commit.
  EXPECT_EQ(ClassifyWriteError(absl::UnavailableError("no leader")), Outcome::kUnknown);
  EXPECT_EQ(ClassifyWriteError(absl::DeadlineExceededError("late")), Outcome::kUnknown);
  EXPECT_EQ(ClassifyWriteError(absl::CancelledError("gone")), Outcome::kUnknown);
}

RegisterOp Op(Outcome outcome, int64_t complete_ns) {
  RegisterOp op;
  op.outcome = outcome;
  op.complete_ns = complete_ns;
  return op;
}

TEST(HistorySummaryTest, CountsOutcomes) {
  History history;
  history.registers = {Op(Outcome::kOk, 1), Op(Outcome::kOk, 2), Op(Outcome::kFailed, 3),
                       Op(Outcome::kUnknown, kNever)};
  const OpCounts counts = CountOutcomes(history);
  EXPECT_EQ(counts.ok, 2);
  EXPECT_EQ(counts.failed, 1);
  EXPECT_EQ(counts.unknown, 1);
}

TEST(HistorySummaryTest, LongestUnavailableIsTheWidestGapBetweenOkCompletions) {
  History history;
  // ok at 10, 20, 70 (a failure at 40 does not count) within [0, 80].
  history.registers = {Op(Outcome::kOk, 20), Op(Outcome::kOk, 10), Op(Outcome::kFailed, 40),
                       Op(Outcome::kOk, 70), Op(Outcome::kUnknown, kNever)};
  EXPECT_EQ(LongestUnavailableNs(history, 0, 80), 50);
  // The stretches before the first and after the last count too.
  EXPECT_EQ(LongestUnavailableNs(history, 0, 200), 130);
  EXPECT_EQ(LongestUnavailableNs(History{}, 5, 105), 100);
}

}  // namespace
}  // namespace stead::fault
