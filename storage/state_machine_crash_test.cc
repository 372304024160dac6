// Real crashes: a child process applies entries and is killed with SIGKILL at a random
// moment; the parent reopens the data dir and checks that the applied index and the
// data still describe the same state. With RocksDB's WAL off this rests on atomic
// flushes of all column families (state_machine.h), which only a real kill exercises
// together with RocksDB's background flush threads.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "storage/state_machine.h"
#include "storage/state_machine_testing.h"
#include "tests/testing/status_matchers.h"

namespace stead::storage {
namespace {

using testing::TempDir;
using testing::TestOptions;

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

// The child: applies entries forever, reporting each applied index on `report_fd`.
// Never returns; exits with 1 on any error.
[[noreturn]] void RunApplier(const std::string& data_dir, int report_fd) {
  absl::StatusOr<std::unique_ptr<StateMachine>> machine = StateMachine::Open(CrashOptions(data_dir));
  if (!machine.ok()) _exit(1);
  // Bounded: the parent kills us long before this runs out.
  for (int n = 0; n < 1000000; ++n) {
    const raft::Index index = (*machine)->applied_index() + 1;
    if (!(*machine)->Apply(Entry(index)).ok()) _exit(1);
    const std::string line = absl::StrCat(index, "\n");
    if (::write(report_fd, line.data(), line.size()) != static_cast<ssize_t>(line.size())) _exit(1);
  }
  _exit(0);
}

// The child's side, run in a fresh process image (exec of this test binary): a forked
// copy of a process whose RocksDB thread pool already ran would have no background
// threads, so its flushes would never happen.
constexpr char kApplierDirEnv[] = "STEAD_CRASH_APPLIER_DIR";
constexpr char kApplierFdEnv[] = "STEAD_CRASH_APPLIER_FD";

TEST(StateMachineCrash, ApplierChild) {
  const char* data_dir = std::getenv(kApplierDirEnv);
  const char* fd_text = std::getenv(kApplierFdEnv);
  if (data_dir == nullptr || fd_text == nullptr) GTEST_SKIP() << "runs only as a crash-test child";
  int fd = -1;
  if (!absl::SimpleAtoi(fd_text, &fd)) _exit(1);
  RunApplier(data_dir, fd);
}

// Starts the applier child on `data_dir`, reporting on `report_fd`; returns its pid.
pid_t StartApplier(const std::string& data_dir, int report_fd, int other_fd) {
  const pid_t child = ::fork();
  if (child != 0) return child;
  ::close(other_fd);
  // The child's own gtest chatter would interleave with the parent's report.
  const int null_fd = ::open("/dev/null", O_WRONLY);
  if (null_fd >= 0) ::dup2(null_fd, STDOUT_FILENO);
  ::setenv(kApplierDirEnv, data_dir.c_str(), 1);
  ::setenv(kApplierFdEnv, std::to_string(report_fd).c_str(), 1);
  ::execl("/proc/self/exe", "/proc/self/exe", "--gtest_filter=StateMachineCrash.ApplierChild",
          static_cast<char*>(nullptr));
  _exit(127);  // exec failed.
}

// Reads "index\n" lines from `fd` until one is >= `target`; returns the last index read
// (lower than `target` if the child died first).
raft::Index WaitForIndex(int fd, raft::Index target) {
  std::FILE* in = ::fdopen(::dup(fd), "r");
  raft::Index last = 0;
  char line[64];
  while (last < target && std::fgets(line, sizeof(line), in) != nullptr) {
    raft::Index index = 0;
    if (absl::SimpleAtoi(absl::StripTrailingAsciiWhitespace(line), &index)) last = index;
  }
  std::fclose(in);
  return last;
}

// Goal: whatever moment a crash hits, the recovered applied index matches the data.
// Method: 8 rounds of fork, apply, SIGKILL after a random number of entries; after each,
// reopen and check "last" equals the applied index, key<index> exists and
// key<index + 1> does not. The next round continues from the recovered index, like a
// node replaying its Raft log.
TEST(StateMachineCrash, SigkillNeverSeparatesIndexFromData) {
  TempDir dir;
  const std::string data = dir.Sub("data");
  std::mt19937_64 random(2024);
  raft::Index previous = 0;
  for (int round = 0; round < 8; ++round) {
    SCOPED_TRACE(absl::StrCat("round ", round));
    int pipe_fds[2];
    ASSERT_EQ(::pipe(pipe_fds), 0);
    const pid_t child = StartApplier(data, pipe_fds[1], pipe_fds[0]);
    ASSERT_GT(child, 0);
    ::close(pipe_fds[1]);
    const raft::Index target = previous + 200 + random() % 800;
    const raft::Index reached = WaitForIndex(pipe_fds[0], target);
    ::kill(child, SIGKILL);
    int wait_status = 0;
    ASSERT_EQ(::waitpid(child, &wait_status, 0), child);
    ::close(pipe_fds[0]);
    ASSERT_GE(reached, target) << "the applier died before it was killed";
    ASSERT_TRUE(WIFSIGNALED(wait_status));

    ASSERT_OK_AND_ASSIGN(auto machine, StateMachine::Open(CrashOptions(data)));
    const raft::Index recovered = machine->applied_index();
    EXPECT_LE(recovered, reached);
    EXPECT_GE(recovered, previous) << "a flushed state went back";
    if (recovered > 0) {
      EXPECT_EQ(*machine->Get("kv", "last"), std::optional<std::string>(absl::StrCat(recovered)));
      EXPECT_TRUE(machine->Get("kv", absl::StrCat("key", recovered))->has_value());
    }
    EXPECT_FALSE(machine->Get("kv", absl::StrCat("key", recovered + 1))->has_value());
    std::printf("round %d: applied through %llu, killed, recovered %llu\n", round,
                static_cast<unsigned long long>(reached),
                static_cast<unsigned long long>(recovered));
    previous = recovered;
  }
  EXPECT_GT(previous, 0u) << "automatic flushes should have made some state durable";
}

}  // namespace
}  // namespace stead::storage
