#include "tests/testing/subprocess.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace stead::testing {
namespace {

class SubprocessTest : public ::testing::Test {
 protected:
  SubprocessTest() {
    std::string pattern = "/tmp/stead-subprocess-test-XXXXXX";
    EXPECT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }
  ~SubprocessTest() override {
    std::error_code ignored;  // Best effort: a leftover in /tmp is harmless.
    std::filesystem::remove_all(dir_, ignored);
  }

  // Starts `/bin/sh -c script` logging to log_path().
  absl::StatusOr<std::unique_ptr<Subprocess>> Shell(const std::string& script,
                                                    std::vector<std::string> env = {}) {
    return Subprocess::Start({"/bin/sh", "-c", script}, std::move(env), log_path());
  }
  std::string log_path() const { return dir_ + "/child.log"; }

  std::string dir_;
};

TEST_F(SubprocessTest, ReportsTheExitCode) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Subprocess> child, Shell("exit 3"));
  EXPECT_GT(child->pid(), 0);
  const std::optional<ExitStatus> status = child->WaitFor(absl::Seconds(10));
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(status->exited());
  EXPECT_EQ(status->exit_code, 3);
  EXPECT_EQ(status->ToString(), "exited with code 3");
  EXPECT_FALSE(child->running());
  // Reaped: the PID is no longer ours to signal, and the status is kept.
  EXPECT_THAT(child->Signal(SIGTERM), StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_EQ(child->WaitFor(absl::ZeroDuration())->exit_code, 3);
  EXPECT_EQ(child->Kill().exit_code, 3);
}

TEST_F(SubprocessTest, ReportsTheSignalThatKilledIt) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Subprocess> child, Shell("exec sleep 60"));
  EXPECT_TRUE(child->running());
  ASSERT_OK(child->Signal(SIGTERM));
  const std::optional<ExitStatus> status = child->WaitFor(absl::Seconds(10));
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(status->signaled());
  EXPECT_EQ(status->signal, SIGTERM);
  EXPECT_EQ(status->exit_code, -1);
}

TEST_F(SubprocessTest, WaitForReturnsAtItsTimeoutWhileTheChildRuns) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Subprocess> child, Shell("exec sleep 60"));
  const absl::Time start = absl::Now();
  EXPECT_FALSE(child->WaitFor(absl::Milliseconds(200)).has_value());
  const absl::Duration waited = absl::Now() - start;
  EXPECT_GE(waited, absl::Milliseconds(200));
  EXPECT_LT(waited, absl::Seconds(5));
  EXPECT_FALSE(child->WaitFor(absl::ZeroDuration()).has_value());
  EXPECT_EQ(child->Kill().signal, SIGKILL);
}

TEST_F(SubprocessTest, AStoppedChildCountsAsRunningUntilContinued) {
  SubprocessOptions options;
  options.argv = {"/bin/sh", "-c",
                  "trap 'exit 7' TERM; echo ready; i=0; while [ $i -lt 600 ]; do sleep 0.1; "
                  "i=$((i+1)); done"};
  options.capture_stdout = true;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Subprocess> child, Subprocess::Start(options));
  // The trap is set once it says so.
  ASSERT_EQ(child->ReadLine(absl::Seconds(10)).value_or("?"), "ready");
  ASSERT_OK(child->Signal(SIGSTOP));
  EXPECT_FALSE(child->WaitFor(absl::Milliseconds(100)).has_value());
  // A stopped shell does not run its trap until it is continued.
  ASSERT_OK(child->Signal(SIGTERM));
  EXPECT_FALSE(child->WaitFor(absl::Milliseconds(200)).has_value());
  ASSERT_OK(child->Signal(SIGCONT));
  const std::optional<ExitStatus> status = child->WaitFor(absl::Seconds(10));
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(status->exit_code, 7);
}

TEST_F(SubprocessTest, AppendsStdoutAndStderrToTheLogAndPassesEnvironment) {
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Subprocess> first, Shell("echo earlier"));
    ASSERT_TRUE(first->WaitFor(absl::Seconds(10)).has_value());
  }
  ASSERT_OK_AND_ASSIGN(
      std::unique_ptr<Subprocess> child,
      Shell("echo out $STEAD_SUBPROCESS_TEST; echo err >&2", {"STEAD_SUBPROCESS_TEST=value"}));
  ASSERT_TRUE(child->WaitFor(absl::Seconds(10)).has_value());
  ASSERT_OK_AND_ASSIGN(const std::string log, ReadFileToString(log_path()));
  EXPECT_EQ(log, "earlier\nout value\nerr\n");
}

TEST_F(SubprocessTest, EnvironmentEntriesReplaceInheritedOnes) {
  ASSERT_EQ(::setenv("STEAD_SUBPROCESS_REPLACED", "parent", 1), 0);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Subprocess> child,
                       Shell("env | grep '^STEAD_SUBPROCESS_REPLACED='",
                             {"STEAD_SUBPROCESS_REPLACED=child"}));
  ASSERT_TRUE(child->WaitFor(absl::Seconds(10)).has_value());
  ::unsetenv("STEAD_SUBPROCESS_REPLACED");
  EXPECT_EQ(ReadFileToString(log_path()).value_or(""), "STEAD_SUBPROCESS_REPLACED=child\n");
}

