#include "raft/message_validation.h"

#include <string>

#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace stead::raft {
namespace {

using ::stead::testing::StatusIs;

pb::Message ValidAppend() {
  pb::Message message;
  message.set_type(pb::MESSAGE_TYPE_APPEND);
  message.set_from(1);
  message.set_to(2);
  message.set_term(3);
  message.set_index(4);
  message.set_log_term(2);
  for (Index index = 5; index <= 6; ++index) {
    pb::Entry* entry = message.add_entries();
    entry->set_index(index);
    entry->set_term(3);
    entry->set_type(pb::ENTRY_TYPE_NORMAL);
  }
  return message;
}

TEST(MessageValidation, Table) {
  const struct {
    std::string name;
    void (*mutate)(pb::Message&);
    std::string want_error;  // empty: valid
  } cases[] = {
      {"valid append", [](pb::Message&) {}, ""},
      {"unknown type", [](pb::Message& m) { m.set_type(static_cast<pb::MessageType>(42)); },
       "unknown type"},
      {"unspecified type", [](pb::Message& m) { m.set_type(pb::MESSAGE_TYPE_UNSPECIFIED); },
       "unknown type"},
      {"from 0", [](pb::Message& m) { m.set_from(0); }, "from is 0"},
      {"from self", [](pb::Message& m) { m.set_from(2); }, "from is this node"},
      {"to another", [](pb::Message& m) { m.set_to(3); }, "to is 3"},
      {"term 0", [](pb::Message& m) { m.set_term(0); }, "term is 0"},
      {"gap in entries", [](pb::Message& m) { m.mutable_entries(1)->set_index(7); },
       "not consecutive"},
      {"first entry index", [](pb::Message& m) { m.set_index(3); }, "not consecutive"},
      {"entry term 0", [](pb::Message& m) { m.mutable_entries(0)->set_term(0); }, "term 0"},
      {"entry term above message", [](pb::Message& m) { m.mutable_entries(1)->set_term(9); },
       "above the message term"},
      {"entry term decreasing",
       [](pb::Message& m) {
         m.mutable_entries(0)->set_term(3);
         m.mutable_entries(1)->set_term(2);
       },
       "decreasing"},
      {"entry type unknown",
       [](pb::Message& m) { m.mutable_entries(0)->set_type(pb::ENTRY_TYPE_UNSPECIFIED); },
       "type is unknown"},
      {"log term without index",
       [](pb::Message& m) {
         m.set_index(0);
         m.clear_entries();
       },
       "log_term must be 0"},
      {"entries on a heartbeat", [](pb::Message& m) { m.set_type(pb::MESSAGE_TYPE_HEARTBEAT); },
       "entries in a message"},
      {"snapshot with node 0",
       [](pb::Message& m) {
         m.clear_entries();
         m.set_type(pb::MESSAGE_TYPE_SNAPSHOT);
         m.mutable_snapshot()->set_index(3);
         m.mutable_snapshot()->set_term(2);
         m.mutable_snapshot()->mutable_conf_state()->add_voters(0);
       },
       "node id 0"},
      {"snapshot with duplicate member",
       [](pb::Message& m) {
         m.clear_entries();
         m.set_type(pb::MESSAGE_TYPE_SNAPSHOT);
         m.mutable_snapshot()->set_index(3);
         m.mutable_snapshot()->set_term(2);
         m.mutable_snapshot()->mutable_conf_state()->add_voters(1);
         m.mutable_snapshot()->mutable_conf_state()->add_learners(1);
       },
       "twice"},
      {"read index",
       [](pb::Message& m) {
         m.clear_entries();
         m.set_type(pb::MESSAGE_TYPE_READ_INDEX);
         m.set_context("r");
       },
       ""},
      {"read index without context",
       [](pb::Message& m) {
         m.clear_entries();
         m.set_type(pb::MESSAGE_TYPE_READ_INDEX);
       },
       "empty or reserved"},
      {"read index response with a reserved context",
       [](pb::Message& m) {
         m.clear_entries();
         m.set_type(pb::MESSAGE_TYPE_READ_INDEX_RESPONSE);
         m.set_context("\x01lease:1");
       },
       "empty or reserved"},
      {"entries on a read index", [](pb::Message& m) { m.set_type(pb::MESSAGE_TYPE_READ_INDEX); },
       "entries in a message"},
      {"snapshot without index",
       [](pb::Message& m) {
         m.clear_entries();
         m.set_type(pb::MESSAGE_TYPE_SNAPSHOT);
       },
       "snapshot index"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    pb::Message message = ValidAppend();
    c.mutate(message);
    if (c.want_error.empty()) {
      EXPECT_OK(ValidateMessage(message, 2));
    } else {
      EXPECT_THAT(ValidateMessage(message, 2),
                  StatusIs(absl::StatusCode::kInvalidArgument, c.want_error));
    }
  }
}

}  // namespace
}  // namespace stead::raft
