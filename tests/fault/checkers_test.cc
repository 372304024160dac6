#include "tests/fault/checkers.h"

#include <cstdint>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace stead::fault {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::StartsWith;
using Kind = RegisterOp::Kind;

constexpr int64_t kMs = 1'000'000;

RegisterOp Put(std::string key, std::string value, int64_t invoke_ms, int64_t complete_ms,
               Outcome outcome = Outcome::kOk) {
  RegisterOp op;
  op.kind = Kind::kPut;
  op.key = std::move(key);
  op.value = std::move(value);
  op.outcome = outcome;
  op.invoke_ns = invoke_ms * kMs;
  op.complete_ns = outcome == Outcome::kUnknown ? kNever : complete_ms * kMs;
  return op;
}

// A get that found `value` (std::nullopt: the key was absent).
RegisterOp Get(std::string key, std::optional<std::string> value, int64_t invoke_ms,
               int64_t complete_ms, Outcome outcome = Outcome::kOk) {
  RegisterOp op = Put(std::move(key), value.value_or(""), invoke_ms, complete_ms, outcome);
  op.kind = Kind::kGet;
  op.found = value.has_value();
  return op;
}

RegisterOp Cas(std::string key, std::optional<std::string> expected, std::string value,
               bool swapped, int64_t invoke_ms, int64_t complete_ms,
               Outcome outcome = Outcome::kOk) {
  RegisterOp op = Put(std::move(key), std::move(value), invoke_ms, complete_ms, outcome);
  op.kind = Kind::kCas;
  op.expected = std::move(expected);
  op.swapped = swapped;
  return op;
}

// A linearizable history of `count` operations on `keys` keys from a simulated
// register: each operation takes effect at an instant inside its window, windows of
// neighbours overlap (up to 8 in flight), some writes have unknown outcomes (and then
// take effect or not), some operations fail and take no effect.
std::vector<RegisterOp> GoodHistory(uint64_t seed, int count, int keys, bool unknowns = true) {
  std::mt19937_64 random(seed);
  std::map<std::string, std::optional<std::string>> current;
  std::map<std::string, std::optional<std::string>> previous;
  std::vector<RegisterOp> history;
  for (int i = 0; i < count; ++i) {
    const std::string key = absl::StrCat("k", random() % static_cast<uint64_t>(keys));
    const std::string fresh = absl::StrCat(key, "-v", i);
    // Effects 1 ms apart; windows reach up to 4 ms either side.
    const int64_t instant = 10 * kMs + i * kMs;
    const int64_t invoke = instant - static_cast<int64_t>(random() % (4 * kMs));
    const int64_t complete = instant + 1 + static_cast<int64_t>(random() % (4 * kMs));
    const uint64_t fate = random() % 10;  // 0: unknown, 1: failed, else ok
    const Outcome outcome = fate == 0   ? (unknowns ? Outcome::kUnknown : Outcome::kOk)
                            : fate == 1 ? Outcome::kFailed
                                        : Outcome::kOk;
    const bool takes_effect =
        outcome == Outcome::kOk || (outcome == Outcome::kUnknown && random() % 2 == 0);
    RegisterOp op;
    switch (random() % 3) {
      case 0:
        op = Put(key, fresh, 0, 0, outcome);
        if (takes_effect) {
          previous[key] = current[key];
          current[key] = fresh;
        }
        break;
      case 1: {
        const std::optional<std::string> expected =
            random() % 3 == 0 ? previous[key] : current[key];
        const bool swapped = takes_effect && expected == current[key];
        op = Cas(key, expected, fresh, swapped, 0, 0, outcome);
        if (swapped) {
          previous[key] = current[key];
          current[key] = fresh;
        }
        break;
      }
      default:
        // An unknown or failed read says nothing: give it a value nobody wrote.
        op = Get(key, outcome == Outcome::kOk ? current[key] : "garbage", 0, 0, outcome);
        break;
    }
    op.invoke_ns = invoke;
    op.complete_ns = outcome == Outcome::kUnknown ? kNever : complete;
    op.client = static_cast<uint32_t>(i % 8);
    history.push_back(op);
  }
  return history;
}

TEST(CheckRegisters, AcceptsConcurrentHistoriesWithUnknownOutcomes) {
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    SCOPED_TRACE(seed);
    const std::vector<RegisterOp> history = GoodHistory(seed, 400, 3);
    const CheckResult result = CheckRegisters(history);
    EXPECT_TRUE(result.ok) << result.verdict << "\n" << result.details;
    EXPECT_THAT(result.verdict, AllOf(StartsWith("registers: ok ("), HasSubstr("3 keys")));
  }
}

