// The pure parts of stead-load-check (load_check.cc): the keys and self-checking values
// it writes, the acknowledged-keys file it keeps, and its latency histogram.
//
// A writer of the load check writes key `<prefix>/<writer>/<sequence>` (the sequence
// zero-padded to kSequenceDigits, so keys sort in write order) with the value
// `<key>:<size>:<filler>`, the size being that of the whole value and the filler
// depending on the key: a reader that knows only the key can tell a right value from a
// truncated, corrupt or swapped one. Each key acknowledged by
// the cluster is appended to the acknowledged-keys file as one line, "<key>\n".
#ifndef STEAD_TESTS_K8S_LOAD_CHECK_LIB_H_
#define STEAD_TESTS_K8S_LOAD_CHECK_LIB_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace stead::loadcheck {

// Digits of the zero-padded sequence number in a key; a writer stops before
// 10^kSequenceDigits keys.
inline constexpr int kSequenceDigits = 10;
inline constexpr int64_t kMaxSequence = 9'999'999'999;
// The largest value LoadValue makes: the server's default limit.
inline constexpr size_t kMaxValueBytes = 1 << 20;

// "<prefix>/<writer>/<sequence>", e.g. LoadKey("run1", 3, 42) == "run1/3/0000000042".
// Requires 0 <= sequence <= kMaxSequence.
std::string LoadKey(absl::string_view prefix, int writer, int64_t sequence);

// The value written for `key`: "<key>:<size, 8 digits>:" and filler characters that
// depend on the key, value_bytes long, or key.size() + 10 when that is longer.
// Requires that size to be at most kMaxValueBytes.
std::string LoadValue(absl::string_view key, size_t value_bytes);

// Whether `value` is LoadValue(key, n) for some n: the value of `key` as written,
// neither another key's nor cut short nor altered.
bool IsLoadValue(absl::string_view key, absl::string_view value);

// The keys of an acknowledged-keys file, each once, in the order of their first line.
struct AckedKeys {
  std::vector<std::string> keys;
  // Lines listing a key already seen (a key acknowledged twice, by runs sharing a file).
  int64_t repeated_lines = 0;
  // The text ended in a line without its '\n': a record cut short when the writer was
  // killed, so it is not a key and is left out.
  bool unterminated_tail = false;
};

// Parses the contents of an acknowledged-keys file. Empty lines are skipped.
AckedKeys ParseAckedKeys(absl::string_view text);

// The longest common prefix of `keys`; empty for no keys.
std::string CommonPrefix(const std::vector<std::string>& keys);

// Latencies in buckets of kBucketWidth up to kRange; longer ones are counted together
// and only the maximum is exact. Memory is fixed (kRange / kBucketWidth counters),
// however long the run.
//
// Not thread-safe.
class LatencyHistogram {
 public:
  static constexpr absl::Duration kBucketWidth = absl::Microseconds(100);
  static constexpr absl::Duration kRange = absl::Seconds(60);

  LatencyHistogram();

  // Counts one latency; a negative one counts as zero.
  void Record(absl::Duration latency);

  int64_t count() const { return count_; }
  // The longest latency recorded; zero when none was.
  absl::Duration max() const { return max_; }
  // The smallest bucket bound at or above the p-th percentile (0 < p <= 100) of the
  // latencies recorded, never above max(); max() when that percentile lies beyond
  // kRange; zero when nothing was recorded.
  absl::Duration Percentile(double p) const;

 private:
  // counts_[i] counts the latencies in [i, i + 1) * kBucketWidth; the last element
  // counts those of kRange and above.
  std::vector<int64_t> counts_;
  int64_t count_ = 0;  // the sum of counts_
  absl::Duration max_ = absl::ZeroDuration();
};

}  // namespace stead::loadcheck

#endif  // STEAD_TESTS_K8S_LOAD_CHECK_LIB_H_
