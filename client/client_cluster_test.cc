// stead::Client against a real 3-member cluster of `stead` processes: writes from many
// threads survive a SIGKILL of the leader, many requests share one connection,
// scans page, the client finds the leader and the members, leadership moves on
// request, transactions choose their branch, and compare-and-swap counters count exactly while
// leaders die.
#include <signal.h>

#include <atomic>
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "stead/client.h"
#include "tests/testing/kv_test_client.h"
#include "tests/testing/process_cluster.h"
#include "tests/testing/status_matchers.h"

namespace stead {
namespace {

using testing::IsOkAndHolds;
using testing::ProcessCluster;
using testing::StatusIs;
using Result = Compare::Result;

std::string TestRoot() {
  return absl::StrCat(::testing::TempDir(), "/client_cluster_test_", ::getpid(), "_",
                      ::testing::UnitTest::GetInstance()->current_test_info()->name());
}

// A started 3-member cluster with a leader, and a client of all three.
class ClientClusterTest : public ::testing::Test {
 protected:
  void SetUp() override { StartCluster({}); }

  // Starts the members with `flags` added to the defaults.
  void StartCluster(std::vector<std::string> flags) {
    cluster_ = std::make_unique<ProcessCluster>(3, TestRoot(), STEAD_BINARY);
    cluster_->set_extra_flags(std::move(flags));
    for (int i : {0, 1, 2}) cluster_->Start(i);
    ASSERT_TRUE(cluster_->WaitReady({0, 1, 2}));
    ASSERT_GE(cluster_->WaitForLeader({0, 1, 2}), 0);
    ClientOptions options;
    options.endpoints = cluster_->ClientEndpoints(3);
    options.default_timeout = absl::Seconds(20);
    options.attempt_timeout = absl::Seconds(1);
    ASSERT_OK_AND_ASSIGN(client_, Client::Create(options));
  }

  std::unique_ptr<ProcessCluster> cluster_;
  std::unique_ptr<Client> client_;
};

// Goal: no acknowledged write is lost and none is reordered when the leader is
// SIGKILLed under load. Method: 16 threads share one Client; thread t writes keys
// t/0, t/1, ... in order and its counter key t/last = n after each, retrying a
// failed write until it is acknowledged; the leader is killed meanwhile. Afterwards
// every acknowledged key reads back, once (version 1), and each counter holds its
// thread's last n; once the killed leader is restarted, every member holds them all.
TEST_F(ClientClusterTest, LeaderKilledWhileSixteenThreadsWriteInOrderLosesNothing) {
  constexpr int kThreads = 16;
  constexpr int kWritesPerThread = 150;
  std::atomic<int> acknowledged{0};
  std::vector<int> last_written(kThreads, -1);
  std::vector<int> unacknowledged(kThreads, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const absl::Time give_up = absl::Now() + absl::Seconds(120);
      for (int n = 0; n < kWritesPerThread && absl::Now() < give_up; ++n) {
        const std::string value = absl::StrCat(n);
        // Retries are the client's business within a call's deadline; a call that
        // still fails (deadline) is repeated, bounded by give_up.
        bool done = false;
        for (int attempt = 0; attempt < 10 && !done; ++attempt) {
          done = client_->Put(absl::StrCat(t, "/", n), value).ok() &&
                 client_->Put(absl::StrCat(t, "/last"), value).ok();
          if (!done) ++unacknowledged[t];
        }
        if (!done) return;
        last_written[t] = n;
        ++acknowledged;
      }
    });
  }
  ASSERT_TRUE(testing::Eventually([&] { return acknowledged.load() >= 200; }));
  const int leader = cluster_->Leader({0, 1, 2});
  ASSERT_GE(leader, 0);
  cluster_->Kill(leader);
  for (std::thread& thread : threads) thread.join();

  int retried = 0;
  int rewritten = 0;
  for (int t = 0; t < kThreads; ++t) {
    SCOPED_TRACE(absl::StrCat("thread ", t));
    retried += unacknowledged[t];
    ASSERT_EQ(last_written[t], kWritesPerThread - 1) << "a write never succeeded";
    EXPECT_THAT(client_->Get(absl::StrCat(t, "/last")),
                IsOkAndHolds(std::optional<std::string>(absl::StrCat(kWritesPerThread - 1))));
    absl::StatusOr<RangeResult> keys = client_->Scan(absl::StrCat(t, "/"));
    ASSERT_OK(keys.status());
    EXPECT_EQ(keys->kvs.size(), static_cast<size_t>(kWritesPerThread) + 1);  // + t/last
    for (const KeyValue& kv : keys->kvs) {
      if (absl::EndsWith(kv.key, "/last")) continue;
      EXPECT_EQ(kv.key, absl::StrCat(t, "/", kv.value)) << "value of " << kv.key;
      // Attempts of one call carry one client id and sequence and are applied once; only
      // a call the test itself repeated may have written a key twice.
      if (kv.version > 1) ++rewritten;
    }
  }
  EXPECT_LE(rewritten, retried) << "keys written twice by the retries of one call";
  std::cout << "calls that failed and were repeated by the test: " << retried
            << "; keys written more than once: " << rewritten << "\n";

  // The killed leader comes back and catches up: then every member, it included, holds
  // every pair in its own state.
  cluster_->Start(leader);
  ASSERT_TRUE(cluster_->WaitReady({0, 1, 2})) << "the restarted stead-" << leader;
  std::map<std::string, std::string> written;
  for (int t = 0; t < kThreads; ++t) {
    for (int n = 0; n <= last_written[t]; ++n) written[absl::StrCat(t, "/", n)] = absl::StrCat(n);
    written[absl::StrCat(t, "/last")] = absl::StrCat(last_written[t]);
  }
  EXPECT_OK(cluster_->CheckEveryMemberHas({0, 1, 2}, written));
}

