// Metrics in the Prometheus text exposition format (version 0.0.4), served at /metrics.
//
// A MetricsRegistry belongs to one Node (several Nodes in one process keep separate
// registries). Metrics are registered once, at start, and updated lock-free from any
// thread; rendering takes a consistent-enough view (each value is read atomically).
//
//   MetricsRegistry registry;
//   Counter* proposals = registry.AddCounter("stead_raft_proposals_total", "Proposals.");
//   Histogram* fsync = registry.AddHistogram("stead_wal_fsync_seconds", "WAL fdatasync.",
//                                            Histogram::LatencyBuckets());
//   proposals->Increment();
//   fsync->Observe(0.0021);
//   std::string page = registry.Render();
#ifndef STEAD_SERVER_METRICS_H_
#define STEAD_SERVER_METRICS_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "base/mutex.h"

namespace stead::server {

// Label name/value pairs of one series, e.g. {{"peer", "stead-1"}}.
using MetricLabels = std::vector<std::pair<std::string, std::string>>;

// Only increases. Thread-safe.
class Counter {
 public:
  void Increment(uint64_t delta = 1) { value_.fetch_add(delta, std::memory_order_relaxed); }
  uint64_t value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> value_{0};
};

// Goes up and down. Thread-safe.
class Gauge {
 public:
  void Set(double value) { value_.store(value, std::memory_order_relaxed); }
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

// Counts observations into fixed buckets (upper bounds, ascending). Thread-safe.
class Histogram {
 public:
  explicit Histogram(std::vector<double> upper_bounds);

  void Observe(double value);

  // 100 µs .. ~10 s, doubling: for fsync, apply and request latencies in seconds.
  static std::vector<double> LatencyBuckets();

  struct Snapshot {
    std::vector<double> upper_bounds;
    std::vector<uint64_t> cumulative_counts;  // per bound, then +Inf last
    double sum = 0;
    uint64_t count = 0;
  };
  Snapshot Read() const;

 private:
  const std::vector<double> upper_bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> bucket_counts_;  // size upper_bounds_ + 1
  std::atomic<double> sum_{0};
};

class MetricsRegistry {
 public:
  // Registration. `name` must be a valid Prometheus metric name and, for a name used
  // more than once, of the same type with distinct labels (STEAD_CHECKed: these are
  // constants in our code). The registry owns the metric; the pointer stays valid for
  // the registry's life. Thread-safe.
  Counter* AddCounter(const std::string& name, const std::string& help, MetricLabels labels = {});
  Gauge* AddGauge(const std::string& name, const std::string& help, MetricLabels labels = {});
  Histogram* AddHistogram(const std::string& name, const std::string& help,
                          std::vector<double> upper_bounds, MetricLabels labels = {});
  // A gauge computed at render time (e.g. the Raft term read from the raft strand's
  // published status). `read` must be thread-safe and quick.
  void AddGaugeFunction(const std::string& name, const std::string& help,
                        std::function<double()> read, MetricLabels labels = {});

  // The whole page, families sorted by name, series in registration order.
  std::string Render() const;

 private:
  enum class Type { kCounter, kGauge, kHistogram };
  struct Series {
    MetricLabels labels;
    std::unique_ptr<Counter> counter;
    std::unique_ptr<Gauge> gauge;
    std::unique_ptr<Histogram> histogram;
    std::function<double()> read;
  };
  struct Family {
    Type type;
    std::string help;
    std::vector<Series> series;
  };

  Series& AddSeries(const std::string& name, const std::string& help, Type type,
                    MetricLabels labels) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable Mutex mu_;
  std::map<std::string, Family> families_ ABSL_GUARDED_BY(mu_);
};

}  // namespace stead::server

#endif  // STEAD_SERVER_METRICS_H_
