// PeerTransport over real loopback sockets: delivery, the hello check, garbage input,
// reconnects, the queue limit, and snapshot transfers into a real SnapshotStore. Each
// test runs its own io_context on two threads.
#include "server/peer_transport.h"

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <future>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/mutex.h"
#include "gtest/gtest.h"
#include "server/snapshot_store.h"
#include "storage/checkpoint.h"
#include "storage/checkpoint_files.h"
#include "storage/state_machine_testing.h"
#include "tests/testing/status_matchers.h"
#include "wire/stream.h"
#include "tests/testing/test_certificates.h"

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
    options.snapshot_chunk_bytes = 64 * 1024;
    options.snapshot_bytes_per_second = snapshot_bytes_per_second_;
    options.max_inbound_connections = max_inbound_connections_;
    options.handshake_timeout = handshake_timeout_;
    if (tls_) {
      options.tls_server = tls_->server;
      options.tls_client = tls_->client;
      options.advertised_host = tls_->host;
    }
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

  // Transport 1 connected to transport 2, whose received snapshots go to a
  // SnapshotStore in `follower_dir` (`store`; the sink is left unset without it).
  struct SnapshotLink {
    std::unique_ptr<SnapshotStore> store;
    PeerTransport* one = nullptr;
    PeerTransport* two = nullptr;
    Inbox* inbox = nullptr;  // what transport 2 delivers
  };
  SnapshotLink LinkForSnapshots(const std::string& follower_dir, bool with_sink = true) {
    SnapshotLink link;
    link.store = SnapshotStore::Open(follower_dir, Logger(LogLevel::kWarning)).value();
    link.inbox = &NewInbox();
    link.one = Start(1, &NewInbox());
    link.two = Start(2, link.inbox);
    if (with_sink) link.two->SetSnapshotSink(link.store.get());
    link.one->SetPeer(2, "127.0.0.1", link.two->listen_port());
    return link;
  }

  // An inbox that outlives every transport (the handlers write into it until Stop).
  Inbox& NewInbox() {
    inboxes_.push_back(std::make_unique<Inbox>());
    return *inboxes_.back();
  }

  // A member's TLS identity: its certificate of `ca` (naming `dns_names` and
  // `ips`), served and presented, trusting `ca` (or `trusted`), announcing 127.0.0.1.
  struct TlsIdentity {
    std::shared_ptr<wire::TlsContextProvider> server;
    std::shared_ptr<wire::TlsContextProvider> client;
    std::string host;
  };
  TlsIdentity MakeTlsIdentity(testing::TestCertificateAuthority& ca, const std::string& name,
                              std::vector<std::string> dns_names, std::vector<std::string> ips,
                              const testing::TestCertificateAuthority* trusted = nullptr) {
    const testing::TestPemFiles files = testing::WritePemFiles(
        tls_dir_, name,
        ca.Issue({.common_name = name, .dns_names = std::move(dns_names),
                  .ip_addresses = std::move(ips)}),
        ca);
    wire::TlsOptions options = {.cert_file = files.cert_file,
                                .key_file = files.key_file,
                                .trusted_ca_file = files.ca_file,
                                .require_peer_certificate = true,
                                .names = wire::TlsSettingNames::ForPort("peer")};
    if (trusted != nullptr) {  // trusts another CA than its certificate's
      options.trusted_ca_file = tls_dir_ + "/" + name + "-trusted.crt";
      testing::ReplaceFile(options.trusted_ca_file, trusted->certificate_pem());
    }
    TlsIdentity identity;
    identity.server = wire::TlsContextProvider::Create(options, wire::TlsRole::kServer,
                                                       Logger(LogLevel::kWarning))
                          .value();
    options.require_peer_certificate = false;
    identity.client = wire::TlsContextProvider::Create(options, wire::TlsRole::kClient,
                                                       Logger(LogLevel::kWarning))
                          .value();
    identity.host = "127.0.0.1";
    return identity;
  }

  // For transports started after they are set.
  std::optional<TlsIdentity> tls_;
  std::string tls_dir_ = testing::MakeTempDir();
  uint64_t snapshot_bytes_per_second_ = 0;
  size_t max_inbound_connections_ = 256;
  absl::Duration handshake_timeout_ = absl::Seconds(5);
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
  // The stranger learns the peer's cluster; one peer cannot tell which of the two is
  // misplaced (the node decides from all its peers), so no advice to delete volumes.
  EXPECT_EQ(stranger->Peers().at(2).other_cluster_id, kCluster);
  EXPECT_TRUE(log_->Contains("answers from cluster"));
  EXPECT_FALSE(log_->Contains(kStaleVolumesAdvice));

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

