// stead-load-check: a client load on a stead cluster during disruptive operations (pod
// restarts, rolling updates, scaling), and the proof afterwards that no acknowledged
// write was lost. The Kubernetes StatefulSet tests run `write` while they disrupt the
// cluster, stop it with SIGTERM, then run `verify`.
//
//   stead-load-check write --endpoints=H:P[,H:P] --prefix=P --acked-file=F [--writers=4]
//       [--request-timeout=10s] [--value-bytes=64] [--max-seconds=600]
//       [--route-to-leader=true|false] [--cacert=F] [--cert=F --key=F]
//   stead-load-check verify --endpoints=H:P[,H:P] --acked-file=F [--prefix=P]
//       [--timeout=30s] [--route-to-leader=true|false] [--cacert=F] [--cert=F --key=F]
//
// --cacert, --cert and --key (as stead-bench's) turn TLS on to the members' client
// ports, with a client certificate where they require one.
//
// `write` runs --writers threads over one stead::Client. Each puts P/<writer>/<sequence>
// with a value that encodes the key (load_check_lib.h), and only once the cluster
// acknowledged the Put appends the key to F. A failed Put is retried with the same key
// and value after 100 ms until it is acknowledged or the run stops; should an earlier
// attempt whose outcome was unknown have been applied as well, the retry writes the
// same value again, which changes nothing `verify` can see. `verify` reads back every
// key listed in F linearizably and checks its value.
//
// Exit codes: 0 success (write: at least one write acknowledged; verify: every listed
// key present with its value), 1 failure (write: none acknowledged, or the run could
// not go on; verify: a key missing or wrong), 2 bad flags or acknowledged-keys file,
// 5 (verify) the cluster did not answer within --timeout.
#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "base/log.h"
#include "base/mutex.h"
#include "base/status_macros.h"
#include "stead/client.h"
#include "tests/k8s/load_check_lib.h"