// Goal: thousands of asynchronous calls in flight on one connection per member all
// complete, each with its own answer (matched by request id, not by order).
// Goal: the content hash is computed by the member asked, and members that applied the
// same index agree. Method: puts from several threads, a transaction and deletes; then,
// once writes stopped, ask each member until all report the same applied index: the
// hashes and key counts must then be equal, each answer must come from the member
// asked (distinct member ids), and one more put must change every member's hash.
TEST_F(ClientClusterTest, MembersThatAppliedTheSameIndexHaveTheSameHash) {
  std::vector<std::thread> writers;
  for (int t = 0; t < 4; ++t) {
    writers.emplace_back([this, t] {
      for (int n = 0; n < 50; ++n) {
        EXPECT_OK(client_->Put(absl::StrCat("hash/", t, "/", n), absl::StrCat(t * 1000 + n)));
      }
    });
  }
  for (std::thread& writer : writers) writer.join();
  ASSERT_OK(client_->Delete("hash/0/7").status());
  ASSERT_OK(client_->Txn({.success = {TxnOp::Put("hash/txn", "x"), TxnOp::Delete("hash/1/3")}})
                .status());

  // Polls every member until their applied indexes agree; the answers of that round.
  auto converged_hashes = [&]() -> std::vector<ContentHash> {
    std::vector<ContentHash> hashes;
    testing::Eventually([&] {
      hashes.clear();
      for (const std::string& endpoint : cluster_->ClientEndpoints(3)) {
        absl::StatusOr<ContentHash> hash = client_->Hash(endpoint);
        if (!hash.ok()) return false;
        hashes.push_back(*hash);
      }
      return hashes[0].applied_index == hashes[1].applied_index &&
             hashes[1].applied_index == hashes[2].applied_index;
    });
    return hashes;
  };
  const std::vector<ContentHash> before = converged_hashes();
  ASSERT_EQ(before.size(), 3u);
  ASSERT_EQ(before[0].applied_index, before[2].applied_index) << "applied indexes never met";
  std::set<uint64_t> member_ids;
  for (int i = 0; i < 3; ++i) {
    SCOPED_TRACE(before[i].endpoint);
    EXPECT_EQ(before[i].endpoint, cluster_->ClientAddress(i));
    EXPECT_EQ(before[i].hash, before[0].hash);
    EXPECT_EQ(before[i].key_count, before[0].key_count);
    EXPECT_EQ(before[i].revision, before[0].revision);
    member_ids.insert(before[i].member_id);
  }
  EXPECT_EQ(member_ids.size(), 3u) << "an answer did not come from the member asked";
  // 200 puts - 2 deletes + 1 put are user keys; the service's own records come on top.
  EXPECT_GE(before[0].key_count, 199u);
  EXPECT_EQ(before[0].revision, 202);  // 200 puts, a delete and a transaction

  ASSERT_OK(client_->Put("hash/0/0", "changed"));
  const std::vector<ContentHash> after = converged_hashes();
  for (int i = 0; i < 3; ++i) {
    EXPECT_GT(after[i].applied_index, before[i].applied_index);
    EXPECT_NE(after[i].hash, before[0].hash);
    EXPECT_EQ(after[i].hash, after[0].hash);
  }

  EXPECT_THAT(client_->Hash("no-port"), StatusIs(absl::StatusCode::kInvalidArgument));
}

// Goal: disaster recovery after losing quorum for good. Method: every member is
// SIGKILLed after writes; stead-0 alone restarts with --force-new-cluster=stead-0 (the
// other members' flags would name it too, and ignore it): it must come up as the only
// voter with every acknowledged write and the same content hash, take new writes, keep
// that after a plain restart, and be joined by a member whose volumes were wiped.
TEST_F(ClientClusterTest, ForceNewClusterMakesASurvivorTheOnlyVoter) {
  for (int n = 0; n < 100; ++n) ASSERT_OK(client_->Put(absl::StrCat("dr/", n), absl::StrCat(n)));
  std::vector<ContentHash> hashes;
  ASSERT_TRUE(testing::Eventually([&] {
    hashes.clear();
    for (const std::string& endpoint : cluster_->ClientEndpoints(3)) {
      absl::StatusOr<ContentHash> hash = client_->Hash(endpoint);
      if (!hash.ok()) return false;
      hashes.push_back(*hash);
    }
    return hashes[0].applied_index == hashes[1].applied_index &&
           hashes[1].applied_index == hashes[2].applied_index;
  }));
  for (int i : {0, 1, 2}) cluster_->Kill(i);

  cluster_->set_extra_flags({"--force-new-cluster=stead-0"});
  cluster_->Start(0);
  ASSERT_TRUE(cluster_->WaitReady({0}));
  ASSERT_EQ(cluster_->WaitForLeader({0}), 0);
  ClientOptions options;
  options.endpoints = {cluster_->ClientAddress(0)};
  options.default_timeout = absl::Seconds(20);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Client> survivor, Client::Create(options));
  ASSERT_OK_AND_ASSIGN(const ContentHash after, survivor->Hash(cluster_->ClientAddress(0)));
  EXPECT_EQ(after.hash, hashes[0].hash);
  ASSERT_OK_AND_ASSIGN(std::vector<Member> members, survivor->MemberList());
  ASSERT_EQ(members.size(), 1u);
  EXPECT_EQ(members[0].name, "stead-0");
  EXPECT_TRUE(members[0].is_leader);
  EXPECT_THAT(survivor->Get("dr/99"), IsOkAndHolds(std::optional<std::string>("99")));
  ASSERT_OK(survivor->Put("dr/after", "yes"));

  // The flag left in place changes nothing on a restart.
  ASSERT_TRUE(cluster_->Terminate(0).has_value());
  cluster_->Start(0);
  ASSERT_TRUE(cluster_->WaitReady({0}));
  EXPECT_THAT(survivor->Get("dr/after"), IsOkAndHolds(std::optional<std::string>("yes")));

  // stead-1 with wiped volumes joins under a new id and catches up.
  cluster_->set_extra_flags({});
  std::filesystem::remove_all(absl::StrCat(TestRoot(), "/stead-1"));
  cluster_->Start(1);
  ASSERT_TRUE(cluster_->WaitReady({1}));
  ASSERT_TRUE(testing::Eventually([&] {
    absl::StatusOr<ContentHash> joined = client_->Hash(cluster_->ClientAddress(1));
    absl::StatusOr<ContentHash> leader = client_->Hash(cluster_->ClientAddress(0));
    return joined.ok() && leader.ok() && joined->applied_index == leader->applied_index &&
           joined->hash == leader->hash;
  }));
}

