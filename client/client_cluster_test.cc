// stead::Client against a real 3-member cluster of `stead` processes: writes from many
// threads survive a SIGKILL of the leader, many requests share one connection,
// scans page, and the client finds the leader and the members.
#include <signal.h>

#include <atomic>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "stead/client.h"
#include "tests/testing/process_cluster.h"
#include "tests/testing/status_matchers.h"

namespace stead {
namespace {

using testing::IsOkAndHolds;
using testing::ProcessCluster;

std::string TestRoot() {
  return absl::StrCat(::testing::TempDir(), "/client_cluster_test_", ::getpid(), "_",
                      ::testing::UnitTest::GetInstance()->current_test_info()->name());
}

// A started 3-member cluster with a leader, and a client of all three.
class ClientClusterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    cluster_ = std::make_unique<ProcessCluster>(3, TestRoot(), STEAD_BINARY);
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
// thread's last n.
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
}

// Goal: thousands of asynchronous calls in flight on one connection per member all
// complete, each with its own answer (matched by request id, not by order).
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

}  // namespace
}  // namespace stead
