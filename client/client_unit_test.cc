// The parts of stead::Client that need no cluster: PrefixEnd, option validation, and
// the errors and deadlines of calls to members that cannot be reached.
#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "stead/client.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/subprocess.h"

namespace stead {
namespace {

TEST(PrefixEnd, IsTheSmallestKeyAfterThePrefix) {
  const struct {
    const char* name;
    std::string prefix;
    std::string want;
  } cases[] = {
      {"plain", "abc", "abd"},
      {"empty is every key", "", std::string(1, '\0')},
      {"trailing 0xff carries", std::string("a\xff", 2), "b"},
      {"all 0xff is every key", std::string("\xff\xff", 2), std::string(1, '\0')},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_EQ(PrefixEnd(c.prefix), c.want);
  }
}

TEST(Client, CreateRefusesBadOptions) {
  EXPECT_EQ(Client::Create({}).status().code(), absl::StatusCode::kInvalidArgument);
  ClientOptions no_port;
  no_port.endpoints = {"127.0.0.1"};
  EXPECT_EQ(Client::Create(no_port).status().code(), absl::StatusCode::kInvalidArgument);
  ClientOptions no_threads;
  no_threads.endpoints = {"127.0.0.1:1"};
  no_threads.io_threads = 0;
  EXPECT_EQ(Client::Create(no_threads).status().code(), absl::StatusCode::kInvalidArgument);
}

// Goal: with no member listening, every kind of call ends within its deadline with
// Unavailable naming the endpoint, and async and blocking forms agree.
TEST(Client, UnreachableMembersAreUnavailableWithinTheDeadline) {
  ClientOptions options;
  for (int i = 0; i < 2; ++i) {
    options.endpoints.push_back("127.0.0.1:" + std::to_string(testing::FreeLoopbackPort().value()));
  }
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Client> client, Client::Create(options));
  const absl::Time start = absl::Now();
  absl::Status put = client->Put("k", "v", {.timeout = absl::Milliseconds(500)});
  EXPECT_THAT(put, testing::StatusIs(absl::StatusCode::kUnavailable, "127.0.0.1:"));
  EXPECT_LT(absl::Now() - start, absl::Seconds(3));
  EXPECT_EQ(client->Get("k", {.timeout = absl::Milliseconds(300)}).status().code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(client->MemberList({.timeout = absl::Milliseconds(300)}).status().code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(client->CompareAndSwap("k", std::nullopt, "v", {.timeout = absl::Milliseconds(300)})
                .status()
                .code(),
            absl::StatusCode::kUnavailable);

  std::atomic<int> done{0};
  for (int i = 0; i < 100; ++i) {
    client->GetAsync("k", {.serializable = true, .timeout = absl::Milliseconds(300)},
                     [&done](absl::StatusOr<std::optional<std::string>> value) {
                       if (absl::IsUnavailable(value.status())) ++done;
                     });
  }
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (done.load() < 100 && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(10));
  EXPECT_EQ(done.load(), 100);
}

// Goal: a transaction with an enumerator out of range (a value cast into the enum)
// is refused before it is sent, naming the entry, and TxnAsync still answers once.
TEST(Client, TxnRefusesUnknownEnumeratorsBeforeSending) {
  ClientOptions options;
  options.endpoints = {"127.0.0.1:" + std::to_string(testing::FreeLoopbackPort().value())};
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Client> client, Client::Create(options));
  Compare bad_target = Compare::Exists("k");
  bad_target.target = static_cast<Compare::Target>(42);
  Compare bad_result = Compare::Exists("k");
  bad_result.result = static_cast<Compare::Result>(42);
  TxnOp bad_kind = TxnOp::Get("k");
  bad_kind.kind = static_cast<TxnOp::Kind>(42);
  const absl::Duration timeout = absl::Seconds(30);  // an attempt would wait it out
  const absl::Time start = absl::Now();
  EXPECT_THAT(client->Txn({.compare = {Compare::Exists("k"), bad_target}}, {.timeout = timeout}),
              testing::StatusIs(absl::StatusCode::kInvalidArgument, "txn compare[1]"));
  EXPECT_THAT(client->Txn({.compare = {bad_result}}, {.timeout = timeout}),
              testing::StatusIs(absl::StatusCode::kInvalidArgument, "txn compare[0]"));
  EXPECT_THAT(client->Txn({.failure = {TxnOp::Put("k", "v"), bad_kind}}, {.timeout = timeout}),
              testing::StatusIs(absl::StatusCode::kInvalidArgument, "txn failure[1]"));
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));

