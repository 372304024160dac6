#include "raft/quorum.h"

#include <algorithm>
#include <functional>

namespace stead::raft {

size_t MajoritySize(size_t voter_count) { return voter_count / 2 + 1; }

Index QuorumCommittedIndex(std::vector<Index> match_indexes) {
  if (match_indexes.empty()) return 0;
  // Sorted descending, the entry at position majority-1 is the highest index that at
  // least `majority` voters have reached.
  const size_t majority = MajoritySize(match_indexes.size());
  std::nth_element(match_indexes.begin(),
                   match_indexes.begin() + static_cast<std::ptrdiff_t>(majority - 1),
                   match_indexes.end(), std::greater<Index>());
  return match_indexes[majority - 1];
}

VoteResult TallyVotes(const std::vector<NodeId>& voters, const std::map<NodeId, bool>& votes) {
  if (voters.empty()) return VoteResult::kPending;
  size_t granted = 0;
  size_t rejected = 0;
  for (NodeId voter : voters) {
    const auto it = votes.find(voter);
    if (it == votes.end()) continue;
    if (it->second) {
      ++granted;
    } else {
      ++rejected;
    }
  }
  const size_t majority = MajoritySize(voters.size());
  if (granted >= majority) return VoteResult::kWon;
  // The voters that did not answer yet cannot make up a majority any more.
  if (voters.size() - rejected < majority) return VoteResult::kLost;
  return VoteResult::kPending;
}

}  // namespace stead::raft
