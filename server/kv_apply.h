// The key-value commands as the state machine applies them: a committed entry's command
// is a serialized pb::ClientRequest (put or delete), its result a serialized
// pb::ClientResponse for the proposer.
#ifndef STEAD_SERVER_KV_APPLY_H_
#define STEAD_SERVER_KV_APPLY_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "proto/kv.pb.h"
#include "storage/limits.h"
#include "storage/state_machine.h"

namespace stead::server {

// Checks a write before it is proposed, so that a request the state machine would
// refuse never enters the log: InvalidArgument naming the field or limit.
absl::Status ValidateWriteRequest(const pb::ClientRequest& request, const storage::Limits& limits);

// The ApplyFunction of the key-value service (see raft_node.h). Deterministic: the
// outcome depends only on the command and the state before it.
absl::StatusOr<std::string> ApplyKvCommand(absl::string_view command, const pb::Entry& entry,
                                           const storage::StateMachine& state,
                                           std::vector<storage::Mutation>* mutations);

// Serves a read from the local state machine: a single key when range_end is empty,
// else [key, range_end) ("\0" as range_end means every key >= key), honouring limit,
// reverse, keys_only and count_only. InvalidArgument for a malformed range.
absl::StatusOr<pb::RangeResponse> ReadRange(const pb::RangeRequest& request,
                                            const storage::StateMachine& state);

}  // namespace stead::server

#endif  // STEAD_SERVER_KV_APPLY_H_
