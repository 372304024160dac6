#include "server/kv_ops.h"

#include <algorithm>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "server/kv_apply.h"

namespace stead::server {
namespace {

// etcd's convention: range_end "\0" means "every key >= key".
bool IsToTheEnd(absl::string_view range_end) { return range_end == absl::string_view("\0", 1); }

// The exclusive scan end of a range_end that is not empty: "" for no end.
absl::string_view ScanEnd(absl::string_view range_end) {
  return IsToTheEnd(range_end) ? absl::string_view() : range_end;
}

absl::Status ValidateBounds(absl::string_view key, absl::string_view range_end) {
  if (key.empty()) return absl::InvalidArgumentError("key is empty");
  if (!range_end.empty() && !IsToTheEnd(range_end) && range_end <= key) {
    return absl::InvalidArgumentError("range_end must be above key (or \"\\0\" for no end)");
  }
  return absl::OkStatus();
}

absl::Status WithContext(const absl::Status& status, absl::string_view context) {
  if (status.ok()) return status;
  return absl::Status(status.code(), absl::StrCat(context, ": ", status.message()));
}

// The pairs of a range that a write or a compare works on, all at once: refused when
// there are more than kMaxKeysPerRangeWrite (the command would be too large).
absl::StatusOr<std::vector<pb::KeyValue>> KeysToWrite(absl::string_view what, absl::string_view key,
                                                      absl::string_view range_end,
                                                      const KvView& view) {
  STEAD_ASSIGN_OR_RETURN(
      KvPage page, view.Scan(key, ScanEnd(range_end), /*reverse=*/false, kMaxKeysPerRangeWrite));
  if (page.more) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, " covers more than ", kMaxKeysPerRangeWrite, " keys; split it into smaller ranges"));
  }
  return std::move(page.kvs);
}

template <typename T>
bool CompareValues(pb::Compare::Result result, const T& actual, const T& wanted) {
  switch (result) {
    case pb::Compare::RESULT_EQUAL:
      return actual == wanted;
    case pb::Compare::RESULT_NOT_EQUAL:
      return actual != wanted;
    case pb::Compare::RESULT_GREATER:
      return actual > wanted;
    case pb::Compare::RESULT_LESS:
      return actual < wanted;
    default:
      return false;  // refused by ValidateCompare
  }
}

// Whether `kv` (a zero KeyValue for an absent key) satisfies `compare`.
bool CompareKeyValue(const pb::Compare& compare, const pb::KeyValue& kv) {
  switch (compare.target()) {
    case pb::Compare::TARGET_VALUE:
      // std::string compares bytes as unsigned char, like memcmp.
      return CompareValues(compare.result(), kv.value(), compare.value());
    case pb::Compare::TARGET_VERSION:
      return CompareValues(compare.result(), kv.version(), compare.version());
    case pb::Compare::TARGET_CREATE_REVISION:
      return CompareValues(compare.result(), kv.create_revision(), compare.create_revision());
    case pb::Compare::TARGET_MOD_REVISION:
      return CompareValues(compare.result(), kv.mod_revision(), compare.mod_revision());
    default:
      return false;  // refused by ValidateCompare; TARGET_EXISTS is handled by the caller
  }
}

// The oneof case a compare target needs.
pb::Compare::TargetValueCase WantedValueCase(pb::Compare::Target target) {
  switch (target) {
    case pb::Compare::TARGET_VALUE:
      return pb::Compare::kValue;
    case pb::Compare::TARGET_VERSION:
      return pb::Compare::kVersion;
    case pb::Compare::TARGET_CREATE_REVISION:
      return pb::Compare::kCreateRevision;
    case pb::Compare::TARGET_MOD_REVISION:
      return pb::Compare::kModRevision;
    case pb::Compare::TARGET_EXISTS:
      return pb::Compare::kExists;
    default:
      return pb::Compare::TARGET_VALUE_NOT_SET;
  }
}

absl::Status ValidateRequestOp(const pb::RequestOp& op, const KvLimits& limits) {
  switch (op.request_case()) {
    case pb::RequestOp::kRange:
      return ValidateRange(op.range());
    case pb::RequestOp::kPut:
      return ValidatePut(op.put(), limits);
    case pb::RequestOp::kDeleteRange:
      return ValidateDeleteRange(op.delete_range(), limits);
    case pb::RequestOp::REQUEST_NOT_SET:
      break;
  }
  return absl::InvalidArgumentError("operation is not set");
}

