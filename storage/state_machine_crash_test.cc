// Real crashes of the state machine.
//
// A child process (this test binary run again with --gtest_filter on ApplierChild)
// applies entries and reports on its stdout "A <index>" after each Apply and
// "D <index>" after each Flush() returned. The parent kills it and reopens the data dir:
//   * SigkillNeverSeparatesIndexFromData: SIGKILL at random moments while RocksDB
//     flushes on its own; the applied index and the data must describe one state.
//     With RocksDB's WAL off this rests on atomic flushes of all column families
//     (state_machine.h), which only a real kill exercises together with RocksDB's
//     background flush threads.
//   * FlushedStateSurvivesPowerLoss: the child runs with the storage fault library
//     (tests/tools/storage_faults.h), is killed by SIGKILL, at an fsync or mid-write,
//     and then the page cache is dropped (StorageFaults::LosePower); every state a
//     Flush() reported durable must survive.
//   * KilledReplaceLeavesTheOldOrTheNewState: a child (ReplaceChild) replaces an open
//     state machine's state with a checkpoint and SIGKILLs itself at one step of it;
//     the next Open must see the old state or the new one, whole.
//
// The children (ApplierChild, ReplaceChild) are entry points, not tests: state.cmake
// keeps them out of ctest. A child is a fresh process image, not just a fork: a forked
// copy of a process whose RocksDB thread pool already ran has no background threads, so
// its flushes would never happen.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "storage/checkpoint_files.h"
#include "storage/state_machine.h"
#include "storage/state_machine_testing.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/subprocess.h"
#include "tests/tools/storage_faults.h"

namespace stead::storage {
namespace {

using stead::testing::ExitStatus;
using stead::testing::StorageFaults;
using stead::testing::Subprocess;
using stead::testing::SubprocessOptions;
using testing::TempDir;
using testing::TestOptions;

constexpr char kApplierDirEnv[] = "STEAD_CRASH_APPLIER_DIR";
constexpr char kApplierFlushEveryEnv[] = "STEAD_CRASH_APPLIER_FLUSH_EVERY";
constexpr char kReplaceDirEnv[] = "STEAD_CRASH_REPLACE_DIR";
constexpr char kReplaceCheckpointEnv[] = "STEAD_CRASH_REPLACE_CHECKPOINT";
constexpr char kReplaceStepEnv[] = "STEAD_CRASH_REPLACE_STEP";

StateMachineOptions CrashOptions(const std::string& data_dir) {
  StateMachineOptions options = TestOptions(data_dir);
  options.write_buffer_bytes = 64 * 1024;  // Frequent automatic flushes.
  return options;
}

ApplyBatch Entry(raft::Index index) {
  ApplyBatch batch = testing::PutBatch(
      index, 1, {{absl::StrCat("key", index), std::string(500, static_cast<char>('a' + index % 26))}});
  batch.mutations.push_back(Mutation::Put("kv", "last", absl::StrCat(index)));
  return batch;
}

void Report(int fd, char kind, raft::Index index) {
  const std::string line = absl::StrCat(std::string(1, kind), " ", index, "\n");
  if (::write(fd, line.data(), line.size()) != static_cast<ssize_t>(line.size())) _exit(1);
}

// The child: applies entries until killed, flushing every `flush_every` entries (never
// when 0). Never returns; exits with 1 on any error.
[[noreturn]] void RunApplier(const std::string& data_dir, int report_fd, uint64_t flush_every) {
  absl::StatusOr<std::unique_ptr<StateMachine>> machine = StateMachine::Open(CrashOptions(data_dir));
  if (!machine.ok()) _exit(1);
  // Bounded: the parent kills us long before this runs out.
  for (int n = 0; n < 1000000; ++n) {
    const raft::Index index = (*machine)->applied_index() + 1;
    if (!(*machine)->Apply(Entry(index)).ok()) _exit(1);
    Report(report_fd, 'A', index);
    if (flush_every != 0 && index % flush_every == 0) {
      const absl::StatusOr<raft::Index> durable = (*machine)->Flush();
      if (!durable.ok() || *durable != index) _exit(1);
      Report(report_fd, 'D', *durable);
    }
  }
  _exit(0);
}

TEST(StateMachineCrash, ApplierChild) {
  const char* data_dir = std::getenv(kApplierDirEnv);
  const char* flush_text = std::getenv(kApplierFlushEveryEnv);
  if (data_dir == nullptr || flush_text == nullptr) {
    GTEST_SKIP() << "runs only as a crash-test child";
  }
  uint64_t flush_every = 0;
  if (!absl::SimpleAtoi(flush_text, &flush_every)) _exit(1);
  // Reports go to the stdout the parent reads; gtest's own chatter from now on to
  // /dev/null (what it printed before is skipped by the parent, which reads only
  // report lines).
  std::fflush(stdout);
  const int report_fd = ::dup(STDOUT_FILENO);
  const int null_fd = ::open("/dev/null", O_WRONLY);
  if (report_fd < 0 || null_fd < 0 || ::dup2(null_fd, STDOUT_FILENO) < 0) _exit(1);
  RunApplier(data_dir, report_fd, flush_every);
}

// The applier child and what it reported.
class Applier {
 public:
  // Starts the child on `data_dir` with `env` added to its environment.
  Applier(const std::string& data_dir, uint64_t flush_every, const std::vector<std::string>& env) {
    SubprocessOptions options;
    options.argv = {"/proc/self/exe", "--gtest_filter=StateMachineCrash.ApplierChild"};
    options.env = env;
    options.env.push_back(absl::StrCat(kApplierDirEnv, "=", data_dir));
    options.env.push_back(absl::StrCat(kApplierFlushEveryEnv, "=", flush_every));
    options.capture_stdout = true;  // stderr stays this process's
    absl::StatusOr<std::unique_ptr<Subprocess>> process = Subprocess::Start(std::move(options));
    EXPECT_OK(process);
    if (process.ok()) process_ = std::move(process).value();
  }
  bool started() const { return process_ != nullptr; }