namespace stead::loadcheck {
namespace {

constexpr int kExitOk = 0;
constexpr int kExitFailed = 1;
constexpr int kExitBadFlags = 2;
constexpr int kExitUnavailable = 5;

// The pause before a failed Put is tried again.
constexpr absl::Duration kRetryPause = absl::Milliseconds(100);
// How long writers may take past their request timeout to return once stopped.
constexpr absl::Duration kStopMargin = absl::Seconds(5);
// Keys per Range page of `verify`.
constexpr int64_t kPageKeys = 1000;
// Missing and wrong keys listed on stderr by `verify`, each.
constexpr int kListedKeys = 20;
constexpr int kMaxWriters = 256;
// Far below the server's key limit (8 KiB) with the writer and sequence added.
constexpr size_t kMaxPrefixBytes = 1024;

constexpr char kMainHelp[] =
    "stead-load-check: writes under disruption, then proves no acknowledged write is lost\n"
    "\n"
    "usage: stead-load-check write|verify --endpoints=H:P[,H:P] ... (see COMMAND --help)\n"
    "\n"
    "exit codes: 0 ok, 1 failed (write: nothing acknowledged; verify: a key missing or\n"
    "            wrong), 2 bad flags, 5 (verify) the cluster did not answer in time\n";

// The flags both commands take for TLS, as stead-bench's.
constexpr char kTlsHelp[] =
    "\n"
    "TLS (on with any of these):\n"
    "  --cacert=FILE           PEM CA certificates that issue the members' certificates\n"
    "  --cert=FILE --key=FILE  this client's certificate and key, for members that\n"
    "                          require client certificates (--client-cert-auth)\n";

constexpr char kWriteHelp[] =
    "usage: stead-load-check write --endpoints=H:P[,H:P] --prefix=P --acked-file=F\n"
    "           [--writers=4] [--request-timeout=10s] [--value-bytes=64]\n"
    "           [--max-seconds=600] [--route-to-leader=true|false]\n"
    "           [--cacert=F] [--cert=F --key=F]\n"
    "\n"
    "Each of --writers threads puts P/<writer>/<sequence> (sequence zero-padded to 10\n"
    "digits) with a value of --value-bytes (at least the key and 10) that encodes the\n"
    "key. Once the cluster acknowledges a Put, the key is appended to F as one line\n"
    "(flushed) and the writer moves on. A failed Put (after the client's own retries\n"
    "within --request-timeout) is logged on stderr, counted, and retried with the same\n"
    "key after 100 ms. F is appended to; it must not list keys under P/ already (use a\n"
    "new prefix or file per run). Runs until SIGTERM or SIGINT, or --max-seconds, then\n"
    "lets the Puts in flight finish (each within --request-timeout) and prints\n"
    "  RESULT acked=N failed_attempts=M retried_keys=K max_latency_ms=X p99_latency_ms=Y\n"
    "         duration_s=D\n"
    "(one line). The latencies are per acknowledged key, from its first attempt to its\n"
    "acknowledgement, retries included. Exit 0 if at least one write was acknowledged,\n"
    "1 otherwise or when the cluster refused a Put as malformed (a prefix or value over\n"
    "its limits) or F could not be written; 2 for bad flags.\n"
    "\n"
    "--endpoints may be member addresses or one Service address. --route-to-leader=false\n"
    "sends every request to the endpoints (a member forwards it to the leader) instead of\n"
    "straight to the leader's advertised address; use it where that address does not\n"
    "resolve.\n";

constexpr char kVerifyHelp[] =
    "usage: stead-load-check verify --endpoints=H:P[,H:P] --acked-file=F [--prefix=P]\n"
    "           [--timeout=30s] [--route-to-leader=true|false]\n"
    "           [--cacert=F] [--cert=F --key=F]\n"
    "\n"
    "Reads every key listed in F (each once) with linearizable Range reads over the keys\n"
    "under P/ (every key of F must lie there), or without --prefix under the longest\n"
    "prefix the keys of F share, and checks that each is present with the value `write`\n"
    "gave it. Prints\n"
    "  RESULT checked=N missing=M wrong=W\n"
    "and lists up to 20 missing and 20 wrong keys on stderr. A last line of F without\n"
    "its newline (a record cut short) is left out, with a note on stderr. Exit 0 iff\n"
    "nothing is missing or wrong, 1 otherwise, 2 for bad flags or an unreadable F, 5\n"
    "when a read did not succeed within --timeout (retries included).\n";

// The flags of one command as given: name (without "--") to value.
struct Args {
  bool help = false;
  std::map<std::string, std::string> values;
};

// Parses "--name=value" and "--name value" for the names in `allowed`; InvalidArgument
// for anything else.
absl::StatusOr<Args> ParseArgs(int argc, char** argv, const std::set<std::string>& allowed) {
  Args args;
  for (int i = 2; i < argc; ++i) {
    const absl::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      args.help = true;
      continue;
    }
    if (!absl::StartsWith(arg, "--")) {
      return absl::InvalidArgumentError(absl::StrCat("unexpected argument '", arg, "'"));
    }
    const size_t equals = arg.find('=');
    const std::string name(
        arg.substr(2, equals == absl::string_view::npos ? arg.npos : equals - 2));
    if (!allowed.contains(name)) {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag --", name));
    }
    if (equals != absl::string_view::npos) {
      args.values[name] = std::string(arg.substr(equals + 1));
    } else if (i + 1 < argc) {
      args.values[name] = argv[++i];
    } else {
      return absl::InvalidArgumentError(absl::StrCat("--", name, " needs a value"));
    }
  }
  return args;
}

absl::StatusOr<std::string> RequiredFlag(const Args& args, const std::string& name) {
  const auto it = args.values.find(name);
  if (it == args.values.end() || it->second.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("--", name, " is required"));
  }
  return it->second;
}

absl::StatusOr<int64_t> CountFlag(const Args& args, const std::string& name, int64_t fallback,
                                  int64_t min, int64_t max) {
  const auto it = args.values.find(name);
  if (it == args.values.end()) return fallback;
  int64_t value = 0;
  if (!absl::SimpleAtoi(it->second, &value) || value < min || value > max) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--", name, ": '", it->second, "' is not a whole number from ", min, " to ", max));
  }
  return value;
}

