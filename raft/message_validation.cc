#include "raft/message_validation.h"

#include <set>

#include "absl/strings/str_cat.h"
#include "raft/read_only.h"

namespace stead::raft {
namespace {

absl::Status Invalid(const pb::Message& message, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(
      "raft message ", pb::MessageType_Name(message.type()), " from ", message.from(), ": ", what));
}

absl::Status ValidateEntries(const pb::Message& message) {
  Term previous_term = message.log_term();
  for (int i = 0; i < message.entries_size(); ++i) {
    const pb::Entry& entry = message.entries(i);
    if (entry.index() != message.index() + static_cast<Index>(i) + 1) {
      return Invalid(message, absl::StrCat("entries[", i, "].index ", entry.index(),
                                           " is not consecutive after index ", message.index()));
    }
    if (entry.term() == 0 || entry.term() < previous_term || entry.term() > message.term()) {
      return Invalid(message, absl::StrCat("entries[", i, "].term ", entry.term(),
                                           " is 0, decreasing or above the message term"));
    }
    if (entry.type() != pb::ENTRY_TYPE_NORMAL && entry.type() != pb::ENTRY_TYPE_CONF_CHANGE) {
      return Invalid(message, absl::StrCat("entries[", i, "].type is unknown"));
    }
    previous_term = entry.term();
  }
  return absl::OkStatus();
}

absl::Status ValidateConfState(const pb::Message& message) {
  const pb::ConfState& conf_state = message.snapshot().conf_state();
  if (conf_state.voters_size() == 0) return Invalid(message, "snapshot has no voters");
  std::set<NodeId> seen;
  for (const auto* ids : {&conf_state.voters(), &conf_state.learners()}) {
    for (NodeId id : *ids) {
      if (id == kNoNode) return Invalid(message, "snapshot conf_state holds node id 0");
      if (!seen.insert(id).second) {
        return Invalid(message, absl::StrCat("snapshot conf_state lists node ", id, " twice"));
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace

bool IsResponse(pb::MessageType type) {
  return type == pb::MESSAGE_TYPE_PRE_VOTE_RESPONSE || type == pb::MESSAGE_TYPE_VOTE_RESPONSE ||
         type == pb::MESSAGE_TYPE_APPEND_RESPONSE || type == pb::MESSAGE_TYPE_HEARTBEAT_RESPONSE ||
         type == pb::MESSAGE_TYPE_READ_INDEX_RESPONSE;
}

absl::Status ValidateMessage(const pb::Message& message, NodeId self) {
  if (message.type() <= pb::MESSAGE_TYPE_UNSPECIFIED ||
      message.type() > pb::MESSAGE_TYPE_READ_INDEX_RESPONSE) {
    return Invalid(message, "unknown type");
  }
  if (message.from() == kNoNode) return Invalid(message, "from is 0");
  if (message.from() == self) return Invalid(message, "from is this node");
  if (message.to() != self) {
    return Invalid(message, absl::StrCat("to is ", message.to(), ", not this node ", self));
  }
  if (message.term() == 0) return Invalid(message, "term is 0");
  if (message.entries_size() > 0 && message.type() != pb::MESSAGE_TYPE_APPEND) {
    return Invalid(message, "entries in a message that carries none");
  }
  switch (message.type()) {
    case pb::MESSAGE_TYPE_APPEND:
      if ((message.index() == 0) != (message.log_term() == 0)) {
        return Invalid(message, "log_term must be 0 exactly when index is 0");
      }
      if (message.log_term() > message.term()) {
        return Invalid(message, "log_term above the message term");
      }
      return ValidateEntries(message);
    case pb::MESSAGE_TYPE_VOTE:
    case pb::MESSAGE_TYPE_PRE_VOTE:
      if (message.log_term() > message.term()) {
        return Invalid(message, "log_term above the message term");
      }
      return absl::OkStatus();
    case pb::MESSAGE_TYPE_SNAPSHOT:
      if (message.snapshot().index() == 0 || message.snapshot().term() == 0) {
        return Invalid(message, "snapshot index and term must be > 0");
      }
      if (message.snapshot().term() > message.term()) {
        return Invalid(message, "snapshot term above the message term");
      }
      return ValidateConfState(message);
    case pb::MESSAGE_TYPE_READ_INDEX:
    case pb::MESSAGE_TYPE_READ_INDEX_RESPONSE:
      // Reserved contexts (lease heartbeats, the leader's own keys) never travel here.
      if (message.context().empty() || message.context()[0] == kReservedContextByte) {
        return Invalid(message, "read context is empty or reserved");
      }
      return absl::OkStatus();
    default:
      return absl::OkStatus();
  }
}

}  // namespace stead::raft