TEST_F(SubprocessTest, ReadLineReturnsWholeLinesThenEndOfOutput) {
  SubprocessOptions options;
  options.argv = {"/bin/sh", "-c", "echo one; echo to-log >&2; sleep 0.2; printf 'two\\nthr'"};
  options.log_path = log_path();
  options.capture_stdout = true;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Subprocess> child, Subprocess::Start(options));
  EXPECT_EQ(child->ReadLine(absl::Seconds(10)).value_or("?"), "one");
  EXPECT_EQ(child->ReadLine(absl::Seconds(10)).value_or("?"), "two");
  // "thr" has no newline: a half-written last line is dropped.
  EXPECT_THAT(child->ReadLine(absl::Seconds(10)), StatusIs(absl::StatusCode::kOutOfRange));
  ASSERT_TRUE(child->WaitFor(absl::Seconds(10)).has_value());
  EXPECT_EQ(ReadFileToString(log_path()).value_or(""), "to-log\n");
}

// The child reads stdin_path whole, NUL bytes included; without it, /dev/null (empty).
TEST_F(SubprocessTest, StdinComesFromStdinPathOrIsEmpty) {
  const std::string input_path = dir_ + "/stdin";
  std::ofstream(input_path, std::ios::binary) << std::string("a\0b\nc", 5);
  SubprocessOptions options;
  options.argv = {"/bin/sh", "-c", "od -An -c; echo end"};
  options.log_path = log_path();
  options.capture_stdout = true;
  options.stdin_path = input_path;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Subprocess> child, Subprocess::Start(options));
  EXPECT_EQ(child->ReadLine(absl::Seconds(10)).value_or("?"), "   a  \\0   b  \\n   c");
  EXPECT_EQ(child->ReadLine(absl::Seconds(10)).value_or("?"), "end");

  options.stdin_path.clear();
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Subprocess> without, Subprocess::Start(options));
  EXPECT_EQ(without->ReadLine(absl::Seconds(10)).value_or("?"), "end");

  options.stdin_path = input_path + ".missing";
  EXPECT_THAT(Subprocess::Start(options),
              StatusIs(absl::StatusCode::kInternal, "open " + options.stdin_path));
}

TEST_F(SubprocessTest, ReadLineTimesOutWithoutALine) {
  SubprocessOptions options;
  options.argv = {"/bin/sh", "-c", "printf partial; exec sleep 60"};
  options.capture_stdout = true;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Subprocess> child, Subprocess::Start(options));
  const absl::Time start = absl::Now();
  EXPECT_THAT(child->ReadLine(absl::Milliseconds(300)),
              StatusIs(absl::StatusCode::kDeadlineExceeded));
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  ASSERT_OK(child->Signal(SIGKILL));
  EXPECT_THAT(child->ReadLine(absl::Seconds(10)), StatusIs(absl::StatusCode::kOutOfRange));
}

TEST_F(SubprocessTest, ReadLineNeedsCapturedStdout) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Subprocess> child, Shell("exit 0"));
  EXPECT_THAT(child->ReadLine(absl::Seconds(1)), StatusIs(absl::StatusCode::kFailedPrecondition));
}

TEST_F(SubprocessTest, TheChildInheritsNoDescriptorBeyondStdio) {
  // A descriptor this process holds without close-on-exec, as a test might.
  // Numbered high, where the child's own descriptors (ls opens one) will not be.
  const int socket_fd = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(socket_fd, 0);
  const int inherited = ::fcntl(socket_fd, F_DUPFD, 100);
  ::close(socket_fd);
  ASSERT_GE(inherited, 100);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Subprocess> child, Shell("ls /proc/self/fd"));
  ASSERT_TRUE(child->WaitFor(absl::Seconds(10)).has_value());
  ::close(inherited);
  // ls itself opens one descriptor to read the directory; anything else is a leak.
  ASSERT_OK_AND_ASSIGN(const std::string log, ReadFileToString(log_path()));
  int count = 0;
  for (char c : log) count += c == '\n' ? 1 : 0;
  EXPECT_LE(count, 4) << log;
  EXPECT_EQ(log.find(absl::StrCat("\n", inherited, "\n")), std::string::npos) << log;
}

TEST_F(SubprocessTest, DestructorKillsAndReapsARunningChild) {
  pid_t pid = 0;
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Subprocess> child, Shell("exec sleep 60"));
    pid = child->pid();
    ASSERT_EQ(::kill(pid, 0), 0);
  }
  // Reaped, so the PID is gone (not even a zombie).
  EXPECT_NE(::kill(pid, 0), 0);
}

TEST_F(SubprocessTest, StartFailsForAMissingExecutable) {
  EXPECT_THAT(Subprocess::Start({dir_ + "/no-such-binary"}, {}, log_path()),
              StatusIs(absl::StatusCode::kFailedPrecondition, "no-such-binary"));
  EXPECT_THAT(Subprocess::Start({}, {}, log_path()), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(Subprocess::Start({"/bin/true"}, {}, dir_ + "/missing-dir/log"),
              StatusIs(absl::StatusCode::kInternal, "missing-dir"));
}

TEST(FreeLoopbackPortTest, ReturnsABindablePort) {
  ASSERT_OK_AND_ASSIGN(const uint16_t port, FreeLoopbackPort());
  EXPECT_GT(port, 0);
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = htons(port);
  EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
  ::close(fd);
}

TEST(ReadFileToStringTest, MissingFileIsNotFound) {
  EXPECT_THAT(ReadFileToString("/nonexistent/stead-file"), StatusIs(absl::StatusCode::kNotFound));
}

}  // namespace
}  // namespace stead::testing
