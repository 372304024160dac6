#include "storage/content_hash.h"

#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "storage/state_machine.h"
#include "storage/state_machine_testing.h"
#include "tests/testing/status_matchers.h"

namespace stead::storage {
namespace {

using testing::PutBatch;
using testing::TempDir;
using testing::TestOptions;

// FNV-1a 64 of `bytes`, written out plainly as the reference for the definition.
uint64_t ReferenceFnv(const std::string& bytes) {
  uint64_t hash = 0xcbf29ce484222325ull;
  for (const char c : bytes) {
    hash ^= static_cast<unsigned char>(c);
    hash *= 0x100000001b3ull;
  }
  return hash;
}

std::string Length(uint32_t n) {
  return std::string{static_cast<char>(n & 0xff), static_cast<char>((n >> 8) & 0xff),
                     static_cast<char>((n >> 16) & 0xff), static_cast<char>((n >> 24) & 0xff)};
}

TEST(ContentHasher, MatchesTheDocumentedEncoding) {
  ContentHasher hasher;
  EXPECT_EQ(hasher.result().hash, 0xcbf29ce484222325ull);  // nothing hashed: the basis
  hasher.Add("kv", "a", "1");
  hasher.Add("kv", "bc", "");
  const std::string encoded = Length(2) + "kv" + Length(1) + "a" + Length(1) + "1" +
                              Length(2) + "kv" + Length(2) + "bc" + Length(0);
  EXPECT_EQ(hasher.result().hash, ReferenceFnv(encoded));
  EXPECT_EQ(hasher.result().key_count, 2u);
}

TEST(ContentHasher, BoundariesBetweenFieldsCount) {
  const struct {
    const char* name;
    std::string keyspace, key, value;
  } cases[] = {
      {"key/value split", "kv", "ab", "c"},
      {"key/value split moved", "kv", "a", "bc"},
      {"keyspace/key split", "kva", "b", "c"},
  };
  std::vector<uint64_t> hashes;
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    ContentHasher hasher;
    hasher.Add(c.keyspace, c.key, c.value);
    for (uint64_t seen : hashes) EXPECT_NE(hasher.result().hash, seen);
    hashes.push_back(hasher.result().hash);
  }
}

// A batch for entry `index` in `term` with these mutations.
ApplyBatch Batch(raft::Index index, raft::Term term, std::vector<Mutation> mutations) {
  ApplyBatch batch;
  batch.index = index;
  batch.term = term;
  batch.mutations = std::move(mutations);
  return batch;
}

ContentHash HashOf(const StateMachine& machine) {
  absl::StatusOr<std::unique_ptr<StateSnapshot>> snapshot = machine.NewSnapshot();
  STEAD_CHECK_OK(snapshot.status());
  absl::StatusOr<ContentHash> hash = (*snapshot)->Hash();
  STEAD_CHECK_OK(hash.status());
  return *hash;
}

// Two members that apply the same pairs in another order, in other batches, with other
// identities, must agree; a changed value must not.
TEST(StateSnapshotHash, IndependentOfWriteOrderAndIdentityButNotOfValues) {
  TempDir dir;
  StateMachineOptions first_options = TestOptions(dir.Sub("first"), 1);
  StateMachineOptions second_options = TestOptions(dir.Sub("second"), 2);
  first_options.keyspaces = second_options.keyspaces = {"kv", "other"};
  ASSERT_OK_AND_ASSIGN(auto first, StateMachine::Open(first_options));
  ASSERT_OK_AND_ASSIGN(auto second, StateMachine::Open(second_options));

  ASSERT_OK(first->Apply(PutBatch(1, 1, {{"a", "1"}, {"b", "2"}, {"c", "3"}})));
  ASSERT_OK(first->Apply(Batch(2, 1, {Mutation::Put("other", "a", "x")})));

  ASSERT_OK(second->Apply(PutBatch(1, 1, {{"c", "3"}})));
  ASSERT_OK(second->Apply(Batch(2, 2, {Mutation::Put("other", "a", "x"),
                                       Mutation::Put("kv", "gone", "y"),
                                       Mutation::Put("kv", "b", "old")})));
  ASSERT_OK(second->Apply(PutBatch(3, 2, {{"b", "2"}, {"a", "1"}})));
  ASSERT_OK(second->Apply(Batch(4, 2, {Mutation::Delete("kv", "gone")})));
  ASSERT_OK(second->Flush().status());  // flushed files and memtables hash alike

  const ContentHash a = HashOf(*first);
  const ContentHash b = HashOf(*second);
  EXPECT_EQ(a, b);
  EXPECT_EQ(a.key_count, 4u);

  ASSERT_OK(second->Apply(PutBatch(5, 2, {{"b", "3"}})));
  const ContentHash changed = HashOf(*second);
  EXPECT_NE(changed.hash, a.hash);
  EXPECT_EQ(changed.key_count, 4u);
  ASSERT_OK(second->Apply(PutBatch(6, 2, {{"b", "2"}})));
  EXPECT_EQ(HashOf(*second), a);  // back to the same contents: the same hash

  // A keyspace left out does not count, whatever it holds.
  ASSERT_OK(second->Apply(Batch(7, 2, {Mutation::Put("other", "z", "only here")})));
  EXPECT_NE(HashOf(*second), a);
  ASSERT_OK_AND_ASSIGN(auto first_view, first->NewSnapshot());
  ASSERT_OK_AND_ASSIGN(auto second_view, second->NewSnapshot());
  ASSERT_OK_AND_ASSIGN(const ContentHash first_kv, first_view->Hash({"other"}));
  ASSERT_OK_AND_ASSIGN(const ContentHash second_kv, second_view->Hash({"other"}));
  EXPECT_EQ(first_kv, second_kv);
  EXPECT_EQ(first_kv.key_count, 3u);
}

// A snapshot keeps hashing the state it was taken at while writes go on.
TEST(StateSnapshotHash, IsTheHashOfTheSnapshotsState) {
  TempDir dir;
  ASSERT_OK_AND_ASSIGN(auto machine, StateMachine::Open(TestOptions(dir.Sub("data"))));
  ASSERT_OK(machine->Apply(PutBatch(1, 1, {{"k", "v1"}})));
  ASSERT_OK_AND_ASSIGN(auto snapshot, machine->NewSnapshot());
  const ContentHash before = HashOf(*machine);
  ASSERT_OK(machine->Apply(PutBatch(2, 1, {{"k", "v2"}, {"l", "w"}})));
  ASSERT_OK_AND_ASSIGN(const ContentHash at_snapshot, snapshot->Hash());
  EXPECT_EQ(at_snapshot, before);
  EXPECT_NE(HashOf(*machine), before);
}

}  // namespace
}  // namespace stead::storage