// A positive duration ("10s", "500ms"); with `bare_seconds`, a plain number of seconds.
absl::StatusOr<absl::Duration> DurationFlag(const Args& args, const std::string& name,
                                            absl::Duration fallback, bool bare_seconds = false) {
  const auto it = args.values.find(name);
  if (it == args.values.end()) return fallback;
  absl::Duration value;
  double seconds = 0;
  if (bare_seconds && absl::SimpleAtod(it->second, &seconds)) {
    value = absl::Seconds(seconds);
  } else if (!absl::ParseDuration(it->second, &value)) {
    value = absl::ZeroDuration();
  }
  if (value <= absl::ZeroDuration() || value == absl::InfiniteDuration()) {
    return absl::InvalidArgumentError(absl::StrCat("--", name, ": '", it->second,
                                                   "' is not a positive duration like ",
                                                   bare_seconds ? "600 or 10m" : "10s"));
  }
  return value;
}

absl::StatusOr<bool> BoolFlag(const Args& args, const std::string& name, bool fallback) {
  const auto it = args.values.find(name);
  if (it == args.values.end()) return fallback;
  bool value = false;
  if (!absl::SimpleAtob(it->second, &value)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", name, ": '", it->second, "' is not true or false"));
  }
  return value;
}

// The flags both commands take.
struct CommonFlags {
  std::string endpoints;
  std::string acked_file;
  bool route_to_leader = true;
  ClientTlsOptions tls;  // --cacert, --cert, --key
};

absl::StatusOr<CommonFlags> ParseCommonFlags(const Args& args) {
  CommonFlags flags;
  STEAD_ASSIGN_OR_RETURN(flags.endpoints, RequiredFlag(args, "endpoints"));
  STEAD_ASSIGN_OR_RETURN(flags.acked_file, RequiredFlag(args, "acked-file"));
  STEAD_ASSIGN_OR_RETURN(flags.route_to_leader, BoolFlag(args, "route-to-leader", true));
  for (auto [name, field] :
       {std::pair{"cacert", &flags.tls.trusted_ca_file}, std::pair{"cert", &flags.tls.cert_file},
        std::pair{"key", &flags.tls.key_file}}) {
    if (!args.values.contains(name)) continue;
    STEAD_ASSIGN_OR_RETURN(*field, RequiredFlag(args, name));
    flags.tls.enabled = true;
  }
  if (flags.tls.cert_file.empty() != flags.tls.key_file.empty()) {
    return absl::InvalidArgumentError("--cert and --key go together");
  }
  return flags;
}

// The client for both commands: requests bounded by `timeout`, retried within it.
absl::StatusOr<std::unique_ptr<Client>> CreateClient(const CommonFlags& flags,
                                                     absl::Duration timeout) {
  ClientOptions options;
  options.endpoints = absl::StrSplit(flags.endpoints, ',', absl::SkipWhitespace());
  options.default_timeout = timeout;
  options.route_to_leader = flags.route_to_leader;
  options.tls = flags.tls;
  return Client::Create(std::move(options));
}

// The contents of the file at `path`: NotFound when there is none, InvalidArgument when
// it cannot be read.
absl::StatusOr<std::string> ReadWholeFile(const std::string& path) {
  std::FILE* file = std::fopen(path.c_str(), "rb");
  if (file == nullptr) {
    const std::string message = absl::StrCat(path, ": ", std::strerror(errno));
    return errno == ENOENT ? absl::NotFoundError(message) : absl::InvalidArgumentError(message);
  }
  std::string contents;
  char buffer[1 << 16];
  size_t read = 0;
  // Bounded by the file's size.
  while ((read = std::fread(buffer, 1, sizeof buffer, file)) > 0) contents.append(buffer, read);
  const bool failed = std::ferror(file) != 0;
  std::fclose(file);
  if (failed) return absl::InvalidArgumentError(absl::StrCat(path, ": read error"));
  return contents;
}

void Note(absl::string_view message) {
  std::fprintf(stderr, "stead-load-check: %.*s\n", static_cast<int>(message.size()),
               message.data());
}

int Fail(int exit_code, absl::string_view message) {
  Note(message);
  return exit_code;
}

// ---- write ----