TEST_F(ClientClusterTest, ManyAsyncCallsShareOneConnection) {
  constexpr int kCalls = 2000;
  std::atomic<int> ok{0};
  std::atomic<int> finished{0};
  for (int i = 0; i < kCalls; ++i) {
    client_->PutAsync(absl::StrCat("async/", 10000 + i), absl::StrCat(i), {},
                      [&](absl::Status status) {
                        if (status.ok()) ++ok;
                        ++finished;
                      });
  }
  ASSERT_TRUE(testing::Eventually([&] { return finished.load() == kCalls; }));
  EXPECT_EQ(ok.load(), kCalls);

  std::atomic<int> matched{0};
  finished = 0;
  for (int i = 0; i < kCalls; ++i) {
    client_->GetAsync(absl::StrCat("async/", 10000 + i), {.serializable = i % 2 == 0},
                      [&, i](absl::StatusOr<std::optional<std::string>> value) {
                        // A serializable read may lag; only a wrong value is an error.
                        if (value.ok() && (!value->has_value() || **value == absl::StrCat(i))) ++matched;
                        ++finished;
                      });
  }
  ASSERT_TRUE(testing::Eventually([&] { return finished.load() == kCalls; }));
  EXPECT_EQ(matched.load(), kCalls);
}

// Goal: Range pages with limit and next_key, and the pages together are the prefix.
TEST_F(ClientClusterTest, ScanPagesThroughAPrefix) {
  for (int i = 0; i < 25; ++i) ASSERT_OK(client_->Put(absl::StrCat("page/", 100 + i), "x"));
  ASSERT_OK(client_->Put("pagf", "outside"));
  std::vector<std::string> keys;
  std::string begin = "page/";
  for (int page = 0; page < 10; ++page) {
    ASSERT_OK_AND_ASSIGN(RangeResult result,
                         client_->Range(begin, {.range_end = PrefixEnd("page/"), .limit = 10}));
    EXPECT_LE(result.kvs.size(), 10u);
    for (const KeyValue& kv : result.kvs) keys.push_back(kv.key);
    if (!result.more) break;
    begin = result.next_key;
  }
  ASSERT_EQ(keys.size(), 25u);
  for (int i = 0; i < 25; ++i) EXPECT_EQ(keys[static_cast<size_t>(i)], absl::StrCat("page/", 100 + i));
  EXPECT_THAT(client_->Get("missing"), IsOkAndHolds(std::optional<std::string>()));
  EXPECT_THAT(client_->Delete("pagf"), IsOkAndHolds(true));
  EXPECT_THAT(client_->Delete("pagf"), IsOkAndHolds(false));
}

// Goal: a client that knows only a follower learns the leader and sends writes there;
// the member list names one leader; removing an unknown member is NotFound.
TEST_F(ClientClusterTest, FindsTheLeaderAndListsMembers) {
  const int leader = cluster_->Leader({0, 1, 2});
  ASSERT_GE(leader, 0);
  ClientOptions options;
  options.endpoints = {cluster_->ClientAddress((leader + 1) % 3)};
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Client> client, Client::Create(options));
  for (int i = 0; i < 20; ++i) ASSERT_OK(client->Put("through-follower", absl::StrCat(i)));
  EXPECT_TRUE(testing::Eventually([&] {
    return client->Put("through-follower", "again").ok() &&
           client->LeaderAddressForTesting() == cluster_->ClientAddress(leader);
  }, absl::Seconds(10)));

  ASSERT_OK_AND_ASSIGN(std::vector<Member> members, client->MemberList());
  ASSERT_EQ(members.size(), 3u);
  int leaders = 0;
  for (const Member& member : members) leaders += member.is_leader;
  EXPECT_EQ(leaders, 1);
  EXPECT_THAT(client->MemberRemoveByName("stead-9"),
              testing::StatusIs(absl::StatusCode::kNotFound));
}

