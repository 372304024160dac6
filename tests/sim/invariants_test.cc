#include "tests/sim/invariants.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace stead::sim {
namespace {

pb::Entry MakeEntry(raft::Index index, raft::Term term, const std::string& data) {
  pb::Entry entry;
  entry.set_index(index);
  entry.set_term(term);
  entry.set_type(pb::ENTRY_TYPE_NORMAL);
  entry.set_data(data);
  return entry;
}

TEST(SafetyChecker, ElectionSafetyAllowsOneLeaderPerTerm) {
  SafetyChecker checker;
  bool is_new = false;
  EXPECT_EQ(checker.OnLeader(3, 1, &is_new), "");
  EXPECT_TRUE(is_new);
  EXPECT_EQ(checker.OnLeader(3, 1, &is_new), "");  // the same leader seen again
  EXPECT_FALSE(is_new);
  EXPECT_EQ(checker.OnLeader(4, 2, &is_new), "");
  EXPECT_NE(checker.OnLeader(3, 2, &is_new).find("election safety"), std::string::npos);
}

TEST(SafetyChecker, LogMatchingComparesContentAndPredecessor) {
  const struct {
    std::string name;
    raft::Term previous_term;
    std::vector<pb::Entry> entries;
    bool want_violation;
  } cases[] = {
      {"same entry, same predecessor", 1, {MakeEntry(2, 2, "a")}, false},
      {"same index and term, other content", 1, {MakeEntry(2, 2, "b")}, true},
      {"same entry, other predecessor term", 3, {MakeEntry(2, 2, "a")}, true},
      {"other term at the index is fine", 1, {MakeEntry(2, 3, "c")}, false},
      {"predecessor inside the batch", 1, {MakeEntry(2, 2, "a"), MakeEntry(3, 2, "x")}, false},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    SafetyChecker checker;
    ASSERT_EQ(checker.OnPersistedEntries(1, 1, {MakeEntry(2, 2, "a"), MakeEntry(3, 2, "x")}), "");
    const std::string violation = checker.OnPersistedEntries(2, c.previous_term, c.entries);
    EXPECT_EQ(!violation.empty(), c.want_violation) << violation;
  }
}

TEST(SafetyChecker, StateMachineSafetyComparesEntriesAndPrefixes) {
  SafetyChecker checker;
  const pb::Entry entry = MakeEntry(5, 2, "put");
  const uint64_t content = EntryContentHash(entry);
  bool is_new = false;
  EXPECT_EQ(checker.OnApplied(1, 5, 2, content, /*chain_hash=*/77, /*node_term=*/2, &is_new), "");
  EXPECT_TRUE(is_new);
  EXPECT_EQ(checker.OnApplied(2, 5, 2, content, 77, 3, &is_new), "");
  EXPECT_FALSE(is_new);
  EXPECT_NE(checker.OnApplied(3, 5, 3, content, 77, 3, &is_new).find("state machine safety"),
            std::string::npos);
  EXPECT_NE(checker.OnApplied(3, 5, 2, content, 78, 3, &is_new).find("prefix"), std::string::npos);
  EXPECT_EQ(checker.OnSnapshotState(4, 5, 77), "");
  EXPECT_NE(checker.OnSnapshotState(4, 5, 99), "");
}

TEST(SafetyChecker, LeaderCompletenessOnlyBindsLeadersAfterTheCommitTerm) {
  // Goal: an entry committed in term 5 must be in every leader's log from term 6 on,
  // while a deposed leader of term 4 that never heard of term 5 may hold anything there
  // (the false alarm the commit-term bound exists to avoid).
  SafetyChecker checker;
  const pb::Entry committed = MakeEntry(145, 3, "written in term 3");
  EXPECT_EQ(checker.OnCommitted(/*leader=*/2, /*leader_term=*/5, committed), "");
  const pb::Entry other = MakeEntry(145, 4, "the deposed leader's own");
  EXPECT_EQ(checker.CheckLeaderEntry(1, 4, other), "");
  EXPECT_EQ(checker.CheckLeaderEntry(1, 5, other), "");
  EXPECT_NE(checker.CheckLeaderEntry(3, 6, other).find("leader completeness"), std::string::npos);
  EXPECT_EQ(checker.CheckLeaderEntry(3, 6, committed), "");
  EXPECT_EQ(checker.MaxCommittedBefore(5), 0u);
  EXPECT_EQ(checker.MaxCommittedBefore(6), 145u);

  // A later observation with a smaller term tightens the bound.
  bool is_new = false;
  EXPECT_EQ(checker.OnApplied(3, 145, 3, EntryContentHash(committed), 1, /*node_term=*/4, &is_new),
            "");
  EXPECT_NE(checker.CheckLeaderEntry(1, 5, other), "");
}

TEST(SafetyChecker, TwoDifferentCommitsAtOneIndexAreReported) {
  SafetyChecker checker;
  EXPECT_EQ(checker.OnCommitted(1, 2, MakeEntry(7, 2, "a")), "");
  EXPECT_NE(checker.OnCommitted(2, 3, MakeEntry(7, 3, "b")).find("state machine safety"),
            std::string::npos);
}

}  // namespace
}  // namespace stead::sim
