#include "tests/k8s/load_check_lib.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace stead::loadcheck {
namespace {

using ::testing::ElementsAre;

TEST(LoadKey, ZeroPadsTheSequenceSoKeysSortInWriteOrder) {
  EXPECT_EQ(LoadKey("run1", 3, 42), "run1/3/0000000042");
  EXPECT_EQ(LoadKey("a/b", 0, kMaxSequence), "a/b/0/9999999999");
  EXPECT_LT(LoadKey("p", 1, 9), LoadKey("p", 1, 10));
}

TEST(LoadValue, HasTheRequestedSizeButAlwaysHoldsTheKey) {
  const std::string key = "k/0/00001";  // 9 bytes: a value is at least 19
  const struct {
    const char* name;
    size_t value_bytes;
    size_t want_size;
  } cases[] = {
      {"padded", 64, 64},
      {"exactly key and header", 19, 19},
      {"smaller than the key", 3, 19},
      {"zero", 0, 19},
      {"large", 4096, 4096},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string value = LoadValue(key, c.value_bytes);
    EXPECT_EQ(value.size(), c.want_size);
    EXPECT_EQ(value.substr(0, key.size() + 10), absl::StrFormat("%s:%08d:", key, c.want_size));
    EXPECT_TRUE(IsLoadValue(key, value));
  }
}

TEST(IsLoadValue, RefusesValuesCutShortCorruptOrOfAnotherKey) {
  const std::string key = LoadKey("p", 2, 7);
  const std::string value = LoadValue(key, 64);
  std::string corrupt = value;
  corrupt[40] = corrupt[40] == 'a' ? 'b' : 'a';
  const struct {
    const char* name;
    std::string value;
  } cases[] = {
      {"empty", ""},
      {"key only", key},
      {"cut short", value.substr(0, 63)},
      {"size field changed", absl::StrCat(key, ":00000065:", value.substr(key.size() + 10))},
      {"size field not a number", absl::StrCat(key, ":0000006x:", value.substr(key.size() + 10))},
      {"one byte changed", corrupt},
      {"another key's value", LoadValue(LoadKey("p", 2, 8), 64)},
      {"another key's filler behind this key",
       key + LoadValue(LoadKey("p", 2, 8), 64).substr(key.size())},
      {"extended", value + "x"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_FALSE(IsLoadValue(key, c.value));
  }
  EXPECT_TRUE(IsLoadValue(key, value));
}

TEST(ParseAckedKeys, KeepsEachKeyOnceInOrderAndDropsAnUnterminatedTail) {
  const AckedKeys acked = ParseAckedKeys("p/0/1\np/1/1\n\np/0/1\np/0/2\np/1/");
  EXPECT_THAT(acked.keys, ElementsAre("p/0/1", "p/1/1", "p/0/2"));
  EXPECT_EQ(acked.repeated_lines, 1);
  EXPECT_TRUE(acked.unterminated_tail);

  const AckedKeys whole = ParseAckedKeys("p/0/1\n");
  EXPECT_THAT(whole.keys, ElementsAre("p/0/1"));
  EXPECT_FALSE(whole.unterminated_tail);
  EXPECT_TRUE(ParseAckedKeys("").keys.empty());
}

TEST(CommonPrefix, IsTheLongestPrefixAllKeysShare) {
  const struct {
    const char* name;
    std::vector<std::string> keys;
    std::string want;
  } cases[] = {
      {"none", {}, ""},
      {"one", {"p/0/1"}, "p/0/1"},
      {"writers", {"p/0/0000000001", "p/1/0000000001", "p/0/0000000002"}, "p/"},
      {"one key a prefix of another", {"p/0/1", "p/0/12"}, "p/0/1"},
      {"nothing shared", {"a", "b"}, ""},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_EQ(CommonPrefix(c.keys), c.want);
  }
}

TEST(LatencyHistogram, PercentileIsTheBucketBoundCappedByTheMaximum) {
  LatencyHistogram histogram;
  EXPECT_EQ(histogram.Percentile(99), absl::ZeroDuration());
  // 99 latencies of 1.05 ms and one of 250 ms.
  for (int i = 0; i < 99; ++i) histogram.Record(absl::Microseconds(1050));
  histogram.Record(absl::Milliseconds(250));
  EXPECT_EQ(histogram.count(), 100);
  EXPECT_EQ(histogram.max(), absl::Milliseconds(250));
  EXPECT_EQ(histogram.Percentile(50), absl::Microseconds(1100));
  EXPECT_EQ(histogram.Percentile(99), absl::Microseconds(1100));
  EXPECT_EQ(histogram.Percentile(100), absl::Milliseconds(250));
}

TEST(LatencyHistogram, LatenciesBeyondTheRangeReportTheExactMaximum) {
  LatencyHistogram histogram;
  histogram.Record(absl::Minutes(2));
  histogram.Record(absl::Seconds(-1));  // counted as zero
  EXPECT_EQ(histogram.Percentile(100), absl::Minutes(2));
  EXPECT_EQ(histogram.Percentile(50), LatencyHistogram::kBucketWidth);
}

}  // namespace
}  // namespace stead::loadcheck
