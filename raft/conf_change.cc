#include "raft/conf_change.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/check.h"

namespace stead::raft {
namespace {

bool Contains(const google::protobuf::RepeatedField<uint64_t>& ids, NodeId id) {
  return std::find(ids.begin(), ids.end(), id) != ids.end();
}

void SetSorted(google::protobuf::RepeatedField<uint64_t>* field, std::vector<NodeId> ids) {
  std::sort(ids.begin(), ids.end());
  field->Clear();
  for (NodeId id : ids) field->Add(id);
}

}  // namespace

bool IsVoter(const pb::ConfState& conf_state, NodeId id) {
  return Contains(conf_state.voters(), id);
}

bool IsLearner(const pb::ConfState& conf_state, NodeId id) {
  return Contains(conf_state.learners(), id);
}

pb::ConfState MakeConfState(std::vector<NodeId> voters, std::vector<NodeId> learners) {
  pb::ConfState conf_state;
  SetSorted(conf_state.mutable_voters(), std::move(voters));
  SetSorted(conf_state.mutable_learners(), std::move(learners));
  return conf_state;
}

absl::Status ValidateConfChange(const pb::ConfState& conf_state, const pb::ConfChange& change) {
  const NodeId id = change.node_id();
  if (id == kNoNode) return absl::InvalidArgumentError("conf change: node_id must not be 0");
  const bool voter = IsVoter(conf_state, id);
  const bool learner = IsLearner(conf_state, id);
  switch (change.type()) {
    case pb::CONF_CHANGE_TYPE_ADD_LEARNER:
      if (voter || learner) {
        return absl::AlreadyExistsError(
            absl::StrCat("conf change: node ", id, " is already a ", voter ? "voter" : "learner"));
      }
      return absl::OkStatus();
    case pb::CONF_CHANGE_TYPE_ADD_VOTER:
      if (voter) {
        return absl::AlreadyExistsError(
            absl::StrCat("conf change: node ", id, " is already a voter"));
      }
      return absl::OkStatus();
    case pb::CONF_CHANGE_TYPE_REMOVE_NODE:
      if (!voter && !learner) {
        return absl::NotFoundError(absl::StrCat("conf change: node ", id, " is not a member"));
      }
      if (voter && conf_state.voters_size() == 1) {
        return absl::InvalidArgumentError(
            absl::StrCat("conf change: cannot remove node ", id, ", the last voter"));
      }
      return absl::OkStatus();
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("conf change: unknown type ", static_cast<int>(change.type())));
  }
}

pb::ConfState ApplyConfChange(const pb::ConfState& conf_state, const pb::ConfChange& change) {
  STEAD_CHECK_OK(ValidateConfChange(conf_state, change));
  std::vector<NodeId> voters(conf_state.voters().begin(), conf_state.voters().end());
  std::vector<NodeId> learners(conf_state.learners().begin(), conf_state.learners().end());
  const NodeId id = change.node_id();
  voters.erase(std::remove(voters.begin(), voters.end(), id), voters.end());
  learners.erase(std::remove(learners.begin(), learners.end(), id), learners.end());
  if (change.type() == pb::CONF_CHANGE_TYPE_ADD_LEARNER) learners.push_back(id);
  if (change.type() == pb::CONF_CHANGE_TYPE_ADD_VOTER) voters.push_back(id);
  return MakeConfState(std::move(voters), std::move(learners));
}

}  // namespace stead::raft
