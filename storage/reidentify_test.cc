#include "storage/reidentify.h"

#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "storage/state_machine.h"
#include "storage/state_machine_testing.h"
#include "storage/wal.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/subprocess.h"

namespace stead::storage {
namespace {

using ::stead::testing::StatusIs;
using testing::kTestClusterId;
using testing::PutBatch;
using testing::TempDir;
using testing::TestMember;
using testing::TestOptions;

constexpr uint64_t kNewCluster = 0xc10e;
constexpr raft::NodeId kNewNode = 99;

constexpr char kChildDataEnv[] = "STEAD_REIDENTIFY_CHILD_DATA";
constexpr char kChildWalEnv[] = "STEAD_REIDENTIFY_CHILD_WAL";
constexpr char kChildStepEnv[] = "STEAD_REIDENTIFY_CHILD_STEP";

ReidentifyOptions OptionsFor(const std::string& data_dir, const std::string& wal_dir) {
  ReidentifyOptions options;
  options.member.data_dir = data_dir;
  options.member.wal_dir = wal_dir;
  options.member.self = TestMember(kNewNode, "clone-0");
  options.member.cluster_id = kNewCluster;
  options.member.keyspaces = {"kv", kMembersKeyspace};
  options.member.logger = Logger(LogLevel::kError);
  options.token = "clone1";
  return options;
}

StateMachineOptions SourceOptions(const std::string& data_dir) {
  StateMachineOptions options = TestOptions(data_dir, 1);
  options.keyspaces = {"kv", kMembersKeyspace};
  return options;
}

// The volumes of stead-0 (node 1) of a 3-member cluster: 50 entries in its state
// machine and a WAL of its own, as a VolumeSnapshot copies them.
class ReidentifyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    {
      ASSERT_OK_AND_ASSIGN(auto source, StateMachine::Open(SourceOptions(data_)));
      ApplyBatch members;
      members.index = 1;
      members.term = 2;
      pb::ConfState conf;
      for (raft::NodeId id : {raft::NodeId{1}, raft::NodeId{2}, raft::NodeId{3}}) {
        members.mutations.push_back(
            Mutation::Put(kMembersKeyspace, MemberRecordKey(id),
                          TestMember(id, absl::StrCat("stead-", id - 1)).SerializeAsString()));
        conf.add_voters(id);
      }
      members.conf_state = conf;
      ASSERT_OK(source->Apply(members));
      for (raft::Index i = 2; i <= 50; ++i) ApplyKey(*source, i);
      ASSERT_OK_AND_ASSIGN(source_hash_, Hash(*source));
    }
    WalOptions wal_options;
    wal_options.dir = wal_;
    wal_options.identity = MemberWalIdentity(kTestClusterId, 1, "stead-0");
    wal_options.logger = Logger(LogLevel::kError);
    ASSERT_OK_AND_ASSIGN(auto wal, Wal::Open(wal_options));
    WalWrite write;
    pb::HardState hard_state;
    hard_state.set_term(3);
    hard_state.set_commit(0);
    write.hard_state = hard_state;
    ASSERT_OK(wal->Write(std::move(write)));
  }

  static void ApplyKey(StateMachine& state, raft::Index index) {
    ASSERT_OK(state.Apply(PutBatch(index, 3, {{absl::StrCat("key", index), "value"}})));
  }

  static absl::StatusOr<ContentHash> Hash(const StateMachine& state) {
    STEAD_ASSIGN_OR_RETURN(auto snapshot, state.NewSnapshot());
    return snapshot->Hash({kMembersKeyspace});
  }

  ReidentifyOptions Options() const { return OptionsFor(data_, wal_); }

