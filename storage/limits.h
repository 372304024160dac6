// Size limits of the state machine: keys, values, Raft entries and apply batches.
//
// Every limit is a named constant with a documented default, gathered in `Limits` so a
// test or an embedding application can lower them. StateMachine::Apply checks every
// batch against them, because a log entry is input read from disk.
//
// Limits may be raised between versions but never lowered on a running cluster: an
// entry committed under a larger limit would then fail to apply on every replica.
//
// Thread-safety: everything here is a pure function of its arguments.
#ifndef STEAD_STORAGE_LIMITS_H_
#define STEAD_STORAGE_LIMITS_H_

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace stead::storage {

// These limits bound what one entry may store: they are a safety net for input read
// from the log, set well above what the key-value service writes for a request within
// its own limits (server/kv_limits.h, stated on the user's bytes), because the service
// stores more than the user's bytes: a pair with its counters, a revision's watch
// events, a client's last response.
//
// Longest stored key. Default: 8 KiB.
inline constexpr size_t kDefaultMaxKeyBytes = 8 * 1024;
// Largest stored value. Default: 16 MiB.
inline constexpr size_t kDefaultMaxValueBytes = 16 * 1024 * 1024;
// Largest encoded command in one Raft entry (the data the service proposes): a
// maximal request with its encoding and the proposal envelope. Default: 2 MiB.
inline constexpr size_t kDefaultMaxEntryBytes = 2 * 1024 * 1024;
// Largest apply batch: the sum over its mutations of keyspace, key and value sizes.
// Default: 64 MiB.
inline constexpr size_t kDefaultMaxBatchBytes = 64 * 1024 * 1024;
// Most mutations in one apply batch. Default: 10,000.
inline constexpr size_t kDefaultMaxBatchMutations = 10000;

struct Limits {
  // Longest stored key. Default: kDefaultMaxKeyBytes.
  size_t max_key_bytes = kDefaultMaxKeyBytes;
  // Largest stored value. Default: kDefaultMaxValueBytes.
  size_t max_value_bytes = kDefaultMaxValueBytes;
  // Largest encoded Raft entry data. Default: kDefaultMaxEntryBytes.
  size_t max_entry_bytes = kDefaultMaxEntryBytes;
  // Largest batch in bytes (keyspace + key + value of every mutation).
  // Default: kDefaultMaxBatchBytes.
  size_t max_batch_bytes = kDefaultMaxBatchBytes;
  // Most mutations in one batch. Default: kDefaultMaxBatchMutations.
  size_t max_batch_mutations = kDefaultMaxBatchMutations;
};

namespace internal {
inline absl::Status OverLimit(absl::string_view what, size_t size, absl::string_view limit_name,
                              size_t limit) {
  return absl::InvalidArgumentError(absl::StrCat(what, " is ", size, " bytes, over the ",
                                                 limit_name, " limit of ", limit, " bytes"));
}
}  // namespace internal

// OK if `key` is non-empty and at most limits.max_key_bytes long; InvalidArgument naming
// the limit and the size otherwise.
inline absl::Status CheckKeySize(absl::string_view key, const Limits& limits) {
  if (key.empty()) return absl::InvalidArgumentError("key is empty");
  if (key.size() > limits.max_key_bytes) {
    return internal::OverLimit("key", key.size(), "max_key_bytes", limits.max_key_bytes);
  }
  return absl::OkStatus();
}

// OK if `value` is at most limits.max_value_bytes long; InvalidArgument otherwise.
inline absl::Status CheckValueSize(absl::string_view value, const Limits& limits) {
  if (value.size() > limits.max_value_bytes) {
    return internal::OverLimit("value", value.size(), "max_value_bytes", limits.max_value_bytes);
  }
  return absl::OkStatus();
}

// OK if an entry's data of `entry_bytes` fits limits.max_entry_bytes; InvalidArgument
// otherwise.
inline absl::Status CheckEntrySize(size_t entry_bytes, const Limits& limits) {
  if (entry_bytes > limits.max_entry_bytes) {
    return internal::OverLimit("entry", entry_bytes, "max_entry_bytes", limits.max_entry_bytes);
  }
  return absl::OkStatus();
}

// OK if a batch of `mutation_count` mutations totalling `batch_bytes` fits both batch
// limits; InvalidArgument naming the limit otherwise.
inline absl::Status CheckBatchSize(size_t mutation_count, size_t batch_bytes,
                                   const Limits& limits) {
  if (mutation_count > limits.max_batch_mutations) {
    return absl::InvalidArgumentError(
        absl::StrCat("batch has ", mutation_count, " mutations, over the max_batch_mutations limit of ",
                     limits.max_batch_mutations));
  }
  if (batch_bytes > limits.max_batch_bytes) {
    return internal::OverLimit("batch", batch_bytes, "max_batch_bytes", limits.max_batch_bytes);
  }
  return absl::OkStatus();
}

}  // namespace stead::storage

#endif  // STEAD_STORAGE_LIMITS_H_
