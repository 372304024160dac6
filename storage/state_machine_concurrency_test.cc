// Reads running on other threads while the applier applies: every view a reader gets
// is one consistent state, and the applied index only moves forward. Built under the
// tsan preset, where ThreadSanitizer also checks the locking.
#include <atomic>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
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

}  // namespace
}  // namespace stead::storage
