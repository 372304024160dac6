// The pure parts of the bank and watch workloads: the workload flag, how clients are
// shared, the bank's bookkeeping and the watch recorder.
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "stead/client.h"
#include "tests/fault/bank_workload.h"
#include "tests/fault/checkers.h"
#include "tests/fault/history.h"
#include "tests/fault/watch_workload.h"
#include "tests/fault/workload.h"

namespace stead::fault {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;

TEST(ParseWorkloadsTest, NamesAnySubset) {
  absl::StatusOr<WorkloadMix> mix = ParseWorkloads("registers,bank,watches");
  ASSERT_TRUE(mix.ok()) << mix.status();
  EXPECT_TRUE(mix->registers && mix->bank && mix->watches);
  mix = ParseWorkloads("bank");
  ASSERT_TRUE(mix.ok()) << mix.status();
  EXPECT_TRUE(mix->bank);
  EXPECT_FALSE(mix->registers || mix->watches);
}

TEST(ParseWorkloadsTest, RefusesUnknownAndNone) {
  absl::StatusOr<WorkloadMix> mix = ParseWorkloads("registers,queue");
  ASSERT_FALSE(mix.ok());
  EXPECT_THAT(mix.status().message(), HasSubstr("queue"));
  EXPECT_FALSE(ParseWorkloads("").ok());
  EXPECT_FALSE(ParseWorkloads(",").ok());
}

TEST(SplitClientsTest, AQuarterBankWhenBothRun) {
  const WorkloadMix both{.registers = true, .bank = true};
  ClientSplit split = SplitClients(16, both);
  EXPECT_EQ(split.registers, 12);
  EXPECT_EQ(split.bank, 4);
  split = SplitClients(2, both);  // each at least one
  EXPECT_EQ(split.registers, 1);
  EXPECT_EQ(split.bank, 1);
  split = SplitClients(8, {.bank = true, .watches = true});
  EXPECT_EQ(split.registers, 0);
  EXPECT_EQ(split.bank, 8);
  split = SplitClients(8, {.registers = true});
  EXPECT_EQ(split.registers, 8);
  EXPECT_EQ(split.bank, 0);
}

TEST(BankTest, SeedsEveryAccount) {
  const BankOptions options{.prefix = "b/", .accounts = 3, .initial_balance = 50};
  EXPECT_THAT(InitialBalances(options),
              ElementsAre(Pair("b/a0", 50), Pair("b/a1", 50), Pair("b/a2", 50)));
  const TxnRequest seed = SeedTxn(options);
  EXPECT_TRUE(seed.compare.empty());
  EXPECT_THAT(seed.success, ElementsAre(TxnOp::Put("b/a0", "50"), TxnOp::Put("b/a1", "50"),
                                        TxnOp::Put("b/a2", "50")));
}

RangeResult Accounts(std::vector<KeyValue> kvs) {
  RangeResult range;
  range.kvs = std::move(kvs);
  return range;
}

TEST(BankTest, ReadsBalancesAndRevisions) {
  absl::StatusOr<BankView> view = ReadBankView(
      Accounts({{.key = "b/a0", .value = "7", .mod_revision = 12},
                {.key = "b/a1", .value = "93", .mod_revision = 15}}));
  ASSERT_TRUE(view.ok()) << view.status();
  EXPECT_EQ(view->at("b/a0").balance, 7);
  EXPECT_EQ(view->at("b/a0").mod_revision, 12);
  EXPECT_THAT(Balances(*view), ElementsAre(Pair("b/a0", 7), Pair("b/a1", 93)));
}

TEST(BankTest, AFirstPageIsNoReadOfEveryAccount) {
  RangeResult range = Accounts({{.key = "b/a0", .value = "7"}});
  range.more = true;
  EXPECT_EQ(ReadBankView(range).status().code(), absl::StatusCode::kFailedPrecondition);
}

BankOp ReadOf(std::map<std::string, int64_t> balances) {
  BankOp op;
  op.balances = std::move(balances);
  return op;
}

TEST(BankTest, AValueThatIsNoBalanceIsNamedAndLeftOut) {
  BankView partial;
  absl::StatusOr<BankView> view = ReadBankView(
      Accounts({{.key = "b/a0", .value = "7"}, {.key = "b/a1", .value = "x9"}}), &partial);
  ASSERT_FALSE(view.ok());
  EXPECT_THAT(view.status().message(), HasSubstr("b/a1"));
  EXPECT_THAT(Balances(partial), ElementsAre(Pair("b/a0", 7)));
  // The checker then reports the read: the account is missing and the sum is off.
  const CheckResult check =
      CheckBank({{"b/a0", 50}, {"b/a1", 50}},
                {ReadOf(Balances(partial))});
  EXPECT_FALSE(check.ok);
  EXPECT_THAT(check.verdict, HasSubstr("missing account b/a1"));
}

TEST(BankTest, TransferPutsBothBalancesIfNeitherChanged) {
  const BankView view = {{"b/a0", {.balance = 30, .mod_revision = 4}},
                         {"b/a1", {.balance = 70, .mod_revision = 9}}};
  const std::optional<TxnRequest> txn = TransferTxn(view, "b/a1", "b/a0", 25);
  ASSERT_TRUE(txn.has_value());
  EXPECT_THAT(txn->compare,
              ElementsAre(Compare::ModRevision("b/a1", Compare::Result::kEqual, 9),
                          Compare::ModRevision("b/a0", Compare::Result::kEqual, 4)));
  EXPECT_THAT(txn->success, ElementsAre(TxnOp::Put("b/a1", "45"), TxnOp::Put("b/a0", "55")));
  EXPECT_TRUE(txn->failure.empty());
  // Everything: allowed; more than the balance, nothing, or to itself: not.
  EXPECT_TRUE(TransferTxn(view, "b/a0", "b/a1", 30).has_value());
  EXPECT_FALSE(TransferTxn(view, "b/a0", "b/a1", 31).has_value());
  EXPECT_FALSE(TransferTxn(view, "b/a0", "b/a1", 0).has_value());
  EXPECT_FALSE(TransferTxn(view, "b/a0", "b/a0", 5).has_value());
  EXPECT_FALSE(TransferTxn(view, "b/a0", "b/a7", 5).has_value());
}

WatchEvent Put(const std::string& key, const std::string& value, int64_t revision) {
  WatchEvent event;
  event.kv.key = key;
  event.kv.value = value;
  event.kv.mod_revision = revision;
  return event;
}

WatchEvent Delete(const std::string& key, int64_t revision) {
  WatchEvent event;
  event.type = WatchEvent::Type::kDelete;
  event.kv.key = key;
  event.kv.mod_revision = revision;
  return event;
}

TEST(WatchRecorderTest, RecordsEventsAsDelivered) {
  WatchRecorder recorder(2, "r", 10);
  EXPECT_EQ(recorder.progress(), 9);  // nothing delivered yet
  recorder.OnEvents({Put("r1", "v1", 10), Put("r2", "v2", 10)}, 10);
  recorder.OnEvents({Delete("r1", 12)}, 13);
  EXPECT_EQ(recorder.progress(), 13);
  EXPECT_TRUE(recorder.Saw("r2", "v2"));
  EXPECT_FALSE(recorder.Saw("r1", "v2"));
  const std::vector<WatchRecord> records = recorder.Records();
  ASSERT_EQ(records.size(), 1u);
  const WatchRecord& record = records[0];
  EXPECT_EQ(record.watcher, 2u);
  EXPECT_EQ(record.prefix, "r");
  EXPECT_EQ(record.start_revision, 10);
  EXPECT_EQ(record.progress_revision, 13);
  ASSERT_EQ(record.events.size(), 3u);
  EXPECT_EQ(record.events[1].key, "r2");
  EXPECT_EQ(record.events[1].value, "v2");
  EXPECT_EQ(record.events[2].mod_revision, 12);
  EXPECT_TRUE(record.events[2].deleted);
  EXPECT_EQ(record.events[2].value, "");
}

TEST(WatchRecorderTest, AReopenedWatchIsANewRecordFromTheNextRevision) {
  WatchRecorder recorder(0, "r", 10);
  recorder.OnEvents({Put("r1", "a", 11)}, 11);
  // The watch ended having delivered through 14 (progress without events after 11).
  EXPECT_EQ(recorder.Reopen(14), 15);
  recorder.OnEvents({Put("r1", "b", 16)}, 16);
  // An end before any answer (progress 0) resumes where the record stands.
  EXPECT_EQ(recorder.Reopen(0), 17);
  const std::vector<WatchRecord> records = recorder.Records();
  ASSERT_EQ(records.size(), 3u);
  EXPECT_EQ(records[0].start_revision, 10);
  EXPECT_EQ(records[0].progress_revision, 14);
  EXPECT_EQ(records[1].start_revision, 15);
  EXPECT_EQ(records[1].progress_revision, 16);
  ASSERT_EQ(records[1].events.size(), 1u);
  EXPECT_EQ(records[1].events[0].value, "b");
  EXPECT_EQ(records[2].start_revision, 17);
  EXPECT_TRUE(records[2].events.empty());
  EXPECT_FALSE(recorder.Saw("r1", "a"));  // the current record only

  // A complete watcher split in records agrees with one that never ended, and the
  // checker notices the one event a record lacks.
  WatchRecorder steady(1, "r", 10);
  steady.OnEvents({Put("r1", "a", 11), Put("r1", "b", 16)}, 17);
  std::vector<RegisterOp> writes(2);
  for (RegisterOp& op : writes) {
    op.kind = RegisterOp::Kind::kPut;
    op.key = "r1";
  }
  writes[0].value = "a";
  writes[1].value = "b";
  std::vector<WatchRecord> all = records;
  for (const WatchRecord& record : steady.Records()) all.push_back(record);
  EXPECT_TRUE(CheckWatches(all, writes).ok) << CheckWatches(all, writes).verdict;
  all[1].events.clear();
  const CheckResult missed = CheckWatches(all, writes);
  EXPECT_FALSE(missed.ok);
  EXPECT_THAT(missed.verdict, HasSubstr("watcher 0 missed key=r1 revision=16"));
}

TEST(HistorySummaryTest, CountsBankOperationsToo) {
  History history;
  history.registers.resize(1);
  history.registers[0].complete_ns = 10;
  history.bank.resize(2);
  history.bank[0].complete_ns = 40;
  history.bank[1].outcome = Outcome::kUnknown;
  const OpCounts counts = CountOutcomes(history);
  EXPECT_EQ(counts.ok, 2);
  EXPECT_EQ(counts.unknown, 1);
  // The bank's ok at 40 splits the stretch 10..100.
  EXPECT_EQ(LongestUnavailableNs(history, 0, 100), 60);
}

}  // namespace
}  // namespace stead::fault
