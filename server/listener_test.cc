// The admission policy shared by the three ports: which connection a full port
// evicts, how a ConnectionSet admits, trusts and refuses, the connection deadline, the
// throttled event log and the connection caps sized from the open file limit.
#include "server/listener.h"

#include <sys/resource.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/log_capture.h"

namespace stead::server {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using ::stead::testing::CapturingLogSink;
using ::testing::HasSubstr;
using ::testing::SizeIs;

asio::ip::address Address(const char* text) { return asio::ip::make_address(text); }

TEST(ChooseEviction, TakesTheLongestIdleOfTheSourceHoldingTheMost) {
  const Clock::time_point t0 = Clock::time_point() + std::chrono::hours(1);
  auto at = [&](int seconds) { return t0 + std::chrono::seconds(seconds); };
  const struct {
    const char* name;
    std::vector<EvictionCandidate> candidates;
    std::optional<size_t> want;
  } cases[] = {
      {"empty", {}, std::nullopt},
      {"all busy",
       {{Address("10.0.0.1"), true, at(0)}, {Address("10.0.0.2"), true, at(1)}},
       std::nullopt},
      {"one source: longest idle",
       {{Address("10.0.0.1"), false, at(5)},
        {Address("10.0.0.1"), false, at(2)},
        {Address("10.0.0.1"), false, at(9)}},
       1},
      {"the source with most connections, though another idles longer",
       {{Address("10.0.0.9"), false, at(0)},
        {Address("10.0.0.1"), false, at(7)},
        {Address("10.0.0.1"), false, at(4)}},
       2},
      {"busy connections count for their source but are never taken",
       {{Address("10.0.0.1"), true, at(0)},
        {Address("10.0.0.1"), true, at(0)},
        {Address("10.0.0.1"), false, at(8)},
        {Address("10.0.0.2"), false, at(1)},
        {Address("10.0.0.2"), false, at(2)}},
       2},
      {"a source with only busy connections is skipped",
       {{Address("10.0.0.1"), true, at(0)},
        {Address("10.0.0.1"), true, at(0)},
        {Address("10.0.0.1"), true, at(0)},
        {Address("10.0.0.2"), false, at(6)}},
       3},
      {"equal counts: the longer idle",
       {{Address("10.0.0.1"), false, at(6)}, {Address("10.0.0.2"), false, at(3)}},
       1},
      {"IPv6 and IPv4 sources are told apart",
       {{Address("::1"), false, at(1)},
        {Address("127.0.0.1"), false, at(3)},
        {Address("127.0.0.1"), false, at(2)}},
       2},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_EQ(ChooseEviction(c.candidates), c.want);
  }
}

// A connection as ConnectionSet::Admit needs one.
struct FakeConnection {
  FakeConnection(const char* address, uint16_t port) : remote_(Address(address), port) {}
  const tcp::endpoint& remote() const { return remote_; }
  const ConnectionActivity& activity() const { return work; }
  void Close() { closed = true; }

