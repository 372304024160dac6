// The operations of the key-value model on a KvView: validation and execution of
// range, put, delete_range, compare and txn. Shared by the apply path (kv_apply.cc) and
// local reads. See kv_apply.h for the model they implement.
//
// Thread-safety: pure functions of their arguments (a KvView is single-threaded).
#ifndef STEAD_SERVER_KV_OPS_H_
#define STEAD_SERVER_KV_OPS_H_

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "proto/kv.pb.h"
#include "server/kv_limits.h"
#include "server/kv_store.h"

namespace stead::server {

// Structural checks (no state read). InvalidArgument naming the field or limit.
absl::Status ValidateRange(const pb::RangeRequest& range);
absl::Status ValidateWatch(const pb::WatchRequest& watch);
// Whether `key` is in the range of `range_key` and `range_end` (pb::RangeRequest rules:
// a single key when range_end is empty, every key >= range_key when it is "\0").
bool InKeyRange(absl::string_view key, absl::string_view range_key, absl::string_view range_end);
absl::Status ValidatePut(const pb::PutRequest& put, const KvLimits& limits);
absl::Status ValidateDeleteRange(const pb::DeleteRangeRequest& del, const KvLimits& limits);
absl::Status ValidateCompare(const pb::Compare& compare, const KvLimits& limits);
absl::Status ValidateTxn(const pb::TxnRequest& txn, const KvLimits& limits);

// Reads `range` at store revision `revision` (the revision of the state `view` shows):
// one page of at most range.limit (or kMaxRangeLimit) pairs and, when max_bytes > 0,
// at most max_bytes of PairBytes as read (values count even for keys_only), but at
// least one pair. FailedPrecondition when it asks for a later revision; InvalidArgument
// for an earlier.
absl::StatusOr<pb::RangeResponse> ExecuteRange(const pb::RangeRequest& range, int64_t revision,
                                               size_t max_bytes, const KvView& view);

// The writes: `write_revision` is the revision the command writes at (current + 1).
absl::StatusOr<pb::PutResponse> ExecutePut(const pb::PutRequest& put, int64_t write_revision,
                                           KvView& view);
absl::StatusOr<pb::DeleteRangeResponse> ExecuteDeleteRange(const pb::DeleteRangeRequest& del,
                                                           KvView& view);
// Whether `compare` holds in `view`.
absl::StatusOr<bool> EvaluateCompare(const pb::Compare& compare, const KvView& view);
// Its range operations page to what is left of limits.max_write_response_bytes after
// the operations before them (each returns at least one pair); InvalidArgument when the
// response still exceeds it (CheckWriteResponseSize).
absl::StatusOr<pb::TxnResponse> ExecuteTxn(const pb::TxnRequest& txn, int64_t write_revision,
                                           const KvLimits& limits, KvView& view);

// The PairBytes of every pair a write's response carries (prev_kv, prev_kvs, and the
// pairs of a transaction's operations): what max_write_response_bytes limits.
size_t WriteResponseBytes(const pb::ClientResponse& response);

}  // namespace stead::server

#endif  // STEAD_SERVER_KV_OPS_H_
