#include "server/kv_limits.h"

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace stead::server {
namespace {

absl::Status WithContext(const absl::Status& status, absl::string_view context) {
  if (status.ok()) return status;
  return absl::Status(status.code(), absl::StrCat(context, ": ", status.message()));
}

absl::Status CheckKeySize(absl::string_view key, const KvLimits& limits) {
  if (key.size() > limits.max_key_bytes) {
    return storage::internal::OverLimit("key", key.size(), "max_key_bytes", limits.max_key_bytes);
  }
  return absl::OkStatus();
}

absl::Status CheckRangeLimits(const pb::RangeRequest& range, const KvLimits& limits) {
  STEAD_RETURN_IF_ERROR(WithContext(CheckKeySize(range.key(), limits), "range"));
  return WithContext(CheckRangeEnd(range.range_end(), limits), "range");
}

absl::Status CheckPutLimits(const pb::PutRequest& put, const KvLimits& limits) {
  STEAD_RETURN_IF_ERROR(WithContext(CheckKeySize(put.key(), limits), "put"));
  return WithContext(CheckValue(put.value(), limits), "put");
}

absl::Status CheckDeleteLimits(const pb::DeleteRangeRequest& del, const KvLimits& limits) {
  STEAD_RETURN_IF_ERROR(WithContext(CheckKeySize(del.key(), limits), "delete_range"));
  return WithContext(CheckRangeEnd(del.range_end(), limits), "delete_range");
}

absl::Status CheckCompareLimits(const pb::Compare& compare, const KvLimits& limits) {
  STEAD_RETURN_IF_ERROR(CheckKeySize(compare.key(), limits));
  STEAD_RETURN_IF_ERROR(CheckRangeEnd(compare.range_end(), limits));
  return CheckValue(compare.value(), limits);
}

absl::Status CheckOpLimits(const pb::RequestOp& op, const KvLimits& limits) {
  switch (op.request_case()) {
    case pb::RequestOp::kRange:
      return CheckRangeLimits(op.range(), limits);
    case pb::RequestOp::kPut:
      return CheckPutLimits(op.put(), limits);
    case pb::RequestOp::kDeleteRange:
      return CheckDeleteLimits(op.delete_range(), limits);
    case pb::RequestOp::REQUEST_NOT_SET:
      break;
  }
  return absl::OkStatus();
}

absl::Status CheckBranchLimits(absl::string_view what,
                               const google::protobuf::RepeatedPtrField<pb::RequestOp>& ops,
                               const KvLimits& limits) {
  STEAD_RETURN_IF_ERROR(CheckTxnOps(what, static_cast<size_t>(ops.size()), limits));
  for (int i = 0; i < ops.size(); ++i) {
    STEAD_RETURN_IF_ERROR(
        WithContext(CheckOpLimits(ops[i], limits), absl::StrCat("txn ", what, "[", i, "]")));
  }
  return absl::OkStatus();
}

absl::Status CheckTxnLimits(const pb::TxnRequest& txn, const KvLimits& limits) {
  STEAD_RETURN_IF_ERROR(CheckTxnOps("compare", static_cast<size_t>(txn.compare_size()), limits));
  for (int i = 0; i < txn.compare_size(); ++i) {
    STEAD_RETURN_IF_ERROR(WithContext(CheckCompareLimits(txn.compare(i), limits),
                                      absl::StrCat("txn compare[", i, "]")));
  }
  STEAD_RETURN_IF_ERROR(CheckBranchLimits("success", txn.success(), limits));
  return CheckBranchLimits("failure", txn.failure(), limits);
}

size_t UserBytes(const pb::RangeRequest& range) {
  return range.key().size() + range.range_end().size();
}
size_t UserBytes(const pb::PutRequest& put) { return put.key().size() + put.value().size(); }
size_t UserBytes(const pb::DeleteRangeRequest& del) {
  return del.key().size() + del.range_end().size();
}

size_t OpUserBytes(const pb::RequestOp& op) {
  switch (op.request_case()) {
    case pb::RequestOp::kRange:
      return UserBytes(op.range());
    case pb::RequestOp::kPut:
      return UserBytes(op.put());
    case pb::RequestOp::kDeleteRange:
      return UserBytes(op.delete_range());
    case pb::RequestOp::REQUEST_NOT_SET:
      break;
  }
  return 0;
}

size_t TxnUserBytes(const pb::TxnRequest& txn) {
  size_t bytes = 0;
  for (const pb::Compare& compare : txn.compare()) {
    bytes += compare.key().size() + compare.range_end().size() + compare.value().size();
  }
  for (const pb::RequestOp& op : txn.success()) bytes += OpUserBytes(op);
  for (const pb::RequestOp& op : txn.failure()) bytes += OpUserBytes(op);
  return bytes;
}

}  // namespace

absl::Status CheckKey(absl::string_view key, const KvLimits& limits) {
  if (key.empty()) return absl::InvalidArgumentError("key is empty");
  return CheckKeySize(key, limits);
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

absl::Status CheckTxnOps(absl::string_view what, size_t count, const KvLimits& limits) {
  if (count > limits.max_txn_ops) {
    return absl::InvalidArgumentError(absl::StrCat("txn ", what, " has ", count,
                                                   " entries, over the max_txn_ops limit of ",
                                                   limits.max_txn_ops));
  }
  return absl::OkStatus();
}

size_t RequestUserBytes(const pb::ClientRequest& request) {
  switch (request.request_case()) {
    case pb::ClientRequest::kRange:
      return UserBytes(request.range());
    case pb::ClientRequest::kPut:
      return UserBytes(request.put());
    case pb::ClientRequest::kDeleteRange:
      return UserBytes(request.delete_range());
    case pb::ClientRequest::kTxn:
      return TxnUserBytes(request.txn());
    default:
      return 0;
  }
}

absl::Status CheckRequestSize(const pb::ClientRequest& request, const KvLimits& limits) {
  const size_t user_bytes = RequestUserBytes(request);
  if (user_bytes > limits.max_request_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "request holds ", user_bytes, " bytes of keys and values, over the max_request_bytes ",
        "limit of ", limits.max_request_bytes, " bytes"));
  }
  const size_t encoded_bytes = request.ByteSizeLong();
  if (encoded_bytes > MaxEncodedRequestBytes(limits)) {
    return absl::InvalidArgumentError(
        absl::StrCat("request encodes to ", encoded_bytes, " bytes, over the limit of ",
                     MaxEncodedRequestBytes(limits), " bytes for its ", user_bytes,
                     " bytes of keys and values (fields this version does not know?)"));
  }
  return absl::OkStatus();
}

absl::Status CheckRequestLimits(const pb::ClientRequest& request, const KvLimits& limits) {
  switch (request.request_case()) {
    case pb::ClientRequest::kRange:
      STEAD_RETURN_IF_ERROR(CheckRangeLimits(request.range(), limits));
      break;
    case pb::ClientRequest::kPut:
      STEAD_RETURN_IF_ERROR(CheckPutLimits(request.put(), limits));
      break;
    case pb::ClientRequest::kDeleteRange:
      STEAD_RETURN_IF_ERROR(CheckDeleteLimits(request.delete_range(), limits));
      break;
    case pb::ClientRequest::kTxn:
      STEAD_RETURN_IF_ERROR(CheckTxnLimits(request.txn(), limits));
      break;
    default:
      return absl::OkStatus();
  }
  return CheckRequestSize(request, limits);
}

absl::Status CheckWriteResponseSize(size_t response_bytes, const KvLimits& limits) {
  if (response_bytes > limits.max_write_response_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the response would hold more than ", limits.max_write_response_bytes,
        " bytes of keys and values (max_write_response_bytes): ask for fewer keys, without "
        "prev_kv, or read them with range, which pages"));
  }
  return absl::OkStatus();
}

}  // namespace stead::server