  // Checks the volumes are the re-identified member: new identity, one voter, the
  // source's data through `last_index`, a WAL starting after it, the token recorded.
  void ExpectNewMember(raft::Index last_index, const ContentHash& want_hash) {
    ASSERT_OK_AND_ASSIGN(const auto token, ReadIdentityToken(data_));
    EXPECT_EQ(token, std::optional<std::string>("clone1"));
    EXPECT_FALSE(std::filesystem::exists(data_ + "/checkpoints/reidentify"));
    EXPECT_FALSE(ReidentificationInterrupted(data_));
    StateMachineOptions state_options = TestOptions(data_, kNewNode, kNewCluster);
    state_options.identity.node_name = "clone-0";
    state_options.keyspaces = {"kv", kMembersKeyspace};
    {
      ASSERT_OK_AND_ASSIGN(auto state, StateMachine::Open(state_options));
      EXPECT_EQ(state->applied_index(), last_index + 1) << "the membership rewrite";
      ASSERT_EQ(state->applied().conf_state().voters_size(), 1);
      EXPECT_EQ(state->applied().conf_state().voters(0), kNewNode);
      ScanOptions scan;
      scan.keyspace = kMembersKeyspace;
      ASSERT_OK_AND_ASSIGN(const ScanResult records, state->Scan(scan));
      ASSERT_EQ(records.pairs.size(), 1u);
      EXPECT_EQ(records.pairs[0].key, MemberRecordKey(kNewNode));
      ASSERT_OK_AND_ASSIGN(const ContentHash hash, Hash(*state));
      EXPECT_EQ(hash, want_hash);
    }
    WalOptions wal_options;
    wal_options.dir = wal_;
    wal_options.identity = MemberWalIdentity(kNewCluster, kNewNode, "clone-0");
    wal_options.logger = Logger(LogLevel::kError);
    ASSERT_OK_AND_ASSIGN(auto wal, Wal::Open(wal_options));
    EXPECT_EQ(wal->LatestSnapshot().index(), last_index + 1);
    EXPECT_EQ(wal->LastIndex(), last_index + 1);
  }

  TempDir dir_;
  const std::string data_ = dir_.Sub("data");
  const std::string wal_ = dir_.Sub("wal");
  ContentHash source_hash_;
};

// Goal: a cloned member becomes the only member of a new cluster holding exactly the
// data volume's state; its WAL of the old cluster is replaced; a second look finds
// the volumes recorded under the token.
TEST_F(ReidentifyTest, ClonedMemberBecomesTheFirstMemberOfANewCluster) {
  EXPECT_THAT(InspectVolumeIdentity(data_, wal_, "clone1"),
              ::stead::testing::IsOkAndHolds(VolumeIdentity::kOther));
  std::vector<std::string> phases;
  ReidentifyOptions options = Options();
  options.member.progress = [&](absl::string_view phase, uint64_t, uint64_t) {
    if (phases.empty() || phases.back() != phase) phases.emplace_back(phase);
  };
  ASSERT_OK_AND_ASSIGN(const ReidentifyResult result, Reidentify(options));
  EXPECT_EQ(phases, (std::vector<std::string>{"take", "clear", "install", "wal"}));
  EXPECT_EQ(result.old_cluster_id, kTestClusterId);
  EXPECT_EQ(result.manifest.raft().index(), 50u);
  EXPECT_EQ(result.manifest.key_count(), 52u) << "49 keys and 3 member records";
  EXPECT_EQ(result.index, 51u);
  EXPECT_FALSE(result.resumed);
  ExpectNewMember(50, source_hash_);
  EXPECT_THAT(InspectVolumeIdentity(data_, wal_, "clone1"),
              ::stead::testing::IsOkAndHolds(VolumeIdentity::kSameToken));
  EXPECT_THAT(InspectVolumeIdentity(data_, wal_, "clone2"),
              ::stead::testing::IsOkAndHolds(VolumeIdentity::kOther))
      << "a clone of the clone is re-identified again";
}

