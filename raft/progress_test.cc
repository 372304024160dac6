#include "raft/progress.h"

#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "raft/conf_change.h"
#include "raft/inflights.h"

namespace stead::raft {
namespace {

TEST(Inflights, AddFreeAndFull) {
  const struct {
    std::string name;
    size_t max_count;
    uint64_t max_bytes;
    std::vector<Index> adds;  // each with 10 bytes
    Index free_le;
    size_t want_count;
    bool want_full;
  } cases[] = {
      {"empty", 3, 0, {}, 0, 0, false},
      {"fills by count", 3, 0, {1, 2, 3}, 0, 3, true},
      {"frees prefix", 3, 0, {1, 2, 3}, 2, 1, false},
      {"frees all", 3, 0, {1, 2, 3}, 10, 0, false},
      {"free below first is a no-op", 3, 0, {5, 6}, 4, 2, false},
      {"fills by bytes", 10, 25, {1, 2, 3}, 0, 3, true},
      {"bytes freed", 10, 25, {1, 2, 3}, 1, 2, false},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    Inflights inflights(c.max_count, c.max_bytes);
    for (Index index : c.adds) inflights.Add(index, 10);
    inflights.FreeLE(c.free_le);
    EXPECT_EQ(inflights.count(), c.want_count);
    EXPECT_EQ(inflights.bytes(), 10 * c.want_count);
    EXPECT_EQ(inflights.Full(), c.want_full);
  }
}

TEST(Inflights, FreeFirstOneAndReset) {
  Inflights inflights(2, 0);
  inflights.Add(4, 1);
  inflights.Add(8, 2);
  EXPECT_TRUE(inflights.Full());
  inflights.FreeFirstOne();
  EXPECT_EQ(inflights.count(), 1u);
  EXPECT_EQ(inflights.bytes(), 2u);
  inflights.Reset();
  EXPECT_EQ(inflights.count(), 0u);
  inflights.FreeFirstOne();  // empty: no-op
  EXPECT_EQ(inflights.count(), 0u);
}

TEST(Progress, StateTransitions) {
  Progress progress(/*next_index=*/11, /*max_inflight_messages=*/2, /*learner=*/false);
  EXPECT_EQ(progress.state, ProgressState::kProbe);
  EXPECT_FALSE(progress.IsPaused());
  progress.SentEntries(12, 100);
  EXPECT_TRUE(progress.IsPaused()) << "a probe waits for its answer";
  EXPECT_TRUE(progress.MaybeUpdate(12));
  EXPECT_FALSE(progress.IsPaused());
  EXPECT_EQ(progress.next, 13u);
  progress.BecomeReplicate();
  EXPECT_EQ(progress.next, 13u);
  progress.SentEntries(15, 10);
  progress.SentEntries(17, 10);
  EXPECT_EQ(progress.next, 18u);
  EXPECT_TRUE(progress.IsPaused()) << "window of 2 is full";
  progress.MaybeUpdate(15);
  progress.inflights.FreeLE(15);
  EXPECT_FALSE(progress.IsPaused());
  progress.BecomeSnapshot(40);
  EXPECT_TRUE(progress.IsPaused());
  EXPECT_EQ(progress.inflights.count(), 0u);
  progress.BecomeProbe();
  EXPECT_EQ(progress.next, 41u) << "after a snapshot, resume right after it";
}

TEST(Progress, MaybeDecreaseTo) {
  const struct {
    std::string name;
    ProgressState state;
    Index match;
    Index next;
    Index rejected;
    Index hint;
    bool want_ok;
    Index want_next;
  } cases[] = {
      {"replicate stale rejection", ProgressState::kReplicate, 5, 10, 5, 3, false, 10},
      {"replicate goes back to match", ProgressState::kReplicate, 5, 10, 8, 3, true, 6},
      {"probe stale rejection", ProgressState::kProbe, 0, 10, 5, 3, false, 10},
      {"probe uses the hint", ProgressState::kProbe, 0, 10, 9, 3, true, 4},
      {"probe hint beyond rejected", ProgressState::kProbe, 0, 10, 9, 20, true, 9},
      {"probe never below match", ProgressState::kProbe, 6, 10, 9, 2, true, 7},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    Progress progress(c.next, 4, false);
    progress.match = c.match;
    progress.state = c.state;
    EXPECT_EQ(progress.MaybeDecreaseTo(c.rejected, c.hint), c.want_ok);
    EXPECT_EQ(progress.next, c.want_next);
  }
}

TEST(ProgressTracker, ApplyConfKeepsProgressAndSeparatesLearners) {
  ProgressTracker tracker(8);
  tracker.ApplyConf(MakeConfState({1, 2, 3}), 10);
  tracker.Find(2)->MaybeUpdate(7);
  tracker.ApplyConf(MakeConfState({1, 2}, {3, 4}), 12);
  EXPECT_EQ(tracker.Find(2)->match, 7u) << "members that stay keep their progress";
  EXPECT_TRUE(tracker.Find(3)->is_learner);
  EXPECT_EQ(tracker.Find(4)->next, 13u);
  EXPECT_FALSE(tracker.IsVoter(3));
  tracker.ApplyConf(MakeConfState({1, 2, 4}, {}), 12);
  EXPECT_EQ(tracker.Find(3), nullptr);
  EXPECT_FALSE(tracker.Find(4)->is_learner);
}

TEST(ProgressTracker, QuorumCommittedIgnoresLearnersModel) {
  // Goal: model test. The tracker's commit index over voters (with learners present)
  // equals the naive "largest index a majority of voters reached".
  std::mt19937_64 random(99);
  for (int round = 0; round < 2000; ++round) {
    std::vector<NodeId> voters;
    std::vector<NodeId> learners;
    for (NodeId id = 1; id <= 7; ++id) {
      const uint64_t r = random() % 3;
      if (r == 0) voters.push_back(id);
      if (r == 1) learners.push_back(id);
    }
    if (voters.empty()) voters.push_back(8);
    ProgressTracker tracker(4);
    tracker.ApplyConf(MakeConfState(voters, learners), 0);
    for (auto& [id, progress] : tracker.all()) progress.MaybeUpdate(random() % 20);
    Index naive = 0;
    for (Index candidate = 0; candidate < 20; ++candidate) {
      size_t count = 0;
      for (NodeId id : voters) {
        if (tracker.Find(id)->match >= candidate) ++count;
      }
      if (count > voters.size() / 2) naive = candidate;
    }
    SCOPED_TRACE(round);
    ASSERT_EQ(tracker.QuorumCommitted(), naive);
  }
}

TEST(ProgressTracker, QuorumActive) {
  ProgressTracker tracker(4);
  tracker.ApplyConf(MakeConfState({1, 2, 3}, {4}), 0);
  EXPECT_FALSE(tracker.QuorumActive(1));
  tracker.Find(4)->recent_active = true;
  EXPECT_FALSE(tracker.QuorumActive(1)) << "learners do not count";
  tracker.Find(3)->recent_active = true;
  EXPECT_TRUE(tracker.QuorumActive(1));
  tracker.ClearRecentActive();
  EXPECT_FALSE(tracker.QuorumActive(1));
  // The round that just ended is kept, for status reports, until the next one ends.
  EXPECT_TRUE(tracker.Find(3)->active_last_round);
  EXPECT_FALSE(tracker.Find(2)->active_last_round);
  tracker.ClearRecentActive();
  EXPECT_FALSE(tracker.Find(3)->active_last_round);
}

}  // namespace
}  // namespace stead::raft