struct WriteFlags {
  CommonFlags common;
  std::string prefix;
  int writers = 4;
  absl::Duration request_timeout = absl::Seconds(10);
  size_t value_bytes = 64;
  absl::Duration max_duration = absl::Seconds(600);
};

absl::StatusOr<WriteFlags> ParseWriteFlags(const Args& args) {
  WriteFlags flags;
  STEAD_ASSIGN_OR_RETURN(flags.common, ParseCommonFlags(args));
  STEAD_ASSIGN_OR_RETURN(flags.prefix, RequiredFlag(args, "prefix"));
  if (flags.prefix.size() > kMaxPrefixBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("--prefix is ", flags.prefix.size(), " bytes, over ", kMaxPrefixBytes));
  }
  STEAD_ASSIGN_OR_RETURN(const int64_t writers, CountFlag(args, "writers", 4, 1, kMaxWriters));
  flags.writers = static_cast<int>(writers);
  STEAD_ASSIGN_OR_RETURN(flags.request_timeout,
                         DurationFlag(args, "request-timeout", flags.request_timeout));
  STEAD_ASSIGN_OR_RETURN(
      const int64_t value_bytes,
      CountFlag(args, "value-bytes", 64, 0, static_cast<int64_t>(kMaxValueBytes)));
  flags.value_bytes = static_cast<size_t>(value_bytes);
  STEAD_ASSIGN_OR_RETURN(flags.max_duration,
                         DurationFlag(args, "max-seconds", flags.max_duration, true));
  return flags;
}

// InvalidArgument when `path` lists a key under prefix/ already: writing those keys
// again would acknowledge afresh a key an earlier run may have lost, hiding the loss.
absl::Status CheckNoKeysUnderPrefix(const std::string& path, const std::string& prefix) {
  absl::StatusOr<std::string> contents = ReadWholeFile(path);
  if (absl::IsNotFound(contents.status())) return absl::OkStatus();  // a new file
  if (!contents.ok()) return contents.status();
  const std::string under = absl::StrCat(prefix, "/");
  for (const std::string& key : ParseAckedKeys(*contents).keys) {
    if (absl::StartsWith(key, under)) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, " lists ", key, " already: give a new --prefix or --acked-file for this run"));
    }
  }
  return absl::OkStatus();
}

// The state shared by the writer threads of one run.
//
// Thread-safe.
class WriteRun {
 public:
  WriteRun(const WriteFlags& flags, Client* client, std::FILE* acked_file)
      : flags_(flags), client_(client), acked_file_(acked_file) {}

  // The body of writer thread `writer`: puts its keys in order until Stop().
  void RunWriter(int writer);
  // Writers start no new attempt from now on.
  void Stop();
  // Waits up to `timeout` for every writer to return from RunWriter; whether they did.
  bool WaitForWriters(absl::Duration timeout);
  // Why the run cannot go on (an error no retry can mend); OK while it can.
  absl::Status fatal();
  // The RESULT line; `duration` is the run's length.
  std::string Result(absl::Duration duration);
  int64_t acked();

