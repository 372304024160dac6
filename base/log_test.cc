#include "base/log.h"

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/log_capture.h"
#include "tests/testing/status_matchers.h"

namespace stead {
namespace {

using ::stead::testing::CapturingLogSink;
using ::stead::testing::StatusIs;
using ::testing::ElementsAre;


TEST(Logger, WritesOneLineWithContextFileAndMessage) {
  auto sink = std::make_shared<CapturingLogSink>();
  Logger logger = Logger(sink, LogLevel::kInfo).WithContext("node", "stead-0").WithContext("id", 7);
  const int line = __LINE__ + 1;
  STEAD_LOG(logger, Info) << "became leader term=" << 5;
  EXPECT_THAT(sink->lines(), ElementsAre("I node=stead-0 id=7 log_test.cc:" +
                                         std::to_string(line) + "] became leader term=5"));
}

TEST(Logger, LevelIsSharedWithDerivedLoggersAndSkipsDisabledMessages) {
  auto sink = std::make_shared<CapturingLogSink>();
  Logger root(sink, LogLevel::kWarning);
  Logger child = root.WithContext("node", "stead-1");
  int built = 0;
  auto build = [&built] { return ++built; };
  STEAD_LOG(child, Info) << "hidden " << build();
  EXPECT_EQ(built, 0) << "a disabled message must not be built";
  root.SetLevel(LogLevel::kDebug);
  STEAD_LOG(child, Debug) << "shown " << build();
  STEAD_LOG(child, Error) << "error";
  ASSERT_EQ(sink->lines().size(), 2u);
  EXPECT_THAT(sink->lines()[0], ::testing::StartsWith("D node=stead-1"));
  EXPECT_THAT(sink->lines()[1], ::testing::StartsWith("E node=stead-1"));
}

TEST(Logger, TwoNodesInOneProcessKeepTheirOwnLevels) {
  auto sink = std::make_shared<CapturingLogSink>();
  Logger node_a = Logger(sink, LogLevel::kInfo).WithContext("node", "a");
  Logger node_b = Logger(sink, LogLevel::kError).WithContext("node", "b");
  STEAD_LOG(node_a, Info) << "a";
  STEAD_LOG(node_b, Info) << "b";
  ASSERT_EQ(sink->lines().size(), 1u);
  EXPECT_THAT(sink->lines()[0], ::testing::HasSubstr("node=a"));
}

TEST(Logger, ConcurrentWritersProduceWholeLines) {
  auto sink = std::make_shared<CapturingLogSink>();
  Logger logger(sink, LogLevel::kInfo);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&logger, t] {
      for (int i = 0; i < 100; ++i) STEAD_LOG(logger, Info) << "thread=" << t << " i=" << i;
    });
  }
  for (auto& thread : threads) thread.join();
  const std::vector<std::string> lines = sink->lines();
  ASSERT_EQ(lines.size(), 400u);
  for (const std::string& line : lines) EXPECT_THAT(line, ::testing::MatchesRegex(".*thread=[0-3] i=[0-9]+"));
}

TEST(LogThrottle, LetsOneEventThroughPerIntervalAndCountsTheRest) {
  LogThrottle throttle(absl::Seconds(10));
  const absl::Time start = absl::FromUnixSeconds(1000);
  uint64_t held_back = 99;
  EXPECT_TRUE(throttle.Allow(start, &held_back));
  EXPECT_EQ(held_back, 0u);
  for (int i = 1; i <= 5; ++i) {
    EXPECT_FALSE(throttle.Allow(start + absl::Seconds(i), &held_back)) << i;
  }
  EXPECT_FALSE(throttle.Allow(start + absl::Seconds(10) - absl::Nanoseconds(1), &held_back));
  EXPECT_TRUE(throttle.Allow(start + absl::Seconds(10), &held_back));
  EXPECT_EQ(held_back, 6u);
  EXPECT_FALSE(throttle.Allow(start + absl::Seconds(11), &held_back));
  EXPECT_TRUE(throttle.Allow(start + absl::Seconds(60), &held_back));
  EXPECT_EQ(held_back, 1u);
  EXPECT_TRUE(throttle.Allow(start + absl::Seconds(70), &held_back));
  EXPECT_EQ(held_back, 0u);
}

TEST(ParseLogLevel, AcceptsKnownNamesAndRejectsOthers) {
  const struct {
    const char* name;
    const char* input;
    LogLevel want;
  } cases[] = {
      {"lower", "debug", LogLevel::kDebug},
      {"upper", "INFO", LogLevel::kInfo},
      {"short warning", "warn", LogLevel::kWarning},
      {"error", "error", LogLevel::kError},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    ASSERT_OK_AND_ASSIGN(LogLevel level, ParseLogLevel(c.input));
    EXPECT_EQ(level, c.want);
  }
  EXPECT_THAT(ParseLogLevel("verbose"),
              StatusIs(absl::StatusCode::kInvalidArgument, "use debug, info, warning or error"));
}

}  // namespace
}  // namespace stead