// Goal: LeaderTransfer moves leadership to the named voter and answers with both
// leaders; the client's next write reaches the new leader; transferring to the leader
// itself changes nothing; MemberPromote of a voter is a no-op saying so; unknown
// members are NotFound.
TEST_F(ClientClusterTest, LeaderTransferAndPromoteOfAVoter) {
  const int first = cluster_->Leader({0, 1, 2});
  ASSERT_GE(first, 0);
  ASSERT_OK(client_->Put("before", "1"));
  const int target = (first + 2) % 3;
  ASSERT_OK_AND_ASSIGN(LeaderTransferResult moved, client_->LeaderTransfer(cluster_->Name(target)));
  EXPECT_EQ(moved.previous_leader.name, cluster_->Name(first));
  EXPECT_EQ(moved.leader.name, cluster_->Name(target));
  EXPECT_EQ(moved.leader.client_address, cluster_->ClientAddress(target));
  EXPECT_TRUE(moved.leader.is_leader);
  EXPECT_EQ(cluster_->Leader({0, 1, 2}), target);
  ASSERT_OK(client_->Put("after", "2"));
  EXPECT_TRUE(testing::Eventually(
      [&] {
        return client_->Put("after", "3").ok() &&
               client_->LeaderAddressForTesting() == cluster_->ClientAddress(target);
      },
      absl::Seconds(10)));

  ASSERT_OK_AND_ASSIGN(LeaderTransferResult same, client_->LeaderTransfer(cluster_->Name(target)));
  EXPECT_EQ(same.previous_leader.id, same.leader.id);

  ASSERT_OK_AND_ASSIGN(MemberPromoteResult promoted, client_->MemberPromote(cluster_->Name(first)));
  EXPECT_TRUE(promoted.already_voter);
  EXPECT_EQ(promoted.members.size(), 3u);
  EXPECT_THAT(client_->MemberPromote("stead-9"), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(client_->LeaderTransfer("stead-9"), StatusIs(absl::StatusCode::kNotFound));
}

// Goal: CompareAndSwap swaps only when the key holds the expected value (or, for
// std::nullopt, does not exist), and a Txn runs the branch its compares choose,
// atomically at one revision, with one answer per operation of that branch.
TEST_F(ClientClusterTest, TxnRunsTheBranchItsComparesChoose) {
  using Value = std::optional<std::string>;
  EXPECT_THAT(client_->CompareAndSwap("cas", std::nullopt, "1"), IsOkAndHolds(true));
  EXPECT_THAT(client_->CompareAndSwap("cas", std::nullopt, "x"), IsOkAndHolds(false));
  EXPECT_THAT(client_->CompareAndSwap("cas", "0", "x"), IsOkAndHolds(false));
  EXPECT_THAT(client_->Get("cas"), IsOkAndHolds(Value("1")));
  EXPECT_THAT(client_->CompareAndSwap("cas", "1", "2"), IsOkAndHolds(true));
  EXPECT_THAT(client_->Get("cas"), IsOkAndHolds(Value("2")));
  EXPECT_THAT(client_->CompareAndSwap("absent", "", "x"), IsOkAndHolds(false))
      << "an absent key never matches a value compare";

  ASSERT_OK(client_->Put("txn/a", "1"));
  ASSERT_OK(client_->Put("txn/b", "1"));
  TxnRequest request;
  request.compare = {Compare::Value("txn/a", Result::kEqual, "1"),
                     Compare::Version("txn/b", Result::kEqual, 1), Compare::Missing("txn/c")};
  request.success = {TxnOp::Put("txn/c", "3"), TxnOp::Delete("txn/b"),
                     TxnOp::Get("txn/", PrefixEnd("txn/"))};
  request.failure = {TxnOp::Get("txn/a")};
  ASSERT_OK_AND_ASSIGN(TxnResult first, client_->Txn(request));
  EXPECT_TRUE(first.succeeded);
  ASSERT_EQ(first.responses.size(), 3u);
  EXPECT_EQ(first.responses[0].kind, TxnOp::Kind::kPut);
  EXPECT_EQ(first.responses[1].deleted, 1);
  // The read sees the branch's earlier writes; all of them carry the one revision.
  const std::vector<KeyValue>& kvs = first.responses[2].range.kvs;
  ASSERT_EQ(kvs.size(), 2u);
  EXPECT_EQ(kvs[0].key, "txn/a");
  EXPECT_EQ(kvs[1].key, "txn/c");
  EXPECT_EQ(kvs[1].value, "3");
  EXPECT_EQ(kvs[1].create_revision, first.revision);

  // txn/c exists now: the same request runs its failure branch, which only reads, so
  // the revision stays.
  ASSERT_OK_AND_ASSIGN(TxnResult second, client_->Txn(request));
  EXPECT_FALSE(second.succeeded);
  ASSERT_EQ(second.responses.size(), 1u);
  ASSERT_EQ(second.responses[0].range.kvs.size(), 1u);
  EXPECT_EQ(second.responses[0].range.kvs[0].value, "1");
  EXPECT_EQ(second.revision, first.revision);
  EXPECT_THAT(client_->Get("txn/b"), IsOkAndHolds(Value()));

  ASSERT_OK_AND_ASSIGN(
      TxnResult counters,
      client_->Txn(
          {.compare = {Compare::ModRevision("txn/c", Result::kEqual, first.revision),
                       Compare::CreateRevision("txn/c", Result::kLess, first.revision + 1)}}));
  EXPECT_TRUE(counters.succeeded);

  Compare greater_exists = Compare::Exists("txn/a");
  greater_exists.result = Result::kGreater;
  EXPECT_THAT(client_->Txn({.compare = {greater_exists}}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(client_->Txn({.success = {TxnOp::Put("", "v")}}),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

// What one counter thread saw.
struct CounterRun {
  int64_t value = 0;     // the counter's value as the thread knows it
  int unknown = 0;       // calls that failed with Unavailable or DeadlineExceeded
  int applied_late = 0;  // ... of which the swap had been applied after all
  std::string error;     // why the thread stopped early, if it did
};

// Counts `key` from 0 up to `target` with CompareAndSwap(n, n + 1). The thread always
// knows the value, except after a call that failed with Unavailable or
// DeadlineExceeded: then it is n or n + 1. So a failed compare is only allowed after
// such a call, and then the value must read n + 1; anything else is an acknowledged
// swap lost or a swap applied twice (for instance a client retry that was not
// deduplicated and so failed its compare).
CounterRun CountWithCompareAndSwap(Client& client, const std::string& key, int target,
                                   absl::Time give_up) {
  CounterRun run;
  bool outcome_unknown = false;
  auto text = [](int64_t n) { return n == 0 ? std::optional<std::string>() : absl::StrCat(n); };
  // Bounded in time and by 50 calls per increment.
  for (int64_t calls = 0; run.value < target && calls < 50LL * target; ++calls) {
    if (absl::Now() > give_up) {
      run.error = absl::StrCat("gave up at ", run.value);
      return run;
    }
    absl::StatusOr<bool> swapped = client.CompareAndSwap(
        key, text(run.value), absl::StrCat(run.value + 1), {.timeout = absl::Seconds(1)});
    if (!swapped.ok()) {
      if (!absl::IsUnavailable(swapped.status()) && !absl::IsDeadlineExceeded(swapped.status())) {
        run.error = swapped.status().ToString();
        return run;
      }
      ++run.unknown;
      outcome_unknown = true;
      continue;  // the same swap again
    }
    if (*swapped) {
      ++run.value;
      outcome_unknown = false;
      continue;
    }
    if (!outcome_unknown) {
      run.error = absl::StrCat("compare failed at ", run.value, " after an acknowledged swap");
      return run;
    }
    absl::StatusOr<std::optional<std::string>> now = client.Get(key, {.timeout = absl::Seconds(2)});
    if (!now.ok()) continue;  // still unknown; the next swap or read decides
    if (*now != text(run.value + 1)) {
      run.error = absl::StrCat("counter at ", run.value, " reads ", now->value_or("(absent)"));
      return run;
    }
    ++run.value;
    ++run.applied_late;
    outcome_unknown = false;
  }
  if (run.value < target) run.error = absl::StrCat("too many calls; stopped at ", run.value);
  return run;
}

// Goal: compare-and-swap through the client is exactly-once and never loses an
// acknowledged swap while leaders die. Method: 16 threads share one Client, each
// counting its own key up with CompareAndSwap (CountWithCompareAndSwap checks every
// answer) to 1000; meanwhile the leader is SIGKILLed and restarted three times, at
// about 20%, 45% and 70% of the increments. A call times out after 1 s, so calls
// that span an election end with an unknown outcome and exercise the recovery path.
// Afterwards every counter reads exactly 1000.
// Goal: each limit is refused with InvalidArgument naming it, nothing is written, and
// the cluster keeps serving.
TEST_F(ClientClusterTest, OversizedRequestsAreRefusedByName) {
  const std::string big_key(8 * 1024 + 1, 'k');
  EXPECT_THAT(client_->Put(big_key, "v"),
              StatusIs(absl::StatusCode::kInvalidArgument, "max_key_bytes"));
  EXPECT_THAT(client_->Put("big-value", std::string((1 << 20) + 1, 'v')),
              StatusIs(absl::StatusCode::kInvalidArgument, "max_value_bytes"));
  TxnRequest big_request;
  for (int i = 0; i < 2; ++i) {
    big_request.success.push_back(TxnOp::Put(absl::StrCat("half-", i), std::string(900 << 10, 'v')));
  }
  EXPECT_THAT(client_->Txn(big_request),
              StatusIs(absl::StatusCode::kInvalidArgument, "max_request_bytes"));
  TxnRequest many_ops;
  for (int i = 0; i < 129; ++i) many_ops.success.push_back(TxnOp::Put(absl::StrCat("op-", i), "v"));
  EXPECT_THAT(client_->Txn(many_ops), StatusIs(absl::StatusCode::kInvalidArgument, "max_txn_ops"));

  const std::string everything(1, '\0');
  ASSERT_OK_AND_ASSIGN(const RangeResult nothing,
                       client_->Range(everything, {.range_end = everything}));
  EXPECT_TRUE(nothing.kvs.empty()) << "nothing of the refused requests was written";
  ASSERT_OK(client_->Put("still", "serving"));
  EXPECT_THAT(client_->Get("still"), IsOkAndHolds(std::optional<std::string>("serving")));
}

// What a watch delivered, for checking afterwards.
class EventLog {
 public:
  void Add(const std::vector<WatchEvent>& events) {
    std::lock_guard<std::mutex> lock(mu_);
    events_.insert(events_.end(), events.begin(), events.end());
  }
  std::vector<WatchEvent> events() const {
    std::lock_guard<std::mutex> lock(mu_);
    return events_;
  }

 private:
  mutable std::mutex mu_;
  std::vector<WatchEvent> events_;
};

TEST_F(ClientClusterTest, CompareAndSwapCountersCountExactlyWhileLeadersDie) {
  constexpr int kThreads = 16;
  constexpr int kIncrements = 1000;
  // A watcher opened at revision R before the run sees every change of the prefix,
  // in order, no gap and no duplicate, across the leader changes.
  ASSERT_OK_AND_ASSIGN(const RangeResult before, client_->Scan("counter/"));
  const int64_t watch_from = before.revision + 1;
  EventLog seen;
  absl::Status watch_end;
  std::unique_ptr<Watcher> watcher = client_->Watch(
      "counter/", {.range_end = PrefixEnd("counter/"), .start_revision = watch_from},
      [&](const std::vector<WatchEvent>& events, int64_t) { seen.Add(events); },
      [&](absl::Status status) { watch_end = status; });
  const absl::Time start = absl::Now();
  // About 15 s on 2 cores (Debug); the bound stays under the ctest timeout of 300 s.
  const absl::Time give_up = start + absl::Seconds(240);
  std::vector<CounterRun> runs(kThreads);
  std::atomic<int> finished{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      runs[t] =
          CountWithCompareAndSwap(*client_, absl::StrCat("counter/", t), kIncrements, give_up);
      ++finished;
    });
  }
  // Progress is read from the counters themselves, so the killer needs no shared state.
  auto progress = [&] {
    absl::StatusOr<RangeResult> counters = client_->Scan("counter/", 0, {.serializable = true});
    int64_t sum = 0;
    if (counters.ok()) {
      for (const KeyValue& kv : counters->kvs) {
        int64_t n = 0;
        if (absl::SimpleAtoi(kv.value, &n)) sum += n;
      }
    }
    return sum;
  };
  int kills = 0;
  for (const double fraction : {0.20, 0.45, 0.70}) {
    const auto due = static_cast<int64_t>(fraction * kThreads * kIncrements);
    if (!testing::Eventually([&] { return progress() >= due || finished.load() == kThreads; },
                             give_up - absl::Now())) {
      break;
    }
    if (finished.load() == kThreads) break;
    const int leader = cluster_->WaitForLeader({0, 1, 2});
    ASSERT_GE(leader, 0);
    cluster_->Kill(leader);
    ++kills;
    std::vector<int> others;
    for (int i : {0, 1, 2}) {
      if (i != leader) others.push_back(i);
    }
    EXPECT_GE(cluster_->WaitForLeader(others), 0);
    cluster_->Start(leader);
    EXPECT_TRUE(cluster_->WaitReady({0, 1, 2}));
  }
  for (std::thread& thread : threads) thread.join();
  const absl::Duration elapsed = absl::Now() - start;

  EXPECT_EQ(kills, 3) << "the counters finished before the leader was killed three times";
  int unknown = 0;
  int applied_late = 0;
  for (int t = 0; t < kThreads; ++t) {
    SCOPED_TRACE(absl::StrCat("counter/", t));
    EXPECT_EQ(runs[t].error, "");
    EXPECT_EQ(runs[t].value, kIncrements);
    EXPECT_THAT(client_->Get(absl::StrCat("counter/", t)),
                IsOkAndHolds(std::optional<std::string>(absl::StrCat(kIncrements))));
    unknown += runs[t].unknown;
    applied_late += runs[t].applied_late;
  }
  std::cout << kThreads << " counters x " << kIncrements << " increments in " << elapsed << " with "
            << kills << " leader kills; calls with an unknown outcome: " << unknown
            << ", of which applied: " << applied_late << "\n";

  ASSERT_OK_AND_ASSIGN(const RangeResult after, client_->Scan("counter/"));
  EXPECT_TRUE(testing::Eventually([&] { return watcher->progress_revision() >= after.revision; },
                                  absl::Seconds(30)))
      << "the watch reached revision " << watcher->progress_revision() << " of " << after.revision;
  watcher.reset();
  EXPECT_OK(watch_end);
  const std::vector<WatchEvent> events = seen.events();
  std::map<std::string, int64_t> last_value;
  int64_t last_revision = watch_from - 1;
  for (const WatchEvent& event : events) {
    ASSERT_EQ(event.type, WatchEvent::Type::kPut) << event.kv.key;
    ASSERT_GT(event.kv.mod_revision, last_revision) << "revision order, no duplicate";
    last_revision = event.kv.mod_revision;
    int64_t value = 0;
    ASSERT_TRUE(absl::SimpleAtoi(event.kv.value, &value)) << event.kv.value;
    ASSERT_EQ(value, last_value[event.kv.key] + 1)
        << event.kv.key << " at revision " << event.kv.mod_revision << ": a gap or a repeat";
    last_value[event.kv.key] = value;
  }
  EXPECT_EQ(events.size(), static_cast<size_t>(kThreads * kIncrements));
  EXPECT_EQ(last_revision, after.revision);

  // Every member, the three restarted leaders included, holds every final count.
  std::map<std::string, std::string> counts;
  for (int t = 0; t < kThreads; ++t) {
    counts[absl::StrCat("counter/", t)] = absl::StrCat(kIncrements);
  }
  EXPECT_OK(cluster_->CheckEveryMemberHas({0, 1, 2}, counts));
}

// The member serving a watch dies and comes back (the watcher knows no other): the
// watch resumes from its progress revision and misses nothing of what was written
// meanwhile.
TEST_F(ClientClusterTest, WatchResumesAfterItsMemberRestarts) {
  ClientOptions options;
  options.endpoints = {cluster_->ClientAddress(2)};
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Client> watching, Client::Create(options));
  ASSERT_OK_AND_ASSIGN(const RangeResult before, client_->Scan("r/"));
  EventLog seen;
  std::unique_ptr<Watcher> watcher = watching->Watch(
      "r/", {.range_end = PrefixEnd("r/"), .start_revision = before.revision + 1},
      [&](const std::vector<WatchEvent>& events, int64_t) { seen.Add(events); });
  constexpr int kWrites = 30;
  for (int i = 0; i < kWrites; ++i) {
    if (i == 10) cluster_->Kill(2);
    if (i == 20) {
      cluster_->Start(2);
      ASSERT_TRUE(cluster_->WaitReady({2}));
    }
    ASSERT_OK(client_->Put(absl::StrCat("r/", i % 3), absl::StrCat(i)));
  }
  ASSERT_TRUE(testing::Eventually([&] { return seen.events().size() >= kWrites; },
                                  absl::Seconds(30)))
      << seen.events().size() << " of " << kWrites << " events";
  const std::vector<WatchEvent> events = seen.events();
  ASSERT_EQ(events.size(), static_cast<size_t>(kWrites));
  for (int i = 0; i < kWrites; ++i) {
    EXPECT_EQ(events[static_cast<size_t>(i)].kv.value, absl::StrCat(i)) << "event " << i;
  }
  // The restarted member caught up with the writes it missed, as did the others.
  EXPECT_OK(cluster_->CheckEveryMemberHas(
      {0, 1, 2}, {{"r/0", absl::StrCat(kWrites - 3)},
                  {"r/1", absl::StrCat(kWrites - 2)},
                  {"r/2", absl::StrCat(kWrites - 1)}}));
}

// Goal: a member closes a client connection with nothing in flight after
// --client-idle-timeout, never one with a watch open, and stead::Client reconnects by
// itself: its next call succeeds. Method: one member with a 300 ms idle timeout; a
// watch (a client's first call, on its only connection) stays open well past it and
// gets its event; once the watch is gone the member closes the idle connection (its
// log says so) and the next call is answered on a new one.
TEST(ClientIdleTimeoutTest, WatchesKeepTheirConnectionAndIdleOnesReconnect) {
  ProcessCluster cluster(1, TestRoot(), STEAD_BINARY);
  cluster.set_extra_flags({"--client-idle-timeout=300ms"});
  cluster.Start(0);
  ASSERT_TRUE(cluster.WaitReady({0}));
  ClientOptions options;
  options.endpoints = cluster.ClientEndpoints(1);
  {
    // So that "now" is a revision above 0; closed at once by the client, not as idle.
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Client> writer, Client::Create(options));
    ASSERT_OK(writer->Put("before", "1"));
  }
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Client> client, Client::Create(options));
  {
    EventLog seen;
    std::unique_ptr<Watcher> watcher = client->Watch(
        "k", {}, [&](const std::vector<WatchEvent>& events, int64_t) { seen.Add(events); });
    ASSERT_TRUE(testing::Eventually([&] { return watcher->progress_revision() > 0; },
                                    absl::Seconds(10)));
    std::this_thread::sleep_for(std::chrono::seconds(1));  // three idle timeouts
    ASSERT_OK(client->Put("k", "1"));
    ASSERT_TRUE(testing::Eventually([&] { return seen.events().size() == 1; }, absl::Seconds(10)));
    EXPECT_FALSE(absl::StrContains(cluster.Log(0), "idle timeout"))
        << "the connection of an open watch was closed as idle";
  }
  ASSERT_TRUE(testing::Eventually(
      [&] { return absl::StrContains(cluster.Log(0), "idle timeout"); }, absl::Seconds(10)))
      << "the idle connection was not closed";
  EXPECT_THAT(client->Get("k"), IsOkAndHolds(std::optional<std::string>("1")));
  ASSERT_OK(client->Put("k", "2"));
  EXPECT_THAT(client->Get("k"), IsOkAndHolds(std::optional<std::string>("2")));
}

