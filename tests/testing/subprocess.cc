#include "tests/testing/subprocess.h"

#include <atomic>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"

extern char** environ;

namespace stead::testing {
namespace {

// How long WaitFor sleeps between waitpid polls.
constexpr absl::Duration kWaitPollInterval = absl::Milliseconds(5);
// Upper bound on the descriptors the child closes one by one when close_range() is
// unavailable.
constexpr int kMaxFallbackFds = 65536;

absl::Status ErrnoStatus(int error_number, absl::string_view what) {
  return absl::InternalError(absl::StrCat(what, ": ", strerror(error_number)));
}

// Closes `fd` unless it is -1, keeping errno (callers report an earlier error).
void CloseQuietly(int fd) {
  if (fd < 0) return;
  const int saved = errno;
  ::close(fd);
  errno = saved;
}

// The child's environment: this process's, with `extra` ("NAME=value") replacing
// variables of the same name.
std::vector<std::string> ChildEnvironment(const std::vector<std::string>& extra) {
  std::set<std::string> replaced;
  for (const std::string& entry : extra) replaced.insert(entry.substr(0, entry.find('=')));
  std::vector<std::string> result;
  for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
    const std::string text(*entry);
    if (replaced.count(text.substr(0, text.find('='))) == 0) result.push_back(text);
  }
  result.insert(result.end(), extra.begin(), extra.end());
  return result;
}

std::vector<char*> CStrings(std::vector<std::string>& strings) {
  std::vector<char*> result;
  result.reserve(strings.size() + 1);
  for (std::string& text : strings) result.push_back(text.data());
  result.push_back(nullptr);
  return result;
}

// Makes `from` the descriptor `to` in the child, inheritable across execve. Only
// async-signal-safe calls: this runs between fork and execve.
bool MoveFdInChild(int from, int to) {
  if (from == to) {
    // dup2 would be a no-op and leave O_CLOEXEC set.
    return ::fcntl(to, F_SETFD, 0) == 0;
  }
  return ::dup2(from, to) == to;
}

// The child side of Start(); never returns. Reports a failure by writing errno to
// `error_fd` (close-on-exec, so a successful execve closes it with nothing written).
// The parent's descriptors are all 3 or above (its stdio is open), so moving them onto
// 0, 1 and 2 clobbers none of them.
[[noreturn]] void RunChild(int stdin_fd, int stdout_fd, int stderr_fd, int error_fd,
                           int fallback_max_fd, char* const argv[], char* const envp[]) {
  const bool moved = (stdin_fd < 0 || MoveFdInChild(stdin_fd, STDIN_FILENO)) &&
                     (stdout_fd < 0 || MoveFdInChild(stdout_fd, STDOUT_FILENO)) &&
                     (stderr_fd < 0 || MoveFdInChild(stderr_fd, STDERR_FILENO));
  if (moved) {
    // Nothing but stdio may reach the new image: an inherited copy of another child's
    // pipe or of a listening socket would keep it open after its owner closed it.
    // Close-on-exec rather than closed, so the error pipe still works until execve.
    if (::close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) != 0) {
      for (int fd = 3; fd < fallback_max_fd; ++fd) {
        if (fd != error_fd) ::close(fd);
      }
    }
    // The parent may block or ignore signals (ignored ones survive execve); the child
    // starts with the defaults, so a server sees SIGTERM and SIGPIPE as usual.
    for (int signal_number = 1; signal_number < NSIG; ++signal_number) {
      if (signal_number != SIGKILL && signal_number != SIGSTOP) ::signal(signal_number, SIG_DFL);
    }
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::execve(argv[0], argv, envp);
  }
  const int error_number = errno;
  // Nothing more to do if even this write fails: the parent then sees exit code 127.
  [[maybe_unused]] const ssize_t written = ::write(error_fd, &error_number, sizeof error_number);
  ::_exit(127);
}

}  // namespace

std::string ExitStatus::ToString() const {
  if (exited()) return absl::StrCat("exited with code ", exit_code);
  return absl::StrCat("killed by signal ", signal, " (", strsignal(signal), ")");
}

absl::StatusOr<std::unique_ptr<Subprocess>> Subprocess::Start(std::vector<std::string> argv,
                                                              std::vector<std::string> env,
                                                              std::string log_path) {
  SubprocessOptions options;
  options.argv = std::move(argv);
  options.env = std::move(env);
  options.log_path = std::move(log_path);
  return Start(std::move(options));
}

