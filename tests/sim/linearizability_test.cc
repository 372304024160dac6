#include "tests/sim/linearizability.h"

#include <algorithm>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace stead::sim {
namespace {

using Kind = KvOperation::Kind;

KvOperation Put(uint64_t key, int64_t value, uint64_t call, uint64_t ret) {
  return KvOperation{Kind::kPut, key, value, call, ret, static_cast<uint64_t>(value)};
}
KvOperation Get(uint64_t key, int64_t value, uint64_t call, uint64_t ret) {
  return KvOperation{Kind::kGet, key, value, call, ret, 1000};
}
// A CAS from `expected` (kAbsentValue: the key must be absent) to `value`.
KvOperation Cas(uint64_t key, int64_t expected, int64_t value, bool swapped, uint64_t call,
                uint64_t ret) {
  return KvOperation{Kind::kCas, key,    value, call, ret, static_cast<uint64_t>(value),
                     expected,   swapped};
}

// Hand-made histories, each with the verdict the register model demands.
TEST(KvLinearizability, HandWrittenHistories) {
  const struct {
    std::string name;
    std::vector<KvOperation> history;
    bool want;
  } cases[] = {
      {"empty", {}, true},
      {"read of never written key", {Get(1, kAbsentValue, 1, 2)}, true},
      {"read of a value nobody wrote", {Get(1, 7, 1, 2)}, false},
      {"sequential write then read", {Put(1, 5, 1, 2), Get(1, 5, 3, 4)}, true},
      {"stale read after acknowledged write", {Put(1, 5, 1, 2), Get(1, kAbsentValue, 3, 4)}, false},
      {"read concurrent with write sees old", {Put(1, 5, 1, 4), Get(1, kAbsentValue, 2, 3)}, true},
      {"read concurrent with write sees new", {Put(1, 5, 1, 4), Get(1, 5, 2, 3)}, true},
      {"read sees new then later read sees old",
       {Put(1, 5, 1, 10), Get(1, 5, 2, 3), Get(1, kAbsentValue, 4, 5)},
       false},
      {"two writes, reads disagree on order",
       {Put(1, 1, 1, 10), Put(1, 2, 1, 10), Get(1, 1, 11, 12), Get(1, 2, 13, 14)},
       false},
      {"two concurrent writes, one order explains reads",
       {Put(1, 1, 1, 10), Put(1, 2, 1, 10), Get(1, 1, 5, 6), Get(1, 2, 11, 12)},
       true},
      {"unknown write may take effect late",
       {Put(1, 1, 1, kUnknownReturnTime), Get(1, kAbsentValue, 2, 3), Get(1, 1, 4, 5)},
       true},
      {"unknown write may never take effect",
       {Put(1, 1, 1, kUnknownReturnTime), Get(1, kAbsentValue, 2, 3)},
       true},
      {"unknown write cannot take effect before its call",
       {Get(1, 1, 1, 2), Put(1, 1, 3, kUnknownReturnTime)},
       false},
      {"keys are independent",
       {Put(1, 1, 1, 2), Put(2, 2, 1, 2), Get(2, 2, 3, 4), Get(1, 1, 3, 4)},
       true},
      {"violation on second key only",
       {Put(1, 1, 1, 2), Put(2, 2, 1, 2), Get(1, 1, 3, 4), Get(2, kAbsentValue, 3, 4)},
       false},
      {"return before call is malformed", {Get(1, kAbsentValue, 5, 4)}, false},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    const LinearizabilityResult result = CheckKvLinearizable(c.history);
    EXPECT_EQ(result.linearizable, c.want) << result.explanation;
    EXPECT_FALSE(result.search_exhausted);
  }
}

// Builds a random linearizable history from a sequential execution: each operation
// takes effect at a random instant inside its [call, return] window, and reads return
// the value at their instant. The checker must accept all of these; flipping one read
// to a value that no write at or before its window could explain must be rejected.
TEST(KvLinearizability, CompareAndSwapHistories) {
  constexpr uint64_t kUnknown = kUnknownReturnTime;
  const struct {
    std::string name;
    std::vector<KvOperation> history;
    bool want;
  } cases[] = {
      {"cas from absent swaps", {Cas(1, kAbsentValue, 1, true, 1, 2), Get(1, 1, 3, 4)}, true},
      {"cas from absent fails on a written key",
       {Put(1, 0, 1, 2), Cas(1, kAbsentValue, 1, false, 3, 4), Get(1, 0, 5, 6)},
       true},
      {"cas swaps from the current value",
       {Put(1, 0, 1, 2), Cas(1, 0, 1, true, 3, 4), Get(1, 1, 5, 6)},
       true},
      {"cas that did not swap although the value matched",
       {Put(1, 0, 1, 2), Cas(1, 0, 1, false, 3, 4)},
       false},
      {"cas that swapped although the value was different",
       {Put(1, 0, 1, 2), Put(1, 2, 3, 4), Cas(1, 0, 1, true, 5, 6)},
       false},
      {"duplicated cas: two swaps from the same value",
       {Put(1, 0, 1, 2), Cas(1, 0, 1, true, 3, 4), Cas(1, 0, 2, true, 5, 6)},
       false},
      {"concurrent cas from the same value: one wins",
       {Put(1, 0, 1, 2), Cas(1, 0, 1, true, 3, 8), Cas(1, 0, 2, false, 4, 7), Get(1, 1, 9, 10)},
       true},
      {"concurrent cas: the loser must be ordered after the winner",
       {Put(1, 0, 1, 2), Cas(1, 0, 1, true, 3, 8), Cas(1, 0, 2, false, 4, 7), Get(1, 0, 5, 6)},
       true},
      {"read of a failed cas's value",
       {Put(1, 0, 1, 2), Cas(1, 5, 1, false, 3, 4), Get(1, 1, 5, 6)},
       false},
      {"unknown cas takes effect late",
       {Put(1, 0, 1, 2), Cas(1, 0, 1, false, 3, kUnknown), Get(1, 0, 4, 5), Get(1, 1, 6, 7)},
       true},
      {"unknown cas never takes effect",
       {Put(1, 0, 1, 2), Cas(1, 0, 1, false, 3, kUnknown), Get(1, 0, 4, 5), Get(1, 0, 6, 7)},
       true},
      {"unknown cas cannot swap from a value it did not expect",
       {Put(1, 0, 1, 2), Cas(1, 7, 1, false, 3, kUnknown), Get(1, 1, 4, 5)},
       false},
      {"unknown cas cannot take effect before its call",
       {Put(1, 0, 1, 2), Get(1, 1, 3, 4), Cas(1, 0, 1, false, 5, kUnknown)},
       false},
      {"unknown cas and a later known cas that swapped from its value",
       {Put(1, 0, 1, 2), Cas(1, 0, 1, false, 3, kUnknown), Cas(1, 1, 2, true, 10, 11),
        Get(1, 2, 12, 13)},
       true},
      {"cas of unknown outcome cannot swap twice",
       {Cas(1, kAbsentValue, 1, false, 1, kUnknown), Get(1, 1, 2, 3), Put(1, 2, 4, 5),
        Put(1, 3, 6, 7), Get(1, 1, 8, 9)},
       false},
      {"unknown put observed through a chain of unknown cas",
       {Put(1, 1, 1, kUnknown), Cas(1, 1, 2, false, 2, kUnknown), Cas(1, 2, 3, false, 3, kUnknown),
        Get(1, 3, 4, 5), Get(1, 3, 6, 7)},
       true},
      {"chain of unknown cas observed before the first was called",
       {Get(1, 3, 1, 2), Put(1, 1, 3, kUnknown), Cas(1, 1, 2, false, 3, kUnknown),
        Cas(1, 2, 3, false, 3, kUnknown)},
       false},
      {"unobserved unknown put explains a cas that did not swap",
       {Put(1, 0, 1, 2), Put(1, 5, 3, kUnknown), Cas(1, 0, 1, false, 4, 6)},
       true},
      {"unobserved unknown put called after the cas cannot explain it",
       {Put(1, 0, 1, 2), Cas(1, 0, 1, false, 4, 6), Put(1, 5, 7, kUnknown)},
       false},
      {"unobserved unknown cas explains a cas that did not swap",
       {Put(1, 0, 1, 2), Cas(1, 0, 5, false, 3, kUnknown), Cas(1, 0, 1, false, 4, 6)},
       true},
      {"a later read shows that unknown cas did not swap",
       {Put(1, 0, 1, 2), Cas(1, 0, 5, false, 3, kUnknown), Cas(1, 0, 1, false, 4, 6),
        Get(1, 0, 7, 8)},
       false},
      {"one unobserved unknown put explains two cas between writes",
       {Put(1, 0, 1, 2), Put(1, 5, 3, kUnknown), Cas(1, 0, 1, false, 4, 6),
        Cas(1, 0, 2, false, 7, 8), Put(1, 9, 9, 10), Get(1, 9, 11, 12)},
       true},
      {"unobserved unknown puts are used once each",
       {Put(1, 0, 1, 2), Put(1, 5, 3, kUnknown), Cas(1, 0, 1, false, 4, 6), Put(1, 7, 7, 8),
        Cas(1, 7, 2, true, 9, 10), Put(1, 8, 11, 12), Cas(1, 8, 3, false, 13, 14)},
       false},
      {"two unobserved unknown puts explain two such cas",
       {Put(1, 0, 1, 2), Put(1, 5, 3, kUnknown), Put(1, 6, 3, kUnknown), Cas(1, 0, 1, false, 4, 6),
        Put(1, 7, 7, 8), Cas(1, 7, 2, true, 9, 10), Put(1, 8, 11, 12), Cas(1, 8, 3, false, 13, 14)},
       true},
      {"negative cas value is malformed", {Cas(1, kAbsentValue, -5, true, 1, 2)}, false},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    const LinearizabilityResult result = CheckKvLinearizable(c.history);
    EXPECT_EQ(result.linearizable, c.want) << result.explanation;
    EXPECT_FALSE(result.search_exhausted);
    if (!c.want) {
      EXPECT_FALSE(result.window.empty()) << result.explanation;
    }
  }
}

// On a violation the result names the operations around it, by their index in the input.
TEST(KvLinearizability, ViolationWindowNamesTheOperationsInvolved) {
  // A lost write: 1 and 2 were acknowledged in turn, a later read returns 1.
  const std::vector<KvOperation> history = {Put(2, 100, 1, 2),  // another key: not in the window
                                            Put(1, 1, 1, 2), Put(1, 2, 3, 4), Get(1, 2, 5, 6),
                                            Get(1, 1, 7, 8)};
  const LinearizabilityResult result = CheckKvLinearizable(history);
  ASSERT_FALSE(result.linearizable);
  EXPECT_EQ(result.key, 1u);
  // The stale read, the write it saw and the write it missed.
  for (const size_t index : {size_t{1}, size_t{2}, size_t{4}}) {
    EXPECT_NE(std::find(result.window.begin(), result.window.end(), index), result.window.end())
        << index << " missing from " << result.explanation;
  }
  EXPECT_EQ(std::find(result.window.begin(), result.window.end(), size_t{0}), result.window.end());
}

// Random CAS workloads executed sequentially, as in the test below: every CAS expects
// either the current value or a stale one, so some swap and some do not.
TEST(KvLinearizability, RandomCasHistoriesFromSequentialExecutions) {
  std::mt19937_64 random(7);
  for (int round = 0; round < 300; ++round) {
    SCOPED_TRACE(round);
    const int op_count = 2 + static_cast<int>(random() % 30);
    std::vector<KvOperation> history;
    int64_t current = kAbsentValue;
    int64_t previous = kAbsentValue;
    int64_t next_value = 0;
    for (int i = 0; i < op_count; ++i) {
      const uint64_t instant = 100 + 10 * static_cast<uint64_t>(i);
      const uint64_t call = instant - random() % 36;
      uint64_t ret = instant + 1 + random() % 36;
      const uint64_t dice = random() % 4;
      if (dice == 0) {
        history.push_back(Put(7, next_value, call, ret));
        previous = current;
        current = next_value++;
      } else if (dice == 1) {
        const int64_t expected = random() % 2 == 0 ? current : previous;
        const bool swapped = expected == current;
        if (random() % 6 == 0) ret = kUnknownReturnTime;
        history.push_back(Cas(7, expected, next_value, swapped, call, ret));
        if (swapped) {
          previous = current;
          current = next_value;
        }
        ++next_value;
      } else {
        history.push_back(Get(7, current, call, ret));
      }
    }
    const LinearizabilityResult ok = CheckKvLinearizable(history);
    ASSERT_TRUE(ok.linearizable) << ok.explanation;
  }
}

TEST(KvLinearizability, RandomHistoriesFromSequentialExecutions) {
  std::mt19937_64 random(42);
  for (int round = 0; round < 300; ++round) {
    SCOPED_TRACE(round);
    const int op_count = 2 + static_cast<int>(random() % 30);
    // Effect instants are 10 apart; windows stretch up to 35 around them, so
    // operations overlap and the search must reorder.
    std::vector<KvOperation> history;
    int64_t current = kAbsentValue;
    int64_t next_value = 0;
    for (int i = 0; i < op_count; ++i) {
      const uint64_t instant = 100 + 10 * static_cast<uint64_t>(i);
      const uint64_t call = instant - random() % 36;
      uint64_t ret = instant + 1 + random() % 36;
      if (random() % 3 == 0) {
        const int64_t value = next_value++;
        if (random() % 8 == 0) ret = kUnknownReturnTime;
        history.push_back(Put(7, value, call, ret));
        current = value;
      } else {
        history.push_back(Get(7, current, call, ret));
      }
    }
    const LinearizabilityResult ok = CheckKvLinearizable(history);
    ASSERT_TRUE(ok.linearizable) << ok.explanation;

    // A read of a value never written is never linearizable.
    history.push_back(Get(7, next_value + 100, 1, 2));
    EXPECT_FALSE(CheckKvLinearizable(history).linearizable);
  }
}

TEST(KvLinearizability, SearchBudgetIsReported) {
  // Many concurrent writes and a read no order explains: the search must try many
  // orders before giving up, more than one step allows.
  std::vector<KvOperation> history;
  for (int64_t v = 0; v < 12; ++v) history.push_back(Put(1, v, 1, 100));
  history.push_back(Get(1, 99, 50, 60));
  const LinearizabilityResult result = CheckKvLinearizable(history, /*max_search_steps=*/1);
  EXPECT_FALSE(result.linearizable);
  EXPECT_TRUE(result.search_exhausted);
}

}  // namespace
}  // namespace stead::sim
