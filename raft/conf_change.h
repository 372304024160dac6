// One-server-at-a-time membership changes (Raft thesis §4.1): validating a proposed
// change against the current membership and computing the membership after it.
//
// Pure functions; thread-safe.
#ifndef STEAD_RAFT_CONF_CHANGE_H_
#define STEAD_RAFT_CONF_CHANGE_H_

#include <vector>

#include "absl/status/status.h"
#include "proto/raft.pb.h"
#include "raft/types.h"

namespace stead::raft {

// Whether `change` makes sense for `conf_state`. Errors: InvalidArgument for an
// unspecified type, node id 0, or removing the last voter; AlreadyExists for adding a
// learner that is already a member or a voter that is already a voter; NotFound for
// removing a non-member.
absl::Status ValidateConfChange(const pb::ConfState& conf_state, const pb::ConfChange& change);

// The membership after `change`: ADD_LEARNER adds a learner, ADD_VOTER adds a voter or
// promotes a learner, REMOVE_NODE removes the member. Lists stay sorted. Precondition:
// ValidateConfChange(conf_state, change) is OK.
pb::ConfState ApplyConfChange(const pb::ConfState& conf_state, const pb::ConfChange& change);

bool IsVoter(const pb::ConfState& conf_state, NodeId id);
bool IsLearner(const pb::ConfState& conf_state, NodeId id);

// A ConfState with the given voters (sorted, no learners).
pb::ConfState MakeConfState(std::vector<NodeId> voters, std::vector<NodeId> learners = {});

}  // namespace stead::raft

#endif  // STEAD_RAFT_CONF_CHANGE_H_