TEST(CheckRegisters, CountsAreReadable) {
  std::vector<RegisterOp> history;
  for (int i = 0; i < 1234; ++i)
    history.push_back(Put("k", absl::StrCat("v", i), 2 * i, 2 * i + 1));
  const CheckResult result = CheckRegisters(history);
  EXPECT_EQ(result.verdict, "registers: ok (1,234 ops, 1 keys, 0 unknown, 0 dropped)");
}

TEST(CheckRegisters, CatchesStaleRead) {
  std::vector<RegisterOp> history = GoodHistory(3, 200, 2);
  // After everything else: a write acknowledged, then a read that misses it.
  history.push_back(Put("k9", "new", 1000, 1001));
  history.push_back(Get("k9", std::nullopt, 1002, 1003));
  const CheckResult result = CheckRegisters(history);
  EXPECT_FALSE(result.ok);
  EXPECT_THAT(result.verdict, StartsWith("registers: NOT LINEARIZABLE key=k9 at "));
  EXPECT_THAT(result.details, AllOf(HasSubstr("put key=k9 value=new invoke=1000.000ms "
                                              "complete=1001.000ms ok"),
                                    HasSubstr("* #201 client=0 get key=k9 absent")));
}

TEST(CheckRegisters, CatchesLostWrite) {
  // b was acknowledged after a; a later read returns a: b is lost.
  const std::vector<RegisterOp> history = {Put("k", "a", 1, 2), Put("k", "b", 3, 4),
                                           Get("k", "b", 5, 6), Put("other", "x", 5, 6),
                                           Get("k", "a", 7, 8)};
  const CheckResult result = CheckRegisters(history);
  EXPECT_FALSE(result.ok);
  EXPECT_THAT(result.verdict, HasSubstr("NOT LINEARIZABLE key=k at client=0 get key=k value=a"));
  EXPECT_THAT(result.details,
              AllOf(HasSubstr("put key=k value=a"), HasSubstr("put key=k value=b"),
                    HasSubstr("get key=k value=a"), ::testing::Not(HasSubstr("key=other"))));
}

TEST(CheckRegisters, CatchesDuplicatedCas) {
  // Two acknowledged swaps from the same value: at most one can have happened.
  const std::vector<RegisterOp> history = {Put("k", "v0", 1, 2), Cas("k", "v0", "v1", true, 3, 10),
                                           Cas("k", "v0", "v2", true, 4, 11),
                                           Get("k", "v2", 12, 13)};
  const CheckResult result = CheckRegisters(history);
  EXPECT_FALSE(result.ok);
  EXPECT_THAT(result.verdict, HasSubstr("NOT LINEARIZABLE key=k"));
  EXPECT_THAT(result.details, AllOf(HasSubstr("cas key=k expected=v0 value=v1 swapped"),
                                    HasSubstr("cas key=k expected=v0 value=v2 swapped")));
}

TEST(CheckRegisters, UnknownCasMayHaveSwapped) {
  const std::vector<RegisterOp> history = {
      Cas("k", std::nullopt, "v1", false, 1, 0, Outcome::kUnknown), Get("k", "v1", 5, 6),
      Cas("k", "v1", "v2", true, 7, 8), Get("k", "v2", 9, 10)};
  const CheckResult result = CheckRegisters(history);
  EXPECT_TRUE(result.ok) << result.details;
}

TEST(CheckRegisters, FailedWritesTakeNoEffectAndUnknownReadsSayNothing) {
  const std::vector<RegisterOp> good = {Put("k", "a", 1, 2), Put("k", "b", 3, 4, Outcome::kFailed),
                                        Get("k", "zzz", 5, 6, Outcome::kUnknown),
                                        Get("k", "b", 5, 6, Outcome::kFailed), Get("k", "a", 7, 8)};
  const CheckResult ok = CheckRegisters(good);
  EXPECT_TRUE(ok.ok) << ok.details;
  EXPECT_THAT(ok.verdict, HasSubstr("3 dropped"));

  // Reading the value of a failed write is a violation.
  std::vector<RegisterOp> bad = good;
  bad.push_back(Get("k", "b", 9, 10));
  EXPECT_FALSE(CheckRegisters(bad).ok);
}

TEST(CheckRegisters, ExhaustedSearchIsAFailure) {
  std::vector<RegisterOp> history;
  for (int i = 0; i < 12; ++i) history.push_back(Put("k", absl::StrCat("v", i), 1, 100));
  history.push_back(Get("k", "nobody", 50, 60));
  const CheckResult result = CheckRegisters(history, /*max_search_steps=*/1);
  EXPECT_FALSE(result.ok);
  EXPECT_THAT(result.verdict,
              AllOf(StartsWith("registers: UNDECIDED key=k"), HasSubstr("ran out of 1 steps")));
}