absl::StatusOr<std::unique_ptr<Subprocess>> Subprocess::Start(SubprocessOptions options) {
  if (options.argv.empty() || options.argv[0].empty()) {
    return absl::InvalidArgumentError("Subprocess::Start: empty argv");
  }
  // Everything the child needs is built before fork: between fork and execve a
  // multi-threaded parent's child may only make async-signal-safe calls (no malloc).
  std::vector<std::string> env = ChildEnvironment(options.env);
  std::vector<char*> c_argv = CStrings(options.argv);
  std::vector<char*> c_env = CStrings(env);
  rlimit limit{};
  int fallback_max_fd = kMaxFallbackFds;
  if (::getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY) {
    fallback_max_fd = static_cast<int>(std::min<rlim_t>(limit.rlim_cur, kMaxFallbackFds));
  }

  // All descriptors are opened close-on-exec, so children started concurrently from
  // other threads do not inherit them.
  int stdin_fd = -1;
  int log_fd = -1;
  int stdout_pipe[2] = {-1, -1};
  int error_pipe[2] = {-1, -1};
  auto close_all = [&] {
    for (int fd : {stdin_fd, log_fd, stdout_pipe[0], stdout_pipe[1], error_pipe[0], error_pipe[1]}) {
      CloseQuietly(fd);
    }
  };
  const std::string stdin_path = options.stdin_path.empty() ? "/dev/null" : options.stdin_path;
  stdin_fd = ::open(stdin_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (stdin_fd < 0) return ErrnoStatus(errno, "open " + stdin_path);
  if (!options.log_path.empty()) {
    log_fd = ::open(options.log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (log_fd < 0) {
      const absl::Status status = ErrnoStatus(errno, "open " + options.log_path);
      close_all();
      return status;
    }
  }
  if (options.capture_stdout && ::pipe2(stdout_pipe, O_CLOEXEC) != 0) {
    const absl::Status status = ErrnoStatus(errno, "pipe for the child's stdout");
    close_all();
    return status;
  }
  if (::pipe2(error_pipe, O_CLOEXEC) != 0) {
    const absl::Status status = ErrnoStatus(errno, "pipe");
    close_all();
    return status;
  }

  const pid_t pid = ::fork();
  if (pid < 0) {
    const absl::Status status = ErrnoStatus(errno, "fork");
    close_all();
    return status;
  }
  if (pid == 0) {
    RunChild(stdin_fd, options.capture_stdout ? stdout_pipe[1] : log_fd, log_fd, error_pipe[1],
             fallback_max_fd, c_argv.data(), c_env.data());
  }

  // The parent keeps only the read ends.
  const int stdout_fd = stdout_pipe[0];
  stdout_pipe[0] = -1;
  ::close(error_pipe[1]);
  error_pipe[1] = -1;
  int exec_errno = 0;
  ssize_t got = 0;
  do {
    got = ::read(error_pipe[0], &exec_errno, sizeof exec_errno);
  } while (got < 0 && errno == EINTR);
  close_all();
  auto process = std::unique_ptr<Subprocess>(new Subprocess(pid, stdout_fd));
  if (got > 0) {
    // execve failed; the child has exited with 127. The destructor reaps it.
    return absl::FailedPreconditionError(
        absl::StrCat("execve ", options.argv[0], ": ", strerror(exec_errno)));
  }
  return process;
}

Subprocess::~Subprocess() {
  Kill();
  CloseQuietly(stdout_fd_);
}

void Subprocess::SetReaped(int wait_status) {
  ExitStatus status;
  if (WIFSIGNALED(wait_status)) {
    status.signal = WTERMSIG(wait_status);
  } else {
    status.exit_code = WEXITSTATUS(wait_status);
  }
  exit_status_ = status;
}

absl::Status Subprocess::Signal(int signal) {
  if (exit_status_.has_value()) {
    return absl::FailedPreconditionError(
        absl::StrCat("process ", pid_, " already ended: ", exit_status_->ToString()));
  }
  if (::kill(pid_, signal) != 0) {
    return ErrnoStatus(errno, absl::StrCat("kill(", pid_, ", ", signal, ")"));
  }
  return absl::OkStatus();
}

std::optional<ExitStatus> Subprocess::WaitFor(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  // Bounded by the deadline; the count only guards against a clock that stands still
  // (saturating: ToInt64Milliseconds of an infinite timeout is the largest int64).
  const int64_t max_polls =
      absl::ToInt64Milliseconds(timeout) / absl::ToInt64Milliseconds(kWaitPollInterval) + 1000;
  for (int64_t polls = 0; !exit_status_.has_value(); ++polls) {
    int wait_status = 0;
    const pid_t reaped = ::waitpid(pid_, &wait_status, WNOHANG);
    if (reaped == pid_) {
      SetReaped(wait_status);
      break;
    }
    if (reaped < 0 && errno != EINTR) {
      // ECHILD: someone else reaped it (they should not); report it as gone.
      exit_status_ = ExitStatus{};
      break;
    }
    const absl::Time now = absl::Now();
    if (now >= deadline || polls > max_polls) break;
    absl::SleepFor(std::min(kWaitPollInterval, deadline - now));
  }
  return exit_status_;
}

ExitStatus Subprocess::Kill() {
  if (!exit_status_.has_value()) {
    ::kill(pid_, SIGKILL);  // Fails only if it is already a zombie; waitpid reaps it.
    int wait_status = 0;
    pid_t reaped = 0;
    do {
      reaped = ::waitpid(pid_, &wait_status, 0);
    } while (reaped < 0 && errno == EINTR);
    if (reaped == pid_) {
      SetReaped(wait_status);
    } else {
      exit_status_ = ExitStatus{};
    }
  }
  return *exit_status_;
}

absl::StatusOr<std::string> Subprocess::ReadLine(absl::Duration timeout) {
  if (stdout_fd_ < 0) {
    return absl::FailedPreconditionError("ReadLine needs SubprocessOptions::capture_stdout");
  }
  const absl::Time deadline = absl::Now() + timeout;
  // Each pass either returns, reads at least one byte, or waits out the deadline.
  while (true) {
    const size_t newline = stdout_buffer_.find('\n');
    if (newline != std::string::npos) {
      std::string line = stdout_buffer_.substr(0, newline);
      stdout_buffer_.erase(0, newline + 1);
      return line;
    }
    if (stdout_closed_) {
      return absl::OutOfRangeError(absl::StrCat("end of the output of process ", pid_));
    }
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) {
      return absl::DeadlineExceededError(
          absl::StrCat("no line from process ", pid_, " within ", absl::FormatDuration(timeout)));
    }
    pollfd poll_fd{stdout_fd_, POLLIN, 0};
    // Rounded up so a sub-millisecond remainder does not spin.
    const int64_t wait_ms = std::min<int64_t>(absl::ToInt64Milliseconds(left) + 1, 1000);
    const int ready = ::poll(&poll_fd, 1, static_cast<int>(wait_ms));
    if (ready < 0 && errno != EINTR) return ErrnoStatus(errno, "poll");
    if (ready <= 0) continue;
    char chunk[4096];
    const ssize_t got = ::read(stdout_fd_, chunk, sizeof chunk);
    if (got < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return ErrnoStatus(errno, "read");
    }
    if (got == 0) {
      stdout_closed_ = true;
      continue;
    }
    stdout_buffer_.append(chunk, static_cast<size_t>(got));
  }
}

absl::StatusOr<uint16_t> FreeLoopbackPort() {
  // Ports below the kernel's ephemeral range (32768 and up by default), so that the
  // outgoing connections of the servers under test never take a port a test reserved
  // for a server it starts later. Each process starts at its own offset and walks on,
  // so concurrent test processes rarely probe the same ports.
  constexpr uint16_t kFirst = 20000;
  constexpr uint16_t kCount = 12000;
  static std::atomic<uint32_t> cursor{static_cast<uint32_t>(::getpid()) * 7919u % kCount};
  for (int attempt = 0; attempt < kCount; ++attempt) {
    const uint16_t port = static_cast<uint16_t>(kFirst + cursor.fetch_add(1) % kCount);
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return ErrnoStatus(errno, "socket");
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    address.sin_port = htons(port);
    const bool free = ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0;
    ::close(fd);
    if (free) return port;
  }
  return absl::ResourceExhaustedError("no free loopback port between 20000 and 32000");
}

CompletedRun RunToCompletion(SubprocessOptions options, const std::string& scratch_dir,
                             absl::Duration timeout) {
  static std::atomic<int> runs{0};
  options.capture_stdout = true;
  options.log_path = absl::StrCat(scratch_dir, "/run-", ::getpid(), "-", runs++, ".err");
  CompletedRun run;
  absl::StatusOr<std::unique_ptr<Subprocess>> process = Subprocess::Start(options);
  if (!process.ok()) {
    run.err = absl::StrCat("could not start ", options.argv[0], ": ", process.status().message());
    return run;
  }
  const absl::Time deadline = absl::Now() + timeout;
  for (int line = 0; line < 100000; ++line) {
    absl::StatusOr<std::string> text = (*process)->ReadLine(deadline - absl::Now());
    if (!text.ok()) break;
    absl::StrAppend(&run.out, *text, "\n");
  }
  std::optional<ExitStatus> status = (*process)->WaitFor(deadline - absl::Now());
  run.exit_code = status.has_value() && status->exited() ? status->exit_code : -1;
  run.err = ReadFileToString(options.log_path).value_or("");
  return run;
}

absl::StatusOr<std::string> ReadFileToString(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) {
    if (::access(path.c_str(), F_OK) != 0) return absl::NotFoundError("no file " + path);
    return absl::InternalError("cannot open " + path);
  }
  std::ostringstream contents;
  contents << file.rdbuf();
  if (file.bad()) return absl::InternalError("error reading " + path);
  return contents.str();
}

}  // namespace stead::testing