  // Reads reports until `done()` holds, the child's output ends, or `timeout` passes.
  // Returns true if `done()` held.
  template <typename Done>
  bool ReadUntil(Done done, std::chrono::milliseconds timeout) {
    const absl::Time deadline = absl::Now() + absl::FromChrono(timeout);
    while (!done()) {
      // A half-written last line (the child killed mid-write) is never returned.
      absl::StatusOr<std::string> line = process_->ReadLine(deadline - absl::Now());
      if (absl::IsOutOfRange(line.status())) return done();
      if (!line.ok()) return false;
      // Only report lines; the child's gtest banner comes first on the same stdout.
      raft::Index index = 0;
      if (line->size() > 2 && ((*line)[0] == 'A' || (*line)[0] == 'D') && (*line)[1] == ' ' &&
          absl::SimpleAtoi(absl::string_view(*line).substr(2), &index)) {
        ((*line)[0] == 'D' ? durable_ : applied_) = index;
      }
    }
    return true;
  }

  // SIGKILLs the child (if still running) and reaps it, then reads what it reported
  // before it died: the pipe may hold thousands of reports this process has not read,
  // and entries past them may already be flushed, so applied() and durable() must
  // describe the child's last moment, not this process's last read. Returns how the
  // child ended.
  ExitStatus Kill() {
    const ExitStatus status = process_->Kill();
    ReadUntil([] { return false; }, std::chrono::seconds(10));  // ends at end of output
    return status;
  }

  raft::Index applied() const { return applied_; }
  raft::Index durable() const { return durable_; }