// Goal: empty volumes, with or without a recorded token, are empty; a member under the
// same token is an ordinary restart; a foreign token, or none, is a copy.
TEST(InspectVolumeIdentityTest, TellsEmptySameAndOtherApart) {
  TempDir dir;
  const std::string data = dir.Sub("data");
  const std::string wal = dir.Sub("wal");
  EXPECT_THAT(InspectVolumeIdentity(data, wal, "a"),
              ::stead::testing::IsOkAndHolds(VolumeIdentity::kEmpty));
  std::filesystem::create_directories(data + "/lost+found");
  std::filesystem::create_directories(wal + "/lost+found");
  ASSERT_OK(WriteIdentityToken(data, "b"));
  EXPECT_THAT(InspectVolumeIdentity(data, wal, "a"),
              ::stead::testing::IsOkAndHolds(VolumeIdentity::kEmpty));
  std::ofstream(data + "/MEMBER") << "pending";
  EXPECT_THAT(InspectVolumeIdentity(data, wal, "b"),
              ::stead::testing::IsOkAndHolds(VolumeIdentity::kSameToken));
  EXPECT_THAT(InspectVolumeIdentity(data, wal, "a"),
              ::stead::testing::IsOkAndHolds(VolumeIdentity::kOther));
  std::filesystem::remove(data + "/IDENTITY_TOKEN");
  EXPECT_THAT(InspectVolumeIdentity(data, wal, "a"),
              ::stead::testing::IsOkAndHolds(VolumeIdentity::kOther));
  std::ofstream(data + "/IDENTITY_TOKEN") << "two\nlines\n";
  EXPECT_THAT(InspectVolumeIdentity(data, wal, "a"),
              StatusIs(absl::StatusCode::kDataLoss, "not an identity token"));
}

// The child of CrashAtAnyStepFinishesOnTheNextStart: re-identifies the volumes and
// SIGKILLs itself when it reaches the ReidentifyStep given by number. Exits 1 on an
// error, 2 if the step never came.
TEST(ReidentifyCrash, Child) {
  const char* data_dir = std::getenv(kChildDataEnv);
  const char* wal_dir = std::getenv(kChildWalEnv);
  const char* step_text = std::getenv(kChildStepEnv);
  if (data_dir == nullptr || wal_dir == nullptr || step_text == nullptr) {
    GTEST_SKIP() << "runs only as a crash-test child";
  }
  int step = -1;
  if (!absl::SimpleAtoi(step_text, &step)) _exit(1);
  ReidentifyOptions options = OptionsFor(data_dir, wal_dir);
  options.step_for_testing = [step](ReidentifyStep reached) {
    if (static_cast<int>(reached) == step) ::raise(SIGKILL);
    return absl::OkStatus();
  };
  if (!Reidentify(options).ok()) _exit(1);
  _exit(2);
}

// Goal: a process killed after any step of a re-identification, then started again
// with the same token, ends as the same new member with all the data; the old token a
// crash leaves behind never turns the half-done volumes into an "ordinary restart".
// Method: for each step a fresh copy of the source volumes (with a token of their own)
// is re-identified by a child that SIGKILLs itself there; this process then looks at
// the volumes and re-identifies them again.
TEST_F(ReidentifyTest, CrashAtAnyStepFinishesOnTheNextStart) {
  ASSERT_OK(WriteIdentityToken(data_, "source"));
  TempDir pristine;
  std::filesystem::copy(data_, pristine.Sub("data"), std::filesystem::copy_options::recursive);
  std::filesystem::copy(wal_, pristine.Sub("wal"), std::filesystem::copy_options::recursive);
  const struct {
    const char* name;
    ReidentifyStep step;
    bool resumed;      // whether the next call continues from the staged checkpoint
    raft::Index last;  // the index of the copied state it then re-identifies
  } cases[] = {
      {"taken", ReidentifyStep::kTaken, false, 50},
      {"cleared", ReidentifyStep::kCleared, true, 50},
      {"installed", ReidentifyStep::kInstalled, true, 50},
      // A complete new member without a token: taken again, one membership rewrite on.
      {"unstaged", ReidentifyStep::kUnstaged, false, 51},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    std::filesystem::remove_all(data_);
    std::filesystem::remove_all(wal_);
    std::filesystem::copy(pristine.Sub("data"), data_, std::filesystem::copy_options::recursive);
    std::filesystem::copy(pristine.Sub("wal"), wal_, std::filesystem::copy_options::recursive);
    ::stead::testing::SubprocessOptions child;
    child.argv = {"/proc/self/exe", "--gtest_filter=ReidentifyCrash.Child"};
    child.env = {absl::StrCat(kChildDataEnv, "=", data_), absl::StrCat(kChildWalEnv, "=", wal_),
                 absl::StrCat(kChildStepEnv, "=", static_cast<int>(c.step))};
    ASSERT_OK_AND_ASSIGN(auto process, ::stead::testing::Subprocess::Start(std::move(child)));
    const std::optional<::stead::testing::ExitStatus> ended = process->WaitFor(absl::Seconds(60));
    ASSERT_TRUE(ended.has_value()) << "the child did not end";
    ASSERT_TRUE(ended->signaled()) << ended->ToString();

    EXPECT_EQ(ReidentificationInterrupted(data_), c.resumed);
    const bool old_member_whole = c.step == ReidentifyStep::kTaken;
    EXPECT_THAT(InspectVolumeIdentity(data_, wal_, "source"),
                ::stead::testing::IsOkAndHolds(old_member_whole ? VolumeIdentity::kSameToken
                                                                : VolumeIdentity::kOther));
    EXPECT_THAT(InspectVolumeIdentity(data_, wal_, "clone1"),
                ::stead::testing::IsOkAndHolds(VolumeIdentity::kOther));
    ASSERT_OK_AND_ASSIGN(const ReidentifyResult result, Reidentify(Options()));
    EXPECT_EQ(result.resumed, c.resumed);
    EXPECT_EQ(result.manifest.raft().index(), c.last);
    ExpectNewMember(c.last, source_hash_);
  }
}

