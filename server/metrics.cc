#include "server/metrics.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/check.h"

namespace stead::server {
namespace {

bool IsValidName(const std::string& name, bool allow_colon) {
  if (name.empty()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                        (allow_colon && c == ':');
    const bool digit = c >= '0' && c <= '9';
    if (!letter && !(digit && i > 0)) return false;
  }
  return true;
}

// Label values may hold anything; the format escapes backslash, quote and newline.
std::string EscapeLabelValue(const std::string& value) {
  std::string out;
  for (const char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out.push_back(c);
    }
  }
  return out;
}

// HELP text escapes only backslash and newline.
std::string EscapeHelp(const std::string& help) {
  std::string out;
  for (const char c : help) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out.push_back(c);
    }
  }
  return out;
}

std::string FormatValue(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  if (value == std::floor(value) && std::fabs(value) < 1e15) {
    return absl::StrFormat("%.0f", value);
  }
  // The shortest of %.15g and %.17g that reads back as the same double: "0.1", not
  // "0.10000000000000001".
  const std::string shorter = absl::StrFormat("%.15g", value);
  if (std::strtod(shorter.c_str(), nullptr) == value) return shorter;
  return absl::StrFormat("%.17g", value);
}

// {a="1",b="2"} with an optional extra label (le for histogram buckets); empty if none.
std::string FormatLabels(const MetricLabels& labels, const std::string& extra_name = "",
                         const std::string& extra_value = "") {
  if (labels.empty() && extra_name.empty()) return "";
  std::string out = "{";
  for (const auto& [name, value] : labels) {
    absl::StrAppend(&out, out.size() > 1 ? "," : "", name, "=\"", EscapeLabelValue(value), "\"");
  }
  if (!extra_name.empty()) {
    absl::StrAppend(&out, out.size() > 1 ? "," : "", extra_name, "=\"", extra_value, "\"");
  }
  out += "}";
  return out;
}

}  // namespace

Histogram::Histogram(std::vector<double> upper_bounds)
    : upper_bounds_(std::move(upper_bounds)),
      bucket_counts_(new std::atomic<uint64_t>[upper_bounds_.size() + 1]) {
  STEAD_CHECK(std::is_sorted(upper_bounds_.begin(), upper_bounds_.end()));
  for (size_t i = 0; i <= upper_bounds_.size(); ++i) bucket_counts_[i] = 0;
}

void Histogram::Observe(double value) {
  const size_t bucket = static_cast<size_t>(
      std::lower_bound(upper_bounds_.begin(), upper_bounds_.end(), value) - upper_bounds_.begin());
  bucket_counts_[bucket].fetch_add(1, std::memory_order_relaxed);
  double sum = sum_.load(std::memory_order_relaxed);
  while (!sum_.compare_exchange_weak(sum, sum + value, std::memory_order_relaxed)) {
  }
}

std::vector<double> Histogram::LatencyBuckets() {
  std::vector<double> bounds;
  for (double bound = 0.0001; bound < 12; bound *= 2) bounds.push_back(bound);
  return bounds;
}

Histogram::Snapshot Histogram::Read() const {
  Snapshot snapshot;
  snapshot.upper_bounds = upper_bounds_;
  uint64_t running = 0;
  for (size_t i = 0; i <= upper_bounds_.size(); ++i) {
    running += bucket_counts_[i].load(std::memory_order_relaxed);
    snapshot.cumulative_counts.push_back(running);
  }
  snapshot.count = running;
  snapshot.sum = sum_.load(std::memory_order_relaxed);
  return snapshot;
}

MetricsRegistry::Series& MetricsRegistry::AddSeries(const std::string& name,
                                                    const std::string& help, Type type,
                                                    MetricLabels labels) {
  STEAD_CHECK(IsValidName(name, /*allow_colon=*/true)) << "metric name '" << name << "'";
  for (const auto& [label, value] : labels) {
    STEAD_CHECK(IsValidName(label, /*allow_colon=*/false)) << "label '" << label << "'";
    STEAD_CHECK(label != "le") << "'le' is reserved for histogram buckets";
  }
  auto [it, inserted] = families_.try_emplace(name, Family{type, help, {}});
  Family& family = it->second;
  STEAD_CHECK(family.type == type) << "metric " << name << " registered with two types";
  for (const Series& series : family.series) {
    STEAD_CHECK(series.labels != labels) << "metric " << name << " registered twice";
  }
  family.series.push_back(Series{std::move(labels), nullptr, nullptr, nullptr, nullptr});
  return family.series.back();
}

Counter* MetricsRegistry::AddCounter(const std::string& name, const std::string& help,
                                     MetricLabels labels) {
  MutexLock lock(&mu_);
  Series& series = AddSeries(name, help, Type::kCounter, std::move(labels));
  series.counter = std::make_unique<Counter>();
  return series.counter.get();
}

Gauge* MetricsRegistry::AddGauge(const std::string& name, const std::string& help,
                                 MetricLabels labels) {
  MutexLock lock(&mu_);
  Series& series = AddSeries(name, help, Type::kGauge, std::move(labels));
  series.gauge = std::make_unique<Gauge>();
  return series.gauge.get();
}

Histogram* MetricsRegistry::AddHistogram(const std::string& name, const std::string& help,
                                         std::vector<double> upper_bounds, MetricLabels labels) {
  MutexLock lock(&mu_);
  Series& series = AddSeries(name, help, Type::kHistogram, std::move(labels));
  series.histogram = std::make_unique<Histogram>(std::move(upper_bounds));
  return series.histogram.get();
}

void MetricsRegistry::AddGaugeFunction(const std::string& name, const std::string& help,
                                       std::function<double()> read, MetricLabels labels) {
  MutexLock lock(&mu_);
  Series& series = AddSeries(name, help, Type::kGauge, std::move(labels));
  series.read = std::move(read);
}

std::string MetricsRegistry::Render() const {
  MutexLock lock(&mu_);
  std::string out;
  for (const auto& [name, family] : families_) {
    const char* type = family.type == Type::kCounter ? "counter"
                       : family.type == Type::kGauge ? "gauge"
                                                     : "histogram";
    absl::StrAppend(&out, "# HELP ", name, " ", EscapeHelp(family.help), "\n");
    absl::StrAppend(&out, "# TYPE ", name, " ", type, "\n");
    for (const Series& series : family.series) {
      if (series.counter != nullptr) {
        absl::StrAppend(&out, name, FormatLabels(series.labels), " ", series.counter->value(),
                        "\n");
      } else if (series.gauge != nullptr || series.read) {
        const double value = series.read ? series.read() : series.gauge->value();
        absl::StrAppend(&out, name, FormatLabels(series.labels), " ", FormatValue(value), "\n");
      } else {
        const Histogram::Snapshot snapshot = series.histogram->Read();
        for (size_t i = 0; i < snapshot.upper_bounds.size(); ++i) {
          absl::StrAppend(&out, name, "_bucket",
                          FormatLabels(series.labels, "le", FormatValue(snapshot.upper_bounds[i])),
                          " ", snapshot.cumulative_counts[i], "\n");
        }
        absl::StrAppend(&out, name, "_bucket", FormatLabels(series.labels, "le", "+Inf"), " ",
                        snapshot.count, "\n");
        absl::StrAppend(&out, name, "_sum", FormatLabels(series.labels), " ",
                        FormatValue(snapshot.sum), "\n");
        absl::StrAppend(&out, name, "_count", FormatLabels(series.labels), " ", snapshot.count,
                        "\n");
      }
    }
  }
  return out;
}

}  // namespace stead::server
