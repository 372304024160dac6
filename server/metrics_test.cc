#include "server/metrics.h"

#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace stead::server {
namespace {

using ::testing::HasSubstr;

TEST(Metrics, RendersCountersAndGaugesInTheTextFormat) {
  MetricsRegistry registry;
  Counter* proposals = registry.AddCounter("stead_raft_proposals_total", "Proposals accepted.");
  Gauge* term = registry.AddGauge("stead_raft_term", "Current term.");
  proposals->Increment(41);
  proposals->Increment();
  term->Set(7);
  EXPECT_EQ(registry.Render(),
            "# HELP stead_raft_proposals_total Proposals accepted.\n"
            "# TYPE stead_raft_proposals_total counter\n"
            "stead_raft_proposals_total 42\n"
            "# HELP stead_raft_term Current term.\n"
            "# TYPE stead_raft_term gauge\n"
            "stead_raft_term 7\n");
}

TEST(Metrics, LabelledSeriesShareOneFamilyAndEscapeValues) {
  MetricsRegistry registry;
  registry.AddGauge("stead_peer_connected", "1 when connected.", {{"peer", "stead-1"}})->Set(1);
  registry.AddGauge("stead_peer_connected", "1 when connected.", {{"peer", "we\"ird\\\n"}});
  EXPECT_EQ(registry.Render(),
            "# HELP stead_peer_connected 1 when connected.\n"
            "# TYPE stead_peer_connected gauge\n"
            "stead_peer_connected{peer=\"stead-1\"} 1\n"
            "stead_peer_connected{peer=\"we\\\"ird\\\\\\n\"} 0\n");
}

TEST(Metrics, HistogramBucketsAreCumulativeWithSumAndCount) {
  MetricsRegistry registry;
  Histogram* latency = registry.AddHistogram("stead_wal_fsync_seconds", "fdatasync latency.",
                                             {0.001, 0.01, 0.1});
  for (double value : {0.0005, 0.001, 0.002, 0.05, 3.0}) latency->Observe(value);
  EXPECT_EQ(registry.Render(),
            "# HELP stead_wal_fsync_seconds fdatasync latency.\n"
            "# TYPE stead_wal_fsync_seconds histogram\n"
            "stead_wal_fsync_seconds_bucket{le=\"0.001\"} 2\n"
            "stead_wal_fsync_seconds_bucket{le=\"0.01\"} 3\n"
            "stead_wal_fsync_seconds_bucket{le=\"0.1\"} 4\n"
            "stead_wal_fsync_seconds_bucket{le=\"+Inf\"} 5\n"
            "stead_wal_fsync_seconds_sum 3.0535\n"
            "stead_wal_fsync_seconds_count 5\n");
}

TEST(Metrics, GaugeFunctionsAreReadAtRenderTime) {
  MetricsRegistry registry;
  double applied = 10;
  registry.AddGaugeFunction("stead_raft_applied_index", "Applied index.",
                            [&applied] { return applied; });
  applied = 812;
  EXPECT_THAT(registry.Render(), HasSubstr("stead_raft_applied_index 812\n"));
}

TEST(Metrics, ConcurrentUpdatesAreNotLost) {
  MetricsRegistry registry;
  Counter* counter = registry.AddCounter("stead_test_total", "Test.");
  Histogram* histogram = registry.AddHistogram("stead_test_seconds", "Test.", {1});
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 10000; ++i) {
        counter->Increment();
        histogram->Observe(0.5);
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(counter->value(), 40000u);
  const Histogram::Snapshot snapshot = histogram->Read();
  EXPECT_EQ(snapshot.count, 40000u);
  EXPECT_DOUBLE_EQ(snapshot.sum, 20000.0);
}

TEST(MetricsDeathTest, RejectsInvalidNamesAndDuplicates) {
  MetricsRegistry registry;
  EXPECT_DEATH(registry.AddCounter("9lives", "bad"), "metric name '9lives'");
  registry.AddCounter("stead_x_total", "x");
  EXPECT_DEATH(registry.AddCounter("stead_x_total", "x"), "registered twice");
  EXPECT_DEATH(registry.AddGauge("stead_x_total", "x"), "two types");
}

}  // namespace
}  // namespace stead::server