TEST_F(PeerTransportTest, APlainPortNamesATlsClientHello) {
  Inbox& inbox = NewInbox();
  PeerTransport* plain = Start(2, &inbox);
  asio::io_context client_io;
  asio::ip::tcp::socket raw(client_io);
  boost::system::error_code ec;
  raw.connect({asio::ip::make_address("127.0.0.1"), plain->listen_port()}, ec);
  ASSERT_FALSE(ec) << ec.message();
  // The first bytes of every TLS ClientHello: a handshake record of TLS 1.0 framing.
  const std::string client_hello("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11);
  asio::write(raw, asio::buffer(client_hello), ec);
  ASSERT_TRUE(inbox.WaitFor(
      [&] { return log_->Contains(std::string(wire::kTlsOnPlainPortMessage)); }));
  EXPECT_FALSE(log_->Contains("exceeds the limit"));
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

// Goal: silent sockets filling the peer port neither keep a member's peer out nor
// disconnect one that said hello. Method: a port capped at 4 unauthenticated
// connections with a hello timeout longer than the test; 8 silent sockets, then a
// peer; then 8 more silent sockets while that peer stays connected.
TEST_F(PeerTransportTest, SilentSocketsNeitherKeepOutNorDisplaceAPeer) {
  max_inbound_connections_ = 4;
  handshake_timeout_ = absl::Seconds(60);
  Inbox& inbox1 = NewInbox();
  Inbox& inbox2 = NewInbox();
  PeerTransport* one = Start(1, &inbox1);
  PeerTransport* two = Start(2, &inbox2);
  asio::io_context client_io;
  std::vector<asio::ip::tcp::socket> silent;
  auto open_silent = [&](int count) {
    for (int i = 0; i < count; ++i) {
      silent.emplace_back(client_io);
      boost::system::error_code ec;
      silent.back().connect({asio::ip::make_address("127.0.0.1"), two->listen_port()}, ec);
      ASSERT_FALSE(ec) << ec.message();
    }
  };
  open_silent(8);
  one->SetPeer(2, "127.0.0.1", two->listen_port());
  one->Send(Heartbeat(1, 2, 1));
  ASSERT_TRUE(inbox2.WaitFor([&] { return inbox2.messages.size() == 1; }));

  open_silent(8);
  one->Send(Heartbeat(1, 2, 2));
  ASSERT_TRUE(inbox2.WaitFor([&] { return inbox2.messages.size() == 2; }));
  EXPECT_EQ(one->Peers().at(2).connects, 1u) << "the peer's connection was closed";
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

namespace snapshots {

using ::stead::testing::StatusIs;
using storage::testing::TempDir;

// A checkpoint directory in `dir` claiming (index, term): `files` files of `bytes`
// deterministic bytes each, and their manifest. Returns its total size.
uint64_t MakeCheckpoint(const std::string& dir, raft::Index index, raft::Term term, int files,
                        size_t bytes) {
  std::filesystem::create_directories(dir);
  for (int f = 0; f < files; ++f) {
    std::string data(bytes, '\0');
    for (size_t i = 0; i < bytes; ++i) data[i] = static_cast<char>((i * 31 + f * 7 + index) % 251);
    EXPECT_OK(storage::files::WriteFileAtomically(absl::StrCat(dir, "/", f, ".sst"), data));
  }
  pb::SnapshotManifest base;
  base.set_format_version(storage::kCheckpointFormatVersion);
  base.set_cluster_id(kCluster);
  base.mutable_raft()->set_index(index);
  base.mutable_raft()->set_term(term);
  absl::StatusOr<pb::SnapshotManifest> manifest = storage::DescribeCheckpointFiles(dir, base);
  EXPECT_OK(manifest.status());
  EXPECT_OK(storage::WriteManifest(dir, *manifest));
  return manifest->total_bytes();
}

pb::Message SnapshotMessage(raft::NodeId from, raft::NodeId to, raft::Index index, raft::Term term) {
  pb::Message message;
  message.set_type(pb::MESSAGE_TYPE_SNAPSHOT);
  message.set_from(from);
  message.set_to(to);
  message.set_term(term);
  message.mutable_snapshot()->set_index(index);
  message.mutable_snapshot()->set_term(term);
  return message;
}

// Sends and waits for the outcome.
absl::Status SendSnapshot(PeerTransport* from, pb::Message message, const std::string& dir) {
  auto outcome = std::make_shared<std::promise<absl::Status>>();
  from->SendSnapshot(std::move(message), dir,
                     [outcome](absl::Status status) { outcome->set_value(std::move(status)); });
  std::future<absl::Status> result = outcome->get_future();
  if (result.wait_for(std::chrono::seconds(30)) != std::future_status::ready) {
    return absl::DeadlineExceededError("no outcome within 30 s");
  }
  return result.get();
}

// Passes everything on to a SnapshotStore, but fails the first transfer after `chunks`
// chunks, as a connection breaking in the middle would.
class BreakingSink final : public SnapshotSink {
 public:
  BreakingSink(SnapshotStore* store, uint64_t chunks) : store_(store), break_after_(chunks) {}
  absl::StatusOr<Transfer> BeginTransfer(const pb::SnapshotMetadata& snapshot,
                                         uint32_t manifest_crc32c) override {
    return store_->BeginTransfer(snapshot, manifest_crc32c);
  }
  absl::Status WriteChunk(uint64_t transfer, const pb::SnapshotChunk& chunk,
                          bool* complete) override {
    if (written_.fetch_add(1) == break_after_) return absl::UnavailableError("connection broke");
    return store_->WriteChunk(transfer, chunk, complete);
  }
  absl::Status FinishTransfer(uint64_t transfer) override { return store_->FinishTransfer(transfer); }

 private:
  SnapshotStore* const store_;
  const uint64_t break_after_;
  std::atomic<uint64_t> written_{0};
};

TEST_F(PeerTransportTest, StreamsASnapshotThatTheFollowerStagesVerifiesAndDelivers) {
  TempDir dir;
  const uint64_t bytes = MakeCheckpoint(dir.Sub("checkpoint"), 42, 3, 5, 300 * 1024);
  SnapshotLink link = LinkForSnapshots(dir.Sub("follower"));
  PeerTransport* one = link.one;
  PeerTransport* two = link.two;
  Inbox& inbox2 = *link.inbox;
  ASSERT_OK(SendSnapshot(one, SnapshotMessage(1, 2, 42, 3), dir.Sub("checkpoint")));
  ASSERT_TRUE(inbox2.WaitFor([&] { return !inbox2.messages.empty(); }));
  {
    MutexLock lock(&inbox2.mu);
    EXPECT_EQ(inbox2.messages[0].type(), pb::MESSAGE_TYPE_SNAPSHOT);
    EXPECT_EQ(inbox2.messages[0].snapshot().index(), 42u);
  }
  pb::SnapshotMetadata snapshot;
  snapshot.set_index(42);
  snapshot.set_term(3);
  ASSERT_OK_AND_ASSIGN(SnapshotStore::Pin received, link.store->PinReceived(snapshot));
  ASSERT_OK_AND_ASSIGN(pb::SnapshotManifest manifest, storage::VerifyCheckpoint(*received));
  EXPECT_EQ(manifest.total_bytes(), bytes);
  EXPECT_EQ(one->SnapshotStats().sends_completed, 1u);
  EXPECT_EQ(two->SnapshotStats().receives_completed, 1u);
  // The files once, plus the manifest.
  EXPECT_EQ(one->SnapshotStats().bytes_sent, two->SnapshotStats().bytes_received);
  EXPECT_GT(one->SnapshotStats().bytes_sent, bytes);
  EXPECT_LT(one->SnapshotStats().bytes_sent, bytes + 4096);
}

TEST_F(PeerTransportTest, ABrokenSnapshotTransferResumesWhereItStopped) {
  TempDir dir;
  const uint64_t bytes = MakeCheckpoint(dir.Sub("checkpoint"), 42, 3, 4, 256 * 1024);
  SnapshotLink link = LinkForSnapshots(dir.Sub("follower"), /*with_sink=*/false);
  PeerTransport* one = link.one;
  PeerTransport* two = link.two;
  Inbox& inbox2 = *link.inbox;
  BreakingSink sink(link.store.get(), /*chunks=*/10);  // the manifest and 9 chunks of 64 KiB
  two->SetSnapshotSink(&sink);

  // Aborted with the follower's reason, or Unavailable if the sender was still writing
  // when the follower closed.
  EXPECT_FALSE(SendSnapshot(one, SnapshotMessage(1, 2, 42, 3), dir.Sub("checkpoint")).ok());
  EXPECT_EQ(inbox2.message_count(), 0u) << "nothing reaches Raft before the whole checkpoint";

  ASSERT_OK(SendSnapshot(one, SnapshotMessage(1, 2, 42, 3), dir.Sub("checkpoint")));
  ASSERT_TRUE(inbox2.WaitFor([&] { return inbox2.messages.size() == 1; }));
  const SnapshotTransferStats stats = two->SnapshotStats();
  EXPECT_EQ(stats.receives_resumed, 1u);
  EXPECT_EQ(stats.receives_failed, 1u);
  EXPECT_EQ(stats.receives_completed, 1u);
  EXPECT_LT(stats.bytes_received, bytes + bytes / 2) << "the second transfer sent only the rest";
  pb::SnapshotMetadata snapshot;
  snapshot.set_index(42);
  snapshot.set_term(3);
  ASSERT_OK_AND_ASSIGN(SnapshotStore::Pin received, link.store->PinReceived(snapshot));
  EXPECT_OK(storage::VerifyCheckpoint(*received).status());
}

TEST_F(PeerTransportTest, ACheckpointThatIsNotTheMessagesSnapshotIsNotDelivered) {
  TempDir dir;
  MakeCheckpoint(dir.Sub("checkpoint"), 42, 3, 2, 1024);
  SnapshotLink link = LinkForSnapshots(dir.Sub("follower"), /*with_sink=*/false);
  EXPECT_THAT(SendSnapshot(link.one, SnapshotMessage(1, 2, 42, 3), dir.Sub("checkpoint")),
              StatusIs(absl::StatusCode::kUnavailable, "does not take snapshots"));

  link.two->SetSnapshotSink(link.store.get());
  EXPECT_THAT(SendSnapshot(link.one, SnapshotMessage(1, 2, 41, 3), dir.Sub("checkpoint")),
              StatusIs(absl::StatusCode::kAborted, "the SNAPSHOT message says index 41"));
  EXPECT_EQ(link.inbox->message_count(), 0u);
  pb::SnapshotMetadata snapshot;
  snapshot.set_index(41);
  snapshot.set_term(3);
  EXPECT_THAT(link.store->PinReceived(snapshot).status(), StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(PeerTransportTest, ASnapshotTransferDoesNotHoldUpMessages) {
  TempDir dir;
  // 1.2 MB at 1 MB/s: the transfer takes over a second.
  MakeCheckpoint(dir.Sub("checkpoint"), 42, 3, 4, 300 * 1000);
  snapshot_bytes_per_second_ = 1000 * 1000;
  SnapshotLink link = LinkForSnapshots(dir.Sub("follower"));
  PeerTransport* one = link.one;
  PeerTransport* two = link.two;
  Inbox& inbox2 = *link.inbox;

  std::atomic<bool> done{false};
  one->SendSnapshot(SnapshotMessage(1, 2, 42, 3), dir.Sub("checkpoint"),
                    [&done](absl::Status) { done = true; });
  ASSERT_TRUE(inbox2.WaitFor([&] { return two->SnapshotStats().bytes_received > 0; }));
  for (uint64_t i = 1; i <= 100; ++i) one->Send(Heartbeat(1, 2, i));
  ASSERT_TRUE(inbox2.WaitFor([&] { return inbox2.messages.size() >= 100; }));
  EXPECT_FALSE(done.load()) << "heartbeats arrived while the transfer was still running";
  ASSERT_TRUE(inbox2.WaitFor([&] { return done.load(); }));
}

}  // namespace snapshots

TEST_F(PeerTransportTest, MutualTlsCarriesMessagesBetweenCertifiedMembersOnly) {
  testing::TestCertificateAuthority ca("cluster CA");
  testing::TestCertificateAuthority stranger_ca("another CA");
  Inbox& inbox2 = NewInbox();
  tls_ = MakeTlsIdentity(ca, "stead-2", {}, {"127.0.0.1"});
  PeerTransport* two = Start(2, &inbox2);
  tls_ = MakeTlsIdentity(ca, "stead-1", {}, {"127.0.0.1"});
  PeerTransport* one = Start(1, &NewInbox());
  one->SetPeer(2, "127.0.0.1", two->listen_port());
  one->Send(Heartbeat(1, 2, 1));
  ASSERT_TRUE(inbox2.WaitFor([&] { return inbox2.messages.size() == 1; }));

  // Each refused, with its reason in the intruder's log (the member's own warnings
  // about unauthenticated connections are throttled), and nothing delivered:
  struct Intruder {
    const char* what;
    std::optional<TlsIdentity> tls;
    uint64_t cluster;
    const char* logged;
  };
  const Intruder intruders[] = {
      // a certificate of the cluster's CA, but a member of another cluster;
      {"other cluster", MakeTlsIdentity(ca, "stead-1", {}, {"127.0.0.1"}), 0xbad,
       "belongs to cluster bad"},
      // a certificate that does not name the host the member announces;
      {"misnamed", MakeTlsIdentity(ca, "stead-1", {"stead-1.elsewhere"}, {}), kCluster,
       "the certificate does not name 127.0.0.1"},
      // a certificate of another CA (the intruder trusts the cluster's);
      {"other CA", MakeTlsIdentity(stranger_ca, "stead-1", {}, {"127.0.0.1"}, &ca), kCluster,
       "the peer refused our certificate"},
      // no TLS at all.
      {"plain", std::nullopt, kCluster, "hello response: connection closed by the peer"},
  };
  for (const Intruder& intruder : intruders) {
    SCOPED_TRACE(intruder.what);
    tls_ = intruder.tls;
    Inbox& inbox = NewInbox();
    PeerTransport* stranger = Start(1, &inbox, intruder.cluster);
    stranger->SetPeer(2, "127.0.0.1", two->listen_port());
    stranger->Send(Heartbeat(1, 2, 99));
    EXPECT_TRUE(inbox.WaitFor([&] { return stranger->Peers().at(2).connect_failures > 0; }));
    EXPECT_TRUE(inbox2.WaitFor([&] { return log_->Contains(intruder.logged); }));
    stranger->Stop();
  }
  // The dialer checks the name too: a peer whose certificate does not name the host
  // dialed is not sent anything.
  tls_ = MakeTlsIdentity(ca, "stead-3", {"stead-3.elsewhere"}, {});
  Inbox& inbox3 = NewInbox();
  PeerTransport* misnamed = Start(3, &inbox3);
  one->SetPeer(3, "127.0.0.1", misnamed->listen_port());
  one->Send(Heartbeat(1, 3, 5));
  EXPECT_TRUE(inbox3.WaitFor([&] { return one->Peers().at(3).connect_failures > 0; }));
  EXPECT_EQ(inbox3.message_count(), 0u);

  one->Send(Heartbeat(1, 2, 2));
  ASSERT_TRUE(inbox2.WaitFor([&] { return inbox2.messages.size() == 2; }));
  MutexLock lock(&inbox2.mu);
  EXPECT_EQ(inbox2.messages[1].commit(), 2u) << "only the member's messages arrived";
}

namespace snapshots {

TEST_F(PeerTransportTest, SnapshotsTravelOverMutualTls) {
  testing::TestCertificateAuthority ca("cluster CA");
  tls_ = MakeTlsIdentity(ca, "stead-x", {}, {"127.0.0.1"});
  TempDir dir;
  MakeCheckpoint(dir.Sub("checkpoint"), 42, 3, 5, 300 * 1024);
  SnapshotLink link = LinkForSnapshots(dir.Sub("follower"));
  ASSERT_OK(SendSnapshot(link.one, SnapshotMessage(1, 2, 42, 3), dir.Sub("checkpoint")));
  ASSERT_TRUE(link.inbox->WaitFor([&] { return !link.inbox->messages.empty(); }));
  EXPECT_EQ(link.two->SnapshotStats().receives_completed, 1u);
}

}  // namespace snapshots

}  // namespace
}  // namespace stead::server
