// Unit tests of the key-value model on a real StateMachine (through KvHarness): limits,
// each compare kind, paging, prev_kv, revisions, exactly-once retries and session
// expiry. The random model test (kv_model_test.cc) covers the combinations.
#include "server/kv_apply.h"

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "server/kv_testing.h"
#include "tests/testing/status_matchers.h"

namespace stead::server {
namespace {

using ::stead::testing::StatusIs;

constexpr int64_t kTtlMs = 1000;

KvApplyOptions TestOptions() {
  KvApplyOptions options;
  options.limits.max_key_bytes = 16;
  options.limits.max_value_bytes = 32;
  options.limits.max_request_bytes = 256;
  options.limits.max_txn_ops = 3;
  options.session_ttl = absl::Milliseconds(kTtlMs);
  options.max_expired_sessions_per_command = 1;
  return options;
}

pb::ClientRequest PutRequest(const std::string& key, const std::string& value,
                             bool prev_kv = false) {
  pb::ClientRequest request;
  request.mutable_put()->set_key(key);
  request.mutable_put()->set_value(value);
  request.mutable_put()->set_prev_kv(prev_kv);
  return request;
}

pb::ClientRequest DeleteRequest(const std::string& key, const std::string& range_end,
                                bool prev_kv = false) {
  pb::ClientRequest request;
  request.mutable_delete_range()->set_key(key);
  request.mutable_delete_range()->set_range_end(range_end);
  request.mutable_delete_range()->set_prev_kv(prev_kv);
  return request;
}

pb::ClientRequest WithSession(pb::ClientRequest request, uint64_t client_id, uint64_t sequence,
                              int64_t stamp_ms = 0) {
  request.set_client_id(client_id);
  request.set_sequence(sequence);
  request.set_proposed_at_unix_ms(stamp_ms);
  return request;
}

pb::RequestOp PutOp(const std::string& key, const std::string& value) {
  pb::RequestOp op;
  *op.mutable_put() = PutRequest(key, value).put();
  return op;
}

pb::RequestOp RangeOp(const std::string& key) {
  pb::RequestOp op;
  op.mutable_range()->set_key(key);
  return op;
}

class KvApplyTest : public ::testing::Test {
 protected:
  KvApplyTest()
      : harness_(absl::StrCat(::testing::TempDir(), "/kv-apply-",
                              ::testing::UnitTest::GetInstance()->current_test_info()->name()),
                 TestOptions()) {}

  pb::ClientResponse Write(const pb::ClientRequest& request) { return harness_.Write(request); }

  KvRead Range(const std::string& key, const std::string& range_end = "", int64_t limit = 0,
               bool reverse = false) {
    pb::RangeRequest range;
    range.set_key(key);
    range.set_range_end(range_end);
    range.set_limit(limit);
    range.set_reverse(reverse);
    absl::StatusOr<KvRead> read = harness_.Read(range);
    EXPECT_OK(read.status());
    return read.value_or(KvRead());
  }

  std::optional<pb::KeyValue> Get(const std::string& key) {
    KvRead read = Range(key);
    if (read.range.kvs().empty()) return std::nullopt;
    return read.range.kvs(0);
  }

