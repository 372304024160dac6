#include "raft/raft_log.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "raft/memory_log_storage.h"
#include "tests/testing/status_matchers.h"

namespace stead::raft {
namespace {

using ::stead::testing::StatusIs;

pb::Entry MakeEntry(Index index, Term term, std::string data = "") {
  pb::Entry entry;
  entry.set_index(index);
  entry.set_term(term);
  entry.set_type(pb::ENTRY_TYPE_NORMAL);
  entry.set_data(std::move(data));
  return entry;
}

// Entries at indexes first, first+1, ... with the given terms.
std::vector<pb::Entry> EntriesWithTerms(Index first, const std::vector<Term>& terms) {
  std::vector<pb::Entry> entries;
  for (size_t i = 0; i < terms.size(); ++i) entries.push_back(MakeEntry(first + i, terms[i]));
  return entries;
}

std::vector<Term> Terms(const RaftLog& log) {
  std::vector<Term> out;
  for (Index index = log.FirstIndex(); index <= log.LastIndex(); ++index) {
    out.push_back(*log.TermAt(index));
  }
  return out;
}

TEST(RaftLog, OpenReadsStorage) {
  MemoryLogStorage storage;
  ASSERT_OK(storage.Append(EntriesWithTerms(1, {1, 1, 2})));
  pb::HardState hard_state;
  hard_state.set_term(2);
  hard_state.set_commit(2);
  ASSERT_OK_AND_ASSIGN(RaftLog log, RaftLog::Open(&storage, hard_state, 1));
  EXPECT_EQ(log.FirstIndex(), 1u);
  EXPECT_EQ(log.LastIndex(), 3u);
  EXPECT_EQ(log.LastTerm(), 2u);
  EXPECT_EQ(log.committed(), 2u);
  EXPECT_EQ(log.applied(), 1u);
  EXPECT_TRUE(log.HasNextCommittedEntries());
  hard_state.set_commit(9);
  EXPECT_THAT(RaftLog::Open(&storage, hard_state, 0), StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_THAT(RaftLog::Open(&storage, pb::HardState(), 4), StatusIs(absl::StatusCode::kDataLoss));
  // Applied ahead of the persisted commit: those entries were committed.
  hard_state.set_commit(1);
  ASSERT_OK_AND_ASSIGN(RaftLog ahead, RaftLog::Open(&storage, hard_state, 3));
  EXPECT_EQ(ahead.committed(), 3u);
  EXPECT_FALSE(ahead.HasNextCommittedEntries());
}

TEST(RaftLog, MaybeAppendTable) {
  // Goal: Raft §5.3 receiver rules. Existing log: terms 1 1 2 2 3 at 1..5, commit 1.
  const struct {
    std::string name;
    Index prev_index;
    Term prev_term;
    std::vector<Term> new_terms;  // entries from prev_index + 1
    bool want_match;
    std::vector<Term> want_terms;
  } cases[] = {
      {"mismatch at prev", 3, 1, {4}, false, {1, 1, 2, 2, 3}},
      {"prev beyond log", 7, 3, {3}, false, {1, 1, 2, 2, 3}},
      {"heartbeat-like empty append", 5, 3, {}, true, {1, 1, 2, 2, 3}},
      {"append at the end", 5, 3, {3, 4}, true, {1, 1, 2, 2, 3, 3, 4}},
      {"duplicate prefix does not truncate", 2, 1, {2}, true, {1, 1, 2, 2, 3}},
      {"conflict truncates", 2, 1, {2, 4}, true, {1, 1, 2, 4}},
      {"conflict in the middle", 3, 2, {2, 5, 5}, true, {1, 1, 2, 2, 5, 5}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    MemoryLogStorage storage;
    ASSERT_OK(storage.Append(EntriesWithTerms(1, {1, 1, 2, 2, 3})));
    pb::HardState hard_state;
    hard_state.set_commit(1);
    ASSERT_OK_AND_ASSIGN(RaftLog log, RaftLog::Open(&storage, hard_state, 0));
    ASSERT_OK_AND_ASSIGN(auto result,
                         log.MaybeAppend(c.prev_index, c.prev_term,
                                         EntriesWithTerms(c.prev_index + 1, c.new_terms)));
    EXPECT_EQ(result.has_value(), c.want_match);
    if (result) {
      EXPECT_EQ(result->last_new_index, c.prev_index + c.new_terms.size());
    }
    EXPECT_EQ(Terms(log), c.want_terms);
  }
}

TEST(RaftLog, MaybeAppendRefusesToOverwriteCommitted) {
  MemoryLogStorage storage;
  ASSERT_OK(storage.Append(EntriesWithTerms(1, {1, 1, 2})));
  pb::HardState hard_state;
  hard_state.set_commit(3);
  ASSERT_OK_AND_ASSIGN(RaftLog log, RaftLog::Open(&storage, hard_state, 0));
  EXPECT_THAT(log.MaybeAppend(1, 1, EntriesWithTerms(2, {3})),
              StatusIs(absl::StatusCode::kInternal, "committed"));
  EXPECT_EQ(Terms(log), (std::vector<Term>{1, 1, 2}));
}

TEST(RaftLog, FindConflictByTerm) {
  MemoryLogStorage storage;
  ASSERT_OK(storage.Append(EntriesWithTerms(1, {1, 1, 3, 3, 3, 5, 5})));
  ASSERT_OK_AND_ASSIGN(RaftLog log, RaftLog::Open(&storage, pb::HardState(), 0));
  const struct {
    Index index;
    Term term;
    Index want_index;
    Term want_term;
  } cases[] = {
      {7, 5, 7, 5}, {7, 4, 5, 3}, {7, 2, 2, 1}, {7, 0, 0, 0}, {4, 3, 4, 3}, {9, 5, 7, 5},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.index * 100 + c.term);
    const auto [index, term] = log.FindConflictByTerm(c.index, c.term);
    EXPECT_EQ(index, c.want_index);
    EXPECT_EQ(term, c.want_term);
  }
}

TEST(RaftLog, UnstableEntriesAreHandedOutOnceAndStabilized) {
  MemoryLogStorage storage;
  ASSERT_OK(storage.Append(EntriesWithTerms(1, {1})));
  ASSERT_OK_AND_ASSIGN(RaftLog log, RaftLog::Open(&storage, pb::HardState(), 0));
  log.Append(EntriesWithTerms(2, {2, 2}));
  EXPECT_TRUE(log.HasUnsentEntries());
  std::vector<pb::Entry> sent = log.TakeUnsentEntries();
  ASSERT_EQ(sent.size(), 2u);
  EXPECT_FALSE(log.HasUnsentEntries());
  EXPECT_EQ(log.PersistedIndex(), 1u);
  // A stale acknowledgement (wrong term) is ignored.
  EXPECT_FALSE(log.StableTo(3, 1));
  ASSERT_OK(storage.Append(sent));
  EXPECT_TRUE(log.StableTo(3, 2));
  EXPECT_EQ(log.PersistedIndex(), 3u);
  log.CommitTo(3);
  ASSERT_OK_AND_ASSIGN(std::vector<pb::Entry> committed, log.TakeNextCommittedEntries());
  ASSERT_EQ(committed.size(), 3u);
  EXPECT_EQ(committed.back().index(), 3u);
  EXPECT_FALSE(log.HasNextCommittedEntries());
}

TEST(RaftLog, TruncationBelowPersistedIndexIsHandedOutAgain) {
  // Goal: a conflict that reaches into persisted entries re-hands the new suffix so the
  // runtime truncates storage; an acknowledgement for the old entries is ignored.
  MemoryLogStorage storage;
  ASSERT_OK(storage.Append(EntriesWithTerms(1, {1, 1, 1})));
  ASSERT_OK_AND_ASSIGN(RaftLog log, RaftLog::Open(&storage, pb::HardState(), 0));
  ASSERT_OK_AND_ASSIGN(auto result, log.MaybeAppend(1, 1, EntriesWithTerms(2, {2})));
  ASSERT_TRUE(result.has_value());
  EXPECT_EQ(result->first_written_index, 2u);
  EXPECT_EQ(log.LastIndex(), 2u);
  EXPECT_EQ(log.PersistedIndex(), 1u);
  EXPECT_FALSE(log.StableTo(3, 1)) << "entry 3 no longer exists";
  std::vector<pb::Entry> sent = log.TakeUnsentEntries();
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].index(), 2u);
  ASSERT_OK(storage.Append(sent));
  EXPECT_TRUE(log.StableTo(2, 2));
  EXPECT_EQ(storage.LastIndex(), 2u);
}

TEST(RaftLog, RestoreSnapshotReplacesTheLog) {
  MemoryLogStorage storage;
  ASSERT_OK(storage.Append(EntriesWithTerms(1, {1, 1})));
  ASSERT_OK_AND_ASSIGN(RaftLog log, RaftLog::Open(&storage, pb::HardState(), 0));
  pb::SnapshotMetadata snapshot;
  snapshot.set_index(10);
  snapshot.set_term(4);
  log.RestoreSnapshot(snapshot);
  EXPECT_EQ(log.FirstIndex(), 11u);
  EXPECT_EQ(log.LastIndex(), 10u);
  EXPECT_EQ(log.committed(), 10u);
  EXPECT_EQ(*log.TermAt(10), 4u);
  EXPECT_THAT(log.TermAt(2), StatusIs(absl::StatusCode::kOutOfRange));
  EXPECT_FALSE(log.HasNextCommittedEntries()) << "the snapshot is installed, not applied";
  ASSERT_TRUE(log.TakeUnsentSnapshot().has_value());
  EXPECT_EQ(log.applying(), 10u);
  ASSERT_OK(storage.ApplySnapshot(snapshot));
  EXPECT_TRUE(log.StableTo(10, 4));
  EXPECT_EQ(log.applied(), 10u);
  EXPECT_FALSE(log.pending_snapshot().has_value());
  EXPECT_EQ(log.FirstIndex(), 11u);
}

TEST(MemoryLogStorage, AppendTruncatesAndCompacts) {
  MemoryLogStorage storage;
  EXPECT_EQ(storage.FirstIndex(), 1u);
  EXPECT_EQ(storage.LastIndex(), 0u);
  ASSERT_OK(storage.Append(EntriesWithTerms(1, {1, 1, 2, 2})));
  ASSERT_OK(storage.Append(EntriesWithTerms(3, {3})));
  EXPECT_EQ(storage.LastIndex(), 3u);
  EXPECT_EQ(*storage.TermAt(3), 3u);
  EXPECT_THAT(storage.Append(EntriesWithTerms(9, {3})),
              StatusIs(absl::StatusCode::kInvalidArgument, "gap"));
  ASSERT_OK(storage.Compact(2, pb::ConfState()));
  EXPECT_EQ(storage.FirstIndex(), 3u);
  EXPECT_EQ(*storage.TermAt(2), 1u);
  EXPECT_THAT(storage.TermAt(1), StatusIs(absl::StatusCode::kOutOfRange));
  EXPECT_THAT(storage.Entries(1, 3, 100), StatusIs(absl::StatusCode::kOutOfRange));
  EXPECT_EQ(storage.LatestSnapshot().index(), 2u);
  EXPECT_THAT(storage.Compact(9, pb::ConfState()), StatusIs(absl::StatusCode::kOutOfRange));
  pb::SnapshotMetadata older;
  older.set_index(1);
  EXPECT_THAT(storage.ApplySnapshot(older), StatusIs(absl::StatusCode::kFailedPrecondition));
}

TEST(MemoryLogStorage, EntriesRespectByteLimit) {
  MemoryLogStorage storage;
  std::vector<pb::Entry> entries;
  for (Index i = 1; i <= 5; ++i) entries.push_back(MakeEntry(i, 1, std::string(100, 'x')));
  ASSERT_OK(storage.Append(entries));
  ASSERT_OK_AND_ASSIGN(auto one, storage.Entries(1, 6, 1));
  EXPECT_EQ(one.size(), 1u) << "at least one entry";
  ASSERT_OK_AND_ASSIGN(auto some, storage.Entries(1, 6, 250));
  EXPECT_EQ(some.size(), 2u);
  ASSERT_OK_AND_ASSIGN(auto all, storage.Entries(1, 6, 1 << 20));
  EXPECT_EQ(all.size(), 5u);
}

}  // namespace
}  // namespace stead::raft
