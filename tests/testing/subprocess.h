// Child processes for multi-process tests: a server binary, a crash-test writer, a
// shell script. Each Subprocess owns exactly one child PID and never signals anything
// else; a child still running when its Subprocess is destroyed is SIGKILLed and reaped.
//
//   ASSERT_OK_AND_ASSIGN(std::unique_ptr<Subprocess> server,
//                        Subprocess::Start({binary, "--config", path}, {}, dir + "/stead-0.log"));
//   ...
//   ASSERT_OK(server->Signal(SIGKILL));
//   std::optional<ExitStatus> status = server->WaitFor(absl::Seconds(5));
//
// Also the small helpers those tests need: a free loopback port and reading a file.
#ifndef STEAD_TESTS_TESTING_SUBPROCESS_H_
#define STEAD_TESTS_TESTING_SUBPROCESS_H_

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace stead::testing {

// How a child ended: exactly one of exited() and signaled() holds.
struct ExitStatus {
  int exit_code = -1;  // the code passed to exit(); -1 when killed by a signal
  int signal = 0;      // the signal that killed it; 0 when it exited

  bool exited() const { return signal == 0; }
  bool signaled() const { return signal != 0; }
  // "exited with code 3" or "killed by signal 9 (Killed)".
  std::string ToString() const;
};

struct SubprocessOptions {
  // argv[0] is the path of the executable (not searched in PATH); the rest are its
  // arguments. Required, non-empty.
  std::vector<std::string> argv = {};
  // "NAME=value" entries added to this process's environment for the child; an entry
  // replaces a variable of the same name. Default: none (the environment as is).
  std::vector<std::string> env = {};
  // File the child's stdout and stderr are appended to (created if missing). Empty:
  // the child writes to this process's stdout and stderr. Default: empty.
  std::string log_path = {};
  // When true the child's stdout goes to a pipe read with ReadLine() instead of the
  // log; stderr still goes to the log. Default: false.
  bool capture_stdout = false;
  // File the child reads as its stdin (e.g. a value for `steadctl put KEY -`). Empty:
  // /dev/null. Default: empty.
  std::string stdin_path = {};
};

// One child process: fork + execve, so it is a fresh process image (its own threads,
// no copy of the parent's state). The child gets stdin from SubprocessOptions::stdin_path
// (default /dev/null) and inherits no file descriptor above stderr.
//
// Not thread-safe: use one Subprocess from one thread at a time.
class Subprocess {
 public:
  // Starts the child. InvalidArgument for an empty argv; Internal when the stdin or log
  // file, a pipe or fork fails; FailedPrecondition naming argv[0] and the errno text when
  // execve fails (no such file, not executable), with no child left behind.
  static absl::StatusOr<std::unique_ptr<Subprocess>> Start(SubprocessOptions options);
  static absl::StatusOr<std::unique_ptr<Subprocess>> Start(std::vector<std::string> argv,
                                                           std::vector<std::string> env,
                                                           std::string log_path);

  Subprocess(const Subprocess&) = delete;
  Subprocess& operator=(const Subprocess&) = delete;
  // SIGKILLs the child if it has not been reaped yet, then reaps it. Only this PID.
  ~Subprocess();

  pid_t pid() const { return pid_; }

  // Sends `signal` (SIGKILL, SIGSTOP, SIGCONT, SIGTERM, ...) to the child.
  // FailedPrecondition once the child has been reaped (its PID may belong to someone
  // else by then); Internal if kill() fails.
  absl::Status Signal(int signal);

  // Waits up to `timeout` (zero: just checks) for the child to end, polling waitpid
  // with short sleeps; never blocks beyond the timeout. The exit status once it has
  // ended (also on every later call), std::nullopt while it is still running. A
  // stopped (SIGSTOP) child counts as running.
  std::optional<ExitStatus> WaitFor(absl::Duration timeout);

  // True until the child has ended (and been reaped by this call or an earlier one).
  bool running() { return !WaitFor(absl::ZeroDuration()).has_value(); }

  // SIGKILLs the child unless it already ended, and reaps it. Its exit status: the
  // signal is SIGKILL unless it had ended on its own before.
  ExitStatus Kill();

  // With capture_stdout: the next whole line of the child's stdout, without its '\n'.
  // DeadlineExceeded when no whole line arrives within `timeout`; OutOfRange at the
  // end of the output (the child closed stdout or ended) — an unterminated last line
  // is dropped, since a child killed mid-write leaves half a line. FailedPrecondition
  // without capture_stdout.
  absl::StatusOr<std::string> ReadLine(absl::Duration timeout);

 private:
  Subprocess(pid_t pid, int stdout_fd) : pid_(pid), stdout_fd_(stdout_fd) {}
  // Records `wait_status` from waitpid as the exit status.
  void SetReaped(int wait_status);

  const pid_t pid_;
  int stdout_fd_;                         // read end of the stdout pipe; -1 without one
  std::string stdout_buffer_;             // bytes read after the last whole line
  bool stdout_closed_ = false;            // read() returned end of file
  std::optional<ExitStatus> exit_status_;  // set once reaped; then pid_ is never signalled
};

// What a child run to completion by RunToCompletion printed and how it ended.
struct CompletedRun {
  int exit_code = -1;  // -1: it did not exit by itself in time (then it was killed)
  std::string out;     // its stdout, whole lines
  std::string err;     // its stderr
};

// Runs `options.argv` with `options.env` (and options.stdin_path) until it exits, at
// most `timeout` (then it is killed): its stdout and stderr and its exit code. Sets
// capture_stdout and log_path itself (stderr goes to a file under `scratch_dir`).
// Bounded: at most 100,000 lines of output. A child that cannot start gives exit code
// -1 and the reason in `err`.
CompletedRun RunToCompletion(SubprocessOptions options, const std::string& scratch_dir,
                             absl::Duration timeout = absl::Seconds(30));

// A TCP port on 127.0.0.1 that was free a moment ago, below the kernel's ephemeral
// range (so no outgoing connection takes it meanwhile) and not handed out before by
// this process. Another process may still take it before the caller binds it.
// ResourceExhausted if none is free.
absl::StatusOr<uint16_t> FreeLoopbackPort();

// The whole contents of the file at `path`. NotFound if it does not exist, Internal on
// any other error.
absl::StatusOr<std::string> ReadFileToString(const std::string& path);

}  // namespace stead::testing

#endif  // STEAD_TESTS_TESTING_SUBPROCESS_H_
