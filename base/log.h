// Leveled logging: one line per event, with key=value context.
//
// A Logger is a cheap value: a context string plus a handle on state shared with the
// loggers derived from it (the sink and the run-time level). Every stead::Node owns
// its own Logger, so several nodes in one process log with their own context and
// level; nothing here is global.
//
//   Logger logger = Logger().WithContext("node", "stead-0");
//   STEAD_LOG(logger, Info) << "became leader term=" << term;
//   // 2026-11-22T01:23:45.123456Z I node=stead-0 raft.cc:120] became leader term=5
//
// Thread-safe: a Logger and its copies may be used from any thread; a sink receives
// whole records and must serialise its own output.
#ifndef STEAD_BASE_LOG_H_
#define STEAD_BASE_LOG_H_

#include <atomic>
#include <cstdio>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include "absl/strings/string_view.h"
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "base/mutex.h"

namespace stead {

enum class LogLevel : int { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

// "debug", "info", "warning", "error".
inline absl::string_view LogLevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug: return "debug";
    case LogLevel::kInfo: return "info";
    case LogLevel::kWarning: return "warning";
    case LogLevel::kError: return "error";
  }
  return "unknown";
}

// Parses a level name as printed by LogLevelName (case-insensitive; "warn" is accepted).
// Returns InvalidArgument naming the accepted values otherwise.
inline absl::StatusOr<LogLevel> ParseLogLevel(absl::string_view text) {
  const std::string lower = absl::AsciiStrToLower(text);
  if (lower == "debug") return LogLevel::kDebug;
  if (lower == "info") return LogLevel::kInfo;
  if (lower == "warning" || lower == "warn") return LogLevel::kWarning;
  if (lower == "error") return LogLevel::kError;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown log level '", text, "': use debug, info, warning or error"));
}

// One event, as handed to a sink.
struct LogRecord {
  LogLevel level = LogLevel::kInfo;
  absl::Time time;
  absl::string_view file;     // base name of the source file
  int line = 0;
  absl::string_view context;  // "key=value key=value", may be empty
  absl::string_view message;
};

// Receives records. Implementations must be thread-safe.
class LogSink {
 public:
  virtual ~LogSink() = default;
  virtual void Write(const LogRecord& record) = 0;
};

// "<time> <L> <context> <file>:<line>] <message>" without a trailing newline. The
// time is omitted when `with_time` is false (deterministic output for simulations).
inline std::string FormatLogRecord(const LogRecord& record, bool with_time = true) {
  std::string out;
  if (with_time) {
    absl::StrAppend(&out, absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ", record.time,
                                           absl::UTCTimeZone()),
                    " ");
  }
  const char level_letter = static_cast<char>(
      absl::ascii_toupper(static_cast<unsigned char>(LogLevelName(record.level)[0])));
  out.push_back(level_letter);
  out.push_back(' ');
  if (!record.context.empty()) absl::StrAppend(&out, record.context, " ");
  absl::StrAppend(&out, record.file, ":", record.line, "] ", record.message);
  return out;
}

// Writes each record as one line to stderr (or another stdio stream).
class StdioLogSink final : public LogSink {
 public:
  explicit StdioLogSink(std::FILE* stream = stderr) : stream_(stream) {}
  void Write(const LogRecord& record) override {
    std::string line = FormatLogRecord(record);
    line.push_back('\n');
    // One fwrite per line under a lock: lines from different threads never interleave.
    std::lock_guard<std::mutex> lock(mu_);
    std::fwrite(line.data(), 1, line.size(), stream_);
    std::fflush(stream_);
  }

 private:
  std::mutex mu_;
  std::FILE* const stream_;
};

class Logger {
 public:
  // Logs to stderr at `level`.
  explicit Logger(LogLevel level = LogLevel::kInfo)
      : Logger(std::make_shared<StdioLogSink>(), level) {}
  Logger(std::shared_ptr<LogSink> sink, LogLevel level)
      : shared_(std::make_shared<Shared>(std::move(sink), level)) {}

  // A logger that shares this one's sink and level and adds "key=value" to its context.
  template <typename T>
  Logger WithContext(absl::string_view key, const T& value) const {
    Logger child = *this;
    absl::StrAppend(&child.context_, child.context_.empty() ? "" : " ", key, "=", value);
    return child;
  }

  // Changes the level of this logger and of every logger sharing its state.
  void SetLevel(LogLevel level) const { shared_->level.store(level, std::memory_order_relaxed); }
  LogLevel level() const { return shared_->level.load(std::memory_order_relaxed); }
  bool Enabled(LogLevel level) const { return level >= this->level(); }
  const std::string& context() const { return context_; }

  void Write(LogLevel level, absl::string_view file, int line, absl::string_view message) const {
    if (!Enabled(level)) return;
    const size_t slash = file.find_last_of('/');
    if (slash != absl::string_view::npos) file.remove_prefix(slash + 1);
    shared_->sink->Write(LogRecord{level, absl::Now(), file, line, context_, message});
  }

 private:
  struct Shared {
    Shared(std::shared_ptr<LogSink> sink_in, LogLevel level_in)
        : sink(std::move(sink_in)), level(level_in) {}
    const std::shared_ptr<LogSink> sink;
    std::atomic<LogLevel> level;
  };

  std::shared_ptr<Shared> shared_;
  std::string context_;
};

// Lets one event through per interval and counts those held back in between, so a
// flood of one kind of event (refused connections) is a line per interval, not a line
// per event:
//
//   uint64_t held_back = 0;
//   if (throttle.Allow(absl::Now(), &held_back)) {
//     STEAD_LOG(logger, Warning) << "refused a connection (" << held_back << " more since)";
//   }
//
// Thread-safe.
class LogThrottle {
 public:
  explicit LogThrottle(absl::Duration interval) : interval_(interval) {}

  // True for the first event and for the first one at least `interval` after the last
  // one let through; `*held_back` then gets how many were refused in between.
  bool Allow(absl::Time now, uint64_t* held_back) {
    MutexLock lock(&mu_);
    if (now - last_allowed_ < interval_) {
      ++held_back_;
      return false;
    }
    last_allowed_ = now;
    *held_back = std::exchange(held_back_, 0);
    return true;
  }

 private:
  const absl::Duration interval_;
  Mutex mu_;
  absl::Time last_allowed_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  uint64_t held_back_ ABSL_GUARDED_BY(mu_) = 0;
};

namespace internal {

// Accumulates one message and hands it to the logger when destroyed.
class LogMessage {
 public:
  LogMessage(const Logger& logger, LogLevel level, const char* file, int line)
      : logger_(logger), level_(level), file_(file), line_(line) {}
  LogMessage(const LogMessage&) = delete;
  LogMessage& operator=(const LogMessage&) = delete;
  ~LogMessage() { logger_.Write(level_, file_, line_, stream_.str()); }
  std::ostream& stream() { return stream_; }

 private:
  const Logger& logger_;
  const LogLevel level_;
  const char* const file_;
  const int line_;
  std::ostringstream stream_;
};

}  // namespace internal
}  // namespace stead

// STEAD_LOG(logger, Info) << ...; level is one of Debug, Info, Warning, Error. The
// message is not built when the level is disabled.
#define STEAD_LOG(logger, level)                                                       \
  for (bool stead_log_enabled_ = (logger).Enabled(::stead::LogLevel::k##level);        \
       stead_log_enabled_; stead_log_enabled_ = false)                                 \
  ::stead::internal::LogMessage((logger), ::stead::LogLevel::k##level, __FILE__, __LINE__) \
      .stream()

#endif  // STEAD_BASE_LOG_H_
