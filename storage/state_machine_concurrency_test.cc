// Reads running on other threads while the applier applies or replaces the state with
// checkpoints: every view a reader gets is one consistent state, and the applied index
// only moves forward. Built under the
// tsan preset, where ThreadSanitizer also checks the locking.
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "storage/checkpoint_files.h"
#include "storage/state_machine.h"
#include "storage/state_machine_testing.h"
#include "tests/testing/status_matchers.h"

// Debian's RocksDB is not built with ThreadSanitizer: its lock-free memtable publishes
// entries through atomics TSan cannot see, so every reader racing the applier inside
// RocksDB is reported. Those reports are about RocksDB's internals, not about this code;
// races on stead's own memory have no RocksDB frame and are still reported.
extern "C" const char* __tsan_default_suppressions() { return "race:rocksdb::\n"; }

namespace stead::storage {
namespace {

using testing::TempDir;
using testing::TestOptions;

// Goal: a snapshot taken while entries are applied shows the data of exactly its
// applied index. Method: entry i writes "a" = i and "b" = i in one batch; readers take
// snapshots and check both keys equal the snapshot's index, and that applied_index()
// never goes backwards.
TEST(StateMachineConcurrency, ReadersSeeConsistentStatesWhileApplying) {
  constexpr raft::Index kEntries = 2000;
  constexpr int kReaders = 2;
  constexpr int kMaxReadsPerReader = 200000;  // Bounds the loop if the applier stalls.
  TempDir dir;
  ASSERT_OK_AND_ASSIGN(auto machine, StateMachine::Open(TestOptions(dir.Sub("data"))));
  std::atomic<bool> done{false};
  std::atomic<int> inconsistencies{0};
  std::atomic<int> views_checked{0};

  std::vector<std::thread> readers;
  for (int r = 0; r < kReaders; ++r) {
    readers.emplace_back([&] {
      raft::Index last_seen = 0;
      for (int n = 0; n < kMaxReadsPerReader && !done.load(); ++n) {
        const raft::Index now = machine->applied_index();
        if (now < last_seen) inconsistencies.fetch_add(1);
        last_seen = now;
        absl::StatusOr<std::unique_ptr<StateSnapshot>> view = machine->NewSnapshot();
        if (!view.ok()) {
          inconsistencies.fetch_add(1);
          continue;
        }
        const raft::Index index = (*view)->applied().index();
        if (index == 0) continue;
        const auto a = (*view)->Get("kv", "a");
        const auto b = (*view)->Get("kv", "b");
        const std::string want = absl::StrCat(index);
        if (!a.ok() || !b.ok() || *a != std::optional<std::string>(want) ||
            *b != std::optional<std::string>(want)) {
          inconsistencies.fetch_add(1);
        }
        views_checked.fetch_add(1);
      }
    });
  }
  for (raft::Index i = 1; i <= kEntries; ++i) {
    ApplyBatch batch = testing::PutBatch(i, 1, {{"a", absl::StrCat(i)}, {"b", absl::StrCat(i)}});
    ASSERT_OK(machine->Apply(batch));
  }
  done.store(true);
  for (std::thread& reader : readers) reader.join();
  EXPECT_EQ(inconsistencies.load(), 0);
  EXPECT_EQ(machine->applied_index(), kEntries);
  std::printf("views checked: %d\n", views_checked.load());
}

// Goal: a checkpoint taken while the applier runs holds exactly the state its manifest
// names. Method: checkpoints are created from this thread while another applies; each
// is installed on a fresh member, whose "a" and "b" must equal its applied index.
TEST(StateMachineConcurrency, CheckpointsTakenDuringApplyAreConsistent) {
  constexpr raft::Index kEntries = 3000;
  constexpr int kCheckpoints = 3;
  TempDir dir;
  ASSERT_OK_AND_ASSIGN(auto machine, StateMachine::Open(TestOptions(dir.Sub("data"))));
  ASSERT_OK(machine->Apply(testing::PutBatch(1, 1, {{"a", "1"}, {"b", "1"}})));
  std::atomic<bool> apply_failed{false};
  std::thread applier([&] {
    for (raft::Index i = 2; i <= kEntries; ++i) {
      if (!machine->Apply(testing::PutBatch(i, 1, {{"a", absl::StrCat(i)}, {"b", absl::StrCat(i)}})).ok()) {
        apply_failed.store(true);
        return;
      }
    }
  });
  std::vector<pb::SnapshotManifest> manifests;
  for (int c = 0; c < kCheckpoints; ++c) {
    absl::StatusOr<pb::SnapshotManifest> manifest =
        machine->CreateCheckpoint(dir.Sub(absl::StrCat("checkpoints/", c)));
    EXPECT_OK(manifest);
    if (manifest.ok()) manifests.push_back(*manifest);
  }
  applier.join();
  ASSERT_FALSE(apply_failed.load());
  for (size_t c = 0; c < manifests.size(); ++c) {
    SCOPED_TRACE(absl::StrCat("checkpoint ", c));
    ASSERT_OK_AND_ASSIGN(auto member,
                         StateMachine::OpenFromCheckpoint(TestOptions(dir.Sub(absl::StrCat("member", c)), 2),
                                                          dir.Sub(absl::StrCat("checkpoints/", c))));
    const std::string want = absl::StrCat(manifests[c].raft().index());
    EXPECT_EQ(member->applied_index(), manifests[c].raft().index());
    EXPECT_EQ(*member->Get("kv", "a"), std::optional<std::string>(want));
    EXPECT_EQ(*member->Get("kv", "b"), std::optional<std::string>(want));
    EXPECT_EQ(manifests[c].key_count(), 2u);
  }
}

// Generation g of the replace test: entry g of the leader puts g into every key.
constexpr int kGenerationKeys = 40;

// Checks that `pairs` (a scan of every key) is one whole generation and returns it; -1
// if it is not. The follower's own state before any replace is generation 0.
int GenerationOf(const std::vector<KeyValue>& pairs) {
  if (pairs.size() != static_cast<size_t>(kGenerationKeys)) return -1;
  int generation = -1;
  for (const KeyValue& pair : pairs) {
    int value = -1;
    if (!absl::SimpleAtoi(pair.value, &value)) return -1;
    if (generation != -1 && value != generation) return -1;
    generation = value;
  }
  return generation;
}

ApplyBatch GenerationBatch(raft::Index index, int generation) {
  ApplyBatch batch;
  batch.index = index;
  batch.term = 1;
  for (int k = 0; k < kGenerationKeys; ++k) {
    batch.mutations.push_back(
        Mutation::Put("kv", absl::StrCat("key", k), absl::StrCat(generation)));
  }
  return batch;
}

// What one reader thread found; each thread fills its own, read after join.
struct ReaderReport {
  int reads = 0;
  int inconsistencies = 0;
  std::string first_problem;

