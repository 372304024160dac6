// StateReader: reads of the state machine's keyspaces, whatever holds them. A command
// being applied reads the state through one (the state machine with the earlier
// entries of its apply batch laid over it, storage::StagedApply), a client read through
// another (a StateSnapshot), so the key-value layer has one code path for both.
//
// Thread-safety: as the implementation says.
#ifndef STEAD_STORAGE_STATE_READER_H_
#define STEAD_STORAGE_STATE_READER_H_

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace stead::storage {

// The default user keyspace.
inline constexpr char kDefaultKeyspace[] = "kv";
// Most pairs one Scan may return.
inline constexpr size_t kMaxScanLimit = 100000;

struct KeyValue {
  std::string key;
  std::string value;
  bool operator==(const KeyValue&) const = default;
};

struct ScanOptions {
  // Keyspace to read. Default: "kv".
  std::string keyspace = kDefaultKeyspace;
  // First key of the range, inclusive. Default: empty (from the first key).
  std::string start_key;
  // End of the range, exclusive; empty means no end. Default: empty.
  std::string end_key;
  // Return pairs from the end of the range backwards. Default: false.
  bool reverse = false;
  // Most pairs to return; 1..kMaxScanLimit. Default: 1000.
  size_t limit = 1000;
  // With max_bytes > 0, the scan also stops once the pairs returned hold at least this
  // many bytes of keys and values: the pair that reaches it is the last one, so at most
  // one pair's bytes more are read. Default: 0 (no byte bound).
  size_t max_bytes = 0;
};

struct ScanResult {
  std::vector<KeyValue> pairs;  // in key order (descending when reverse)
  // True if the range holds more pairs than were returned: continue after the last
  // key (forward) or before it (reverse).
  bool more = false;
};

class StateReader {
 public:
  virtual ~StateReader() = default;

  // Value of `key` in `keyspace`; nullopt if absent. InvalidArgument for an unknown
  // keyspace; DataLoss when the state machine is damaged (StateMachine::damage()).
  virtual absl::StatusOr<std::optional<std::string>> Get(absl::string_view keyspace,
                                                         absl::string_view key) const = 0;
  // Pairs of a key range in order. InvalidArgument for an unknown keyspace or a limit
  // outside 1..kMaxScanLimit; DataLoss as Get.
  virtual absl::StatusOr<ScanResult> Scan(const ScanOptions& options) const = 0;
};

}  // namespace stead::storage

#endif  // STEAD_STORAGE_STATE_READER_H_
