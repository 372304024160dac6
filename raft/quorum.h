// Majority arithmetic over a voter set (Raft thesis §3.4, §3.6): the size of a majority,
// the index a majority has replicated, and the outcome of a vote.
//
// Pure functions; thread-safe.
#ifndef STEAD_RAFT_QUORUM_H_
#define STEAD_RAFT_QUORUM_H_

#include <cstddef>
#include <map>
#include <vector>

#include "raft/types.h"

namespace stead::raft {

// Members needed for a majority of `voter_count` voters: voter_count / 2 + 1. An empty
// voter set has no majority; MajoritySize(0) is 1 so nothing is ever decided by it.
size_t MajoritySize(size_t voter_count);

// The largest index that a majority of voters has replicated, given each voter's match
// index (in any order). 0 for no voters.
Index QuorumCommittedIndex(std::vector<Index> match_indexes);

enum class VoteResult { kPending, kWon, kLost };

// The outcome of an election among `voters`, given the answers received so far
// (granted = true). Answers from non-voters are ignored. kWon once a majority granted,
// kLost once a majority can no longer be reached, kPending otherwise.
VoteResult TallyVotes(const std::vector<NodeId>& voters, const std::map<NodeId, bool>& votes);

}  // namespace stead::raft

#endif  // STEAD_RAFT_QUORUM_H_