TEST_F(ClientClusterTest, WatchFromNowAndRefusedWatches) {
  ASSERT_OK(client_->Put("before", "1"));  // so that "now" is a revision above 0
  EventLog seen;
  std::unique_ptr<Watcher> watcher = client_->Watch(
      "w", {}, [&](const std::vector<WatchEvent>& events, int64_t) { seen.Add(events); });
  ASSERT_TRUE(testing::Eventually([&] { return watcher->progress_revision() > 0; },
                                  absl::Seconds(10)))
      << "the stream opened";
  ASSERT_OK(client_->Put("w", "1"));
  ASSERT_OK(client_->Put("other", "1"));
  ASSERT_OK_AND_ASSIGN(const bool deleted, client_->Delete("w"));
  EXPECT_TRUE(deleted);
  ASSERT_TRUE(testing::Eventually([&] { return seen.events().size() >= 2; }, absl::Seconds(10)));
  const std::vector<WatchEvent> events = seen.events();
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].type, WatchEvent::Type::kPut);
  EXPECT_EQ(events[0].kv.value, "1");
  EXPECT_EQ(events[1].type, WatchEvent::Type::kDelete);
  EXPECT_EQ(events[1].kv.key, "w");
  EXPECT_EQ(events[1].kv.mod_revision, events[0].kv.mod_revision + 2);

  std::atomic<bool> ended{false};
  absl::Status why;
  std::unique_ptr<Watcher> backwards = client_->Watch(
      "b", {.range_end = "a"}, [](const std::vector<WatchEvent>&, int64_t) {},
      [&](absl::Status status) {
        why = status;
        ended = true;
      });
  ASSERT_TRUE(testing::Eventually([&] { return ended.load(); }, absl::Seconds(10)));
  EXPECT_THAT(why, StatusIs(absl::StatusCode::kInvalidArgument, "range_end"));
  EXPECT_THAT(backwards->status(), StatusIs(absl::StatusCode::kInvalidArgument));
}