absl::Status ValidateOps(absl::string_view what,
                         const google::protobuf::RepeatedPtrField<pb::RequestOp>& ops,
                         const KvLimits& limits) {
  STEAD_RETURN_IF_ERROR(CheckTxnOps(what, static_cast<size_t>(ops.size()), limits));
  for (int i = 0; i < ops.size(); ++i) {
    STEAD_RETURN_IF_ERROR(
        WithContext(ValidateRequestOp(ops[i], limits), absl::StrCat("txn ", what, "[", i, "]")));
  }
  return absl::OkStatus();
}

// `max_range_bytes` (> 0) bounds a range operation's page.
absl::StatusOr<pb::ResponseOp> ExecuteRequestOp(const pb::RequestOp& op, int64_t write_revision,
                                                size_t max_range_bytes, KvView& view) {
  pb::ResponseOp response;
  switch (op.request_case()) {
    case pb::RequestOp::kRange: {
      // Reads in a transaction see the state before it at revision write_revision - 1,
      // with the transaction's earlier writes laid over it.
      STEAD_ASSIGN_OR_RETURN(*response.mutable_range(),
                             ExecuteRange(op.range(), write_revision - 1, max_range_bytes, view));
      break;
    }
    case pb::RequestOp::kPut: {
      STEAD_ASSIGN_OR_RETURN(*response.mutable_put(), ExecutePut(op.put(), write_revision, view));
      break;
    }
    case pb::RequestOp::kDeleteRange: {
      STEAD_ASSIGN_OR_RETURN(*response.mutable_delete_range(),
                             ExecuteDeleteRange(op.delete_range(), view));
      break;
    }
    case pb::RequestOp::REQUEST_NOT_SET:
      return absl::InvalidArgumentError("operation is not set");
  }
  return response;
}

size_t PairsBytes(const google::protobuf::RepeatedPtrField<pb::KeyValue>& kvs) {
  size_t bytes = 0;
  for (const pb::KeyValue& kv : kvs) bytes += PairBytes(kv);
  return bytes;
}

size_t PutResponseBytes(const pb::PutResponse& put) {
  return put.has_prev_kv() ? PairBytes(put.prev_kv()) : 0;
}

size_t ResponseOpBytes(const pb::ResponseOp& op) {
  switch (op.response_case()) {
    case pb::ResponseOp::kRange:
      return PairsBytes(op.range().kvs());
    case pb::ResponseOp::kPut:
      return PutResponseBytes(op.put());
    case pb::ResponseOp::kDeleteRange:
      return PairsBytes(op.delete_range().prev_kvs());
    case pb::ResponseOp::RESPONSE_NOT_SET:
      break;
  }
  return 0;
}

}  // namespace

absl::Status ValidateRange(const pb::RangeRequest& range) {
  STEAD_RETURN_IF_ERROR(WithContext(ValidateBounds(range.key(), range.range_end()), "range"));
  if (range.limit() < 0) return absl::InvalidArgumentError("range: limit is negative");
  if (range.revision() < 0 || range.min_revision() < 0) {
    return absl::InvalidArgumentError("range: revision and min_revision must not be negative");
  }
  if (range.min_mod_revision() != 0) {
    return absl::InvalidArgumentError("range: min_mod_revision is not supported");
  }
  return absl::OkStatus();
}

absl::Status ValidateWatch(const pb::WatchRequest& watch) {
  STEAD_RETURN_IF_ERROR(WithContext(ValidateBounds(watch.key(), watch.range_end()), "watch"));
  if (watch.start_revision() < 0) {
    return absl::InvalidArgumentError("watch: start_revision must not be negative");
  }
  return absl::OkStatus();
}

bool InKeyRange(absl::string_view key, absl::string_view range_key, absl::string_view range_end) {
  if (range_end.empty()) return key == range_key;
  return key >= range_key && (IsToTheEnd(range_end) || key < range_end);
}

absl::Status ValidatePut(const pb::PutRequest& put, const KvLimits& limits) {
  STEAD_RETURN_IF_ERROR(WithContext(CheckKey(put.key(), limits), "put"));
  return WithContext(CheckValue(put.value(), limits), "put");
}

absl::Status ValidateDeleteRange(const pb::DeleteRangeRequest& del, const KvLimits& limits) {
  STEAD_RETURN_IF_ERROR(WithContext(CheckKey(del.key(), limits), "delete_range"));
  STEAD_RETURN_IF_ERROR(WithContext(CheckRangeEnd(del.range_end(), limits), "delete_range"));
  return WithContext(ValidateBounds(del.key(), del.range_end()), "delete_range");
}

