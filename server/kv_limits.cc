#include "server/kv_limits.h"

#include "absl/strings/str_cat.h"

namespace stead::server {

absl::Status CheckKey(absl::string_view key, const KvLimits& limits) {
  if (key.empty()) return absl::InvalidArgumentError("key is empty");
  if (key.size() > limits.max_key_bytes) {
    return storage::internal::OverLimit("key", key.size(), "max_key_bytes", limits.max_key_bytes);
  }
  return absl::OkStatus();
}

absl::Status CheckRangeEnd(absl::string_view range_end, const KvLimits& limits) {
  if (range_end.size() > limits.max_key_bytes) {
    return storage::internal::OverLimit("range_end", range_end.size(), "max_key_bytes",
                                        limits.max_key_bytes);
  }
  return absl::OkStatus();
}

absl::Status CheckValue(absl::string_view value, const KvLimits& limits) {
  if (value.size() > limits.max_value_bytes) {
    return storage::internal::OverLimit("value", value.size(), "max_value_bytes",
                                        limits.max_value_bytes);
  }
  return absl::OkStatus();
}

absl::Status CheckRequestSize(size_t request_bytes, const KvLimits& limits) {
  if (request_bytes > limits.max_request_bytes) {
    return storage::internal::OverLimit("request", request_bytes, "max_request_bytes",
                                        limits.max_request_bytes);
  }
  return absl::OkStatus();
}

absl::Status CheckTxnOps(absl::string_view what, size_t count, const KvLimits& limits) {
  if (count > limits.max_txn_ops) {
    return absl::InvalidArgumentError(absl::StrCat("txn ", what, " has ", count,
                                                   " entries, over the max_txn_ops limit of ",
                                                   limits.max_txn_ops));
  }
  return absl::OkStatus();
}

}  // namespace stead::server