TEST(CheckRegisters, RejectsMalformedHistories) {
  EXPECT_THAT(CheckRegisters({Put("k", "a", 1, 2), Put("k", "a", 3, 4)}).verdict,
              HasSubstr("INVALID HISTORY value 'a' written twice to key k"));
  EXPECT_THAT(CheckRegisters({Put("k", "a", 5, 2)}).verdict,
              HasSubstr("INVALID HISTORY bad times"));
  RegisterOp never = Put("k", "a", 1, 2);
  never.complete_ns = kNever;  // ok but never completed
  EXPECT_FALSE(CheckRegisters({never}).ok);
}

TEST(DescribeOp, IsReadable) {
  RegisterOp op = Cas("k2", "v1", "v9", true, 0, 0);
  op.client = 3;
  op.invoke_ns = 12'345'000;
  op.complete_ns = 13'002'000;
  EXPECT_EQ(
      DescribeOp(op),
      "client=3 cas key=k2 expected=v1 value=v9 swapped invoke=12.345ms complete=13.002ms ok");
  EXPECT_EQ(DescribeOp(Cas("k", std::nullopt, "v", false, 1, 0, Outcome::kUnknown)),
            "client=0 cas key=k expected=(absent) value=v invoke=1.000ms complete=never unknown");
}

// ---- bank ----

BankOp Read(std::map<std::string, int64_t> balances) {
  BankOp op;
  op.kind = BankOp::Kind::kRead;
  op.balances = std::move(balances);
  op.invoke_ns = 5 * kMs;
  op.complete_ns = 6 * kMs;
  return op;
}

BankOp Transfer(std::string from, std::string to, int64_t amount) {
  BankOp op;
  op.kind = BankOp::Kind::kTransfer;
  op.from = std::move(from);
  op.to = std::move(to);
  op.amount = amount;
  op.applied = true;
  return op;
}

const std::map<std::string, int64_t> kInitial = {{"a", 100}, {"b", 100}, {"c", 0}};

TEST(CheckBank, AcceptsConservedReads) {
  std::vector<BankOp> ops = {Transfer("a", "c", 30), Read({{"a", 70}, {"b", 100}, {"c", 30}}),
                             Read({{"a", 0}, {"b", 0}, {"c", 200}})};
  BankOp unknown = Read({{"a", 1}});  // unknown reads say nothing
  unknown.outcome = Outcome::kUnknown;
  ops.push_back(unknown);
  const CheckResult result = CheckBank(kInitial, ops);
  EXPECT_TRUE(result.ok) << result.verdict;
  EXPECT_EQ(result.verdict, "bank: ok (2 reads, 1 transfers, total 200)");
}

TEST(CheckBank, CatchesReadThatDoesNotSum) {
  const std::vector<BankOp> ops = {Read({{"a", 100}, {"b", 100}, {"c", 0}}),
                                   Read({{"a", 70}, {"b", 100}, {"c", 0}}),
                                   Read({{"a", 0}, {"b", 0}, {"c", 0}})};
  const CheckResult result = CheckBank(kInitial, ops);
  EXPECT_FALSE(result.ok);
  EXPECT_THAT(result.verdict,
              AllOf(StartsWith("bank: BAD READ #1 "), HasSubstr("sum 170 != initial total 200")));
  EXPECT_THAT(result.details, HasSubstr("balances read: a=70 b=100 c=0"));
}

TEST(CheckBank, CatchesNegativeAndMissingOrExtraAccounts) {
  EXPECT_THAT(CheckBank(kInitial, {Read({{"a", 210}, {"b", -10}, {"c", 0}})}).verdict,
              HasSubstr("negative balance b=-10"));
  EXPECT_THAT(CheckBank(kInitial, {Read({{"a", 100}, {"b", 100}})}).verdict,
              HasSubstr("missing account c"));
  EXPECT_THAT(CheckBank(kInitial, {Read({{"a", 100}, {"b", 100}, {"c", 0}, {"d", 0}})}).verdict,
              HasSubstr("unknown account d"));
}

// ---- watches ----

WatchRecord::Event Ev(std::string key, std::string value, int64_t revision) {
  return WatchRecord::Event{std::move(key), std::move(value), false, revision};
}

// Writes w/a=1..w/a=6 at revisions 11..16 (revision 14 writes two keys), seen by
// watcher 1 from 11 through 16 and watcher 2 from 13 through 15.
struct WatchFixture {
  std::vector<RegisterOp> writes = {Put("w/a", "1", 1, 2),
                                    Put("w/a", "2", 3, 4),
                                    Put("w/b", "3", 5, 6),
                                    Put("w/a", "4", 7, 8),
                                    Put("w/b", "5", 7, 8, Outcome::kUnknown),
                                    Cas("w/a", "4", "6", true, 9, 10)};
  std::vector<WatchRecord::Event> all = {Ev("w/a", "1", 11), Ev("w/a", "2", 12),
                                         Ev("w/b", "3", 13), Ev("w/b", "5", 14),
                                         Ev("w/a", "4", 14), Ev("w/a", "6", 15)};
  WatchRecord first{1, "w/", 11, all, 16};
  WatchRecord second{2, "w/", 13, {all[2], all[3], all[4], all[5]}, 15};
};