// The store revision as a linearizable read sees it.
int64_t Revision(Client& client) {
  absl::StatusOr<RangeResult> read = client.Range("revision-probe");
  EXPECT_OK(read.status());
  return read.ok() ? read->revision : -1;
}

// Goal: the documented limits hold on the user's bytes, end to end: a value of exactly
// 1 MiB under a key of exactly 8 KiB is accepted and reads back, and one byte more of
// either is refused with InvalidArgument at once, by the client and by the server,
// without proposing anything (the revision does not move).
TEST_F(ClientClusterTest, TheLargestValueUnderTheLargestKeyIsAcceptedAndOneByteMoreIsNot) {
  const std::string key(8 * 1024, 'k');
  const std::string value(1024 * 1024, 'v');
  ASSERT_OK(client_->Put(key, value));
  ASSERT_OK_AND_ASSIGN(const std::optional<std::string> read, client_->Get(key));
  ASSERT_TRUE(read.has_value());
  EXPECT_TRUE(*read == value) << "the value read back differs";
  const int64_t revision = Revision(*client_);

  const absl::Time start = absl::Now();
  EXPECT_THAT(client_->Put(key, value + "v"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "value is 1048577 bytes, over the max_value_bytes limit of 1048576"));
  EXPECT_THAT(client_->Put(key + "k", value),
              StatusIs(absl::StatusCode::kInvalidArgument, "max_key_bytes limit of 8192"));
  EXPECT_LT(absl::Now() - start, absl::Seconds(3)) << "refused at once, not retried";
  // The server refuses the same before proposing, for clients that do not check.
  testing::KvTestClient raw(cluster_->ClientEndpoints(3));
  EXPECT_THAT(raw.Put(key, value + "v", absl::Seconds(10)),
              StatusIs(absl::StatusCode::kInvalidArgument, "max_value_bytes"));
  EXPECT_EQ(Revision(*client_), revision) << "nothing was proposed";
}

