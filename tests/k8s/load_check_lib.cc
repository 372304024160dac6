#include "tests/k8s/load_check_lib.h"

#include <algorithm>
#include <cmath>

#include "absl/algorithm/container.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/check.h"

namespace stead::loadcheck {
namespace {

// The size field of a value: fixed width, enough for any value the server takes.
constexpr int kSizeDigits = 8;
static_assert(kMaxValueBytes < 100'000'000);
// What a value holds besides its key: ':', the size field, ':'.
constexpr size_t kValueHeaderBytes = 1 + kSizeDigits + 1;

constexpr absl::string_view kFillerAlphabet = "abcdefghijklmnopqrstuvwxyz0123456789";

// Where the filler of `key` starts in kFillerAlphabet: FNV-1a 64 of the key, so that
// keys differing in one character get differently shifted fillers.
size_t FillerStart(absl::string_view key) {
  uint64_t hash = 14695981039346656037ULL;
  for (const char c : key) {
    hash ^= static_cast<unsigned char>(c);
    hash *= 1099511628211ULL;
  }
  return static_cast<size_t>(hash % kFillerAlphabet.size());
}

char FillerChar(size_t start, size_t position) {
  return kFillerAlphabet[(start + position) % kFillerAlphabet.size()];
}

}  // namespace

std::string LoadKey(absl::string_view prefix, int writer, int64_t sequence) {
  STEAD_CHECK(sequence >= 0) << sequence;
  STEAD_CHECK(sequence <= kMaxSequence) << sequence;
  return absl::StrFormat("%s/%d/%0*d", prefix, writer, kSequenceDigits, sequence);
}

std::string LoadValue(absl::string_view key, size_t value_bytes) {
  const size_t size = std::max(value_bytes, key.size() + kValueHeaderBytes);
  STEAD_CHECK(size <= kMaxValueBytes) << size;
  std::string value = absl::StrFormat("%s:%0*d:", key, kSizeDigits, size);
  const size_t start = FillerStart(key);
  for (size_t position = 0; value.size() < size; ++position) {
    value.push_back(FillerChar(start, position));
  }
  STEAD_CHECK(value.size() == size) << value.size() << " != " << size;
  return value;
}

bool IsLoadValue(absl::string_view key, absl::string_view value) {
  const size_t header_bytes = key.size() + kValueHeaderBytes;
  if (value.size() < header_bytes) return false;
  if (value.substr(0, key.size()) != key || value[key.size()] != ':') return false;
  if (value[header_bytes - 1] != ':') return false;
  size_t size = 0;
  const absl::string_view digits = value.substr(key.size() + 1, kSizeDigits);
  if (!absl::c_all_of(digits, absl::ascii_isdigit) || !absl::SimpleAtoi(digits, &size) ||
      size != value.size()) {
    return false;
  }
  const absl::string_view filler = value.substr(header_bytes);
  const size_t start = FillerStart(key);
  for (size_t position = 0; position < filler.size(); ++position) {
    if (filler[position] != FillerChar(start, position)) return false;
  }
  return true;
}

AckedKeys ParseAckedKeys(absl::string_view text) {
  AckedKeys acked;
  absl::flat_hash_set<absl::string_view> seen;
  // Bounded by the text: each pass consumes one line.
  while (!text.empty()) {
    const size_t end = text.find('\n');
    if (end == absl::string_view::npos) {
      acked.unterminated_tail = true;
      break;
    }
    const absl::string_view line = text.substr(0, end);
    text.remove_prefix(end + 1);
    if (line.empty()) continue;
    if (!seen.insert(line).second) {
      ++acked.repeated_lines;
      continue;
    }
    acked.keys.emplace_back(line);
  }
  return acked;
}

std::string CommonPrefix(const std::vector<std::string>& keys) {
  if (keys.empty()) return "";
  absl::string_view prefix = keys.front();
  for (const std::string& key : keys) {
    const auto [mismatch, unused] =
        std::mismatch(prefix.begin(), prefix.end(), key.begin(), key.end());
    prefix = prefix.substr(0, static_cast<size_t>(mismatch - prefix.begin()));
  }
  return std::string(prefix);
}

LatencyHistogram::LatencyHistogram() : counts_(static_cast<size_t>(kRange / kBucketWidth) + 1, 0) {}

void LatencyHistogram::Record(absl::Duration latency) {
  latency = std::max(latency, absl::ZeroDuration());
  const size_t bucket = std::min(static_cast<size_t>(latency / kBucketWidth), counts_.size() - 1);
  ++counts_[bucket];
  ++count_;
  max_ = std::max(max_, latency);
}

absl::Duration LatencyHistogram::Percentile(double p) const {
  STEAD_CHECK(p > 0) << p;
  STEAD_CHECK(p <= 100) << p;
  if (count_ == 0) return absl::ZeroDuration();
  const auto rank = std::clamp<int64_t>(
      static_cast<int64_t>(std::ceil(p / 100.0 * static_cast<double>(count_))), 1, count_);
  int64_t below = 0;
  // Bounded by the buckets; `rank` <= count_ is reached by the last one at the latest.
  for (size_t bucket = 0; bucket + 1 < counts_.size(); ++bucket) {
    below += counts_[bucket];
    if (below >= rank) {
      return std::min(kBucketWidth * static_cast<int64_t>(bucket + 1), max_);
    }
  }
  return max_;
}

}  // namespace stead::loadcheck
