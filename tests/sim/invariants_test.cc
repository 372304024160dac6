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

// The check a violation names, kNone when there is none.
Check CheckOf(const Violation& violation) { return violation.check; }

SafetyChecker::AppliedEntry Applied(raft::Term term, uint64_t content_hash, uint64_t chain_hash,
                                    uint64_t state_hash = 0) {
  return SafetyChecker::AppliedEntry{term, content_hash, chain_hash, state_hash};
}

TEST(SafetyChecker, ElectionSafetyAllowsOneLeaderPerTerm) {
  SafetyChecker checker;
  bool is_new = false;
  EXPECT_EQ(CheckOf(checker.OnLeader(3, 1, &is_new)), Check::kNone);
  EXPECT_TRUE(is_new);
  EXPECT_EQ(CheckOf(checker.OnLeader(3, 1, &is_new)), Check::kNone);  // the same leader again
  EXPECT_FALSE(is_new);
  EXPECT_EQ(CheckOf(checker.OnLeader(4, 2, &is_new)), Check::kNone);
  const Violation v = checker.OnLeader(3, 2, &is_new);
  EXPECT_EQ(v.check, Check::kElectionSafety);
  EXPECT_EQ(v.ToString().rfind("election safety: ", 0), 0u) << v.ToString();
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
    ASSERT_FALSE(checker.OnPersistedEntries(1, 1, {MakeEntry(2, 2, "a"), MakeEntry(3, 2, "x")}));
    const Violation violation = checker.OnPersistedEntries(2, c.previous_term, c.entries);
    EXPECT_EQ(violation.check, c.want_violation ? Check::kLogMatching : Check::kNone)
        << violation.ToString();
  }
}

TEST(SafetyChecker, StateMachineSafetyComparesEntriesAndPrefixes) {
  SafetyChecker checker;
  const pb::Entry entry = MakeEntry(5, 2, "put");
  const uint64_t content = EntryContentHash(entry);
  bool is_new = false;
  EXPECT_FALSE(checker.OnApplied(1, 5, Applied(2, content, /*chain_hash=*/77, /*state_hash=*/9),
                                 /*node_term=*/2, &is_new));
  EXPECT_TRUE(is_new);
  EXPECT_FALSE(checker.OnApplied(2, 5, Applied(2, content, 77, 9), 3, &is_new));
  EXPECT_FALSE(is_new);
  EXPECT_EQ(CheckOf(checker.OnApplied(3, 5, Applied(3, content, 77, 9), 3, &is_new)),
            Check::kStateMachineSafety);
  const Violation prefix = checker.OnApplied(3, 5, Applied(2, content, 78, 9), 3, &is_new);
  EXPECT_EQ(prefix.check, Check::kStateMachineSafety);
  EXPECT_NE(prefix.what.find("prefix"), std::string::npos) << prefix.what;
  EXPECT_FALSE(checker.OnSnapshotState(4, 5, 77, 9));
  EXPECT_EQ(CheckOf(checker.OnSnapshotState(4, 5, 99, 9)), Check::kStateMachineSafety);
}

TEST(SafetyChecker, StateMachineContentComparesStatesAtOneIndex) {
  // Goal: the same entries applied in the same order must leave the same contents; an
  // applier that loses a write keeps every Raft invariant and only this check sees it.
  SafetyChecker checker;
  const uint64_t content = EntryContentHash(MakeEntry(5, 2, "put"));
  bool is_new = false;
  ASSERT_FALSE(checker.OnApplied(1, 5, Applied(2, content, 77, /*state_hash=*/9), 2, &is_new));
  const Violation v = checker.OnApplied(2, 5, Applied(2, content, 77, 10), 2, &is_new);
  EXPECT_EQ(v.check, Check::kStateMachineContent);
  EXPECT_NE(v.what.find("node 2 and node 1"), std::string::npos) << v.what;
  // A snapshot carries contents too: same prefix, other data.
  EXPECT_EQ(CheckOf(checker.OnSnapshotState(3, 5, 77, 10)), Check::kStateMachineContent);
  // A state machine rolled back by a crash that applies the index again is compared
  // like any other.
  EXPECT_FALSE(checker.OnApplied(1, 5, Applied(2, content, 77, 9), 3, &is_new));
  EXPECT_EQ(CheckOf(checker.OnApplied(1, 5, Applied(2, content, 77, 8), 3, &is_new)),
            Check::kStateMachineContent);
}

TEST(SafetyChecker, LeaderCompletenessOnlyBindsLeadersAfterTheCommitTerm) {
  // Goal: an entry committed in term 5 must be in every leader's log from term 6 on,
  // while a deposed leader of term 4 that never heard of term 5 may hold anything there
  // (the false alarm the commit-term bound exists to avoid).
  SafetyChecker checker;
  const pb::Entry committed = MakeEntry(145, 3, "written in term 3");
  EXPECT_FALSE(checker.OnCommitted(/*leader=*/2, /*leader_term=*/5, committed));
  const pb::Entry other = MakeEntry(145, 4, "the deposed leader's own");
  EXPECT_FALSE(checker.CheckLeaderEntry(1, 4, other));
  EXPECT_FALSE(checker.CheckLeaderEntry(1, 5, other));
  EXPECT_EQ(CheckOf(checker.CheckLeaderEntry(3, 6, other)), Check::kLeaderCompleteness);
  EXPECT_FALSE(checker.CheckLeaderEntry(3, 6, committed));
  EXPECT_EQ(checker.MaxCommittedBefore(5), 0u);
  EXPECT_EQ(checker.MaxCommittedBefore(6), 145u);

  // A later observation with a smaller term tightens the bound.
  bool is_new = false;
  EXPECT_FALSE(checker.OnApplied(3, 145, Applied(3, EntryContentHash(committed), 1),
                                 /*node_term=*/4, &is_new));
  EXPECT_EQ(CheckOf(checker.CheckLeaderEntry(1, 5, other)), Check::kLeaderCompleteness);
}

TEST(SafetyChecker, TwoDifferentCommitsAtOneIndexAreReported) {
  SafetyChecker checker;
  EXPECT_FALSE(checker.OnCommitted(1, 2, MakeEntry(7, 2, "a")));
  EXPECT_EQ(CheckOf(checker.OnCommitted(2, 3, MakeEntry(7, 3, "b"))), Check::kStateMachineSafety);
}

}  // namespace
}  // namespace stead::sim
