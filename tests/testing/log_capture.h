// A log sink that keeps every line, for tests that assert what was logged.
//
//   auto sink = std::make_shared<CapturingLogSink>();
//   Logger logger(sink, LogLevel::kInfo);
//   ...
//   EXPECT_THAT(sink->lines(), ElementsAre(HasSubstr("reloaded")));
#ifndef STEAD_TESTS_TESTING_LOG_CAPTURE_H_
#define STEAD_TESTS_TESTING_LOG_CAPTURE_H_

#include <string>
#include <vector>

#include "base/log.h"
#include "base/mutex.h"

namespace stead::testing {

// Thread-safe. Lines are formatted without the time ("W file.cc:12] message").
class CapturingLogSink final : public LogSink {
 public:
  void Write(const LogRecord& record) override {
    MutexLock lock(&mu_);
    lines_.push_back(FormatLogRecord(record, /*with_time=*/false));
  }
  std::vector<std::string> lines() {
    MutexLock lock(&mu_);
    return lines_;
  }

 private:
  Mutex mu_;
  std::vector<std::string> lines_ ABSL_GUARDED_BY(mu_);
};

}  // namespace stead::testing

#endif  // STEAD_TESTS_TESTING_LOG_CAPTURE_H_