absl::Status ValidateCompare(const pb::Compare& compare, const KvLimits& limits) {
  STEAD_RETURN_IF_ERROR(CheckKey(compare.key(), limits));
  STEAD_RETURN_IF_ERROR(CheckRangeEnd(compare.range_end(), limits));
  STEAD_RETURN_IF_ERROR(ValidateBounds(compare.key(), compare.range_end()));
  if (!pb::Compare::Result_IsValid(compare.result()) ||
      compare.result() == pb::Compare::RESULT_UNSPECIFIED) {
    return absl::InvalidArgumentError(absl::StrCat("unknown result ", compare.result()));
  }
  const pb::Compare::TargetValueCase wanted = WantedValueCase(compare.target());
  if (wanted == pb::Compare::TARGET_VALUE_NOT_SET) {
    return absl::InvalidArgumentError(absl::StrCat("unknown target ", compare.target()));
  }
  if (compare.target_value_case() != wanted) {
    return absl::InvalidArgumentError(absl::StrCat(
        "target ", pb::Compare::Target_Name(compare.target()), " needs its value field set"));
  }
  if (compare.target() == pb::Compare::TARGET_EXISTS &&
      compare.result() != pb::Compare::RESULT_EQUAL &&
      compare.result() != pb::Compare::RESULT_NOT_EQUAL) {
    return absl::InvalidArgumentError("target TARGET_EXISTS takes only EQUAL or NOT_EQUAL");
  }
  return absl::OkStatus();
}

absl::Status ValidateTxn(const pb::TxnRequest& txn, const KvLimits& limits) {
  if (txn.compare().empty() && txn.success().empty() && txn.failure().empty()) {
    return absl::InvalidArgumentError("txn has no compares and no operations");
  }
  STEAD_RETURN_IF_ERROR(CheckTxnOps("compare", static_cast<size_t>(txn.compare_size()), limits));
  for (int i = 0; i < txn.compare_size(); ++i) {
    STEAD_RETURN_IF_ERROR(
        WithContext(ValidateCompare(txn.compare(i), limits), absl::StrCat("txn compare[", i, "]")));
  }
  STEAD_RETURN_IF_ERROR(ValidateOps("success", txn.success(), limits));
  return ValidateOps("failure", txn.failure(), limits);
}

absl::StatusOr<pb::RangeResponse> ExecuteRange(const pb::RangeRequest& range, int64_t revision,
                                               size_t max_bytes, const KvView& view) {
  if (range.revision() > revision || range.min_revision() > revision) {
    return absl::FailedPreconditionError(
        absl::StrCat("range: this member's state is at revision ", revision,
                     ", below the requested ", std::max(range.revision(), range.min_revision()),
                     " (not caught up: retry, or read from the leader)"));
  }
  if (range.revision() != 0 && range.revision() < revision) {
    return absl::InvalidArgumentError(absl::StrCat("range: reads at a past revision (",
                                                   range.revision(), ", current ", revision,
                                                   ") are not supported: no history is kept"));
  }
  pb::RangeResponse response;
  KvPage page;
  if (range.range_end().empty()) {
    STEAD_ASSIGN_OR_RETURN(std::optional<pb::KeyValue> kv, view.Get(range.key()));
    if (kv) page.kvs.push_back(std::move(*kv));
  } else {
    const int64_t limit =
        range.limit() == 0 ? kMaxRangeLimit : std::min(range.limit(), kMaxRangeLimit);
    STEAD_ASSIGN_OR_RETURN(page, view.Scan(range.key(), ScanEnd(range.range_end()), range.reverse(),
                                           static_cast<size_t>(limit), max_bytes));
  }
  response.set_count(static_cast<int64_t>(page.kvs.size()));
  response.set_more(page.more);
  if (page.more) {
    // Forward: the next page starts just after the last key; reverse: it ends (exclusive)
    // at the last key.
    if (range.reverse()) {
      response.set_next_range_end(page.kvs.back().key());
    } else {
      response.set_next_key(page.kvs.back().key() + std::string(1, '\0'));
    }
  }
  if (range.count_only()) return response;
  for (pb::KeyValue& kv : page.kvs) {
    if (range.keys_only()) kv.clear_value();
    *response.add_kvs() = std::move(kv);
  }
  return response;
}

