// PeerTransport over real loopback sockets: delivery, the hello check, garbage input,
// reconnects and the queue limit. Each test runs its own io_context on two threads.
#include "server/peer_transport.h"

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "base/mutex.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace stead::server {
namespace {

namespace asio = boost::asio;

constexpr uint64_t kCluster = 0x5eadull;

// Collects log lines so tests can assert what was logged.
class LogCapture final : public LogSink {
 public:
  void Write(const LogRecord& record) override {
    MutexLock lock(&mu_);
    lines_.push_back(FormatLogRecord(record, /*with_time=*/false));
  }
  bool Contains(absl::string_view text) {
    MutexLock lock(&mu_);
    for (const std::string& line : lines_) {
      if (absl::StrContains(line, text)) return true;
    }
    return false;
  }

 private:
  Mutex mu_;
  std::vector<std::string> lines_ ABSL_GUARDED_BY(mu_);
};

// Everything a transport under test delivers or reports.
struct Inbox {
  Mutex mu;
  CondVar changed;
  std::vector<pb::Message> messages ABSL_GUARDED_BY(mu);
  std::vector<raft::NodeId> unreachable ABSL_GUARDED_BY(mu);

  // Waits (bounded) until `done` holds; returns whether it did.
  template <typename Predicate>
  bool WaitFor(Predicate done, absl::Duration timeout = absl::Seconds(10)) {
    const absl::Time deadline = absl::Now() + timeout;
    MutexLock lock(&mu);
    while (!done()) {
      const absl::Duration left = deadline - absl::Now();
      if (left <= absl::ZeroDuration()) return false;
      changed.WaitWithTimeout(&mu, std::min(left, absl::Milliseconds(50)));
    }
    return true;
  }
  size_t message_count() {
    MutexLock lock(&mu);
    return messages.size();
  }
};

class PeerTransportTest : public ::testing::Test {
 protected:
  PeerTransportTest() : work_(asio::make_work_guard(io_)) {
    for (int i = 0; i < 2; ++i) threads_.emplace_back([this] { io_.run(); });
  }
  ~PeerTransportTest() override {
    // The documented shutdown: stop the transports, then let the io_context run out
    // of work (every coroutine unwinds; nothing is leaked).
    for (auto& transport : transports_) transport->Stop();
    work_.reset();
    for (auto& thread : threads_) thread.join();
  }

  PeerTransport* Start(raft::NodeId id, Inbox* inbox, uint64_t cluster = kCluster,
                       size_t max_queued_bytes = size_t{32} << 20, uint16_t port = 0) {
    PeerTransportOptions options;
    options.cluster_id = cluster;
    options.node_id = id;
    options.node_name = "stead-" + std::to_string(id);
    options.max_queued_bytes_per_peer = max_queued_bytes;
    options.min_reconnect_backoff = absl::Milliseconds(10);
    options.max_reconnect_backoff = absl::Milliseconds(100);
    auto transport = std::make_unique<PeerTransport>(
        io_, options, Logger(log_, LogLevel::kInfo).WithContext("node", options.node_name),
        [inbox](pb::Message message) {
          MutexLock lock(&inbox->mu);
          inbox->messages.push_back(std::move(message));
          inbox->changed.SignalAll();
        },
        [inbox](raft::NodeId peer) {
          MutexLock lock(&inbox->mu);
          inbox->unreachable.push_back(peer);
          inbox->changed.SignalAll();
        });
    EXPECT_OK(transport->Listen("127.0.0.1", port));
    transports_.push_back(std::move(transport));
    return transports_.back().get();
  }

  static pb::Message Heartbeat(raft::NodeId from, raft::NodeId to, uint64_t commit) {
    pb::Message message;
    message.set_type(pb::MESSAGE_TYPE_HEARTBEAT);
    message.set_from(from);
    message.set_to(to);
    message.set_term(1);
    message.set_commit(commit);
    return message;
  }

  // An inbox that outlives every transport (the handlers write into it until Stop).
  Inbox& NewInbox() {
    inboxes_.push_back(std::make_unique<Inbox>());
    return *inboxes_.back();
  }