  void Fail(const std::string& problem) {
    if (inconsistencies++ == 0) first_problem = problem;
  }
};

// One reader: Get, Scan, NewSnapshot and keyspaces() in turn until `done`, its read
// budget or its deadline. Generations it sees may only grow.
void ReadGenerations(const StateMachine& machine, const std::atomic<bool>& done,
                     absl::Time deadline, ReaderReport* report) {
  constexpr int kMaxReads = 100000;
  int last_generation = 0;
  const auto saw = [&](int generation, const char* how) {
    if (generation < 0) {
      report->Fail(absl::StrCat(how, ": not one whole generation"));
    } else if (generation < last_generation) {
      report->Fail(absl::StrCat(how, ": generation ", generation, " after ", last_generation));
    } else {
      last_generation = generation;
    }
  };
  for (int n = 0; n < kMaxReads && !done.load() && absl::Now() < deadline; ++n) {
    ++report->reads;
    switch (n % 4) {
      case 0: {
        absl::StatusOr<std::optional<std::string>> value = machine.Get("kv", "key7");
        int generation = -1;
        if (value.ok() && value->has_value()) (void)absl::SimpleAtoi(**value, &generation);
        saw(generation, "get");
        break;
      }
      case 1: {
        ScanOptions options;
        options.reverse = n % 8 == 1;
        absl::StatusOr<ScanResult> scan = machine.Scan(options);
        saw(scan.ok() ? GenerationOf(scan->pairs) : -1, "scan");
        break;
      }
      case 2: {
        absl::StatusOr<std::unique_ptr<StateSnapshot>> view = machine.NewSnapshot();
        if (!view.ok()) {
          report->Fail("snapshot: " + std::string(view.status().message()));
          break;
        }
        absl::StatusOr<ScanResult> scan = (*view)->Scan(ScanOptions());
        const int generation = scan.ok() ? GenerationOf(scan->pairs) : -1;
        // The leader applied generation g at index g; the follower's own state (0) is at
        // index 1.
        const raft::Index want_index = generation == 0 ? 1 : static_cast<raft::Index>(generation);
        if (generation >= 0 && (*view)->applied().index() != want_index) {
          report->Fail(absl::StrCat("snapshot at index ", (*view)->applied().index(),
                                    " holds generation ", generation));
        }
        saw(generation, "snapshot");
        break;
      }
      case 3: {
        const std::vector<std::string> names = machine.keyspaces();
        if (std::find(names.begin(), names.end(), "kv") == names.end()) {
          report->Fail("keyspaces() lacks kv");
        }
        break;
      }
    }
  }
}

// Goal: a follower replacing its state with snapshot after snapshot while other
// threads read never shows a mix of two states, a state going back, or a read of a
// closed database. Method: the leader writes generation g into all keys at index g and
// checkpoints each; readers Get, Scan, take snapshots and list keyspaces while the main
// thread replaces with generations 2, 3, ... in order. Every read must be one whole
// generation, never older than what that reader saw before.
TEST(StateMachineConcurrency, ReadersSeeWholeStatesWhileReplaced) {
  constexpr int kGenerations = 8;
  constexpr int kReaders = 2;
  TempDir dir;
  std::vector<std::string> checkpoints;
  {
    ASSERT_OK_AND_ASSIGN(auto leader, StateMachine::Open(TestOptions(dir.Sub("leader"), 1)));
    for (int g = 1; g <= kGenerations; ++g) {
      ASSERT_OK(leader->Apply(GenerationBatch(static_cast<raft::Index>(g), g)));
      checkpoints.push_back(dir.Sub(absl::StrCat("checkpoints/", g)));
      ASSERT_OK(leader->CreateCheckpoint(checkpoints.back()).status());
    }
  }
  ASSERT_OK_AND_ASSIGN(auto follower, StateMachine::Open(TestOptions(dir.Sub("follower"), 2)));
  ASSERT_OK(follower->Apply(GenerationBatch(1, 0)));

  std::atomic<bool> done{false};
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  std::vector<ReaderReport> reports(kReaders);
  std::vector<std::thread> readers;
  for (int r = 0; r < kReaders; ++r) {
    readers.emplace_back(ReadGenerations, std::cref(*follower), std::cref(done), deadline,
                         &reports[static_cast<size_t>(r)]);
  }
  // Generation 1 is at index 1, which the follower already holds: start at 2.
  int replaced = 0;
  for (int g = 2; g <= kGenerations; ++g) {
    absl::StatusOr<pb::SnapshotManifest> manifest =
        follower->ReplaceWithCheckpoint(checkpoints[static_cast<size_t>(g - 1)]);
    EXPECT_OK(manifest);
    if (manifest.ok()) ++replaced;
  }
  done.store(true);
  for (std::thread& reader : readers) reader.join();

  int reads = 0;
  for (const ReaderReport& report : reports) {
    EXPECT_EQ(report.inconsistencies, 0) << report.first_problem;
    reads += report.reads;
  }
  EXPECT_EQ(replaced, kGenerations - 1);
  EXPECT_EQ(follower->applied_index(), static_cast<raft::Index>(kGenerations));
  ASSERT_OK_AND_ASSIGN(const ScanResult last, follower->Scan(ScanOptions()));
  EXPECT_EQ(GenerationOf(last.pairs), kGenerations);
  // Every replaced database went with its last reader.
  ASSERT_OK_AND_ASSIGN(const std::vector<std::string> entries,
                       files::ListDirectory(dir.Sub("follower")));
  EXPECT_EQ(entries,
            (std::vector<std::string>{"ACTIVE", "LOCK", absl::StrFormat("db-%06d", kGenerations)}));
  std::printf("replaces: %d, reads: %d\n", replaced, reads);
}

}  // namespace
}  // namespace stead::storage