 private:
  // Writes `key` until the cluster acknowledges it (true) or the run stops (false).
  bool PutUntilAcknowledged(const std::string& key, const std::string& value);
  void RecordAcknowledged(const std::string& key, absl::Duration latency);
  // Records the first fatal error and stops the run.
  void SetFatalLocked(absl::Status status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const WriteFlags& flags_;
  Client* const client_;
  const Logger logger_;
  std::atomic<bool> stopping_{false};

  Mutex mu_;
  CondVar changed_;  // signalled on Stop() and when a writer returns
  std::FILE* const acked_file_ ABSL_PT_GUARDED_BY(mu_);
  int writers_done_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Status fatal_ ABSL_GUARDED_BY(mu_);
  int64_t acked_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t failed_attempts_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t retried_keys_ ABSL_GUARDED_BY(mu_) = 0;
  LatencyHistogram latencies_ ABSL_GUARDED_BY(mu_);
};

void WriteRun::RunWriter(int writer) {
  // Bounded by Stop() and by kMaxSequence.
  for (int64_t sequence = 0; sequence <= kMaxSequence && !stopping_; ++sequence) {
    const std::string key = LoadKey(flags_.prefix, writer, sequence);
    if (!PutUntilAcknowledged(key, LoadValue(key, flags_.value_bytes))) break;
  }
  MutexLock lock(&mu_);
  ++writers_done_;
  changed_.SignalAll();
}

bool WriteRun::PutUntilAcknowledged(const std::string& key, const std::string& value) {
  const absl::Time first_attempt = absl::Now();
  // Bounded by Stop(): each Put returns within the request timeout.
  for (int attempt = 1;; ++attempt) {
    const absl::Status status = client_->Put(key, value, {.timeout = flags_.request_timeout});
    if (status.ok()) {
      RecordAcknowledged(key, absl::Now() - first_attempt);
      return true;
    }
    STEAD_LOG(logger_, Warning) << "put failed key=" << key << " attempt=" << attempt
                                << " status=" << status;
    {
      MutexLock lock(&mu_);
      ++failed_attempts_;
      if (attempt == 1) ++retried_keys_;
    }
    if (absl::IsInvalidArgument(status)) {
      // The same request would be refused again: retrying would only spin.
      MutexLock lock(&mu_);
      SetFatalLocked(absl::InvalidArgumentError(
          absl::StrCat("the cluster refuses ", key,
                       " as malformed (check --prefix and --value-bytes): ", status.message())));
      return false;
    }
    MutexLock lock(&mu_);
    if (stopping_) return false;
    changed_.WaitWithTimeout(&mu_, kRetryPause);
    if (stopping_) return false;
  }
}

void WriteRun::RecordAcknowledged(const std::string& key, absl::Duration latency) {
  MutexLock lock(&mu_);
  // One write per line under the lock, flushed: a reader after the run sees every
  // acknowledged key, and lines of different writers never interleave.
  if (std::fprintf(acked_file_, "%s\n", key.c_str()) < 0 || std::fflush(acked_file_) != 0) {
    SetFatalLocked(absl::InternalError(absl::StrCat(flags_.common.acked_file,
                                                    ": cannot record the acknowledged key ", key,
                                                    ": ", std::strerror(errno))));
    return;
  }
  ++acked_;
  latencies_.Record(latency);
}

void WriteRun::SetFatalLocked(absl::Status status) {
  if (fatal_.ok()) fatal_ = std::move(status);
  stopping_ = true;
  changed_.SignalAll();
}

void WriteRun::Stop() {
  MutexLock lock(&mu_);
  stopping_ = true;
  changed_.SignalAll();
}

bool WriteRun::WaitForWriters(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  MutexLock lock(&mu_);
  // Bounded by the deadline.
  while (writers_done_ < flags_.writers && absl::Now() < deadline) {
    changed_.WaitWithTimeout(&mu_, deadline - absl::Now());
  }
  return writers_done_ == flags_.writers;
}

absl::Status WriteRun::fatal() {
  MutexLock lock(&mu_);
  return fatal_;
}

int64_t WriteRun::acked() {
  MutexLock lock(&mu_);
  return acked_;
}

std::string WriteRun::Result(absl::Duration duration) {
  MutexLock lock(&mu_);
  return absl::StrFormat(
      "RESULT acked=%d failed_attempts=%d retried_keys=%d max_latency_ms=%.1f "
      "p99_latency_ms=%.1f duration_s=%.1f",
      acked_, failed_attempts_, retried_keys_, absl::ToDoubleMilliseconds(latencies_.max()),
      absl::ToDoubleMilliseconds(latencies_.Percentile(99)), absl::ToDoubleSeconds(duration));
}

// Waits until SIGINT or SIGTERM (blocked in every thread), `max_duration`, or a fatal
// error of the run.
void WaitForStopSignal(const sigset_t& stop_signals, absl::Duration max_duration, WriteRun& run) {
  const absl::Time until = absl::Now() + max_duration;
  // Bounded by max_duration.
  while (absl::Now() < until && run.fatal().ok()) {
    const timespec tick{0, 100'000'000};
    if (sigtimedwait(&stop_signals, nullptr, &tick) > 0) return;
  }
}

int Write(const Args& args) {
  absl::StatusOr<WriteFlags> flags = ParseWriteFlags(args);
  if (!flags.ok()) return Fail(kExitBadFlags, flags.status().message());
  if (absl::Status status = CheckNoKeysUnderPrefix(flags->common.acked_file, flags->prefix);
      !status.ok()) {
    return Fail(kExitBadFlags, status.message());
  }
  // Signals are taken by sigtimedwait, never by a handler; blocked before any thread
  // starts, so that every thread inherits the mask.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  absl::StatusOr<std::unique_ptr<Client>> client =
      CreateClient(flags->common, flags->request_timeout);
  if (!client.ok()) return Fail(kExitBadFlags, client.status().message());
  std::FILE* acked_file = std::fopen(flags->common.acked_file.c_str(), "a");
  if (acked_file == nullptr) {
    return Fail(kExitBadFlags, absl::StrCat(flags->common.acked_file, ": ", std::strerror(errno)));
  }

  WriteRun run(*flags, client->get(), acked_file);
  const absl::Time start = absl::Now();
  std::vector<std::thread> writers;
  for (int writer = 0; writer < flags->writers; ++writer) {
    writers.emplace_back([&run, writer] { run.RunWriter(writer); });
  }
  WaitForStopSignal(stop_signals, flags->max_duration, run);
  run.Stop();
  if (!run.WaitForWriters(flags->request_timeout + kStopMargin)) {
    // A Put outlived its deadline: report what is known and leave without joining.
    std::printf("%s\n", run.Result(absl::Now() - start).c_str());
    std::fflush(stdout);
    Note("writers still busy past their request timeout; giving up");
    std::fflush(stderr);
    std::_Exit(kExitFailed);  // the writer threads still use `run` and the client
  }
  const absl::Duration duration = absl::Now() - start;
  for (std::thread& writer : writers) writer.join();
  std::fclose(acked_file);
  std::printf("%s\n", run.Result(duration).c_str());
  std::fflush(stdout);
  if (absl::Status fatal = run.fatal(); !fatal.ok()) return Fail(kExitFailed, fatal.ToString());
  if (run.acked() == 0) return Fail(kExitFailed, "not a single write was acknowledged");
  return kExitOk;
}

// ---- verify ----

struct VerifyFlags {
  CommonFlags common;
  std::optional<std::string> prefix;
  absl::Duration timeout = absl::Seconds(30);
};

absl::StatusOr<VerifyFlags> ParseVerifyFlags(const Args& args) {
  VerifyFlags flags;
  STEAD_ASSIGN_OR_RETURN(flags.common, ParseCommonFlags(args));
  if (args.values.contains("prefix")) {
    STEAD_ASSIGN_OR_RETURN(flags.prefix, RequiredFlag(args, "prefix"));
  }
  STEAD_ASSIGN_OR_RETURN(flags.timeout, DurationFlag(args, "timeout", flags.timeout));
  return flags;
}

// What a scan found of one listed key.
enum class Found { kNotYet, kRight, kWrong };

// Reads every key under `scan_prefix` linearizably, one Range page after the other,
// and records in `listed` whether each listed key is there with its value. The first
// read error, with its code.
absl::Status ScanAndCompare(Client& client, const std::string& scan_prefix, absl::Duration timeout,
                            absl::flat_hash_map<absl::string_view, Found>& listed) {
  const std::string range_end = PrefixEnd(scan_prefix);
  std::string begin = scan_prefix;
  // Bounded: every page moves `begin` forward through a finite key range.
  while (true) {
    STEAD_ASSIGN_OR_RETURN(
        const RangeResult page,
        client.Range(begin, {.range_end = range_end, .limit = kPageKeys, .timeout = timeout}));
    for (const KeyValue& kv : page.kvs) {
      const auto it = listed.find(kv.key);
      if (it == listed.end()) continue;  // written, but not acknowledged in time
      it->second = IsLoadValue(kv.key, kv.value) ? Found::kRight : Found::kWrong;
    }
    if (!page.more) return absl::OkStatus();
    if (page.next_key <= begin) {
      return absl::InternalError(absl::StrCat("range read does not advance past ", begin));
    }
    begin = page.next_key;
  }
}

int ExitCodeOfReadError(const absl::Status& status) {
  if (absl::IsUnavailable(status) || absl::IsDeadlineExceeded(status)) return kExitUnavailable;
  if (absl::IsInvalidArgument(status)) return kExitBadFlags;
  return kExitFailed;
}

int Verify(const Args& args) {
  absl::StatusOr<VerifyFlags> flags = ParseVerifyFlags(args);
  if (!flags.ok()) return Fail(kExitBadFlags, flags.status().message());
  absl::StatusOr<std::string> contents = ReadWholeFile(flags->common.acked_file);
  if (!contents.ok()) return Fail(kExitBadFlags, contents.status().message());
  const AckedKeys acked = ParseAckedKeys(*contents);
  if (acked.unterminated_tail) {
    Note("the last line of the acked file has no newline (a record cut short): left out");
  }
  std::string scan_prefix = CommonPrefix(acked.keys);
  if (flags->prefix.has_value()) {
    scan_prefix = absl::StrCat(*flags->prefix, "/");
    for (const std::string& key : acked.keys) {
      if (!absl::StartsWith(key, scan_prefix)) {
        return Fail(kExitBadFlags, absl::StrCat(flags->common.acked_file, " lists ", key,
                                                ", which is not under --prefix ", scan_prefix));
      }
    }
  }
  if (acked.keys.empty()) Note("the acked file lists no key");

  absl::flat_hash_map<absl::string_view, Found> listed;
  for (const std::string& key : acked.keys) listed.emplace(key, Found::kNotYet);
  if (!acked.keys.empty()) {
    absl::StatusOr<std::unique_ptr<Client>> client = CreateClient(flags->common, flags->timeout);
    if (!client.ok()) return Fail(kExitBadFlags, client.status().message());
    if (absl::Status status = ScanAndCompare(**client, scan_prefix, flags->timeout, listed);
        !status.ok()) {
      return Fail(ExitCodeOfReadError(status), absl::StrCat("reading back: ", status.ToString()));
    }
  }

  int64_t missing = 0;
  int64_t wrong = 0;
  for (const std::string& key : acked.keys) {
    const Found found = listed.at(key);
    if (found == Found::kNotYet && ++missing <= kListedKeys) {
      std::fprintf(stderr, "missing %s\n", key.c_str());
    }
    if (found == Found::kWrong && ++wrong <= kListedKeys) {
      std::fprintf(stderr, "wrong value %s\n", key.c_str());
    }
  }
  std::printf("RESULT checked=%zu missing=%lld wrong=%lld\n", acked.keys.size(),
              static_cast<long long>(missing), static_cast<long long>(wrong));
  std::fflush(stdout);
  return missing == 0 && wrong == 0 ? kExitOk : kExitFailed;
}

int Main(int argc, char** argv) {
  const std::string command = argc >= 2 ? argv[1] : "";
  if (command == "--help" || command == "-h" || command == "help") {
    std::fputs(kMainHelp, stdout);
    return kExitOk;
  }
  const bool write = command == "write";
  if (!write && command != "verify") {
    std::fputs(kMainHelp, stderr);
    return Fail(kExitBadFlags, command.empty() ? "no command" : "unknown command " + command);
  }
  std::set<std::string> allowed = {"endpoints", "acked-file", "prefix", "route-to-leader",
                                   "cacert",    "cert",       "key"};
  if (write) {
    allowed.insert({"writers", "request-timeout", "value-bytes", "max-seconds"});
  } else {
    allowed.insert("timeout");
  }
  absl::StatusOr<Args> args = ParseArgs(argc, argv, allowed);
  if (!args.ok()) {
    return Fail(kExitBadFlags, absl::StrCat(args.status().message(), " (see stead-load-check ",
                                            command, " --help)"));
  }
  if (args->help) {
    std::fputs(write ? kWriteHelp : kVerifyHelp, stdout);
    std::fputs(kTlsHelp, stdout);
    return kExitOk;
  }
  return write ? Write(*args) : Verify(*args);
}

}  // namespace
}  // namespace stead::loadcheck

int main(int argc, char** argv) { return stead::loadcheck::Main(argc, argv); }