  KvHarness harness_;
};

TEST_F(KvApplyTest, EachLimitIsRefusedBeforeProposingNamingTheLimitAndSize) {
  const KvLimits limits = TestOptions().limits;
  pb::ClientRequest too_many_ops;
  for (int i = 0; i < 4; ++i) *too_many_ops.mutable_txn()->add_success() = PutOp("k", "v");
  pb::ClientRequest too_many_compares;
  for (int i = 0; i < 4; ++i) {
    pb::Compare* compare = too_many_compares.mutable_txn()->add_compare();
    compare->set_key("k");
    compare->set_target(pb::Compare::TARGET_VERSION);
    compare->set_result(pb::Compare::RESULT_EQUAL);
    compare->set_version(0);
  }
  pb::ClientRequest long_txn_key;
  *long_txn_key.mutable_txn()->add_failure() = PutOp(std::string(17, 'k'), "v");
  const struct {
    std::string name;
    pb::ClientRequest request;
    std::string want;
  } cases[] = {
      {"key", PutRequest(std::string(17, 'k'), "v"),
       "key is 17 bytes, over the max_key_bytes limit of 16"},
      {"delete key", DeleteRequest(std::string(17, 'k'), ""), "max_key_bytes limit of 16"},
      {"range_end", DeleteRequest("a", std::string(17, 'z')), "range_end is 17 bytes"},
      {"value", PutRequest("k", std::string(33, 'v')),
       "value is 33 bytes, over the max_value_bytes limit of 32"},
      {"txn ops", too_many_ops, "txn success has 4 entries, over the max_txn_ops limit of 3"},
      {"txn compares", too_many_compares, "txn compare has 4 entries, over the max_txn_ops limit"},
      {"txn op key", long_txn_key, "txn failure[0]: put: key is 17 bytes"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_THAT(ValidateWriteRequest(c.request, limits),
                StatusIs(absl::StatusCode::kInvalidArgument, c.want));
  }
  // A request over max_request_bytes made only of fields within their own limits.
  pb::ClientRequest big;
  for (int i = 0; i < 3; ++i)
    *big.mutable_txn()->add_success() = PutOp(std::string(16, 'k'), std::string(32, 'v'));
  for (int i = 0; i < 3; ++i)
    *big.mutable_txn()->add_failure() = PutOp(std::string(16, 'k'), std::string(32, 'v'));
  EXPECT_THAT(
      ValidateWriteRequest(big, limits),
      StatusIs(absl::StatusCode::kInvalidArgument, "over the max_request_bytes limit of 256"));
}

TEST_F(KvApplyTest, OverLimitCommandsFailAtApplyAndChangeNothing) {
  ASSERT_FALSE(Write(PutRequest("a", "1")).has_error());
  const pb::ClientResponse refused = Write(PutRequest("b", std::string(33, 'v')));
  ASSERT_TRUE(refused.has_error());
  EXPECT_EQ(refused.error().code(), static_cast<int>(absl::StatusCode::kInvalidArgument));
  EXPECT_NE(refused.error().message().find("max_value_bytes"), std::string::npos);
  EXPECT_EQ(refused.header().revision(), 1);
  EXPECT_FALSE(Get("b").has_value());
  EXPECT_EQ(Range("a").revision, 1);
}

TEST_F(KvApplyTest, RevisionCountsWriteRequestsThatChangeKeys) {
  pb::ClientResponse first = Write(PutRequest("a", "1"));
  EXPECT_EQ(first.header().revision(), 1);
  EXPECT_EQ(Write(PutRequest("a", "2")).header().revision(), 2);
  // A delete that finds nothing changes nothing.
  EXPECT_EQ(Write(DeleteRequest("zz", "")).header().revision(), 2);
  // A transaction is one revision however many keys it writes.
  pb::ClientRequest txn;
  *txn.mutable_txn()->add_success() = PutOp("b", "1");
  *txn.mutable_txn()->add_success() = PutOp("c", "1");
  *txn.mutable_txn()->add_success() = PutOp("a", "3");
  EXPECT_EQ(Write(txn).header().revision(), 3);
  const pb::KeyValue a = *Get("a");
  EXPECT_EQ(a.value(), "3");
  EXPECT_EQ(a.create_revision(), 1);
  EXPECT_EQ(a.mod_revision(), 3);
  EXPECT_EQ(a.version(), 3);
  EXPECT_EQ(Get("c")->create_revision(), 3);
  EXPECT_EQ(Get("c")->version(), 1);
  EXPECT_EQ(Range("a").revision, 3);
  // Deleting and re-creating starts the key's history again.
  EXPECT_EQ(Write(DeleteRequest("a", "")).header().revision(), 4);
  Write(PutRequest("a", "new"));
  EXPECT_EQ(Get("a")->create_revision(), 5);
  EXPECT_EQ(Get("a")->version(), 1);
}

TEST_F(KvApplyTest, PrevKvReturnsThePreviousPairs) {
  EXPECT_FALSE(Write(PutRequest("a", "1", /*prev_kv=*/true)).put().has_prev_kv());
  const pb::ClientResponse second = Write(PutRequest("a", "2", /*prev_kv=*/true));
  ASSERT_TRUE(second.put().has_prev_kv());
  EXPECT_EQ(second.put().prev_kv().value(), "1");
  EXPECT_EQ(second.put().prev_kv().version(), 1);
  EXPECT_FALSE(Write(PutRequest("a", "3")).put().has_prev_kv());  // not asked for
  Write(PutRequest("b", "1"));
  Write(PutRequest("c", "1"));
  const pb::ClientResponse del = Write(DeleteRequest("a", "c", /*prev_kv=*/true));
  EXPECT_EQ(del.delete_range().deleted(), 2);
  ASSERT_EQ(del.delete_range().prev_kvs_size(), 2);
  EXPECT_EQ(del.delete_range().prev_kvs(0).key(), "a");
  EXPECT_EQ(del.delete_range().prev_kvs(0).value(), "3");
  EXPECT_EQ(del.delete_range().prev_kvs(1).key(), "b");
  const pb::ClientResponse to_end = Write(DeleteRequest("a", std::string(1, '\0')));
  EXPECT_EQ(to_end.delete_range().deleted(), 1);
  EXPECT_EQ(to_end.delete_range().prev_kvs_size(), 0);
  EXPECT_EQ(Range("a", std::string(1, '\0')).range.kvs_size(), 0);
}

TEST_F(KvApplyTest, PagingVisitsEveryKeyOnceInBothDirections) {
  std::vector<std::string> keys;
  for (char c = 'a'; c <= 'j'; ++c) {
    keys.emplace_back(1, c);
    Write(PutRequest(keys.back(), "v"));
  }
  std::vector<std::string> forward;
  std::string key = "a";
  for (int page = 0; page < 10; ++page) {
    const KvRead read = Range(key, "z", /*limit=*/3);
    EXPECT_LE(read.range.kvs_size(), 3);
    EXPECT_EQ(read.range.count(), read.range.kvs_size());
    for (const pb::KeyValue& kv : read.range.kvs()) forward.push_back(kv.key());
    if (!read.range.more()) break;
    key = read.range.next_key();
  }
  EXPECT_EQ(forward, keys);
  std::vector<std::string> backward;
  std::string end = std::string(1, '\0');
  for (int page = 0; page < 10; ++page) {
    const KvRead read = Range("a", end, /*limit=*/4, /*reverse=*/true);
    for (const pb::KeyValue& kv : read.range.kvs()) backward.push_back(kv.key());
    if (!read.range.more()) break;
    end = read.range.next_range_end();
  }
  EXPECT_EQ(backward, std::vector<std::string>(keys.rbegin(), keys.rend()));
}

TEST_F(KvApplyTest, KeysOnlyCountOnlyAndMinRevision) {
  Write(PutRequest("a", "1"));
  Write(PutRequest("b", "2"));
  pb::RangeRequest range;
  range.set_key("a");
  range.set_range_end(std::string(1, '\0'));
  range.set_keys_only(true);
  absl::StatusOr<KvRead> keys = harness_.Read(range);
  ASSERT_OK(keys.status());
  ASSERT_EQ(keys->range.kvs_size(), 2);
  EXPECT_EQ(keys->range.kvs(1).key(), "b");
  EXPECT_EQ(keys->range.kvs(1).value(), "");
  EXPECT_EQ(keys->range.kvs(1).version(), 1);
  range.set_count_only(true);
  absl::StatusOr<KvRead> count = harness_.Read(range);
  ASSERT_OK(count.status());
  EXPECT_EQ(count->range.count(), 2);
  EXPECT_EQ(count->range.kvs_size(), 0);
  range.set_min_revision(2);
  EXPECT_OK(harness_.Read(range).status());
  range.set_min_revision(3);
  EXPECT_THAT(harness_.Read(range).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition, "revision 2, below the requested 3"));
  range.set_min_revision(0);
  range.set_revision(1);
  EXPECT_THAT(harness_.Read(range).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "past revision"));
}

TEST_F(KvApplyTest, EachCompareKind) {
  Write(PutRequest("k", "v1"));  // revision 1
  Write(PutRequest("x", "x"));   // revision 2
  Write(PutRequest("k", "v2"));  // revision 3: k has version 2, create 1, mod 3
  using C = pb::Compare;
  // A compare on key "k"; `wanted` fills the field of `target`.
  auto compare = [](C::Target target, C::Result result, int64_t wanted,
                    const std::string& value = "") {
    C c;
    c.set_key("k");
    c.set_target(target);
    c.set_result(result);
    switch (target) {
      case C::TARGET_VALUE:
        c.set_value(value);
        break;
      case C::TARGET_VERSION:
        c.set_version(wanted);
        break;
      case C::TARGET_CREATE_REVISION:
        c.set_create_revision(wanted);
        break;
      case C::TARGET_MOD_REVISION:
        c.set_mod_revision(wanted);
        break;
      default:
        c.set_exists(wanted != 0);
        break;
    }
    return c;
  };
  auto value = [&](C::Result r, const std::string& v) { return compare(C::TARGET_VALUE, r, 0, v); };
  auto version = [&](C::Result r, int64_t v) { return compare(C::TARGET_VERSION, r, v); };
  auto created = [&](C::Result r, int64_t v) { return compare(C::TARGET_CREATE_REVISION, r, v); };
  auto modified = [&](C::Result r, int64_t v) { return compare(C::TARGET_MOD_REVISION, r, v); };
  auto exists = [&](C::Result r, bool v) { return compare(C::TARGET_EXISTS, r, v ? 1 : 0); };
  auto absent = [](C c) {
    c.set_key("nope");
    return c;
  };
  auto range = [](C c, const std::string& end) {
    c.set_key("a");
    c.set_range_end(end);
    return c;
  };
  const struct {
    std::string name;
    pb::Compare compare;
    bool want;
  } cases[] = {
      {"value equal", value(C::RESULT_EQUAL, "v2"), true},
      {"value not equal", value(C::RESULT_NOT_EQUAL, "v2"), false},
      {"value greater", value(C::RESULT_GREATER, "v1"), true},
      {"value less", value(C::RESULT_LESS, "v1"), false},
      {"value of absent key", absent(value(C::RESULT_NOT_EQUAL, "v2")), false},
      {"version equal", version(C::RESULT_EQUAL, 2), true},
      {"version greater", version(C::RESULT_GREATER, 2), false},
      {"version less", version(C::RESULT_LESS, 3), true},
      {"absent key has version 0", absent(version(C::RESULT_EQUAL, 0)), true},
      {"create revision equal", created(C::RESULT_EQUAL, 1), true},
      {"create revision not equal", created(C::RESULT_NOT_EQUAL, 1), false},
      {"mod revision equal", modified(C::RESULT_EQUAL, 3), true},
      {"mod revision less", modified(C::RESULT_LESS, 3), false},
      {"absent key has mod revision 0", absent(modified(C::RESULT_LESS, 1)), true},
      {"exists", exists(C::RESULT_EQUAL, true), true},
      {"not exists", exists(C::RESULT_NOT_EQUAL, true), false},
      {"absent does not exist", absent(exists(C::RESULT_EQUAL, false)), true},
      {"every key of a range", range(version(C::RESULT_GREATER, 0), "z"), true},
      {"not every key of a range", range(modified(C::RESULT_GREATER, 2), "z"), false},
      {"range with a key", range(exists(C::RESULT_EQUAL, true), std::string(1, '\0')), true},
      {"empty range", range(exists(C::RESULT_EQUAL, true), "b"), false},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    pb::ClientRequest txn;
    *txn.mutable_txn()->add_compare() = c.compare;
    *txn.mutable_txn()->add_success() = RangeOp("k");
    const pb::ClientResponse response = Write(txn);
    ASSERT_FALSE(response.has_error()) << response.error().message();
    EXPECT_EQ(response.txn().succeeded(), c.want);
    EXPECT_EQ(response.txn().responses_size(), c.want ? 1 : 0);
  }
  EXPECT_EQ(Range("k").revision, 3);  // read-only transactions changed nothing
  // A compare whose value field does not match its target is refused.
  pb::ClientRequest bad;
  pb::Compare mismatched = version(C::RESULT_EQUAL, 2);
  mismatched.set_value("2");
  *bad.mutable_txn()->add_compare() = mismatched;
  EXPECT_THAT(
      ValidateWriteRequest(bad, TestOptions().limits),
      StatusIs(absl::StatusCode::kInvalidArgument, "txn compare[0]: target TARGET_VERSION"));
}

TEST_F(KvApplyTest, TxnIsAtomicAndSeesItsOwnWrites) {
  Write(PutRequest("counter", "1"));
  // Compare-and-swap: the first succeeds, a second with the stale value fails.
  auto cas = [](const std::string& from, const std::string& to) {
    pb::ClientRequest request = CompareAndSwapRequest("counter", from, to);
    *request.mutable_txn()->add_success() = RangeOp("counter");
    *request.mutable_txn()->add_failure() = RangeOp("counter");
    return request;
  };
  const pb::ClientResponse swapped = Write(cas("1", "2"));
  ASSERT_TRUE(swapped.txn().succeeded());
  ASSERT_EQ(swapped.txn().responses_size(), 2);
  EXPECT_EQ(swapped.txn().responses(1).range().kvs(0).value(), "2");  // its own write
  EXPECT_EQ(swapped.txn().responses(1).range().kvs(0).mod_revision(), 2);
  const pb::ClientResponse stale = Write(cas("1", "3"));
  EXPECT_FALSE(stale.txn().succeeded());
  EXPECT_EQ(stale.txn().responses(0).range().kvs(0).value(), "2");
  EXPECT_EQ(stale.header().revision(), 2);
  // An operation refused mid-transaction undoes the earlier ones.
  pb::ClientRequest partial;
  *partial.mutable_txn()->add_success() = PutOp("other", "1");
  pb::RequestOp future;
  future.mutable_range()->set_key("counter");
  future.mutable_range()->set_min_revision(99);
  *partial.mutable_txn()->add_success() = future;
  const pb::ClientResponse refused = Write(partial);
  ASSERT_TRUE(refused.has_error());
  EXPECT_NE(refused.error().message().find("txn success[1]"), std::string::npos);
  EXPECT_FALSE(Get("other").has_value());
}

TEST_F(KvApplyTest, RetriedWriteGetsTheFirstResponseAndChangesNothingAcrossRestarts) {
  const pb::ClientResponse first = Write(WithSession(PutRequest("a", "1", true), 7, 1));
  ASSERT_FALSE(first.has_error());
  Write(PutRequest("b", "1"));  // another writer moves the revision on
  for (bool crash : {false, true}) {
    SCOPED_TRACE(crash ? "after a crash" : "after a restart");
    harness_.Restart(crash);
    pb::ClientRequest retry = WithSession(PutRequest("a", "other", true), 7, 1);
    retry.set_request_id(42);
    const pb::ClientResponse again = Write(retry);
    EXPECT_EQ(again.request_id(), 42u);
    EXPECT_EQ(again.header().revision(), first.header().revision());
    EXPECT_EQ(Get("a")->value(), "1");
    EXPECT_EQ(Get("a")->version(), 1);
    EXPECT_EQ(Range("a").revision, 2);
  }
  // The next sequence applies; an older one is refused.
  EXPECT_EQ(Write(WithSession(PutRequest("a", "2"), 7, 2)).header().revision(), 3);
  const pb::ClientResponse stale = Write(WithSession(PutRequest("a", "3"), 7, 1));
  ASSERT_TRUE(stale.has_error());
  EXPECT_EQ(stale.error().code(), static_cast<int>(absl::StatusCode::kFailedPrecondition));
  EXPECT_NE(stale.error().message().find("older than its latest applied sequence 2"),
            std::string::npos);
  EXPECT_EQ(Get("a")->value(), "2");
  // Client id 0 has no session: the same request applies every time.
  Write(PutRequest("c", "1"));
  Write(PutRequest("c", "1"));
  EXPECT_EQ(Get("c")->version(), 2);
  // A refused request is a result too, and its retry gets the same refusal.
  const pb::ClientResponse refused =
      Write(WithSession(PutRequest("c", std::string(33, 'v')), 8, 1));
  EXPECT_TRUE(refused.has_error());
  EXPECT_EQ(Write(WithSession(PutRequest("c", std::string(33, 'v')), 8, 1)).error().message(),
            refused.error().message());
}

TEST_F(KvApplyTest, IdleSessionsExpireByLogTime) {
  ASSERT_FALSE(Write(WithSession(PutRequest("a", "1"), 1, 1, /*stamp_ms=*/10'000)).has_error());
  ASSERT_FALSE(Write(WithSession(PutRequest("b", "1"), 2, 1, /*stamp_ms=*/10'500)).has_error());
  // Within the TTL, and a stamp that goes backwards does not move log time back.
  Write(WithSession(PutRequest("x", "1"), 0, 0, /*stamp_ms=*/10'900));
  Write(WithSession(PutRequest("x", "1"), 0, 0, /*stamp_ms=*/1));
  EXPECT_EQ(Write(WithSession(PutRequest("a", "2"), 1, 1, /*stamp_ms=*/10'950)).header().revision(),
            1);
  // Past the TTL of both: one session expires per command, the oldest first.
  harness_.Restart(/*crash=*/true);
  Write(WithSession(PutRequest("x", "1"), 0, 0, /*stamp_ms=*/20'000));  // expires client 1
  const pb::ClientResponse reapplied = Write(WithSession(PutRequest("a", "2"), 1, 1, 20'000));
  EXPECT_EQ(Get("a")->value(), "2");
  EXPECT_EQ(reapplied.header().revision(), 6);
  // The same command expired client 2; its retry applies again as well.
  Write(WithSession(PutRequest("b", "2"), 2, 1, 20'000));
  EXPECT_EQ(Get("b")->value(), "2");
  // Client 1's new session is fresh: its retry is deduplicated.
  Write(WithSession(PutRequest("a", "3"), 1, 1, 20'100));
  EXPECT_EQ(Get("a")->value(), "2");
}

// Goal: applying commands in batches, by a function that remembers what it read
// between commands (which session can expire when), changes nothing a command does.
// Method: the same random log of sessioned and sessionless puts, deletes and
// transactions, with log time crossing the session TTL many times, is applied in
// random batches by one function and one entry at a time by a new function per entry
// (a member that just restarted); every response and the final content of every
// keyspace must be equal.
TEST(KvApplyBatches, BatchesAndTheApplierMemoChangeNoResultAndNoState) {
  const std::string root = ::testing::TempDir();
  KvHarness batched(absl::StrCat(root, "/kv-apply-batched"), TestOptions());
  KvHarness forgetful(absl::StrCat(root, "/kv-apply-forgetful"), TestOptions(),
                      /*forgetful=*/true);
  std::mt19937_64 random(7);
  const auto draw = [&random](int n) { return static_cast<int>(random() % static_cast<uint64_t>(n)); };
  uint64_t sequences[6] = {};
  int64_t stamp_ms = 1'000'000;
  int expiring_gaps = 0;
  for (int round = 0; round < 120; ++round) {
    std::vector<pb::ClientRequest> batch;
    for (int i = 1 + draw(6); i > 0; --i) {
      // Mostly small steps; now and then a gap past the TTL.
      const int64_t step = draw(10) == 0 ? kTtlMs + draw(500) : draw(200);
      expiring_gaps += step > kTtlMs ? 1 : 0;
      stamp_ms += step;
      const std::string key(1, static_cast<char>('a' + draw(5)));
      pb::ClientRequest request;
      switch (draw(4)) {
        case 0:
          request = DeleteRequest(key, "", /*prev_kv=*/true);
          break;
        case 1:
          request = CompareAndSwapRequest(key, "v", "w");
          break;
        default:
          request = PutRequest(key, draw(2) == 0 ? "v" : "w", /*prev_kv=*/draw(2) == 0);
      }
      const int client = draw(6);  // 0: no session
      const uint64_t sequence = client == 0 ? 0 : (draw(5) == 0 && sequences[client] > 0
                                                       ? sequences[client]  // a retry
                                                       : ++sequences[client]);
      batch.push_back(WithSession(request, static_cast<uint64_t>(client), sequence, stamp_ms));
    }
    const std::vector<pb::ClientResponse> got = batched.WriteBatch(batch);
    ASSERT_EQ(got.size(), batch.size());
    for (size_t i = 0; i < batch.size(); ++i) {
      const pb::ClientResponse want = forgetful.Write(batch[i]);
      ASSERT_EQ(got[i].SerializeAsString(), want.SerializeAsString())
          << "round " << round << " command " << i << ": " << batch[i].ShortDebugString();
    }
  }
  EXPECT_GT(expiring_gaps, 20);
  ASSERT_OK_AND_ASSIGN(const auto batched_view, batched.state().NewSnapshot());
  ASSERT_OK_AND_ASSIGN(const auto forgetful_view, forgetful.state().NewSnapshot());
  ASSERT_OK_AND_ASSIGN(const storage::ContentHash batched_hash, batched_view->Hash());
  ASSERT_OK_AND_ASSIGN(const storage::ContentHash forgetful_hash, forgetful_view->Hash());
  EXPECT_EQ(batched_hash, forgetful_hash);
  EXPECT_GT(batched_hash.key_count, 0u);
}

// Goal: every limit measures the user's bytes. Method: with the default limits, a put
// of the largest key and value (with prev_kv, in a session, so the stored pair, its
// watch event and the remembered response all hold them) and a transaction of the most
// operations carrying the largest value are applied and read back; one byte more is
// refused before proposing.
TEST(KvApplyDefaultLimits, TheLargestKeyAndValueAreAppliedInAPutAndInATxn) {
  KvHarness harness(absl::StrCat(::testing::TempDir(), "/kv-apply-default-limits"),
                    KvApplyOptions());
  const KvLimits limits;
  const std::string key(limits.max_key_bytes, 'k');
  const std::string value(limits.max_value_bytes, 'v');
  const pb::ClientRequest put = WithSession(PutRequest(key, value, /*prev_kv=*/true), 7, 1);
  ASSERT_OK(ValidateWriteRequest(put, limits));
  const pb::ClientResponse first = harness.Write(put);
  ASSERT_FALSE(first.has_error()) << first.error().message();
  const pb::ClientResponse second =
      harness.Write(WithSession(PutRequest(key, value, /*prev_kv=*/true), 7, 2));
  ASSERT_FALSE(second.has_error()) << second.error().message();
  EXPECT_EQ(second.put().prev_kv().value(), value);

  pb::ClientRequest txn;
  pb::Compare* absent = txn.mutable_txn()->add_compare();
  absent->set_key(std::string(limits.max_key_bytes, 't'));
  absent->set_target(pb::Compare::TARGET_VERSION);
  absent->set_result(pb::Compare::RESULT_EQUAL);
  absent->set_version(0);
  *txn.mutable_txn()->add_success() = PutOp(std::string(limits.max_key_bytes, 't'), value);
  while (txn.txn().success_size() < static_cast<int>(limits.max_txn_ops)) {
    *txn.mutable_txn()->add_success() = PutOp(absl::StrCat("op-", txn.txn().success_size()), "v");
  }
  ASSERT_OK(ValidateWriteRequest(txn, limits));
  const pb::ClientResponse applied = harness.Write(WithSession(txn, 7, 3));
  ASSERT_FALSE(applied.has_error()) << applied.error().message();
  EXPECT_TRUE(applied.txn().succeeded());
  pb::RangeRequest read;
  read.set_key(std::string(limits.max_key_bytes, 't'));
  ASSERT_OK_AND_ASSIGN(const KvRead stored, harness.Read(read));
  ASSERT_EQ(stored.range.kvs_size(), 1);
  EXPECT_EQ(stored.range.kvs(0).value(), value);
  EXPECT_EQ(stored.revision, 3);

  EXPECT_THAT(ValidateWriteRequest(PutRequest(key, value + "v"), limits),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "value is 1048577 bytes, over the max_value_bytes limit of 1048576"));
  EXPECT_THAT(ValidateWriteRequest(PutRequest(key + "k", value), limits),
              StatusIs(absl::StatusCode::kInvalidArgument, "max_key_bytes limit of 8192"));
}

// Limits for the byte-bounded tests: pairs of 10 bytes, write responses of 25.
KvApplyOptions SmallResponseOptions() {
  KvApplyOptions options = TestOptions();
  options.limits.max_txn_ops = 4;
  options.limits.max_write_response_bytes = 25;
  return options;
}

// Keys "a".."e", each with a value of 9 bytes: 10 bytes of key and value per pair.
void PutTenBytePairs(KvHarness& harness) {
  for (char c = 'a'; c <= 'e'; ++c) {
    ASSERT_FALSE(harness.Write(PutRequest(std::string(1, c), "123456789")).has_error());
  }
}

size_t KeyValueBytes(const pb::RangeResponse& range) {
  size_t bytes = 0;
  for (const pb::KeyValue& kv : range.kvs()) bytes += kv.key().size() + kv.value().size();
  return bytes;
}

// Goal: a range page ends before the pair that would take it over max_response_bytes,
// holds at least one pair, and next_key / next_range_end continue it. Method: pages of
// five 10-byte pairs under caps of 25 (two pairs a page) and 5 (one pair, over the cap),
// forward and reverse, must visit every key once.
TEST(KvApplyResponseBytes, RangePagesEndBeforeTheCapAndContinue) {
  KvHarness harness(absl::StrCat(::testing::TempDir(), "/kv-apply-range-bytes"), TestOptions());
  PutTenBytePairs(harness);
  const struct {
    std::string name;
    size_t max_bytes;
    bool reverse;
    int want_pages;
  } cases[] = {
      {"forward", 25, false, 3},
      {"reverse", 25, true, 3},
      {"a pair over the cap still reads", 5, false, 5},
      {"reverse, one pair a page", 5, true, 5},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    pb::RangeRequest range;
    range.set_key("a");
    range.set_range_end(std::string(1, '\0'));
    range.set_reverse(c.reverse);
    std::string keys;
    int pages = 0;
    for (; pages < 10; ++pages) {
      ASSERT_OK_AND_ASSIGN(const KvRead read, harness.Read(range, c.max_bytes));
      ASSERT_GE(read.range.kvs_size(), 1);
      EXPECT_LE(KeyValueBytes(read.range), std::max<size_t>(c.max_bytes, 10));
      for (const pb::KeyValue& kv : read.range.kvs()) keys += kv.key();
      if (!read.range.more()) break;
      if (c.reverse) {
        range.set_range_end(read.range.next_range_end());
      } else {
        range.set_key(read.range.next_key());
      }
    }
    EXPECT_EQ(keys, c.reverse ? "edcba" : "abcde");
    EXPECT_EQ(pages + 1, c.want_pages);
  }
}

// Goal: a transaction's response is bounded like a read's page. Method: with write
// responses of at most 25 bytes, a range operation after a put returns a page with
// `more`; three ranges, the last of which takes the response over the limit with its
// one pair, and a delete_range with prev_kv of all five pairs are refused and change
// nothing; the same delete without prev_kv is applied.
TEST(KvApplyResponseBytes, WriteResponsesOverTheLimitPageOrAreRefused) {
  KvHarness harness(absl::StrCat(::testing::TempDir(), "/kv-apply-write-response"),
                    SmallResponseOptions());
  PutTenBytePairs(harness);
  pb::RequestOp scan = RangeOp("a");
  scan.mutable_range()->set_range_end(std::string(1, '\0'));

  pb::ClientRequest paged;
  *paged.mutable_txn()->add_success() = PutOp("b", "2");
  *paged.mutable_txn()->add_success() = scan;
  const pb::ClientResponse page = harness.Write(paged);
  ASSERT_FALSE(page.has_error()) << page.error().message();
  const pb::RangeResponse& read = page.txn().responses(1).range();
  ASSERT_EQ(read.kvs_size(), 2);
  EXPECT_EQ(read.kvs(1).value(), "2");  // the transaction's own write
  EXPECT_TRUE(read.more());
  EXPECT_EQ(read.next_key(), std::string("b\0", 2));
  EXPECT_EQ(page.header().revision(), 6);

  pb::ClientRequest three_scans;
  *three_scans.mutable_txn()->add_success() = PutOp("f", "1");
  for (int i = 0; i < 3; ++i) *three_scans.mutable_txn()->add_success() = scan;
  const pb::ClientResponse over = harness.Write(three_scans);
  ASSERT_TRUE(over.has_error());
  EXPECT_EQ(over.error().code(), static_cast<int>(absl::StatusCode::kInvalidArgument));
  EXPECT_NE(over.error().message().find("txn success[3]: "), std::string::npos);
  EXPECT_NE(over.error().message().find("max_write_response_bytes"), std::string::npos);

  const pb::ClientResponse with_prev = harness.Write(DeleteRequest("a", "z", /*prev_kv=*/true));
  ASSERT_TRUE(with_prev.has_error());
  EXPECT_NE(with_prev.error().message().find("max_write_response_bytes"), std::string::npos);
  EXPECT_EQ(with_prev.header().revision(), 6);
  pb::RangeRequest all;
  all.set_key("a");
  all.set_range_end("z");
  ASSERT_OK_AND_ASSIGN(const KvRead kept, harness.Read(all));
  EXPECT_EQ(kept.range.kvs_size(), 5) << "nothing of the refused writes was applied";

  const pb::ClientResponse deleted = harness.Write(DeleteRequest("a", "z"));
  ASSERT_FALSE(deleted.has_error()) << deleted.error().message();
  EXPECT_EQ(deleted.delete_range().deleted(), 5);
}

// Goal: a read inside a transaction that deleted every pair the byte-bounded read
// found still returns the next pair. Method: with write responses of at most 15 bytes,
// the read of storage stops within "a" and "b", which the transaction deleted.
TEST(KvApplyResponseBytes, TxnReadAfterDeletingWhatTheBoundedReadFoundGoesOn) {
  KvHarness harness(absl::StrCat(::testing::TempDir(), "/kv-apply-read-on"), [] {
    KvApplyOptions options = TestOptions();
    options.limits.max_write_response_bytes = 15;
    return options;
  }());
  PutTenBytePairs(harness);
  pb::ClientRequest txn;
  pb::RequestOp del;
  del.mutable_delete_range()->set_key("a");
  del.mutable_delete_range()->set_range_end("c");
  *txn.mutable_txn()->add_success() = del;
  pb::RequestOp scan = RangeOp("a");
  scan.mutable_range()->set_range_end(std::string(1, '\0'));
  *txn.mutable_txn()->add_success() = scan;
  const pb::ClientResponse response = harness.Write(txn);
  ASSERT_FALSE(response.has_error()) << response.error().message();
  const pb::RangeResponse& read = response.txn().responses(1).range();
  ASSERT_EQ(read.kvs_size(), 1);
  EXPECT_EQ(read.kvs(0).key(), "c");
  EXPECT_TRUE(read.more());
}

}  // namespace
}  // namespace stead::server