 private:
  std::unique_ptr<Subprocess> process_;  // its destructor kills and reaps the child
  raft::Index applied_ = 0;
  raft::Index durable_ = 0;
};

// Opens the data dir and checks that the recovered state is exactly the state after its
// applied index; returns that index.
raft::Index CheckRecovered(const std::string& data_dir) {
  absl::StatusOr<std::unique_ptr<StateMachine>> machine = StateMachine::Open(CrashOptions(data_dir));
  EXPECT_OK(machine);
  if (!machine.ok()) return 0;
  const raft::Index recovered = (*machine)->applied_index();
  if (recovered > 0) {
    EXPECT_EQ(*(*machine)->Get("kv", "last"), std::optional<std::string>(absl::StrCat(recovered)));
    EXPECT_TRUE((*machine)->Get("kv", absl::StrCat("key", recovered))->has_value());
  }
  EXPECT_FALSE((*machine)->Get("kv", absl::StrCat("key", recovered + 1))->has_value());
  return recovered;
}

// Goal: whatever moment a crash hits, the recovered applied index matches the data.
// Method: 8 rounds of start, apply, SIGKILL after a random number of entries; after
// each, reopen and check "last" equals the applied index, key<index> exists and
// key<index + 1> does not. The next round continues from the recovered index, like a
// node replaying its Raft log.
TEST(StateMachineCrash, SigkillNeverSeparatesIndexFromData) {
  TempDir dir;
  const std::string data = dir.Sub("data");
  std::mt19937_64 random(2024);
  raft::Index previous = 0;
  for (int round = 0; round < 8; ++round) {
    SCOPED_TRACE(absl::StrCat("round ", round));
    Applier applier(data, /*flush_every=*/0, {});
    ASSERT_TRUE(applier.started());
    const raft::Index target = previous + 200 + random() % 800;
    const bool reached =
        applier.ReadUntil([&] { return applier.applied() >= target; }, std::chrono::seconds(60));
    const ExitStatus exit_status = applier.Kill();
    ASSERT_TRUE(reached) << "the applier died or stalled before it was killed";
    ASSERT_TRUE(exit_status.signaled()) << exit_status.ToString();

    const raft::Index recovered = CheckRecovered(data);
    EXPECT_LE(recovered, applier.applied());
    EXPECT_GE(recovered, previous) << "a flushed state went back";
    std::printf("round %d: applied through %llu, killed, recovered %llu\n", round,
                static_cast<unsigned long long>(applier.applied()),
                static_cast<unsigned long long>(recovered));
    previous = recovered;
  }
  EXPECT_GT(previous, 0u) << "automatic flushes should have made some state durable";
}

// Goal: a state Flush() reported durable survives a crash and the loss of every write
// not fsynced since (power loss); RocksDB's WAL being off must not weaken that.
// Method: the child runs with the storage fault library and a sync log; each round it
// is killed by SIGKILL, at its next fsync (crash-before-fsync) or in the middle of a
// write (torn-write), or hits a full disk or a failing fsync; LosePower then cuts every
// file back to its last synced size; the reopened state must be consistent and at or
// past the last durable report (a Flush that failed reported nothing). Each round
// starts from the state the previous reopen left, which this process wrote without the
// library: MarkEverythingSynced makes it the base the round's power loss falls back to.
TEST(StateMachineCrash, FlushedStateSurvivesPowerLoss) {
  TempDir dir;
  const std::string data = dir.Sub("data");
  const StorageFaults faults(data, dir.path());
  const std::vector<std::string> env = faults.ChildEnv();
  std::mt19937_64 random(20261122);
  raft::Index durable = 0;
  // 0: SIGKILL; faults: 1 crash at fsync, 2 torn write, 3 disk full, 4 fsync EIO. On
  // the last two the child sees an error and exits, or RocksDB aborts.
  const char* const kFaults[] = {"", "crash-before-fsync", "torn-write", "write-enospc",
                                 "fsync-eio"};
  for (int round = 0; round < 10; ++round) {
    const int mode = round % 5;
    SCOPED_TRACE(absl::StrCat("round ", round, " mode ", mode));
    ASSERT_OK(faults.SetFault(""));
    ASSERT_OK(faults.MarkEverythingSynced());
    Applier applier(data, /*flush_every=*/50, env);
    ASSERT_TRUE(applier.started());
    const raft::Index target = durable + 100 + random() % 400;
    const bool reached =
        applier.ReadUntil([&] { return applier.applied() >= target; }, std::chrono::seconds(60));
    ASSERT_TRUE(reached) << "the applier died or stalled before the fault";
    if (mode != 0) {
      ASSERT_OK(faults.SetFault(kFaults[mode]));
      // The child dies at its next sync or write, or exits on the error; bound the wait.
      applier.ReadUntil([] { return false; }, std::chrono::seconds(20));
    }
    applier.Kill();
    ASSERT_OK(faults.SetFault(""));
    durable = std::max(durable, applier.durable());
    ASSERT_OK(faults.LosePower().status());

    const raft::Index recovered = CheckRecovered(data);
    EXPECT_GE(recovered, durable) << "a state reported durable was lost";
    EXPECT_LE(recovered, applier.applied());
    std::printf("round %d mode %d: applied through %llu, durable %llu, recovered %llu\n", round,
                mode, static_cast<unsigned long long>(applier.applied()),
                static_cast<unsigned long long>(durable),
                static_cast<unsigned long long>(recovered));
    durable = recovered;  // The reopen flushed it again (close flushes).
  }
  EXPECT_GT(durable, 0u);
}

// The child of KilledReplaceLeavesTheOldOrTheNewState: opens node 2's data dir and
// replaces its state with the checkpoint, SIGKILLing itself when the replace reaches
// the InstallStep given by number. Exits 1 on an error, 2 if the step never came.
TEST(StateMachineCrash, ReplaceChild) {
  const char* data_dir = std::getenv(kReplaceDirEnv);
  const char* checkpoint = std::getenv(kReplaceCheckpointEnv);
  const char* step_text = std::getenv(kReplaceStepEnv);
  if (data_dir == nullptr || checkpoint == nullptr || step_text == nullptr) {
    GTEST_SKIP() << "runs only as a crash-test child";
  }
  int step = -1;
  if (!absl::SimpleAtoi(step_text, &step)) _exit(1);
  StateMachineOptions options = TestOptions(data_dir, 2);
  options.install_step_for_testing = [step](InstallStep reached) {
    if (static_cast<int>(reached) == step) ::raise(SIGKILL);
  };
  absl::StatusOr<std::unique_ptr<StateMachine>> machine = StateMachine::Open(std::move(options));
  if (!machine.ok()) _exit(1);
  if (!(*machine)->ReplaceWithCheckpoint(checkpoint).ok()) _exit(1);
  _exit(2);
}

// Goal: a replace killed at any step leaves one whole state for the next Open: the old
// one until ACTIVE is repointed, the new one from then on, with this node's identity
// either way and no other database left. Method: for each InstallStep a fresh follower
// (node 2, entries 1..10 of its own, flushed) runs the replace in a child that
// SIGKILLs itself at that step; the parent then reopens the follower.
TEST(StateMachineCrash, KilledReplaceLeavesTheOldOrTheNewState) {
  TempDir dir;
  const std::string checkpoint = dir.Sub("checkpoints/leader");
  {
    ASSERT_OK_AND_ASSIGN(auto leader, StateMachine::Open(TestOptions(dir.Sub("leader"), 1)));
    for (raft::Index i = 1; i <= 30; ++i) {
      ASSERT_OK(
          leader->Apply(testing::PutBatch(i, 2, {{"gen", "new"}, {absl::StrCat("new", i), "x"}})));
    }
    ASSERT_OK(leader->CreateCheckpoint(checkpoint).status());
  }
  const struct {
    const char* name;
    InstallStep step;
    bool new_state;  // whether the reopened follower holds the checkpoint
  } cases[] = {
      {"staged", InstallStep::kStaged, false},
      {"adopted", InstallStep::kAdopted, false},
      {"switched", InstallStep::kSwitched, true},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string data = dir.Sub(absl::StrCat("follower-", c.name));
    {
      ASSERT_OK_AND_ASSIGN(auto follower, StateMachine::Open(TestOptions(data, 2)));
      for (raft::Index i = 1; i <= 10; ++i) {
        ASSERT_OK(follower->Apply(
            testing::PutBatch(i, 1, {{"gen", "old"}, {absl::StrCat("old", i), "x"}})));
      }
    }  // Closing flushes: the old state is durable.
    SubprocessOptions options;
    options.argv = {"/proc/self/exe", "--gtest_filter=StateMachineCrash.ReplaceChild"};
    options.env = {absl::StrCat(kReplaceDirEnv, "=", data),
                   absl::StrCat(kReplaceCheckpointEnv, "=", checkpoint),
                   absl::StrCat(kReplaceStepEnv, "=", static_cast<int>(c.step))};
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Subprocess> child, Subprocess::Start(std::move(options)));
    const std::optional<ExitStatus> ended = child->WaitFor(absl::Seconds(60));
    ASSERT_TRUE(ended.has_value()) << "the replacing child did not end";
    ASSERT_TRUE(ended->signaled()) << ended->ToString();

    // The killed process left both databases behind.
    ASSERT_OK_AND_ASSIGN(const std::vector<std::string> left, files::ListDirectory(data));
    EXPECT_NE(std::find(left.begin(), left.end(), "db-000001"), left.end());
    EXPECT_NE(std::find(left.begin(), left.end(), "db-000002"), left.end());

    ASSERT_OK_AND_ASSIGN(auto follower, StateMachine::Open(TestOptions(data, 2)));
    EXPECT_EQ(follower->applied_index(), c.new_state ? 30u : 10u);
    EXPECT_EQ(*follower->Get("kv", "gen"), std::optional<std::string>(c.new_state ? "new" : "old"));
    EXPECT_EQ((*follower->Get("kv", "old10")).has_value(), !c.new_state);
    EXPECT_EQ((*follower->Get("kv", "new30")).has_value(), c.new_state);
    EXPECT_EQ(follower->node_metadata().node_id(), 2u);
    ASSERT_OK_AND_ASSIGN(const std::vector<std::string> kept, files::ListDirectory(data));
    EXPECT_EQ(kept, (std::vector<std::string>{"ACTIVE", "LOCK",
                                              c.new_state ? "db-000002" : "db-000001"}));
    const raft::Index next = follower->applied_index() + 1;
    EXPECT_OK(follower->Apply(testing::PutBatch(next, 2, {{"gen", "next"}})));
  }
}

}  // namespace
}  // namespace stead::storage
