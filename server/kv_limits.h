// Size limits of the key-value service: keys, values, whole requests and transactions.
//
// The service checks a write against them before proposing it (so an oversized write is
// refused with InvalidArgument and never reaches the log), and the state machine checks
// again when it applies the command, because a log entry is input read from disk. Each
// failure names the limit and the size, e.g. "key is 70 bytes, over the max_key_bytes
// limit of 64 bytes".
//
// Limits may be raised between versions but never lowered on a running cluster: a
// command committed under a larger limit would then fail to apply. The apply-time limits
// must be at least the propose-time ones (the defaults are the same).
//
// Thread-safety: plain values and pure functions.
#ifndef STEAD_SERVER_KV_LIMITS_H_
#define STEAD_SERVER_KV_LIMITS_H_

#include <cstddef>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "storage/limits.h"

namespace stead::server {

// Largest serialized ClientRequest of a write. Leaves 1 KiB of the storage entry limit
// for the proposal envelope. Default: 1535 KiB.
inline constexpr size_t kDefaultMaxRequestBytes = storage::kDefaultMaxEntryBytes - 1024;
// Most compares, and most operations in each branch, of one transaction. Default: 128.
inline constexpr size_t kDefaultMaxTxnOps = 128;

struct KvLimits {
  // Longest key (also range ends and compare keys). Default: storage::kDefaultMaxKeyBytes.
  size_t max_key_bytes = storage::kDefaultMaxKeyBytes;
  // Largest value. Default: storage::kDefaultMaxValueBytes.
  size_t max_value_bytes = storage::kDefaultMaxValueBytes;
  // Largest serialized write request. Default: kDefaultMaxRequestBytes.
  size_t max_request_bytes = kDefaultMaxRequestBytes;
  // Most entries in each of a transaction's compare, success and failure lists.
  // Default: kDefaultMaxTxnOps.
  size_t max_txn_ops = kDefaultMaxTxnOps;
};

// OK if `key` is non-empty and within max_key_bytes; InvalidArgument otherwise.
absl::Status CheckKey(absl::string_view key, const KvLimits& limits);
// OK if `range_end` (empty, "\0" or a key) is within max_key_bytes.
absl::Status CheckRangeEnd(absl::string_view range_end, const KvLimits& limits);
// OK if `value` is within max_value_bytes.
absl::Status CheckValue(absl::string_view value, const KvLimits& limits);
// OK if a request of `request_bytes` is within max_request_bytes.
absl::Status CheckRequestSize(size_t request_bytes, const KvLimits& limits);
// OK if a transaction list (`what`: "compare", "success", "failure") of `count`
// entries is within max_txn_ops.
absl::Status CheckTxnOps(absl::string_view what, size_t count, const KvLimits& limits);

}  // namespace stead::server

#endif  // STEAD_SERVER_KV_LIMITS_H_