// Goal: a checkpoint left by a take that crashed before clearing is not trusted: the
// old member may have run and applied more since (started without the flag), and a
// later re-identification takes its state again.
TEST_F(ReidentifyTest, AnAbandonedTakeIsTakenAgain) {
  ReidentifyOptions crashing = Options();
  crashing.step_for_testing = [](ReidentifyStep reached) {
    return reached == ReidentifyStep::kTaken ? absl::AbortedError("crash") : absl::OkStatus();
  };
  EXPECT_THAT(Reidentify(crashing), StatusIs(absl::StatusCode::kAborted));
  ContentHash more_hash;
  {
    ASSERT_OK_AND_ASSIGN(auto source, StateMachine::Open(SourceOptions(data_)));
    ApplyKey(*source, 51);
    ASSERT_OK_AND_ASSIGN(more_hash, Hash(*source));
  }
  ASSERT_OK_AND_ASSIGN(const ReidentifyResult result, Reidentify(Options()));
  EXPECT_FALSE(result.resumed);
  EXPECT_EQ(result.manifest.raft().index(), 51u);
  ExpectNewMember(51, more_hash);

  // The runtime drops such a leftover when it does not re-identify.
  std::filesystem::create_directories(data_ + "/checkpoints/reidentify/checkpoint");
  ASSERT_OK(RemoveAbandonedTake(data_));
  EXPECT_FALSE(std::filesystem::exists(data_ + "/checkpoints/reidentify"));
}

// Goal: volumes without a state machine, or incomplete options, are refused with
// nothing changed.
TEST(ReidentifyRefusalTest, NoStateMachineOrIncompleteOptionsChangeNothing) {
  TempDir dir;
  ReidentifyOptions options = OptionsFor(dir.Sub("data"), dir.Sub("wal"));
  std::filesystem::create_directories(options.member.data_dir);
  std::ofstream(options.member.data_dir + "/MEMBER") << "pending";
  EXPECT_THAT(Reidentify(options),
              StatusIs(absl::StatusCode::kFailedPrecondition, "holds no state machine"));
  EXPECT_TRUE(std::filesystem::exists(options.member.data_dir + "/MEMBER"));
  EXPECT_FALSE(std::filesystem::exists(options.member.data_dir + "/checkpoints"));

  ReidentifyOptions no_token = options;
  no_token.token.clear();
  EXPECT_THAT(Reidentify(no_token), StatusIs(absl::StatusCode::kInvalidArgument, "token"));
  ReidentifyOptions no_id = options;
  no_id.member.cluster_id = 0;
  EXPECT_THAT(Reidentify(no_id), StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace stead::storage
