#include "raft/conf_change.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace stead::raft {
namespace {

using ::stead::testing::StatusIs;
using ::testing::ElementsAreArray;

pb::ConfChange Change(pb::ConfChangeType type, NodeId id) {
  pb::ConfChange change;
  change.set_type(type);
  change.set_node_id(id);
  return change;
}

TEST(ConfChange, ValidateAndApplyTable) {
  const pb::ConfState base = MakeConfState({1, 2, 3}, {4});
  const struct {
    std::string name;
    pb::ConfState conf_state;
    pb::ConfChange change;
    absl::StatusCode want_code;
    std::vector<NodeId> want_voters;
    std::vector<NodeId> want_learners;
  } cases[] = {
      {"add learner",
       base,
       Change(pb::CONF_CHANGE_TYPE_ADD_LEARNER, 5),
       absl::StatusCode::kOk,
       {1, 2, 3},
       {4, 5}},
      {"promote learner",
       base,
       Change(pb::CONF_CHANGE_TYPE_ADD_VOTER, 4),
       absl::StatusCode::kOk,
       {1, 2, 3, 4},
       {}},
      {"add new voter",
       base,
       Change(pb::CONF_CHANGE_TYPE_ADD_VOTER, 9),
       absl::StatusCode::kOk,
       {1, 2, 3, 9},
       {4}},
      {"remove voter",
       base,
       Change(pb::CONF_CHANGE_TYPE_REMOVE_NODE, 2),
       absl::StatusCode::kOk,
       {1, 3},
       {4}},
      {"remove learner",
       base,
       Change(pb::CONF_CHANGE_TYPE_REMOVE_NODE, 4),
       absl::StatusCode::kOk,
       {1, 2, 3},
       {}},
      {"add learner twice",
       base,
       Change(pb::CONF_CHANGE_TYPE_ADD_LEARNER, 4),
       absl::StatusCode::kAlreadyExists,
       {},
       {}},
      {"voter as learner",
       base,
       Change(pb::CONF_CHANGE_TYPE_ADD_LEARNER, 1),
       absl::StatusCode::kAlreadyExists,
       {},
       {}},
      {"add voter twice",
       base,
       Change(pb::CONF_CHANGE_TYPE_ADD_VOTER, 2),
       absl::StatusCode::kAlreadyExists,
       {},
       {}},
      {"remove unknown",
       base,
       Change(pb::CONF_CHANGE_TYPE_REMOVE_NODE, 7),
       absl::StatusCode::kNotFound,
       {},
       {}},
      {"remove last voter",
       MakeConfState({1}),
       Change(pb::CONF_CHANGE_TYPE_REMOVE_NODE, 1),
       absl::StatusCode::kInvalidArgument,
       {},
       {}},
      {"node id 0",
       base,
       Change(pb::CONF_CHANGE_TYPE_ADD_VOTER, 0),
       absl::StatusCode::kInvalidArgument,
       {},
       {}},
      {"unspecified type",
       base,
       Change(pb::CONF_CHANGE_TYPE_UNSPECIFIED, 5),
       absl::StatusCode::kInvalidArgument,
       {},
       {}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_THAT(ValidateConfChange(c.conf_state, c.change), StatusIs(c.want_code));
    if (c.want_code != absl::StatusCode::kOk) continue;
    const pb::ConfState after = ApplyConfChange(c.conf_state, c.change);
    EXPECT_THAT(after.voters(), ElementsAreArray(c.want_voters));
    EXPECT_THAT(after.learners(), ElementsAreArray(c.want_learners));
  }
}

}  // namespace
}  // namespace stead::raft