  std::vector<std::unique_ptr<Inbox>> inboxes_;  // destroyed after the transports stop
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  std::vector<std::thread> threads_;
  std::shared_ptr<LogCapture> log_ = std::make_shared<LogCapture>();
  std::vector<std::unique_ptr<PeerTransport>> transports_;
};

TEST_F(PeerTransportTest, DeliversMessagesInOrderToAPeerNamedByHost) {
  Inbox& inbox1 = NewInbox();
  Inbox& inbox2 = NewInbox();
  PeerTransport* one = Start(1, &inbox1);
  PeerTransport* two = Start(2, &inbox2);
  one->SetPeer(2, "localhost", two->listen_port());  // a name, resolved per attempt
  for (uint64_t i = 1; i <= 200; ++i) one->Send(Heartbeat(1, 2, i));
  ASSERT_TRUE(inbox2.WaitFor([&] { return inbox2.messages.size() >= 200; }));
  MutexLock lock(&inbox2.mu);
  for (uint64_t i = 0; i < 200; ++i) {
    EXPECT_EQ(inbox2.messages[i].commit(), i + 1);
    EXPECT_EQ(inbox2.messages[i].from(), 1u);
  }
  EXPECT_TRUE(one->Peers().at(2).connected);
}

TEST_F(PeerTransportTest, RefusesAPeerOfAnotherClusterAndKeepsServingOthers) {
  Inbox& inbox1 = NewInbox();
  Inbox& inbox2 = NewInbox();
  Inbox& stranger_inbox = NewInbox();
  PeerTransport* one = Start(1, &inbox1);
  PeerTransport* two = Start(2, &inbox2);
  PeerTransport* stranger = Start(1, &stranger_inbox, /*cluster=*/0xbad);
  stranger->SetPeer(2, "127.0.0.1", two->listen_port());
  stranger->Send(Heartbeat(1, 2, 99));
  ASSERT_TRUE(inbox2.WaitFor([&] { return log_->Contains("belongs to cluster bad"); }));
  ASSERT_TRUE(stranger_inbox.WaitFor([&] { return stranger->Peers().at(2).connect_failures > 0; }));
  EXPECT_TRUE(log_->Contains("refused by the peer"));

  one->SetPeer(2, "127.0.0.1", two->listen_port());
  one->Send(Heartbeat(1, 2, 7));
  ASSERT_TRUE(inbox2.WaitFor([&] { return !inbox2.messages.empty(); }));
  MutexLock lock(&inbox2.mu);
  ASSERT_EQ(inbox2.messages.size(), 1u) << "the stranger's message must not be delivered";
  EXPECT_EQ(inbox2.messages[0].commit(), 7u);
}

TEST_F(PeerTransportTest, RefusesAHelloMeantForAnotherNode) {
  Inbox& inbox1 = NewInbox();
  Inbox& inbox2 = NewInbox();
  PeerTransport* one = Start(1, &inbox1);
  PeerTransport* two = Start(2, &inbox2);
  one->SetPeer(3, "127.0.0.1", two->listen_port());  // stale address: node 2 answers
  one->Send(Heartbeat(1, 3, 1));
  ASSERT_TRUE(inbox2.WaitFor([&] { return log_->Contains("meant to reach node 3"); }));
  EXPECT_EQ(inbox2.message_count(), 0u);
}

TEST_F(PeerTransportTest, GarbageFromARawSocketClosesOnlyThatConnection) {
  Inbox& inbox1 = NewInbox();
  Inbox& inbox2 = NewInbox();
  PeerTransport* one = Start(1, &inbox1);
  PeerTransport* two = Start(2, &inbox2);
  {
    asio::io_context client_io;
    asio::ip::tcp::socket raw(client_io);
    boost::system::error_code ec;
    raw.connect({asio::ip::make_address("127.0.0.1"), two->listen_port()}, ec);
    ASSERT_FALSE(ec) << ec.message();
    const std::string garbage = "\x7f\xff\xff\xffGET / HTTP/1.1\r\n\r\n";
    asio::write(raw, asio::buffer(garbage), ec);
    ASSERT_TRUE(inbox2.WaitFor([&] { return log_->Contains("exceeds the limit"); }));
  }
  one->SetPeer(2, "127.0.0.1", two->listen_port());
  one->Send(Heartbeat(1, 2, 5));
  ASSERT_TRUE(inbox2.WaitFor([&] { return inbox2.messages.size() == 1; }));
}

TEST_F(PeerTransportTest, ReconnectsWhenThePeerComesBack) {
  Inbox& inbox1 = NewInbox();
  Inbox& inbox2 = NewInbox();
  Inbox& inbox2_again = NewInbox();
  PeerTransport* one = Start(1, &inbox1);
  PeerTransport* two = Start(2, &inbox2);
  const uint16_t port = two->listen_port();
  one->SetPeer(2, "127.0.0.1", port);
  one->Send(Heartbeat(1, 2, 1));
  ASSERT_TRUE(inbox2.WaitFor([&] { return inbox2.messages.size() == 1; }));

  two->Stop();  // the peer goes away; sends fail and are reported
  bool reported = false;
  for (int i = 0; i < 100 && !reported; ++i) {
    one->Send(Heartbeat(1, 2, 2));
    reported = inbox1.WaitFor([&] { return !inbox1.unreachable.empty(); }, absl::Milliseconds(100));
  }
  EXPECT_TRUE(reported);

  Start(2, &inbox2_again, kCluster, size_t{32} << 20, port);  // restarted on the same port
  // Keep sending (as Raft's heartbeats would) until one arrives at the new process.
  for (int i = 0; i < 100 && inbox2_again.message_count() == 0; ++i) {
    one->Send(Heartbeat(1, 2, 3));
    inbox2_again.WaitFor([&] { return !inbox2_again.messages.empty(); }, absl::Milliseconds(100));
  }
  ASSERT_GT(inbox2_again.message_count(), 0u);
  EXPECT_GE(one->Peers().at(2).connects, 2u);
}

TEST_F(PeerTransportTest, DropsBeyondTheQueueLimitAndReportsUnreachable) {
  Inbox& inbox1 = NewInbox();
  PeerTransport* one = Start(1, &inbox1, kCluster, /*max_queued_bytes=*/4096);
  one->SetPeer(2, "127.0.0.1", 1);  // nothing listens on port 1
  pb::Message big = Heartbeat(1, 2, 1);
  big.set_context(std::string(1000, 'x'));
  for (int i = 0; i < 20; ++i) one->Send(big);
  ASSERT_TRUE(inbox1.WaitFor([&] { return !inbox1.unreachable.empty(); }));
  // The queue holds four of the 1 KB messages; the rest were dropped at once.
  EXPECT_GT(one->Peers().at(2).messages_dropped, 0u);
  EXPECT_EQ(one->Peers().at(2).messages_sent, 0u);
}

}  // namespace
}  // namespace stead::server
