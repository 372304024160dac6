#include "server/kv_apply.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace stead::server {
namespace {

// Most keys one range read returns; a larger range is paged with next_key.
constexpr int64_t kMaxRangeLimit = 10000;

pb::KeyValue MakeKeyValue(std::string key, std::string value, bool keys_only) {
  pb::KeyValue kv;
  kv.set_key(std::move(key));
  if (!keys_only) kv.set_value(std::move(value));
  return kv;
}

}  // namespace

absl::Status ValidateWriteRequest(const pb::ClientRequest& request, const storage::Limits& limits) {
  switch (request.request_case()) {
    case pb::ClientRequest::kPut:
      STEAD_RETURN_IF_ERROR(storage::CheckKeySize(request.put().key(), limits));
      return storage::CheckValueSize(request.put().value(), limits);
    case pb::ClientRequest::kDeleteRange:
      if (!request.delete_range().range_end().empty()) {
        return absl::InvalidArgumentError(
            "delete with range_end is not supported by this server version: delete keys one "
            "at a time");
      }
      return storage::CheckKeySize(request.delete_range().key(), limits);
    default:
      return absl::InvalidArgumentError("not a write request (put or delete)");
  }
}

absl::StatusOr<std::string> ApplyKvCommand(absl::string_view command, const pb::Entry&,
                                           const storage::StateMachine& state,
                                           std::vector<storage::Mutation>* mutations) {
  pb::ClientRequest request;
  if (!request.ParseFromArray(command.data(), static_cast<int>(command.size()))) {
    return absl::InvalidArgumentError("malformed command in the log");
  }
  pb::ClientResponse response;
  response.set_request_id(request.request_id());
  if (request.has_put()) {
    const pb::PutRequest& put = request.put();
    if (put.prev_kv()) {
      STEAD_ASSIGN_OR_RETURN(std::optional<std::string> previous,
                             state.Get(storage::kDefaultKeyspace, put.key()));
      if (previous) {
        *response.mutable_put()->mutable_prev_kv() =
            MakeKeyValue(put.key(), std::move(*previous), /*keys_only=*/false);
      }
    }
    response.mutable_put();
    mutations->push_back(storage::Mutation::Put(storage::kDefaultKeyspace, put.key(), put.value()));
  } else if (request.has_delete_range()) {
    const pb::DeleteRangeRequest& del = request.delete_range();
    STEAD_ASSIGN_OR_RETURN(std::optional<std::string> previous,
                           state.Get(storage::kDefaultKeyspace, del.key()));
    pb::DeleteRangeResponse* result = response.mutable_delete_range();
    if (previous) {
      result->set_deleted(1);
      if (del.prev_kv()) *result->add_prev_kvs() = MakeKeyValue(del.key(), std::move(*previous), false);
      mutations->push_back(storage::Mutation::Delete(storage::kDefaultKeyspace, del.key()));
    }
  } else {
    return absl::InvalidArgumentError("command is not a put or delete");
  }
  return response.SerializeAsString();
}

absl::StatusOr<pb::RangeResponse> ReadRange(const pb::RangeRequest& request,
                                            const storage::StateMachine& state) {
  if (request.key().empty()) return absl::InvalidArgumentError("range: key is empty");
  if (request.limit() < 0) return absl::InvalidArgumentError("range: limit is negative");
  pb::RangeResponse response;
  if (request.range_end().empty()) {
    STEAD_ASSIGN_OR_RETURN(std::optional<std::string> value,
                           state.Get(storage::kDefaultKeyspace, request.key()));
    if (value) {
      response.set_count(1);
      if (!request.count_only()) {
        *response.add_kvs() = MakeKeyValue(request.key(), std::move(*value), request.keys_only());
      }
    }
    return response;
  }
  storage::ScanOptions scan;
  scan.start_key = request.key();
  // etcd's convention: range_end "\0" means "to the end of the keyspace".
  scan.end_key = request.range_end() == std::string(1, '\0') ? "" : request.range_end();
  if (!scan.end_key.empty() && scan.end_key <= scan.start_key) {
    return absl::InvalidArgumentError("range: range_end must be above key");
  }
  scan.reverse = request.reverse();
  const int64_t limit = request.limit() == 0 ? kMaxRangeLimit : std::min(request.limit(), kMaxRangeLimit);
  scan.limit = static_cast<size_t>(limit);
  STEAD_ASSIGN_OR_RETURN(storage::ScanResult result, state.Scan(scan));
  response.set_count(static_cast<int64_t>(result.pairs.size()));
  response.set_more(result.more);
  if (result.more && !result.pairs.empty() && !request.reverse()) {
    // The next page starts just after the last key returned.
    response.set_next_key(result.pairs.back().key + std::string(1, '\0'));
  }
  if (!request.count_only()) {
    for (storage::KeyValue& pair : result.pairs) {
      *response.add_kvs() = MakeKeyValue(std::move(pair.key), std::move(pair.value), request.keys_only());
    }
  }
  return response;
}

}  // namespace stead::server
