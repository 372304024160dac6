#include "storage/state_machine.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "storage/checkpoint_files.h"
#include "storage/state_machine_dir.h"
#include "storage/state_machine_testing.h"
#include "tests/testing/status_matchers.h"

namespace stead::storage {
namespace {

using ::stead::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Optional;
using testing::PutBatch;
using testing::TempDir;
using testing::TestOptions;

std::vector<std::string> Keys(const ScanResult& result) {
  std::vector<std::string> keys;
  for (const KeyValue& pair : result.pairs) keys.push_back(pair.key);
  return keys;
}

// "path size" of every file under `dir`, sorted; LOCK is left out (taking the lock is
// not a change of contents).
std::vector<std::string> DescribeFiles(const std::string& dir) {
  std::vector<std::string> described;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(dir)) {
    if (!entry.is_regular_file() || entry.path().filename() == "LOCK") continue;
    described.push_back(absl::StrCat(entry.path().string(), " ", entry.file_size()));
  }
  std::sort(described.begin(), described.end());
  return described;
}

TEST(StateMachine, FirstOpenInitialisesAndStoresIdentity) {
  TempDir dir;
  ASSERT_OK_AND_ASSIGN(auto machine, StateMachine::Open(TestOptions(dir.Sub("data"))));
  EXPECT_EQ(machine->applied_index(), 0u);
  EXPECT_EQ(machine->node_metadata().cluster_id(), testing::kTestClusterId);
  EXPECT_EQ(machine->node_metadata().node_id(), 1u);
  EXPECT_EQ(machine->node_metadata().node_name(), "stead-0");
  EXPECT_EQ(machine->node_metadata().format_version(), kDataFormatVersion);
  EXPECT_THAT(machine->keyspaces(), ElementsAre("kv"));
  ASSERT_OK_AND_ASSIGN(const auto active, ReadActive(dir.Sub("data")));
  EXPECT_THAT(active, Optional(std::string("db-000001")));
}

// Goal: a memory limit holds RocksDB's memtables to a share of it, where the defaults
// keep every byte of a write burst in memory until a 64 MiB memtable fills.
TEST(StateMachine, MemoryLimitBoundsTheMemtables) {
  constexpr size_t kLimit = size_t{16} << 20;
  constexpr int kBatches = 48;  // of 1 MiB of incompressible values each
  std::mt19937_64 random(7);
  auto burst = [&](StateMachine& machine) {
    for (int b = 0; b < kBatches; ++b) {
      ApplyBatch batch;
      batch.index = static_cast<raft::Index>(b + 1);
      batch.term = 1;
      for (int i = 0; i < 16; ++i) {
        std::string value(64 << 10, '\0');
        for (char& c : value) c = static_cast<char>(random());
        batch.mutations.push_back(Mutation::Put("kv", absl::StrCat(b, "/", i), std::move(value)));
      }
      ASSERT_OK(machine.Apply(batch));
    }
  };
  TempDir dir;
  uint64_t default_memtables = 0;
  {
    ASSERT_OK_AND_ASSIGN(auto machine, StateMachine::Open(TestOptions(dir.Sub("default"))));
    burst(*machine);
    default_memtables = machine->memory_usage().memtable_bytes;
  }
  StateMachineOptions options = TestOptions(dir.Sub("limited"));
  options.memory_limit_bytes = kLimit;
  ASSERT_OK_AND_ASSIGN(auto machine, StateMachine::Open(options));
  burst(*machine);
  const StateMachine::MemoryUsage usage = machine->memory_usage();
  EXPECT_GT(default_memtables, uint64_t{40} << 20);
  // A quarter of the limit, plus the memtable being flushed when the burst ended.
  EXPECT_LE(usage.memtable_bytes, kLimit / 4 + kLimit / 16);
  EXPECT_LE(usage.block_cache_bytes, kLimit / 2 + (size_t{1} << 20));
  for (int b = 0; b < kBatches; b += 7) EXPECT_OK(machine->Get("kv", absl::StrCat(b, "/3")));
}

TEST(StateMachine, ApplyThenGetAndScan) {
  TempDir dir;
  ASSERT_OK_AND_ASSIGN(auto machine, StateMachine::Open(TestOptions(dir.Sub("data"))));
  ASSERT_OK(machine->Apply(PutBatch(1, 1, {{"b", "2"}, {"a", "1"}, {"d", "4"}, {"c", "3"}})));
  ApplyBatch second;
  second.index = 2;
  second.term = 1;
  second.mutations = {Mutation::Delete("kv", "c"), Mutation::Put("kv", "e", "5"),
                      Mutation::Put("kv", "a", "1b")};
  ASSERT_OK(machine->Apply(second));

  EXPECT_EQ(machine->applied_index(), 2u);
  EXPECT_THAT(machine->Get("kv", "a"), ::stead::testing::IsOk());
  EXPECT_EQ(*machine->Get("kv", "a"), std::optional<std::string>("1b"));
  EXPECT_EQ(*machine->Get("kv", "c"), std::nullopt);
  EXPECT_THAT(machine->Get("nope", "a"), StatusIs(absl::StatusCode::kInvalidArgument, "nope"));
  EXPECT_THAT(machine->Get("meta", "raft/applied"),
              StatusIs(absl::StatusCode::kInvalidArgument, "unknown keyspace"));

  const struct {
    const char* name;
    ScanOptions options;
    std::vector<std::string> want;
    bool want_more;
  } cases[] = {
      {"all", {}, {"a", "b", "d", "e"}, false},
      {"range", {"kv", "b", "e", false, 100}, {"b", "d"}, false},
      {"from", {"kv", "c", "", false, 100}, {"d", "e"}, false},
      {"limit", {"kv", "", "", false, 2}, {"a", "b"}, true},
      {"reverse", {"kv", "", "", true, 100}, {"e", "d", "b", "a"}, false},
      {"reverse range", {"kv", "b", "e", true, 100}, {"d", "b"}, false},
      {"reverse limit", {"kv", "a", "", true, 3}, {"e", "d", "b"}, true},
      {"exact limit", {"kv", "", "", false, 4}, {"a", "b", "d", "e"}, false},
      {"empty range", {"kv", "e", "b", false, 100}, {}, false},
      // a "1b" is 3 bytes, b "2" makes 5: the pair that reaches max_bytes is the last.
      {"bytes", {"kv", "", "", false, 100, 4}, {"a", "b"}, true},
      {"bytes reached exactly", {"kv", "", "", false, 100, 5}, {"a", "b"}, true},
      {"one pair over the bytes", {"kv", "", "", false, 100, 1}, {"a"}, true},
      {"reverse bytes", {"kv", "", "", true, 100, 3}, {"e", "d"}, true},
      {"bytes beyond the range", {"kv", "", "", false, 100, 1000}, {"a", "b", "d", "e"}, false},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    ASSERT_OK_AND_ASSIGN(const ScanResult result, machine->Scan(c.options));
    EXPECT_EQ(Keys(result), c.want);
    EXPECT_EQ(result.more, c.want_more);
  }
  ASSERT_OK_AND_ASSIGN(const ScanResult values, machine->Scan({"kv", "a", "c", false, 10}));
  EXPECT_THAT(values.pairs, ElementsAre(KeyValue{"a", "1b"}, KeyValue{"b", "2"}));
  EXPECT_THAT(machine->Scan({"kv", "", "", false, 0}),
              StatusIs(absl::StatusCode::kInvalidArgument, "limit"));
}

// Goal: a staged run of entries reads as if applied, is invisible until its commit,
// and commits atomically with the applied index of its last entry, each key written
// once with its last value; a scan commits the run before it reads. Method: stage
// entries over stored keys (overwrites, a delete, keys outside the scanned ranges) and
// compare reads through the staged view with reads of the state machine before and
// after the commit.
TEST(StagedApply, StagedEntriesReadAsAppliedAndCommitTogether) {
  TempDir dir;
  ASSERT_OK_AND_ASSIGN(auto machine, StateMachine::Open(TestOptions(dir.Sub("data"))));
  ASSERT_OK(machine->Apply(PutBatch(1, 1, {{"b", "1"}, {"d", "1"}, {"f", "1"}})));
  const std::unique_ptr<StagedApply> staged = machine->StartApply();
  ASSERT_OK(staged->Stage(PutBatch(2, 1, {{"a", "2"}, {"d", "2"}})));
  ApplyBatch third;
  third.index = 3;
  third.term = 2;
  third.mutations = {Mutation::Delete("kv", "b"), Mutation::Put("kv", "g", "3"),
                     Mutation::Put("kv", "d", "3")};
  ASSERT_OK(staged->Stage(third));
  EXPECT_EQ(staged->staged_entries(), 2u);

  EXPECT_THAT(staged->Get("kv", "d"), ::stead::testing::IsOkAndHolds(Optional(std::string("3"))));
  EXPECT_THAT(staged->Get("kv", "b"), ::stead::testing::IsOkAndHolds(std::nullopt));
  EXPECT_THAT(staged->Get("kv", "f"), ::stead::testing::IsOkAndHolds(Optional(std::string("1"))));
  // Nothing is visible before the commit.
  EXPECT_EQ(machine->applied_index(), 1u);
  EXPECT_EQ(*machine->Get("kv", "d"), std::optional<std::string>("1"));
  EXPECT_EQ(*machine->Get("kv", "a"), std::nullopt);

  ASSERT_OK(staged->Commit());
  EXPECT_EQ(staged->staged_entries(), 0u);
  EXPECT_EQ(machine->applied_index(), 3u);
  EXPECT_EQ(machine->applied().term(), 2u);
  ASSERT_OK_AND_ASSIGN(const ScanResult all, machine->Scan({}));
  EXPECT_THAT(all.pairs, ElementsAre(KeyValue{"a", "2"}, KeyValue{"d", "3"}, KeyValue{"f", "1"},
                                     KeyValue{"g", "3"}));

  // The view goes on after a commit; a scan writes the run before it reads.
  ASSERT_OK(staged->Stage(PutBatch(4, 2, {{"h", "4"}, {"a", "4"}})));
  ASSERT_OK(staged->Stage(PutBatch(5, 2, {{"c", "5"}})));
  const struct {
    const char* name;
    ScanOptions options;
    std::vector<std::string> want;
    bool want_more;
  } cases[] = {
      {"all", {}, {"a", "c", "d", "f", "g", "h"}, false},
      {"range", {"kv", "b", "f", false, 100}, {"c", "d"}, false},
      {"reverse range", {"kv", "b", "f", true, 100}, {"d", "c"}, false},
      {"reverse", {"kv", "", "", true, 100}, {"h", "g", "f", "d", "c", "a"}, false},
      {"limit", {"kv", "", "", false, 2}, {"a", "c"}, true},
      {"reverse limit to the start", {"kv", "c", "", true, 2}, {"h", "g"}, true},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    ASSERT_OK_AND_ASSIGN(const ScanResult result, staged->Scan(c.options));
    EXPECT_EQ(Keys(result), c.want);
    EXPECT_EQ(result.more, c.want_more);
    EXPECT_EQ(staged->staged_entries(), 0u);
    EXPECT_EQ(machine->applied_index(), 5u);
  }
  EXPECT_EQ(*machine->Get("kv", "a"), std::optional<std::string>("4"));
  ASSERT_OK(staged->Commit());  // nothing left to write
  EXPECT_EQ(machine->applied_index(), 5u);
}

// Goal: what cannot join a staged run is refused or written without losing the run.
// Method: an over-limit entry is refused with nothing of it staged; a gap is refused;
// a delete-range entry commits the run and is applied after it.
TEST(StagedApply, RefusedEntriesLeaveTheRunAndADeleteRangeCommitsIt) {
  TempDir dir;
  StateMachineOptions options = TestOptions(dir.Sub("data"));
  options.limits.max_value_bytes = 8;
  ASSERT_OK_AND_ASSIGN(auto machine, StateMachine::Open(options));
  const std::unique_ptr<StagedApply> staged = machine->StartApply();
  ASSERT_OK(staged->Stage(PutBatch(1, 1, {{"a", "1"}, {"b", "1"}, {"c", "1"}})));
  EXPECT_THAT(staged->Stage(PutBatch(2, 1, {{"x", "1"}, {"y", std::string(9, 'v')}})),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(staged->Get("kv", "x"), ::stead::testing::IsOkAndHolds(std::nullopt));
  EXPECT_THAT(staged->Stage(PutBatch(3, 1, {{"x", "1"}})),
              StatusIs(absl::StatusCode::kFailedPrecondition, "skipped"));
  ASSERT_OK(staged->Stage(PutBatch(2, 1, {})));  // the refused entry, applied empty

  ApplyBatch erase;
  erase.index = 3;
  erase.term = 1;
  erase.mutations = {Mutation::DeleteRange("kv", "a", "c"), Mutation::Put("kv", "d", "3")};
  ASSERT_OK(staged->Stage(erase));
  EXPECT_EQ(machine->applied_index(), 3u);  // written, with the run before it
  EXPECT_EQ(staged->staged_entries(), 0u);
  ASSERT_OK(staged->Stage(PutBatch(4, 1, {{"a", "4"}})));
  ASSERT_OK(staged->Commit());
  ASSERT_OK_AND_ASSIGN(const ScanResult all, machine->Scan({}));
  EXPECT_THAT(all.pairs, ElementsAre(KeyValue{"a", "4"}, KeyValue{"c", "1"}, KeyValue{"d", "3"}));
}

// Goal: what the applier reads through its runs (staged writes, then its cache of
// values, then RocksDB) is always what the state holds, whatever the cache keeps or
// evicts. Method: random runs of puts, deletes and range deletes over a few keys in two
// keyspaces, with reads of random keys between the entries, checked against a model;
// a tiny cache evicts all the time, a large one keeps everything; after each commit
// the state machine itself must hold the model too.
TEST(StagedApply, ReadsMatchAModelWhateverTheCacheHolds) {
  for (const size_t cache_bytes : {size_t{0}, size_t{400}, size_t{1} << 20}) {
    SCOPED_TRACE(absl::StrCat("apply cache of ", cache_bytes, " bytes"));
    TempDir dir;
    StateMachineOptions options = TestOptions(dir.Sub("data"));
    options.keyspaces = {"kv", "other"};
    options.apply_cache_bytes = cache_bytes;
    ASSERT_OK_AND_ASSIGN(auto machine, StateMachine::Open(options));
    std::map<std::pair<std::string, std::string>, std::string> model;
    std::mt19937_64 random(cache_bytes + 1);
    const auto draw = [&random](size_t n) { return random() % n; };
    const auto random_key = [&] { return std::string(1, static_cast<char>('a' + draw(8))); };
    const auto random_keyspace = [&] { return std::string(draw(2) == 0 ? "kv" : "other"); };
    const auto check_reads = [&](const StateReader& reader, int reads) {
      for (int i = 0; i < reads; ++i) {
        const std::string keyspace = random_keyspace();
        const std::string key = random_key();
        const auto it = model.find({keyspace, key});
        const std::optional<std::string> want =
            it == model.end() ? std::nullopt : std::optional<std::string>(it->second);
        ASSERT_OK_AND_ASSIGN(const std::optional<std::string> got, reader.Get(keyspace, key));
        ASSERT_EQ(got, want) << keyspace << "/" << key;
      }
    };
    // A scan of a random range of one keyspace, forwards or in reverse.
    const auto check_scan = [&](const StateReader& reader) {
      ScanOptions scan;
      scan.keyspace = random_keyspace();
      scan.start_key = random_key();
      scan.end_key = std::string(1, static_cast<char>(scan.start_key[0] + 1 + draw(4)));
      scan.reverse = draw(2) == 0;
      scan.limit = 100;
      std::vector<KeyValue> want;
      for (auto it = model.lower_bound({scan.keyspace, scan.start_key});
           it != model.end() && it->first.first == scan.keyspace && it->first.second < scan.end_key;
           ++it) {
        want.push_back(KeyValue{it->first.second, it->second});
      }
      if (scan.reverse) std::reverse(want.begin(), want.end());
      ASSERT_OK_AND_ASSIGN(const ScanResult got, reader.Scan(scan));
      ASSERT_EQ(got.pairs, want) << scan.keyspace << " [" << scan.start_key << ", "
                                 << scan.end_key << ")" << (scan.reverse ? " reverse" : "");
    };
    raft::Index index = 0;
    for (int run = 0; run < 60; ++run) {
      const std::unique_ptr<StagedApply> staged = machine->StartApply();
      for (int n = 1 + static_cast<int>(draw(5)); n > 0; --n) {
        ApplyBatch entry;
        entry.index = ++index;
        entry.term = 1;
        for (int m = 1 + static_cast<int>(draw(3)); m > 0; --m) {
          const std::string keyspace = random_keyspace();
          const std::string key = random_key();
          const uint64_t kind = draw(10);
          if (kind == 0) {
            const std::string end(1, static_cast<char>(key[0] + 1 + draw(3)));
            entry.mutations.push_back(Mutation::DeleteRange(keyspace, key, end));
            for (auto it = model.lower_bound({keyspace, key});
                 it != model.end() && it->first.first == keyspace && it->first.second < end;) {
              it = model.erase(it);
            }
          } else if (kind < 3) {
            entry.mutations.push_back(Mutation::Delete(keyspace, key));
            model.erase({keyspace, key});
          } else {
            const std::string value = absl::StrCat("v", index, "-", m, std::string(draw(40), 'x'));
            entry.mutations.push_back(Mutation::Put(keyspace, key, value));
            model[{keyspace, key}] = value;
          }
        }
        ASSERT_OK(staged->Stage(entry));
        check_reads(*staged, 6);
        if (draw(4) == 0) check_scan(*staged);
      }
      ASSERT_OK(staged->Commit());
      check_reads(*staged, 6);
      check_reads(*machine, 6);
    }
  }
}

TEST(StateMachine, DeleteRangeRemovesEveryKeyOfTheRangeOnly) {
  TempDir dir;
  ASSERT_OK_AND_ASSIGN(auto machine, StateMachine::Open(TestOptions(dir.Sub("data"))));
  ASSERT_OK(machine->Apply(PutBatch(1, 1, {{"a", "1"}, {"b", "2"}, {"c", "3"}, {"d", "4"}})));
  ApplyBatch second;
  second.index = 2;
  second.term = 1;
  second.mutations = {Mutation::DeleteRange("kv", "b", "d"), Mutation::Put("kv", "e", "5")};
  ASSERT_OK(machine->Apply(second));
  ASSERT_OK_AND_ASSIGN(const ScanResult all, machine->Scan({"kv", "", "", false, 10}));
  EXPECT_EQ(Keys(all), (std::vector<std::string>{"a", "d", "e"}));

  ApplyBatch backwards;
  backwards.index = 3;
  backwards.term = 1;
  backwards.mutations = {Mutation::DeleteRange("kv", "d", "a")};
  EXPECT_THAT(machine->Apply(backwards),
              StatusIs(absl::StatusCode::kInvalidArgument, "ends before it begins"));
  EXPECT_EQ(machine->applied_index(), 2u);
}

TEST(StateMachine, KeyspacesAreIndependentAndSurviveReopen) {
  TempDir dir;
  StateMachineOptions options = TestOptions(dir.Sub("data"));
  options.keyspaces = {"kv", "revisions"};
  {
    ASSERT_OK_AND_ASSIGN(auto machine, StateMachine::Open(options));
    ApplyBatch batch;
    batch.index = 1;
    batch.term = 1;
    batch.mutations = {Mutation::Put("kv", "k", "latest"), Mutation::Put("revisions", "k@1", "v1")};
    ASSERT_OK(machine->Apply(batch));
    EXPECT_EQ(*machine->Get("kv", "k@1"), std::nullopt);
    EXPECT_EQ(*machine->Get("revisions", "k@1"), std::optional<std::string>("v1"));
  }
  // Reopened without listing "revisions": it stays readable, and a new keyspace appears.
  options.keyspaces = {"kv", "leases"};
  ASSERT_OK_AND_ASSIGN(auto machine, StateMachine::Open(options));
  EXPECT_THAT(machine->keyspaces(), ElementsAre("kv", "leases", "revisions"));
  EXPECT_EQ(*machine->Get("revisions", "k@1"), std::optional<std::string>("v1"));
  EXPECT_EQ(*machine->Get("kv", "k"), std::optional<std::string>("latest"));
}

TEST(StateMachine, InvalidKeyspaceNamesAreRefused) {
  TempDir dir;
  for (const char* name : {"", "meta", "default"}) {
    SCOPED_TRACE(name);
    StateMachineOptions options = TestOptions(dir.Sub("data"));
    options.keyspaces = {name};
    EXPECT_THAT(StateMachine::Open(options), StatusIs(absl::StatusCode::kInvalidArgument));
  }
  StateMachineOptions options = TestOptions(dir.Sub("data"));
  options.keyspaces = {"kv", "kv"};
  EXPECT_THAT(StateMachine::Open(options), StatusIs(absl::StatusCode::kInvalidArgument, "twice"));
}

// Goal: replaying entries the state already holds (the runtime replays the Raft log
// from an older index after a crash) changes nothing, even if the replayed entries
// carried different data.
TEST(StateMachine, ApplyIsIdempotentOnReplay) {
  TempDir dir;
  ASSERT_OK_AND_ASSIGN(auto machine, StateMachine::Open(TestOptions(dir.Sub("data"))));
  for (raft::Index i = 1; i <= 10; ++i) {
    ASSERT_OK(machine->Apply(PutBatch(i, 1, {{absl::StrCat("k", i), absl::StrCat("v", i)}})));
  }
  for (raft::Index i = 5; i <= 10; ++i) {
    EXPECT_OK(machine->Apply(PutBatch(i, 1, {{absl::StrCat("k", i), "replayed"}})));
  }
  EXPECT_EQ(machine->applied_index(), 10u);
  for (raft::Index i = 1; i <= 10; ++i) {
    EXPECT_EQ(*machine->Get("kv", absl::StrCat("k", i)),
              std::optional<std::string>(absl::StrCat("v", i)));
  }
  ASSERT_OK(machine->Apply(PutBatch(11, 2, {{"k11", "v11"}})));
  EXPECT_EQ(machine->applied().term(), 2u);
}

TEST(StateMachine, ApplyRefusesGapsLowerTermsAndZeroes) {
  TempDir dir;
  ASSERT_OK_AND_ASSIGN(auto machine, StateMachine::Open(TestOptions(dir.Sub("data"))));
  ASSERT_OK(machine->Apply(PutBatch(1, 3, {{"a", "1"}})));
  EXPECT_THAT(machine->Apply(PutBatch(3, 3, {{"b", "2"}})),
              StatusIs(absl::StatusCode::kFailedPrecondition, "skipped"));
  EXPECT_THAT(machine->Apply(PutBatch(2, 2, {{"b", "2"}})),
              StatusIs(absl::StatusCode::kFailedPrecondition, "below applied term"));
  EXPECT_THAT(machine->Apply(PutBatch(0, 3, {})), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(machine->Apply(PutBatch(2, 0, {})), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(machine->applied_index(), 1u);
  EXPECT_EQ(*machine->Get("kv", "b"), std::nullopt);
}

TEST(StateMachine, LimitsAreEnforcedAndNothingIsWritten) {
  TempDir dir;
  StateMachineOptions options = TestOptions(dir.Sub("data"));
  options.limits.max_key_bytes = 16;
  options.limits.max_value_bytes = 64;
  options.limits.max_batch_mutations = 3;
  options.limits.max_batch_bytes = 100;
  ASSERT_OK_AND_ASSIGN(auto machine, StateMachine::Open(options));
  const struct {
    const char* name;
    ApplyBatch batch;
    const char* want;
  } cases[] = {
      {"key", PutBatch(1, 1, {{"ok", "v"}, {std::string(17, 'k'), "v"}}), "key is 17 bytes, over the max_key_bytes limit of 16"},
      {"empty key", PutBatch(1, 1, {{"", "v"}}), "key is empty"},
      {"value", PutBatch(1, 1, {{"k", std::string(65, 'v')}}), "value is 65 bytes, over the max_value_bytes limit of 64"},
      {"mutations", PutBatch(1, 1, {{"a", ""}, {"b", ""}, {"c", ""}, {"d", ""}}), "4 mutations, over the max_batch_mutations limit of 3"},
      {"batch bytes", PutBatch(1, 1, {{"a", std::string(60, 'v')}, {"b", std::string(60, 'v')}}), "batch is 126 bytes, over the max_batch_bytes limit of 100"},
      {"keyspace", ApplyBatch{1, 1, {Mutation::Put("nope", "k", "v")}, {}}, "unknown keyspace 'nope'"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_THAT(machine->Apply(c.batch), StatusIs(absl::StatusCode::kInvalidArgument, c.want));
    EXPECT_EQ(machine->applied_index(), 0u);
    EXPECT_EQ(*machine->Get("kv", "ok"), std::nullopt);
  }
  // At the limits exactly, everything is accepted.
  EXPECT_OK(machine->Apply(PutBatch(1, 1, {{std::string(16, 'k'), std::string(64, 'v')}})));
}

TEST(Limits, CheckEntrySizeNamesTheLimit) {
  Limits limits;
  EXPECT_OK(CheckEntrySize(limits.max_entry_bytes, limits));
  EXPECT_THAT(CheckEntrySize(limits.max_entry_bytes + 1, limits),
              StatusIs(absl::StatusCode::kInvalidArgument, "max_entry_bytes"));
  // Defaults nest: what one entry's command stores (its pairs, and a response that may
  // hold more than the command) fits a stored value, which fits in a batch.
  EXPECT_LT(limits.max_entry_bytes, limits.max_value_bytes);
  EXPECT_LT(limits.max_key_bytes + limits.max_value_bytes, limits.max_batch_bytes);
}

// Goal: the applied index is never durable apart from the data it covers. Method: flush
// after entry 5, apply 6..10, then close without flushing (as a crash would: the WAL is
// off, memtables are lost) and reopen; state and index must both be those of entry 5,
// and replaying 6..10 must give the full state.
TEST(StateMachine, AppliedIndexIsAtomicWithDataAcrossACrash) {
  TempDir dir;
  StateMachineOptions options = TestOptions(dir.Sub("data"));
  options.flush_on_close = false;
  auto entry = [](raft::Index i) {
    ApplyBatch batch = PutBatch(i, 1, {{absl::StrCat("key", i), absl::StrCat("value", i)}});
    batch.mutations.push_back(Mutation::Put("kv", "last", absl::StrCat(i)));
    return batch;
  };
  {
    ASSERT_OK_AND_ASSIGN(auto machine, StateMachine::Open(options));
    for (raft::Index i = 1; i <= 5; ++i) ASSERT_OK(machine->Apply(entry(i)));
    ASSERT_OK_AND_ASSIGN(const raft::Index durable, machine->Flush());
    EXPECT_EQ(durable, 5u);
    for (raft::Index i = 6; i <= 10; ++i) ASSERT_OK(machine->Apply(entry(i)));
    EXPECT_EQ(machine->applied_index(), 10u);
  }  // "Crash": closed without flushing.
  ASSERT_OK_AND_ASSIGN(auto machine, StateMachine::Open(options));
  EXPECT_EQ(machine->applied_index(), 5u);
  EXPECT_EQ(*machine->Get("kv", "last"), std::optional<std::string>("5"));
  EXPECT_EQ(*machine->Get("kv", "key5"), std::optional<std::string>("value5"));
  EXPECT_EQ(*machine->Get("kv", "key6"), std::nullopt);
  // The Raft log replays from an older index; everything converges.
  for (raft::Index i = 3; i <= 10; ++i) ASSERT_OK(machine->Apply(entry(i)));
  EXPECT_EQ(machine->applied_index(), 10u);
  EXPECT_EQ(*machine->Get("kv", "last"), std::optional<std::string>("10"));
  ASSERT_OK_AND_ASSIGN(const ScanResult all, machine->Scan({}));
  EXPECT_EQ(all.pairs.size(), 11u);
}

// Goal: with many entries and memtable-full flushes RocksDB triggers on its own, the
// state recovered after a crash is always exactly the state after its applied index.
// Method: a tiny write buffer forces automatic flushes; after the crash the recovered
// state is compared with a model replayed up to the recovered index.
TEST(StateMachine, AutomaticFlushesKeepIndexAndDataTogether) {
  TempDir dir;
  StateMachineOptions options = TestOptions(dir.Sub("data"));
  options.flush_on_close = false;
  options.write_buffer_bytes = 64 * 1024;
  std::mt19937_64 random(7);
  std::vector<ApplyBatch> entries;
  for (raft::Index i = 1; i <= 400; ++i) {
    ApplyBatch batch;
    batch.index = i;
    batch.term = 1;
    for (int m = 0; m < 4; ++m) {
      const std::string key = absl::StrCat("k", random() % 200);
      if (random() % 5 == 0) {
        batch.mutations.push_back(Mutation::Delete("kv", key));
      } else {
        batch.mutations.push_back(Mutation::Put("kv", key, std::string(100 + random() % 400, 'a' + static_cast<char>(i % 26))));
      }
    }
    entries.push_back(std::move(batch));
  }
  {
    ASSERT_OK_AND_ASSIGN(auto machine, StateMachine::Open(options));
    for (const ApplyBatch& batch : entries) ASSERT_OK(machine->Apply(batch));
  }
  ASSERT_OK_AND_ASSIGN(auto machine, StateMachine::Open(options));
  const raft::Index recovered = machine->applied_index();
  std::map<std::string, std::string> model;
  for (raft::Index i = 1; i <= recovered; ++i) {
    for (const Mutation& m : entries[i - 1].mutations) {
      if (m.type == Mutation::Type::kPut) {
        model[m.key] = m.value;
      } else {
        model.erase(m.key);
      }
    }
  }
  ASSERT_OK_AND_ASSIGN(const ScanResult state, machine->Scan({"kv", "", "", false, 1000}));
  std::map<std::string, std::string> actual;
  for (const KeyValue& pair : state.pairs) actual[pair.key] = pair.value;
  EXPECT_EQ(actual, model) << "recovered index " << recovered;
  EXPECT_GT(recovered, 0u) << "the tiny write buffer should have forced flushes";
}

TEST(StateMachine, SnapshotSeesOneConsistentState) {
  TempDir dir;
  ASSERT_OK_AND_ASSIGN(auto machine, StateMachine::Open(TestOptions(dir.Sub("data"))));
  ASSERT_OK(machine->Apply(PutBatch(1, 1, {{"a", "old"}, {"b", "old"}})));
  ASSERT_OK_AND_ASSIGN(auto snapshot, machine->NewSnapshot());
  ApplyBatch change = PutBatch(2, 1, {{"a", "new"}, {"c", "new"}});
  change.mutations.push_back(Mutation::Delete("kv", "b"));
  ASSERT_OK(machine->Apply(change));
  EXPECT_EQ(snapshot->applied().index(), 1u);
  EXPECT_EQ(*snapshot->Get("kv", "a"), std::optional<std::string>("old"));
  ASSERT_OK_AND_ASSIGN(const ScanResult old_state, snapshot->Scan({}));
  EXPECT_THAT(Keys(old_state), ElementsAre("a", "b"));
  ASSERT_OK_AND_ASSIGN(const ScanResult new_state, machine->Scan({}));
  EXPECT_THAT(Keys(new_state), ElementsAre("a", "c"));
}

TEST(StateMachine, ConfStateIsKeptWithTheAppliedIndex) {
  TempDir dir;
  {
    ASSERT_OK_AND_ASSIGN(auto machine, StateMachine::Open(TestOptions(dir.Sub("data"))));
    ApplyBatch change;
    change.index = 1;
    change.term = 1;
    change.conf_state.emplace();
    change.conf_state->add_voters(1);
    change.conf_state->add_voters(2);
    change.conf_state->add_learners(3);
    ASSERT_OK(machine->Apply(change));
    ASSERT_OK(machine->Apply(PutBatch(2, 1, {{"a", "1"}})));  // Conf state carried over.
  }
  ASSERT_OK_AND_ASSIGN(auto machine, StateMachine::Open(TestOptions(dir.Sub("data"))));
  const pb::SnapshotMetadata applied = machine->applied();
  EXPECT_EQ(applied.index(), 2u);
  EXPECT_THAT(applied.conf_state().voters(), ElementsAre(1u, 2u));
  EXPECT_THAT(applied.conf_state().learners(), ElementsAre(3u));
}

TEST(StateMachine, RefusesAVolumeOfAnotherClusterOrIdentity) {
  TempDir dir;
  const std::string data = dir.Sub("data");
  { ASSERT_OK(StateMachine::Open(TestOptions(data, 7)).status()); }  // stead-6, id 7

  const std::vector<std::string> before = DescribeFiles(data);
  StateMachineOptions other_cluster = TestOptions(data, 7, 0xdef);
  EXPECT_THAT(StateMachine::Open(other_cluster),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       absl::StrCat("data dir ", data,
                                    " belongs to cluster 0xabc node stead-6 (id 7), not cluster 0xdef")));
  StateMachineOptions other_name = TestOptions(data, 7);
  other_name.identity.node_name = "stead-2";
  EXPECT_THAT(StateMachine::Open(other_name),
              StatusIs(absl::StatusCode::kFailedPrecondition, "not node stead-2"));
  StateMachineOptions other_id = TestOptions(data, 7);
  other_id.identity.node_id = 9;
  const auto refused = StateMachine::Open(other_id);
  EXPECT_THAT(refused, StatusIs(absl::StatusCode::kFailedPrecondition, "not node id 9"));
  EXPECT_THAT(refused.status().message(), HasSubstr("point --data-dir at the right volume, or wipe it"));
  // The refusals changed nothing on the volume, and the rightful owner still opens it.
  EXPECT_EQ(DescribeFiles(data), before);
  EXPECT_OK(StateMachine::Open(TestOptions(data, 7)).status());
}

TEST(StateMachine, ReadNodeMetadataWithoutOpening) {
  TempDir dir;
  const std::string data = dir.Sub("data");
  ASSERT_OK_AND_ASSIGN(std::optional<pb::NodeMetadata> none, StateMachine::ReadNodeMetadata(data));
  EXPECT_FALSE(none.has_value());
  ASSERT_OK_AND_ASSIGN(auto machine, StateMachine::Open(TestOptions(data, 4)));
  // Readable while the node holds the dir.
  ASSERT_OK_AND_ASSIGN(std::optional<pb::NodeMetadata> stored, StateMachine::ReadNodeMetadata(data));
  ASSERT_TRUE(stored.has_value());
  EXPECT_EQ(stored->node_id(), 4u);
  EXPECT_EQ(stored->node_name(), "stead-3");
  EXPECT_EQ(stored->cluster_id(), testing::kTestClusterId);
}

TEST(StateMachine, MissingIdentityIsInvalidArgument) {
  TempDir dir;
  StateMachineOptions options = TestOptions(dir.Sub("data"));
  options.identity.cluster_id = 0;
  EXPECT_THAT(StateMachine::Open(options), StatusIs(absl::StatusCode::kInvalidArgument, "cluster id"));
}

TEST(StateMachine, SecondOpenOfTheSameDirIsRefused) {
  TempDir dir;
  ASSERT_OK_AND_ASSIGN(auto machine, StateMachine::Open(TestOptions(dir.Sub("data"))));
  EXPECT_THAT(StateMachine::Open(TestOptions(dir.Sub("data"))),
              StatusIs(absl::StatusCode::kFailedPrecondition, "in use"));
}

// Goal: a crash during the first start (database created, ACTIVE not yet written)
// leaves a dir that the next start initialises cleanly, removing the leftover.
TEST(StateMachine, HalfInitialisedDirIsInitialisedAgain) {
  TempDir dir;
  const std::string data = dir.Sub("data");
  {
    ASSERT_OK_AND_ASSIGN(auto machine, StateMachine::Open(TestOptions(data)));
    ASSERT_OK(machine->Apply(PutBatch(1, 1, {{"a", "1"}})));
  }
  // Rewind to "crashed before ACTIVE": the database exists, the pointer does not.
  std::filesystem::remove(data + "/ACTIVE");
  ASSERT_OK_AND_ASSIGN(auto machine, StateMachine::Open(TestOptions(data, 1)));
  EXPECT_EQ(machine->applied_index(), 0u);
  EXPECT_EQ(*machine->Get("kv", "a"), std::nullopt);
  ASSERT_OK_AND_ASSIGN(const std::vector<std::string> names, files::ListDirectory(data));
  EXPECT_THAT(names, ElementsAre("ACTIVE", "LOCK", "db-000001"));
}

TEST(StateMachine, ForeignDirectoryIsNotTakenOver) {
  TempDir dir;
  const std::string data = dir.Sub("data");
  ASSERT_OK(files::CreateDirectories(data + "/lost+found"));
  std::ofstream(data + "/important.txt") << "someone else's";
  EXPECT_THAT(StateMachine::Open(TestOptions(data)),
              StatusIs(absl::StatusCode::kFailedPrecondition, "important.txt"));
  std::filesystem::remove(data + "/important.txt");
  EXPECT_OK(StateMachine::Open(TestOptions(data)).status());  // lost+found is fine.
}

TEST(StateMachine, ActiveNamingAMissingDatabaseIsDataLoss) {
  TempDir dir;
  const std::string data = dir.Sub("data");
  { ASSERT_OK(StateMachine::Open(TestOptions(data)).status()); }
  std::filesystem::remove_all(data + "/db-000001");
  EXPECT_THAT(StateMachine::Open(TestOptions(data)),
              StatusIs(absl::StatusCode::kDataLoss, "db-000001, which does not exist"));
  std::ofstream(data + "/ACTIVE", std::ios::trunc) << "../../etc";
  EXPECT_THAT(StateMachine::Open(TestOptions(data)),
              StatusIs(absl::StatusCode::kDataLoss, "not a database directory name"));
}

// `count` entries of one 1 KB pair each, flushed into SST files.
void ApplyFlushed(StateMachine& machine, int count) {
  for (int i = 1; i <= count; ++i) {
    ASSERT_OK(machine.Apply(PutBatch(static_cast<raft::Index>(i), 1,
                                     {{absl::StrFormat("key%06d", i), std::string(1000, 'v')}})));
  }
  ASSERT_OK(machine.Flush().status());
}

// Complements one byte in every 4 KiB of the first half of `sst` (data blocks), in place.
void DamageDataBlocks(const std::string& sst) {
  const uint64_t size = std::filesystem::file_size(sst);
  for (uint64_t offset = 100; offset < size / 2; offset += 4096) {
    testing::FlipByteInPlace(sst, offset);
  }
}

// Goal: a bit flipped in an SST file while the member was down is found by the
// verification a member runs after its start, before it serves reads, not by the
// first read of that block much later; damage in what Open reads fails the Open.
TEST(StateMachine, VerifyChecksumsFindsABitFlippedWhileTheMemberWasDown) {
  TempDir dir;
  const std::string data = dir.Sub("data");
  const std::atomic<bool> never_stop{false};
  {
    ASSERT_OK_AND_ASSIGN(auto machine, StateMachine::Open(TestOptions(data)));
    ApplyFlushed(*machine, 200);
    EXPECT_FALSE(machine->checksums_verified());
    ASSERT_OK(machine->VerifyChecksums(never_stop));
    EXPECT_TRUE(machine->checksums_verified());
  }
  std::vector<std::string> ssts = testing::LiveSstFiles(data);
  ASSERT_FALSE(ssts.empty());
  std::sort(ssts.begin(), ssts.end(), [](const std::string& a, const std::string& b) {
    return std::filesystem::file_size(a) > std::filesystem::file_size(b);
  });
  testing::FlipByteInPlace(ssts.front(), 100);  // a data block of the largest file
  {
    ASSERT_OK_AND_ASSIGN(auto machine, StateMachine::Open(TestOptions(data)));
    EXPECT_OK(machine->damage()) << "nothing read the damaged block yet";
    EXPECT_THAT(machine->VerifyChecksums(never_stop),
                StatusIs(absl::StatusCode::kDataLoss, kCorruptStateAdvice));
    EXPECT_FALSE(machine->checksums_verified());
    EXPECT_THAT(machine->damage(), StatusIs(absl::StatusCode::kDataLoss, "checksum"));
    const std::atomic<bool> stop{true};
    EXPECT_THAT(machine->VerifyChecksums(stop), StatusIs(absl::StatusCode::kDataLoss));
  }
  // The first block of a file is a data block; a small file's may end before offset
  // 100, where a damaged filter block is no error (the data is then read unfiltered).
  for (const std::string& sst : ssts) {
    DamageDataBlocks(sst);
    testing::FlipByteInPlace(sst, 10);
  }
  EXPECT_THAT(StateMachine::Open(TestOptions(data)),
              StatusIs(absl::StatusCode::kDataLoss, kCorruptStateAdvice));
}

TEST(StateMachine, VerifyChecksumsStopsWhenAsked) {
  TempDir dir;
  ASSERT_OK_AND_ASSIGN(auto machine, StateMachine::Open(TestOptions(dir.Sub("data"))));
  ApplyFlushed(*machine, 10);
  const std::atomic<bool> stop{true};
  EXPECT_THAT(machine->VerifyChecksums(stop), StatusIs(absl::StatusCode::kCancelled));
  EXPECT_FALSE(machine->checksums_verified());
  EXPECT_OK(machine->damage());
}

// Goal: once a read finds a block that fails its checksum, the state machine serves
// nothing more (every read, sound blocks included, and every apply fail with the
// advice), so a damaged member can neither answer differently from the others nor
// apply entries on top of damaged state.
TEST(StateMachine, AChecksumFailureOnAReadRefusesEveryLaterReadAndApply) {
  TempDir dir;
  const std::string data = dir.Sub("data");
  ASSERT_OK_AND_ASSIGN(auto machine, StateMachine::Open(TestOptions(data)));
  ApplyFlushed(*machine, 200);
  // In memory only: readable whatever happens to the files.
  ASSERT_OK(machine->Apply(PutBatch(201, 1, {{"fresh", "in the memtable"}})));
  ASSERT_OK_AND_ASSIGN(const std::unique_ptr<StateSnapshot> view, machine->NewSnapshot());
  EXPECT_OK(machine->damage());
  for (const std::string& sst : testing::LiveSstFiles(data)) DamageDataBlocks(sst);

  ScanOptions all;
  all.limit = kMaxScanLimit;
  EXPECT_THAT(machine->Scan(all), StatusIs(absl::StatusCode::kDataLoss, kCorruptStateAdvice));
  EXPECT_THAT(machine->damage(), StatusIs(absl::StatusCode::kDataLoss, kCorruptStateAdvice));
  EXPECT_THAT(machine->Get("kv", "fresh"),
              StatusIs(absl::StatusCode::kDataLoss, kCorruptStateAdvice));
  EXPECT_THAT(machine->NewSnapshot(), StatusIs(absl::StatusCode::kDataLoss, kCorruptStateAdvice));
  EXPECT_THAT(view->Get("kv", "fresh"), StatusIs(absl::StatusCode::kDataLoss, kCorruptStateAdvice));
  EXPECT_THAT(view->Hash(), StatusIs(absl::StatusCode::kDataLoss, kCorruptStateAdvice));
  EXPECT_THAT(machine->Apply(PutBatch(202, 1, {{"later", "x"}})),
              StatusIs(absl::StatusCode::kDataLoss, kCorruptStateAdvice));
  EXPECT_EQ(machine->applied_index(), 201u) << "nothing applied on a damaged state";
  EXPECT_THAT(machine->CreateCheckpoint(dir.Sub("checkpoint")),
              StatusIs(absl::StatusCode::kDataLoss, kCorruptStateAdvice));
  EXPECT_FALSE(std::filesystem::exists(dir.Sub("checkpoint")));
}

// Goal: the content hash reads every pair, so it is the operator's way to find damage
// (`steadctl endpoint hash`): a checksum failure there damages the state machine too.
TEST(StateMachine, AChecksumFailureInTheContentHashRefusesEveryLaterRead) {
  TempDir dir;
  const std::string data = dir.Sub("data");
  ASSERT_OK_AND_ASSIGN(auto machine, StateMachine::Open(TestOptions(data)));
  ApplyFlushed(*machine, 200);
  for (const std::string& sst : testing::LiveSstFiles(data)) DamageDataBlocks(sst);
  ASSERT_OK_AND_ASSIGN(const std::unique_ptr<StateSnapshot> view, machine->NewSnapshot());
  EXPECT_THAT(view->Hash(), StatusIs(absl::StatusCode::kDataLoss, kCorruptStateAdvice));
  EXPECT_THAT(machine->Get("kv", "key000001"),
              StatusIs(absl::StatusCode::kDataLoss, kCorruptStateAdvice));
}

// Goal: a full data volume is a clean error, never an abort. A flush that finds no
// space is ResourceExhausted; closing the state machine afterwards (as a member that
// stops does) returns; once there is space again, a reopen recovers what was flushed.
// Method: the data dir is an 8 MiB tmpfs; a filler file takes what is left of it.
TEST(StateMachineFullVolume, AFailedFlushIsResourceExhaustedAndClosingDoesNotAbort) {
  if (::geteuid() != 0) GTEST_SKIP() << "mounting a tmpfs as the data volume needs root";
  TempDir dir;
  testing::TmpfsMount volume(dir.Sub("volume"), "8m");
  ASSERT_TRUE(volume.mounted());
  const std::string data = dir.Sub("volume/data");
  const std::string filler = dir.Sub("volume/filler");
  {
    ASSERT_OK_AND_ASSIGN(auto machine, StateMachine::Open(TestOptions(data)));
    ASSERT_OK(machine->Apply(PutBatch(1, 1, {{"before", "the volume filled"}})));
    ASSERT_OK(machine->Flush().status());
    {
      std::ofstream fill(filler, std::ios::binary);
      const std::string megabyte(1 << 20, 'x');
      for (int i = 0; i < 16 && fill.write(megabyte.data(), megabyte.size()); ++i) {
      }
    }
    for (int i = 2; i <= 100; ++i) {
      ASSERT_OK(machine->Apply(PutBatch(static_cast<raft::Index>(i), 1,
                                        {{absl::StrCat("key", i), std::string(20000, 'v')}})));
    }
    EXPECT_THAT(machine->Flush(), StatusIs(absl::StatusCode::kResourceExhausted));
    EXPECT_FALSE(machine->Flush().ok()) << "RocksDB writes nothing more after the error";
  }  // Closed: must not abort.
  std::filesystem::remove(filler);
  ASSERT_OK_AND_ASSIGN(auto machine, StateMachine::Open(TestOptions(data)));
  EXPECT_EQ(machine->applied_index(), 1u) << "what was flushed before the volume filled";
  EXPECT_THAT(*machine->Get("kv", "before"), Optional(std::string("the volume filled")));
}

TEST(StateMachineDir, DatabaseDirNames) {
  EXPECT_EQ(DatabaseDirName(7), "db-000007");
  EXPECT_EQ(ParseDatabaseDirName("db-000007"), std::optional<uint64_t>(7));
  EXPECT_EQ(ParseDatabaseDirName("db-12345678"), std::optional<uint64_t>(12345678));
  for (const char* bad : {"db-", "db-1x", "db--1", "dbx000001", "", "ACTIVE"}) {
    SCOPED_TRACE(bad);
    EXPECT_EQ(ParseDatabaseDirName(bad), std::nullopt);
  }
}

}  // namespace
}  // namespace stead::storage