TEST(CheckWatches, AcceptsAgreeingWatchers) {
  WatchFixture f;
  // Key order within a revision does not matter.
  std::swap(f.second.events[1], f.second.events[2]);
  f.second.events.push_back({"w/b", "", true, 16});  // after its progress: not compared
  const CheckResult result = CheckWatches({f.first, f.second}, f.writes);
  EXPECT_TRUE(result.ok) << result.verdict << "\n" << result.details;
  EXPECT_EQ(result.verdict, "watches: ok (2 watchers, 11 events)");
}

TEST(CheckWatches, CatchesWatcherThatMissedARevision) {
  WatchFixture f;
  f.second.events.erase(f.second.events.begin() + 1);  // w/b=5 at revision 14
  const CheckResult result = CheckWatches({f.first, f.second}, f.writes);
  EXPECT_FALSE(result.ok);
  EXPECT_THAT(result.verdict,
              HasSubstr("watcher 2 missed key=w/b revision=14 value=5 that watcher 1 saw"));
}

TEST(CheckWatches, CatchesWatcherThatSawAnEventTwice) {
  WatchFixture f;
  f.first.events.insert(f.first.events.begin() + 3, f.first.events[2]);  // w/b at 13 again
  const CheckResult result = CheckWatches({f.first, f.second}, f.writes);
  EXPECT_FALSE(result.ok);
  EXPECT_THAT(
      result.verdict,
      HasSubstr("watcher 1 (prefix 'w/') event #3 key=w/b revision=13 value=3: delivered twice"));
}

TEST(CheckWatches, CatchesOutOfOrderForeignValuesAndExtraEvents) {
  WatchFixture f;
  std::swap(f.first.events[0], f.first.events[1]);
  EXPECT_THAT(CheckWatches({f.first}, f.writes).verdict,
              HasSubstr("out of order after revision 12"));

  WatchFixture g;
  g.first.events[1].value = "nobody";
  EXPECT_THAT(CheckWatches({g.first}, g.writes).verdict,
              HasSubstr("key=w/a revision=12 value=nobody: a value no client wrote"));

  // An extra event in one watcher is a missing one in the other.
  WatchFixture h;
  h.second.events.push_back(Ev("w/a", "2", 15));
  EXPECT_THAT(CheckWatches({h.first, h.second}, h.writes).details,
              HasSubstr("watcher 1 missed key=w/a revision=15 value=2 that watcher 2 saw"));

  // A CAS that did not swap wrote nothing.
  WatchFixture c;
  c.writes.push_back(Cas("w/a", "1", "7", false, 20, 21));
  c.first.events.push_back(Ev("w/a", "7", 16));
  EXPECT_FALSE(CheckWatches({c.first}, c.writes).ok);
}

TEST(CheckHistory, SummaryJoinsTheVerdicts) {
  History history;
  history.registers = {Put("k", "a", 1, 2), Get("k", "a", 3, 4)};
  history.bank_initial = kInitial;
  history.bank = {Read({{"a", 100}, {"b", 100}, {"c", 0}})};
  const CheckReport report = CheckHistory(history);
  EXPECT_TRUE(report.ok());
  EXPECT_EQ(report.Summary(),
            "registers: ok (2 ops, 1 keys, 0 unknown, 0 dropped); bank: ok (1 reads, 0 transfers, "
            "total 200)");
  history.registers.push_back(Get("k", std::nullopt, 5, 6));
  const CheckReport bad = CheckHistory(history);
  EXPECT_FALSE(bad.ok());
  EXPECT_THAT(bad.Details(), HasSubstr("get key=k absent"));
}

// A violation at the very end of a long history with many writes of unknown outcome:
// the search must refute every order of what came before, which unique values keep
// tractable (see ResolveUnknownWrites in tests/sim/linearizability.cc).
TEST(CheckRegisters, RefutesLateViolationInLongHistory) {
  std::vector<RegisterOp> history = GoodHistory(5, 3000, 4);
  history.push_back(Put("k1", "late", 100000, 100001));
  history.push_back(Get("k1", std::nullopt, 100002, 100003));
  const CheckResult result = CheckRegisters(history);
  EXPECT_THAT(result.verdict, StartsWith("registers: NOT LINEARIZABLE key=k1 at client=0 get"));
  EXPECT_THAT(result.verdict, HasSubstr("176 unknown"));
}

}  // namespace
}  // namespace stead::fault