absl::StatusOr<pb::PutResponse> ExecutePut(const pb::PutRequest& put, int64_t write_revision,
                                           KvView& view) {
  STEAD_ASSIGN_OR_RETURN(std::optional<pb::KeyValue> previous, view.Get(put.key()));
  pb::KeyValue kv;
  kv.set_key(put.key());
  kv.set_value(put.value());
  kv.set_create_revision(previous ? previous->create_revision() : write_revision);
  kv.set_mod_revision(write_revision);
  kv.set_version(previous ? previous->version() + 1 : 1);
  view.Put(std::move(kv));
  pb::PutResponse response;
  if (put.prev_kv() && previous) *response.mutable_prev_kv() = std::move(*previous);
  return response;
}

absl::StatusOr<pb::DeleteRangeResponse> ExecuteDeleteRange(const pb::DeleteRangeRequest& del,
                                                           KvView& view) {
  std::vector<pb::KeyValue> doomed;
  if (del.range_end().empty()) {
    STEAD_ASSIGN_OR_RETURN(std::optional<pb::KeyValue> kv, view.Get(del.key()));
    if (kv) doomed.push_back(std::move(*kv));
  } else {
    STEAD_ASSIGN_OR_RETURN(doomed, KeysToWrite("delete_range", del.key(), del.range_end(), view));
  }
  pb::DeleteRangeResponse response;
  response.set_deleted(static_cast<int64_t>(doomed.size()));
  for (pb::KeyValue& kv : doomed) {
    view.Delete(kv.key());
    if (del.prev_kv()) *response.add_prev_kvs() = std::move(kv);
  }
  return response;
}

absl::StatusOr<bool> EvaluateCompare(const pb::Compare& compare, const KvView& view) {
  std::vector<pb::KeyValue> kvs;
  if (compare.range_end().empty()) {
    STEAD_ASSIGN_OR_RETURN(std::optional<pb::KeyValue> kv, view.Get(compare.key()));
    if (kv) kvs.push_back(std::move(*kv));
  } else {
    STEAD_ASSIGN_OR_RETURN(kvs, KeysToWrite("compare", compare.key(), compare.range_end(), view));
  }
  if (compare.target() == pb::Compare::TARGET_EXISTS) {
    return CompareValues(compare.result(), !kvs.empty(), compare.exists());
  }
  // As etcd: an absent key (or an empty range) never matches a value compare, and
  // compares as zero on the counters (so version == 0 tests for absence).
  if (kvs.empty()) {
    return compare.target() != pb::Compare::TARGET_VALUE &&
           CompareKeyValue(compare, pb::KeyValue());
  }
  return std::all_of(kvs.begin(), kvs.end(),
                     [&](const pb::KeyValue& kv) { return CompareKeyValue(compare, kv); });
}

absl::StatusOr<pb::TxnResponse> ExecuteTxn(const pb::TxnRequest& txn, int64_t write_revision,
                                           const KvLimits& limits, KvView& view) {
  pb::TxnResponse response;
  bool succeeded = true;
  for (const pb::Compare& compare : txn.compare()) {
    STEAD_ASSIGN_OR_RETURN(succeeded, EvaluateCompare(compare, view));
    if (!succeeded) break;
  }
  response.set_succeeded(succeeded);
  const auto& ops = succeeded ? txn.success() : txn.failure();
  size_t response_bytes = 0;
  for (int i = 0; i < ops.size(); ++i) {
    // Once the budget is spent, a range still returns its one pair, and the check
    // below refuses the transaction.
    const size_t left = response_bytes < limits.max_write_response_bytes
                            ? limits.max_write_response_bytes - response_bytes
                            : 1;
    absl::StatusOr<pb::ResponseOp> op = ExecuteRequestOp(ops[i], write_revision, left, view);
    if (op.ok()) {
      response_bytes += ResponseOpBytes(*op);
      if (absl::Status fits = CheckWriteResponseSize(response_bytes, limits); !fits.ok()) op = fits;
    }
    if (!op.ok()) {
      return WithContext(op.status(),
                         absl::StrCat("txn ", succeeded ? "success" : "failure", "[", i, "]"));
    }
    *response.add_responses() = std::move(*op);
  }
  return response;
}

size_t WriteResponseBytes(const pb::ClientResponse& response) {
  switch (response.response_case()) {
    case pb::ClientResponse::kPut:
      return PutResponseBytes(response.put());
    case pb::ClientResponse::kDeleteRange:
      return PairsBytes(response.delete_range().prev_kvs());
    case pb::ClientResponse::kTxn: {
      size_t bytes = 0;
      for (const pb::ResponseOp& op : response.txn().responses()) bytes += ResponseOpBytes(op);
      return bytes;
    }
    default:
      return 0;
  }
}

}  // namespace stead::server