  std::atomic<int> callbacks{0};
  client->TxnAsync({.success = {bad_kind}}, {.timeout = timeout},
                   [&callbacks](absl::StatusOr<TxnResult> result) {
                     if (absl::IsInvalidArgument(result.status())) ++callbacks;
                   });
  EXPECT_EQ(callbacks.load(), 1);
}

// Goal: destroying the client with calls in flight ends each with exactly one callback.
TEST(Client, DestructionFinishesCallsInFlight) {
  ClientOptions options;
  options.endpoints = {"127.0.0.1:" + std::to_string(testing::FreeLoopbackPort().value())};
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Client> client, Client::Create(options));
  std::atomic<int> callbacks{0};
  for (int i = 0; i < 50; ++i) {
    client->PutAsync("k", "v", {.timeout = absl::Seconds(30)},
                     [&callbacks](absl::Status) { ++callbacks; });
  }
  client.reset();
  EXPECT_EQ(callbacks.load(), 50);
}

// Goal: a key, value or request over stead's limits is refused with InvalidArgument
// naming the limit before anything is sent: it could never succeed, on any member.
// Method: no member listens, so a request that were sent would wait out its 30 s
// deadline and end Unavailable.
TEST(Client, OversizedRequestsAreRefusedBeforeSending) {
  ClientOptions options;
  options.endpoints = {"127.0.0.1:" + std::to_string(testing::FreeLoopbackPort().value())};
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Client> client, Client::Create(options));
  const CallOptions call = {.timeout = absl::Seconds(30)};
  const std::string long_key(8 * 1024 + 1, 'k');
  const std::string value_over(1024 * 1024 + 1, 'v');
  const absl::Time start = absl::Now();
  EXPECT_THAT(client->Put(long_key, "v", call),
              testing::StatusIs(absl::StatusCode::kInvalidArgument,
                                "key is 8193 bytes, over the max_key_bytes limit of 8192 bytes"));
  EXPECT_THAT(client->Put("k", value_over, call),
              testing::StatusIs(absl::StatusCode::kInvalidArgument,
                                "value is 1048577 bytes, over the max_value_bytes limit of "
                                "1048576 bytes"));
  EXPECT_THAT(client->Put("k", std::string(10'000'000, 'v'), call),
              testing::StatusIs(absl::StatusCode::kInvalidArgument, "value is 10000000 bytes"));
  EXPECT_THAT(client->Delete(long_key, call),
              testing::StatusIs(absl::StatusCode::kInvalidArgument, "max_key_bytes"));
  EXPECT_THAT(client->Get(long_key, {.timeout = absl::Seconds(30)}).status(),
              testing::StatusIs(absl::StatusCode::kInvalidArgument, "max_key_bytes"));
  EXPECT_THAT(client->Txn({.success = {TxnOp::Put("a", "1"), TxnOp::Put("b", value_over)}}, call),
              testing::StatusIs(absl::StatusCode::kInvalidArgument,
                                "txn success[1]: put: value is 1048577 bytes"));
  EXPECT_THAT(
      client->Txn({.compare = {Compare::Value("k", Compare::Result::kEqual, value_over)}}, call),
      testing::StatusIs(absl::StatusCode::kInvalidArgument, "txn compare[0]: value"));
  const std::string half(900 * 1024, 'v');
  EXPECT_THAT(client->Txn({.success = {TxnOp::Put("a", half), TxnOp::Put("b", half)}}, call),
              testing::StatusIs(absl::StatusCode::kInvalidArgument,
                                "over the max_request_bytes limit of 1572864 bytes"));
  EXPECT_LT(absl::Now() - start, absl::Seconds(10)) << "nothing waited for an answer";
}

}  // namespace
}  // namespace stead
