#include "raft/quorum.h"

#include <algorithm>
#include <cstdint>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace stead::raft {
namespace {

TEST(Quorum, MajoritySize) {
  const struct {
    size_t voters;
    size_t want;
  } cases[] = {{0, 1}, {1, 1}, {2, 2}, {3, 2}, {4, 3}, {5, 3}, {6, 4}, {7, 4}};
  for (const auto& c : cases) {
    SCOPED_TRACE(c.voters);
    EXPECT_EQ(MajoritySize(c.voters), c.want);
  }
}

TEST(Quorum, CommittedIndexTable) {
  const struct {
    std::string name;
    std::vector<Index> match;
    Index want;
  } cases[] = {
      {"no voters", {}, 0},
      {"single voter", {7}, 7},
      {"two voters need both", {5, 9}, 5},
      {"three all equal", {4, 4, 4}, 4},
      {"three median", {1, 5, 9}, 5},
      {"three unordered", {9, 1, 5}, 5},
      {"three two behind", {0, 0, 9}, 0},
      {"four need three", {2, 4, 6, 8}, 4},
      {"five median", {10, 3, 7, 7, 1}, 7},
      {"five with zeros", {0, 0, 0, 5, 5}, 0},
      {"seven", {1, 2, 3, 4, 5, 6, 7}, 4},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_EQ(QuorumCommittedIndex(c.match), c.want);
  }
}

TEST(Quorum, TallyVotesTable) {
  const struct {
    std::string name;
    std::vector<NodeId> voters;
    std::map<NodeId, bool> votes;
    VoteResult want;
  } cases[] = {
      {"no voters", {}, {}, VoteResult::kPending},
      {"single self vote", {1}, {{1, true}}, VoteResult::kWon},
      {"single reject", {1}, {{1, false}}, VoteResult::kLost},
      {"three one grant", {1, 2, 3}, {{1, true}}, VoteResult::kPending},
      {"three two grants", {1, 2, 3}, {{1, true}, {3, true}}, VoteResult::kWon},
      {"three two rejects", {1, 2, 3}, {{1, true}, {2, false}, {3, false}}, VoteResult::kLost},
      {"three split pending", {1, 2, 3}, {{1, true}, {2, false}}, VoteResult::kPending},
      {"non-voter ignored", {1, 2, 3}, {{1, true}, {9, true}}, VoteResult::kPending},
      {"four two grants", {1, 2, 3, 4}, {{1, true}, {2, true}}, VoteResult::kPending},
      {"four two rejects", {1, 2, 3, 4}, {{3, false}, {4, false}}, VoteResult::kLost},
      {"five three grants", {1, 2, 3, 4, 5}, {{1, true}, {4, true}, {5, true}}, VoteResult::kWon},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_EQ(TallyVotes(c.voters, c.votes), c.want);
  }
}

// The naive definition: the largest index i such that at least a majority of voters
// have match >= i.
Index NaiveCommittedIndex(const std::vector<Index>& match) {
  if (match.empty()) return 0;
  Index best = 0;
  const Index highest = *std::max_element(match.begin(), match.end());
  for (Index candidate = 0; candidate <= highest; ++candidate) {
    size_t count = 0;
    for (Index m : match) {
      if (m >= candidate) ++count;
    }
    if (count >= match.size() / 2 + 1) best = candidate;
  }
  return best;
}

TEST(Quorum, CommittedIndexMatchesNaiveModel) {
  // Goal: the optimized commit computation (nth_element) agrees with the definition on
  // thousands of seeded random voter sets and match indexes.
  std::mt19937_64 random(20261122);
  for (int round = 0; round < 5000; ++round) {
    const size_t voters = 1 + random() % 9;
    std::vector<Index> match(voters);
    const Index spread = 1 + random() % 40;
    for (Index& m : match) m = random() % spread;
    SCOPED_TRACE(round);
    ASSERT_EQ(QuorumCommittedIndex(match), NaiveCommittedIndex(match));
  }
}

// Naive vote tally: count grants and rejects among voters and decide from the counts.
VoteResult NaiveTally(const std::vector<NodeId>& voters, const std::map<NodeId, bool>& votes) {
  if (voters.empty()) return VoteResult::kPending;
  size_t granted = 0;
  size_t missing = 0;
  for (NodeId voter : voters) {
    auto it = votes.find(voter);
    if (it == votes.end()) {
      ++missing;
    } else if (it->second) {
      ++granted;
    }
  }
  if (2 * granted > voters.size()) return VoteResult::kWon;
  if (2 * (granted + missing) <= voters.size()) return VoteResult::kLost;
  return VoteResult::kPending;
}

TEST(Quorum, TallyMatchesNaiveModel) {
  std::mt19937_64 random(7);
  for (int round = 0; round < 5000; ++round) {
    std::vector<NodeId> voters;
    const size_t count = random() % 8;
    for (size_t i = 1; i <= count; ++i) voters.push_back(i);
    std::map<NodeId, bool> votes;
    for (NodeId id = 1; id <= count + 2; ++id) {
      const uint64_t r = random() % 3;
      if (r == 1) votes[id] = true;
      if (r == 2) votes[id] = false;
    }
    SCOPED_TRACE(round);
    ASSERT_EQ(TallyVotes(voters, votes), NaiveTally(voters, votes));
  }
}

}  // namespace
}  // namespace stead::raft