// Goal: a transaction of the most operations may carry the largest value, since the
// request limit (1.5 MiB of keys and values) allows it; one byte more is refused.
TEST_F(ClientClusterTest, ATxnOfTheMostOperationsCarriesTheLargestValue) {
  const std::string key(8 * 1024, 't');
  const std::string value(1024 * 1024, 'v');
  TxnRequest txn{.compare = {Compare::Missing(key)}, .success = {TxnOp::Put(key, value)}};
  while (txn.success.size() < 128) {
    txn.success.push_back(TxnOp::Put(absl::StrCat("op-", txn.success.size()), "v"));
  }
  ASSERT_OK_AND_ASSIGN(const TxnResult applied, client_->Txn(txn));
  EXPECT_TRUE(applied.succeeded);
  ASSERT_OK_AND_ASSIGN(const std::optional<std::string> read, client_->Get(key));
  ASSERT_TRUE(read.has_value());
  EXPECT_TRUE(*read == value) << "the value read back differs";
  EXPECT_THAT(client_->Get("op-127"), IsOkAndHolds(std::optional<std::string>("v")));

  const int64_t revision = Revision(*client_);
  txn.compare = {};
  txn.success[0].value += "v";
  EXPECT_THAT(client_->Txn(txn), StatusIs(absl::StatusCode::kInvalidArgument,
                                          "txn success[0]: put: value is 1048577"));
  EXPECT_EQ(Revision(*client_), revision) << "nothing was proposed";
}