  tcp::endpoint remote_;
  ConnectionActivity work;
  bool closed = false;
};

// Goal: a full set evicts an idle connection for a new one, refuses only when all are
// busy, and trusted connections neither count nor get evicted.
TEST(ConnectionSet, AdmitEvictsTheIdleAndTrustedConnectionsHaveTheirOwnSlots) {
  auto sink = std::make_shared<CapturingLogSink>();
  ConnectionEventLog log(Logger(sink, LogLevel::kInfo));
  ConnectionSet<FakeConnection> set(/*max_connections=*/3, /*max_trusted=*/1, &log);
  std::vector<std::shared_ptr<FakeConnection>> connections;
  for (uint16_t port = 1; port <= 3; ++port) {
    connections.push_back(std::make_shared<FakeConnection>("10.0.0.1", port));
    ASSERT_TRUE(set.Admit(connections.back()));
  }
  for (const auto& connection : connections) connection->work.Begin();
  // Full of busy connections: refused.
  auto refused = std::make_shared<FakeConnection>("10.0.0.2", 1);
  EXPECT_FALSE(set.Admit(refused));
  EXPECT_EQ(set.size(), 3u);
  ASSERT_THAT(sink->lines(), SizeIs(1));
  EXPECT_THAT(sink->lines()[0], HasSubstr("refused a connection from 10.0.0.2"));

  // One turns idle: the next one takes its place.
  connections[1]->work.End();
  auto admitted = std::make_shared<FakeConnection>("10.0.0.2", 2);
  EXPECT_TRUE(set.Admit(admitted));
  EXPECT_TRUE(connections[1]->closed);
  EXPECT_FALSE(connections[0]->closed);
  EXPECT_EQ(set.size(), 3u);

  // A trusted connection frees its slot and is never evicted.
  ASSERT_TRUE(set.Trust(connections[0].get()));
  connections[0]->work.End();
  EXPECT_EQ(set.size(), 2u);
  EXPECT_EQ(set.trusted_size(), 1u);
  EXPECT_FALSE(set.Trust(connections[2].get())) << "only one trusted slot";
  auto fourth = std::make_shared<FakeConnection>("10.0.0.3", 1);
  EXPECT_TRUE(set.Admit(fourth));
  EXPECT_EQ(set.size(), 3u);
  auto fifth = std::make_shared<FakeConnection>("10.0.0.3", 2);
  EXPECT_TRUE(set.Admit(fifth));  // evicts an idle untrusted one, never connections[0]
  EXPECT_FALSE(connections[0]->closed);
  EXPECT_EQ(set.Live().size(), 4u);

  set.Remove(connections[0].get());
  EXPECT_EQ(set.trusted_size(), 0u);
}

// Goal: one source flooding a port evicts its own connections, not the others'.
TEST(ConnectionSet, AFloodFromOneSourceEvictsOnlyItsOwnConnections) {
  ConnectionEventLog log(Logger(std::make_shared<CapturingLogSink>(), LogLevel::kInfo));
  ConnectionSet<FakeConnection> set(/*max_connections=*/10, 0, &log);
  auto client = std::make_shared<FakeConnection>("10.0.0.7", 1);
  ASSERT_TRUE(set.Admit(client));  // idle, and idle longest from now on
  std::vector<std::shared_ptr<FakeConnection>> flood;
  for (uint16_t port = 1; port <= 100; ++port) {
    flood.push_back(std::make_shared<FakeConnection>("10.6.6.6", port));
    ASSERT_TRUE(set.Admit(flood.back()));
  }
  EXPECT_FALSE(client->closed);
  EXPECT_EQ(set.size(), 10u);
  int evicted = 0;
  for (const auto& connection : flood) evicted += connection->closed;
  EXPECT_EQ(evicted, 91);
}

// Goal: however many connections are refused or evicted, the log gets one line per
// interval and level; a flood of routine closes does not hide a warning.
TEST(ConnectionEventLog, AFloodIsOneLinePerIntervalAndLevel) {
  auto sink = std::make_shared<CapturingLogSink>();
  ConnectionEventLog log(Logger(sink, LogLevel::kInfo), absl::Hours(1));
  for (int i = 0; i < 1000; ++i) log.Log(LogLevel::kInfo, "closed an idle connection");
  log.Log(LogLevel::kDebug, "below the level: neither logged nor counted");
  for (int i = 0; i < 1000; ++i) log.Log(LogLevel::kWarning, "refused a connection");
  ASSERT_THAT(sink->lines(), SizeIs(2));
  EXPECT_THAT(sink->lines()[0], HasSubstr("closed an idle connection"));
  EXPECT_THAT(sink->lines()[1], HasSubstr("refused a connection"));

  ConnectionEventLog fast(Logger(sink, LogLevel::kInfo), absl::ZeroDuration());
  fast.Log(LogLevel::kInfo, "first");
  fast.Log(LogLevel::kInfo, "second");
  ASSERT_THAT(sink->lines(), SizeIs(4));
  EXPECT_FALSE(absl::StrContains(sink->lines()[3], "more connection events"));
}

TEST(DefaultConnectionCaps, KeepAReserveAndGiveClientsTheRest) {
  const struct {
    const char* name;
    uint64_t limit;
  } cases[] = {{"tiny", 256}, {"default", 1024}, {"raised", 20000}, {"container", 1048576},
               {"unlimited", UINT64_MAX}};
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    const ConnectionCaps caps = DefaultConnectionCaps(c.limit);
    EXPECT_GE(caps.client, 16u);
    EXPECT_LE(caps.client, kMaxDefaultClientConnections);
    EXPECT_GE(caps.http, 4u);
    EXPECT_GE(caps.peer_unauthenticated, 4u);
    EXPECT_GE(caps.peer_authenticated, 4u);
    if (c.limit >= 1024) {
      const uint64_t total =
          caps.client + caps.http + caps.peer_unauthenticated + caps.peer_authenticated;
      EXPECT_LE(total, c.limit - c.limit / 4) << "a quarter stays for files and outbound";
    }
  }
  EXPECT_EQ(DefaultConnectionCaps(20000).http, 64u);
  EXPECT_GT(DefaultConnectionCaps(20000).client, 10000u);
  EXPECT_EQ(DefaultConnectionCaps(1048576).client, kMaxDefaultClientConnections);
}

TEST(RaiseOpenFileLimit, RaisesTheSoftLimitToTheHardOne) {
  rlimit before{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &before), 0);
  absl::StatusOr<uint64_t> raised = RaiseOpenFileLimit();
  ASSERT_TRUE(raised.ok()) << raised.status();
  rlimit after{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &after), 0);
  EXPECT_EQ(after.rlim_cur, before.rlim_max);
  EXPECT_EQ(*raised, OpenFileLimit());
}

// Goal: the deadline fires once the latest one passes, not at an earlier one that was
// moved later, and never after Clear.
TEST(ConnectionDeadline, FiresAtTheLatestDeadlineOnly) {
  asio::io_context io;
  auto strand = asio::make_strand(io);
  struct Owner {
    explicit Owner(const asio::any_io_executor& executor) : deadline(executor) {}
    ConnectionDeadline deadline;
    int fired = 0;
    Clock::time_point fired_at;
  };
  auto owner = std::make_shared<Owner>(strand);
  Clock::time_point latest;
  asio::post(strand, [&] {
    owner->deadline.Start(owner, [&] {
      ++owner->fired;
      owner->fired_at = Clock::now();
    });
    owner->deadline.SetAfter(absl::Milliseconds(20));
    latest = Clock::now() + std::chrono::milliseconds(150);
    owner->deadline.Set(latest);  // moved later: 20 ms is not it
  });
  io.run_for(std::chrono::seconds(5));
  EXPECT_EQ(owner->fired, 1);
  EXPECT_GE(owner->fired_at, latest);

  io.restart();
  asio::post(strand, [&] {
    owner->deadline.SetAfter(absl::Milliseconds(10));
    owner->deadline.Clear();
  });
  io.run_for(std::chrono::milliseconds(200));
  EXPECT_EQ(owner->fired, 1) << "cleared deadlines do not fire";
  asio::post(strand, [&] { owner->deadline.Stop(); });
  io.run_for(std::chrono::milliseconds(50));
}

}  // namespace
}  // namespace stead::server
