// Validation of messages received from peers. A message is input: a malformed one is
// refused with a Status naming the field, never CHECKed (STYLE.md §4).
//
// Pure functions; thread-safe.
#ifndef STEAD_RAFT_MESSAGE_VALIDATION_H_
#define STEAD_RAFT_MESSAGE_VALIDATION_H_

#include "absl/status/status.h"
#include "proto/raft.pb.h"
#include "raft/types.h"

namespace stead::raft {

// Checks what must hold for any message `self` receives: a known type; from != 0 and
// != self; to == self; term > 0; for APPEND, entries with consecutive indexes starting at
// index + 1, known types, terms > 0 that never decrease, start at or after log_term and
// never exceed the message term; log_term == 0 exactly when index == 0 for APPEND; a
// snapshot with index > 0 and term > 0 and a conf_state with voters, no node id 0 and
// no id listed twice for SNAPSHOT; a non-empty context that is not reserved (see
// kReservedContextByte) for READ_INDEX and READ_INDEX_RESPONSE. Errors: InvalidArgument.
absl::Status ValidateMessage(const pb::Message& message, NodeId self);

// Whether `type` is a response to a request (the answering side never changes role).
bool IsResponse(pb::MessageType type);

}  // namespace stead::raft

#endif  // STEAD_RAFT_MESSAGE_VALIDATION_H_