// Goal: a request far over the limits (a 10 MB value, larger than the client port's
// frame limit) is refused with InvalidArgument at once, never retried: by the client
// before sending, and by the server, which answers such a frame rather than closing
// the connection.
TEST_F(ClientClusterTest, ATenMegabyteValueIsRefusedWithoutRetries) {
  const std::string value(10'000'000, 'v');
  const absl::Time start = absl::Now();
  EXPECT_THAT(client_->Put("ten", value),
              StatusIs(absl::StatusCode::kInvalidArgument, "value is 10000000 bytes"));
  EXPECT_LT(absl::Now() - start, absl::Seconds(3)) << "refused at once, not retried";

  testing::KvTestClient raw(cluster_->ClientEndpoints(3));
  EXPECT_THAT(
      raw.Put("ten", value, absl::Seconds(10)),
      StatusIs(absl::StatusCode::kInvalidArgument, "exceeds the client port's frame limit"));
  // The member stays in step with the stream: the next request is answered.
  EXPECT_OK(raw.Put("small", "v", absl::Seconds(10)));
  EXPECT_THAT(client_->Get("ten"), IsOkAndHolds(std::optional<std::string>()));
}

// A cluster whose range pages hold at most kPageBytes of keys and values.
constexpr size_t kPageBytes = 3 << 20;

class SmallPagesClusterTest : public ClientClusterTest {
 protected:
  void SetUp() override { StartCluster({absl::StrCat("--max-response-bytes=", kPageBytes)}); }
};

// Goal: a scan over large values comes back in pages bounded by --max-response-bytes,
// every pair once, and the leader serves it without losing its leadership. Method: 40
// values of 1 MB (a 40 MB range) under a 3 MiB page cap, paged with next_key; the page
// sizes are checked, and the leader and its term must be the same afterwards.
TEST_F(SmallPagesClusterTest, AScanOfLargeValuesPagesByBytesAndKeepsTheLeader) {
  constexpr int kValues = 40;
  auto value_of = [](int i) { return std::string(1'000'000, static_cast<char>('a' + i % 26)); };
  for (int i = 0; i < kValues; ++i) {
    ASSERT_OK(client_->Put(absl::StrFormat("big/%02d", i), value_of(i)));
  }
  const int leader = cluster_->Leader({0, 1, 2});
  ASSERT_GE(leader, 0);
  const std::optional<double> term = cluster_->Metric(leader, "stead_raft_term");
  ASSERT_TRUE(term.has_value());

  int seen = 0;
  int pages = 0;
  std::string begin = "big/";
  for (; pages < 2 * kValues; ++pages) {
    ASSERT_OK_AND_ASSIGN(const RangeResult page,
                         client_->Range(begin, {.range_end = PrefixEnd("big/")}));
    ASSERT_FALSE(page.kvs.empty()) << "a page holds at least one pair";
    size_t page_bytes = 0;
    for (const KeyValue& kv : page.kvs) {
      page_bytes += kv.key.size() + kv.value.size();
      EXPECT_EQ(kv.key, absl::StrFormat("big/%02d", seen));
      EXPECT_TRUE(kv.value == value_of(seen)) << "value of " << kv.key;
      ++seen;
    }
    EXPECT_LE(page_bytes, kPageBytes);
    if (!page.more) break;
    begin = page.next_key;
  }
  EXPECT_EQ(seen, kValues);
  EXPECT_EQ(pages + 1, (kValues + 2) / 3) << "three 1 MB values fit a 3 MiB page";
  EXPECT_EQ(cluster_->Leader({0, 1, 2}), leader);
  EXPECT_EQ(cluster_->Metric(leader, "stead_raft_term"), term);
}

}  // namespace
}  // namespace stead
