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

}  // namespace
}  // namespace stead
