// Size limits of the key-value service: keys, values, whole requests, transactions and
// the responses of writes. Every limit is stated on the user's bytes (a key's bytes, a
// value's bytes), never on their encoding or on what the service stores.
//
// The client library checks a request against them before sending it, the service
// before proposing it (so an oversized write is refused with InvalidArgument and never
// reaches the log), and the state machine again when it applies the command, because a
// log entry is input read from disk. Each failure names the limit and the size, e.g.
// "key is 70 bytes, over the max_key_bytes limit of 64 bytes".
//
// Limits may be raised between versions but never lowered on a running cluster: a
// command committed under a larger limit would then fail to apply. The apply-time limits
// must be at least the propose-time ones (the defaults are the same), and
// max_write_response_bytes must be the same on every member (it decides a command's
// outcome).
//
// This file is a library of its own (stead::kv_limits) so that the client links it.
//
// Thread-safety: plain values and pure functions.
#ifndef STEAD_SERVER_KV_LIMITS_H_
#define STEAD_SERVER_KV_LIMITS_H_

#include <cstddef>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "proto/kv.pb.h"
#include "storage/limits.h"

namespace stead::server {

// Longest key, range end or compare key. Default: 8 KiB.
inline constexpr size_t kDefaultMaxKeyBytes = 8 * 1024;
// Largest value (of a put, or the operand of a value compare). Default: 1 MiB.
inline constexpr size_t kDefaultMaxValueBytes = 1024 * 1024;
// Most bytes of keys, range ends and values in one write request, all of a
// transaction's compares and operations together: a maximal key and value fit with
// room to spare. Default: 1.5 MiB.
inline constexpr size_t kDefaultMaxRequestBytes = 1536 * 1024;
// Most compares, and most operations in each branch, of one transaction. Default: 128.
inline constexpr size_t kDefaultMaxTxnOps = 128;
// Most bytes of keys and values in the response of one write: the pairs a
// transaction's range operations read and the prev_kv of its puts and deletes. A write
// response is made when the command is applied, identically on every member (and kept
// for exactly-once retries), so it cannot follow a member's --max-response-bytes.
// Default: 4 MiB.
inline constexpr size_t kDefaultMaxWriteResponseBytes = 4 * 1024 * 1024;

// Most bytes of keys and values in one page of a range read, by default
// (--max-response-bytes), and the bounds of that flag: a page may hold one maximal pair
// more and must fit the client's 64 MiB response frame; pages of a few pairs would only
// multiply round trips. Default: 4 MiB, within 1 KiB .. 32 MiB.
inline constexpr size_t kDefaultMaxResponseBytes = 4 * 1024 * 1024;
inline constexpr size_t kMinMaxResponseBytes = 1024;
inline constexpr size_t kMaxMaxResponseBytes = 32 * 1024 * 1024;

// What the encoding of a request adds to its user bytes at most, for one item (a
// compare or an operation: tags, lengths, counters, flags) and for the request around
// them. A larger encoding carries something else (unknown fields) and is refused.
inline constexpr size_t kMaxItemEncodingBytes = 128;
inline constexpr size_t kMaxRequestEnvelopeBytes = 1024;

struct KvLimits {
  // Longest key (also range ends and compare keys). Default: kDefaultMaxKeyBytes.
  size_t max_key_bytes = kDefaultMaxKeyBytes;
  // Largest value. Default: kDefaultMaxValueBytes.
  size_t max_value_bytes = kDefaultMaxValueBytes;
  // Most key and value bytes of a write request. Default: kDefaultMaxRequestBytes.
  size_t max_request_bytes = kDefaultMaxRequestBytes;
  // Most entries in each of a transaction's compare, success and failure lists.
  // Default: kDefaultMaxTxnOps.
  size_t max_txn_ops = kDefaultMaxTxnOps;
  // Most key and value bytes of a write's response. Default: kDefaultMaxWriteResponseBytes.
  size_t max_write_response_bytes = kDefaultMaxWriteResponseBytes;
};

// The largest encoding of a write request within `limits`: max_request_bytes plus the
// encoding of 3 * max_txn_ops items (compares and both branches) and the envelope.
constexpr size_t MaxEncodedRequestBytes(const KvLimits& limits) {
  return limits.max_request_bytes + 3 * limits.max_txn_ops * kMaxItemEncodingBytes +
         kMaxRequestEnvelopeBytes;
}

// The default limits fit what storage accepts (storage/limits.h): the user's keys are
// stored as they are; a stored value (a pair with its counters, a revision's watch
// events, a client's last response) holds at most a request's or a write response's
// keys and values with their encoding; a maximal request in its proposal envelope fits
// one Raft entry.
static_assert(kDefaultMaxKeyBytes <= storage::kDefaultMaxKeyBytes);
static_assert(2 * (kDefaultMaxRequestBytes + kDefaultMaxWriteResponseBytes) <=
              storage::kDefaultMaxValueBytes);
static_assert(MaxEncodedRequestBytes(KvLimits()) + kMaxRequestEnvelopeBytes <=
              storage::kDefaultMaxEntryBytes);

// OK if `key` is non-empty and within max_key_bytes; InvalidArgument otherwise.
absl::Status CheckKey(absl::string_view key, const KvLimits& limits);
// OK if `range_end` (empty, "\0" or a key) is within max_key_bytes.
absl::Status CheckRangeEnd(absl::string_view range_end, const KvLimits& limits);
// OK if `value` is within max_value_bytes.
absl::Status CheckValue(absl::string_view value, const KvLimits& limits);
// OK if a transaction list (`what`: "compare", "success", "failure") of `count`
// entries is within max_txn_ops.
absl::Status CheckTxnOps(absl::string_view what, size_t count, const KvLimits& limits);

// The bytes of keys, range ends and values of `request` (every compare and operation
// of a transaction): what max_request_bytes limits.
size_t RequestUserBytes(const pb::ClientRequest& request);
// OK if `request` is within max_request_bytes and its encoding within
// MaxEncodedRequestBytes; InvalidArgument naming the limit and the size otherwise.
absl::Status CheckRequestSize(const pb::ClientRequest& request, const KvLimits& limits);
// Every size limit of `request` (a range, put, delete_range or txn; other requests
// have none): each key, range end and value, the transaction's lists, and the request
// as a whole. InvalidArgument naming where, the limit and the size, e.g. "txn
// success[3]: put: value is 1048577 bytes, over the max_value_bytes limit of 1048576
// bytes". Structure (empty keys, range order, enums) is the service's to check.
absl::Status CheckRequestLimits(const pb::ClientRequest& request, const KvLimits& limits);

// OK if a write's response holding `response_bytes` of keys and values is within
// max_write_response_bytes; InvalidArgument saying how to ask for less otherwise.
absl::Status CheckWriteResponseSize(size_t response_bytes, const KvLimits& limits);

}  // namespace stead::server

#endif  // STEAD_SERVER_KV_LIMITS_H_
