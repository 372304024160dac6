// Three RaftNodes in one process over real loopback sockets, each with its own WAL and
// RocksDB state machine in a temporary directory: election, replication, linearizable
// read barriers, and a member stopped and restarted from its volumes.
#include "server/raft_node.h"

#include <atomic>
#include <filesystem>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "raft/conf_change.h"
#include "storage/checkpoint.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/subprocess.h"

namespace stead::server {
namespace {

namespace asio = boost::asio;
using ::stead::testing::StatusIs;

constexpr uint64_t kCluster = 0xc1u;
constexpr int kMembers = 3;

// Polls `done` until it holds or `timeout` passes; returns whether it held.
template <typename Predicate>
bool WaitUntil(Predicate done, absl::Duration timeout = absl::Seconds(20)) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!done()) {
    if (absl::Now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

// "put <key> <value>" becomes one Put in the kv keyspace.
absl::StatusOr<std::string> ApplyPut(absl::string_view command, const pb::Entry&,
                                     const storage::StateReader&,
                                     std::vector<storage::Mutation>* mutations) {
  std::vector<std::string> words = absl::StrSplit(command, ' ');
  if (words.size() != 3 || words[0] != "put") {
    return absl::InvalidArgumentError(absl::StrCat("bad command: ", command));
  }
  mutations->push_back(storage::Mutation::Put(storage::kDefaultKeyspace, words[1], words[2]));
  return std::string("ok");
}

class Member {
 public:
  Member(asio::io_context& io, const std::string& root, raft::NodeId id)
      : io_(io), id_(id), dir_(absl::StrCat(root, "/m", id)) {}

  ~Member() { Stop(); }

  absl::Status Start(uint16_t port, const std::vector<uint16_t>& peer_ports) {
    const Logger logger = Logger(LogLevel::kWarning).WithContext("node", id_);
    std::filesystem::create_directories(dir_);
    storage::WalOptions wal_options;
    wal_options.dir = dir_ + "/wal";
    wal_options.logger = logger;
    STEAD_ASSIGN_OR_RETURN(wal_, storage::Wal::Open(wal_options));
    if (wal_->InitialState().hard_state.term() == 0) {
      // Bootstrap, as every initial member does with the same voters.
      storage::WalWrite bootstrap;
      bootstrap.entries = raft::Raft::BootstrapEntries({1, 2, 3});
      bootstrap.hard_state.emplace();
      bootstrap.hard_state->set_term(1);
      bootstrap.hard_state->set_commit(kMembers);
      STEAD_RETURN_IF_ERROR(wal_->Write(std::move(bootstrap)));
    }
    const storage::StateMachineOptions sm_options = StateOptions();
    STEAD_ASSIGN_OR_RETURN(state_machine_, storage::StateMachine::Open(sm_options));
    STEAD_ASSIGN_OR_RETURN(snapshots_, SnapshotStore::Open(sm_options.data_dir, logger));

    PeerTransportOptions transport_options;
    transport_options.cluster_id = kCluster;
    transport_options.node_id = id_;
    transport_options.min_reconnect_backoff = absl::Milliseconds(5);
    transport_options.max_reconnect_backoff = absl::Milliseconds(50);
    transport_ = std::make_unique<PeerTransport>(
        io_, transport_options, logger,
        [this](pb::Message message) { node_->Step(std::move(message)); },
        [this](raft::NodeId peer) { node_->ReportUnreachable(peer); });
    transport_->SetSnapshotSink(snapshots_.get());
    for (raft::NodeId peer = 1; peer <= kMembers; ++peer) {
      if (peer != id_) transport_->SetPeer(peer, "127.0.0.1", peer_ports[peer - 1]);
    }

    RaftNodeOptions options;
    options.raft.id = id_;
    options.raft.random_seed = id_;
    options.raft.logger = logger;
    options.tick_interval = absl::Milliseconds(10);
    options.snapshot_entries = snapshot_entries_;
    node_ = std::make_unique<RaftNode>(io_, options, wal_.get(), state_machine_.get(),
                                       transport_.get(), snapshots_.get(), ApplyPut);
    STEAD_RETURN_IF_ERROR(node_->Start());
    return transport_->Listen("127.0.0.1", port);
  }

  void Stop() {
    if (node_ == nullptr) return;
    transport_->Stop();
    node_->Stop();
    // The transport's handlers capture this member: keep it until the io threads have
    // seen Stop (they drop messages once stopped).
    node_.reset();
    state_machine_.reset();
    wal_.reset();
    snapshots_.reset();
  }

  // Log compaction interval for the next Start (0: never).
  void set_snapshot_entries(uint64_t entries) { snapshot_entries_ = entries; }
  // Every key and value of the default keyspace, in order.
  std::vector<storage::KeyValue> Contents() {
    storage::ScanOptions scan;
    scan.keyspace = storage::kDefaultKeyspace;
    scan.limit = storage::kMaxScanLimit;
    absl::StatusOr<storage::ScanResult> result = state_machine_->Scan(scan);
    return result.ok() ? result->pairs : std::vector<storage::KeyValue>{};
  }

  absl::StatusOr<std::string> Propose(const std::string& command) {
    std::promise<absl::StatusOr<std::string>> result;
    node_->Propose(command, absl::Now() + absl::Seconds(10),
                   [&result](absl::StatusOr<std::string> r) { result.set_value(std::move(r)); });
    return result.get_future().get();
  }

  absl::Status ReadBarrier() {
    std::promise<absl::Status> result;
    node_->ReadBarrier(absl::Now() + absl::Seconds(5),
                       [&result](absl::Status status) { result.set_value(status); });
    return result.get_future().get();
  }

  std::optional<std::string> Get(const std::string& key) {
    absl::StatusOr<std::optional<std::string>> value =
        state_machine_->Get(storage::kDefaultKeyspace, key);
    return value.ok() ? *value : std::nullopt;
  }

  bool running() const { return node_ != nullptr; }
  const std::string& dir() const { return dir_; }
  storage::StateMachineOptions StateOptions() const {
    storage::StateMachineOptions options;
    options.data_dir = dir_ + "/data";
    options.identity = {kCluster, id_, absl::StrCat("stead-", id_ - 1)};
    options.logger = Logger(LogLevel::kWarning);
    return options;
  }
  RaftNode& node() { return *node_; }
  raft::NodeId id() const { return id_; }

 private:
  asio::io_context& io_;
  const raft::NodeId id_;
  const std::string dir_;
  std::unique_ptr<storage::Wal> wal_;
  std::unique_ptr<storage::StateMachine> state_machine_;
  std::unique_ptr<SnapshotStore> snapshots_;
  std::unique_ptr<PeerTransport> transport_;
  uint64_t snapshot_entries_ = 0;
  std::unique_ptr<RaftNode> node_;
};

class RaftNodeTest : public ::testing::Test {
 protected:
  RaftNodeTest() : work_(asio::make_work_guard(io_)) {
    char pattern[] = "/tmp/stead-raft-node-XXXXXX";
    root_ = mkdtemp(pattern);
    for (int i = 0; i < 2; ++i) threads_.emplace_back([this] { io_.run(); });
    // Ports below the ephemeral range: a port 0 bind would hand out one that an
    // outgoing connection of a test running alongside may take before it is bound.
    for (int i = 0; i < kMembers; ++i) ports_.push_back(::stead::testing::FreeLoopbackPort().value());
    for (raft::NodeId id = 1; id <= kMembers; ++id) {
      members_.push_back(std::make_unique<Member>(io_, root_, id));
    }
  }
  ~RaftNodeTest() override {
    members_.clear();
    work_.reset();
    for (auto& thread : threads_) thread.join();
    std::filesystem::remove_all(root_);
  }

  void StartAll() {
    for (auto& member : members_) ASSERT_OK(member->Start(ports_[member->id() - 1], ports_));
  }

  // The running member that is leader, once exactly one running member says so.
  Member* WaitForLeader() {
    Member* leader = nullptr;
    WaitUntil([&] {
      leader = nullptr;
      for (auto& member : members_) {
        if (member->running() && member->node().Status().role == raft::Role::kLeader) {
          leader = member.get();
        }
      }
      return leader != nullptr;
    });
    return leader;
  }

  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  std::vector<std::thread> threads_;
  std::string root_;
  std::vector<uint16_t> ports_;
  std::vector<std::unique_ptr<Member>> members_;
};

TEST_F(RaftNodeTest, ElectsALeaderAndReplicatesToEveryMember) {
  StartAll();
  Member* leader = WaitForLeader();
  ASSERT_NE(leader, nullptr);
  for (int i = 0; i < 50; ++i) {
    ASSERT_OK_AND_ASSIGN(std::string result, leader->Propose(absl::StrCat("put k", i, " v", i)));
    EXPECT_EQ(result, "ok");
  }
  ASSERT_OK(leader->ReadBarrier());
  EXPECT_EQ(leader->Get("k49"), "v49") << "a read after the barrier sees every acknowledged write";
  for (auto& member : members_) {
    EXPECT_TRUE(WaitUntil([&] { return member->Get("k49") == "v49"; })) << "member " << member->id();
    for (int i = 0; i < 50; ++i) EXPECT_EQ(member->Get(absl::StrCat("k", i)), absl::StrCat("v", i));
  }
}

// Goal: linearizable reads issued together share ReadIndex (heartbeat) rounds instead
// of one round each, and each still sees every write acknowledged before it.
TEST_F(RaftNodeTest, ConcurrentReadsShareReadIndexRounds) {
  StartAll();
  Member* leader = WaitForLeader();
  ASSERT_NE(leader, nullptr);
  ASSERT_OK(leader->Propose("put k v").status());
  constexpr int kReads = 300;
  std::atomic<int> succeeded{0};
  std::atomic<int> finished{0};
  for (int i = 0; i < kReads; ++i) {
    leader->node().ReadBarrier(absl::Now() + absl::Seconds(10), [&](absl::Status status) {
      if (status.ok() && leader->Get("k") == "v") ++succeeded;
      ++finished;
    });
  }
  ASSERT_TRUE(WaitUntil([&] { return finished.load() == kReads; }));
  EXPECT_EQ(succeeded.load(), kReads);
  ASSERT_TRUE(WaitUntil([&] { return leader->node().Status().reads >= kReads; }));
  const RaftNodeStatus status = leader->node().Status();
  EXPECT_GE(status.read_rounds, 1u);
  EXPECT_LE(status.read_rounds, static_cast<uint64_t>(kReads / 10))
      << "reads waiting together share one heartbeat round";
}

TEST_F(RaftNodeTest, FollowersRefuseProposalsNamingTheLeader) {
  StartAll();
  Member* leader = WaitForLeader();
  ASSERT_NE(leader, nullptr);
  Member* follower = members_[leader->id() % kMembers].get();
  ASSERT_TRUE(WaitUntil([&] { return follower->node().Status().leader == leader->id(); }));
  EXPECT_THAT(follower->Propose("put a b"),
              StatusIs(absl::StatusCode::kUnavailable, absl::StrCat("leader is node ", leader->id())));
}

// Goal: a follower serves linearizable reads itself: reads issued together share one
// request to the leader per round, and each passes only once the follower applied every
// write the leader acknowledged before it.
TEST_F(RaftNodeTest, FollowerReadsShareRoundsAndSeeAcknowledgedWrites) {
  StartAll();
  Member* leader = WaitForLeader();
  ASSERT_NE(leader, nullptr);
  Member* follower = members_[leader->id() % kMembers].get();
  ASSERT_TRUE(WaitUntil([&] { return follower->node().Status().leader == leader->id(); }));
  for (int i = 0; i < 20; ++i) {
    ASSERT_OK(leader->Propose(absl::StrCat("put k", i, " v", i)));
    ASSERT_OK(follower->ReadBarrier());
    EXPECT_EQ(follower->Get(absl::StrCat("k", i)), absl::StrCat("v", i))
        << "a follower's read sees the write acknowledged just before it";
  }
  ASSERT_OK(leader->Propose("put last v"));
  constexpr int kReads = 300;
  std::atomic<int> succeeded{0};
  std::atomic<int> finished{0};
  for (int i = 0; i < kReads; ++i) {
    follower->node().ReadBarrier(absl::Now() + absl::Seconds(10), [&](absl::Status status) {
      if (status.ok() && follower->Get("last") == "v") ++succeeded;
      ++finished;
    });
  }
  ASSERT_TRUE(WaitUntil([&] { return finished.load() == kReads; }));
  EXPECT_EQ(succeeded.load(), kReads);
  ASSERT_TRUE(WaitUntil([&] { return follower->node().Status().reads >= kReads + 20; }));
  const RaftNodeStatus status = follower->node().Status();
  EXPECT_GE(status.read_rounds, 21u);
  EXPECT_LE(status.read_rounds, static_cast<uint64_t>(20 + kReads / 10))
      << "reads waiting together share one request to the leader";
  EXPECT_EQ(leader->node().Status().reads, 0u) << "the leader served none of them itself";
}

// Goal: a follower that knows no leader refuses reads at once with Unavailable (the
// server then tries elsewhere) instead of letting them wait for their deadline.
TEST_F(RaftNodeTest, AFollowerWithoutALeaderRefusesReads) {
  StartAll();
  Member* leader = WaitForLeader();
  ASSERT_NE(leader, nullptr);
  Member* follower = members_[leader->id() % kMembers].get();
  Member* other = members_[(leader->id() + 1) % kMembers].get();
  ASSERT_TRUE(WaitUntil([&] { return follower->node().Status().leader == leader->id(); }));
  leader->Stop();
  other->Stop();
  ASSERT_TRUE(WaitUntil([&] { return follower->node().Status().leader == raft::kNoNode; }));
  const absl::Time start = absl::Now();
  EXPECT_THAT(follower->ReadBarrier(), StatusIs(absl::StatusCode::kUnavailable, "not leader"));
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
}

TEST_F(RaftNodeTest, ACommandTheStateMachineRejectsFailsOnlyThatCommand) {
  StartAll();
  Member* leader = WaitForLeader();
  ASSERT_NE(leader, nullptr);
  EXPECT_THAT(leader->Propose("launch rockets"),
              StatusIs(absl::StatusCode::kInvalidArgument, "bad command"));
  ASSERT_OK(leader->Propose("put after rejected"));
  EXPECT_EQ(leader->Get("after"), "rejected");
}

TEST_F(RaftNodeTest, SurvivesTheLeaderStoppingAndCatchesItUpAfterRestart) {
  StartAll();
  Member* first = WaitForLeader();
  ASSERT_NE(first, nullptr);
  for (int i = 0; i < 20; ++i) ASSERT_OK(first->Propose(absl::StrCat("put before", i, " x")));
  first->Stop();

  Member* second = WaitForLeader();
  ASSERT_NE(second, nullptr);
  EXPECT_NE(second->id(), first->id());
  for (int i = 0; i < 20; ++i) ASSERT_OK(second->Propose(absl::StrCat("put after", i, " y")));
  EXPECT_EQ(second->Get("before19"), "x") << "acknowledged writes survive the leader change";

  ASSERT_OK(first->Start(ports_[first->id() - 1], ports_));
  EXPECT_TRUE(WaitUntil([&] { return first->Get("after19") == "y"; }))
      << "the restarted member catches up from the log";
  EXPECT_EQ(first->Get("before0"), "x");
}

// Goal: a follower that missed entries the leader has compacted away catches up
// through a snapshot streamed from the leader's checkpoint, serves the same state, keeps
// replicating after it, and restarts from the installed snapshot.
TEST_F(RaftNodeTest, AStoppedFollowerCatchesUpThroughASnapshot) {
  for (auto& member : members_) member->set_snapshot_entries(40);
  StartAll();
  Member* leader = WaitForLeader();
  ASSERT_NE(leader, nullptr);
  ASSERT_OK(leader->Propose("put early 0"));
  Member* follower = members_[leader->id() % kMembers].get();
  ASSERT_TRUE(WaitUntil([&] { return follower->Get("early") == "0"; }));
  const raft::Index follower_last = follower->node().Status().last_index;
  follower->Stop();

  // Writes go on until the leader has compacted past index 100: each checkpoint
  // compacts up to the one before it, and a slow machine (a sanitizer build) takes
  // fewer checkpoints per write, as a checkpoint falls due only while none is running.
  int writes = 0;
  std::string last_k96;
  const auto write = [&] {
    const std::string value = absl::StrCat("v", writes);
    EXPECT_OK(leader->Propose(absl::StrCat("put k", writes % 97, " ", value)));
    if (writes % 97 == 96) last_k96 = value;
    ++writes;
  };
  for (int i = 0; i < 300; ++i) write();
  ASSERT_TRUE(WaitUntil([&] {
    if (leader->node().Status().log_first_index > 100) return true;
    if (writes < 3000) write();
    return false;
  })) << "the leader compacts its log behind its checkpoints";
  EXPECT_GE(leader->node().Status().snapshots_taken, 2u);
  EXPECT_GT(leader->node().Status().log_first_index, follower_last);

  ASSERT_OK(follower->Start(ports_[follower->id() - 1], ports_));
  ASSERT_TRUE(WaitUntil([&] { return follower->Contents() == leader->Contents(); }))
      << "the follower holds the leader's state";
  EXPECT_GE(follower->node().Status().snapshots_installed, 1u);
  EXPECT_EQ(follower->Get("k96"), last_k96);

  // The log after the snapshot replicates as usual.
  ASSERT_OK(leader->Propose("put after snapshot"));
  ASSERT_TRUE(WaitUntil([&] { return follower->Get("after") == "snapshot"; }));

  // A restart starts from the installed snapshot plus the log after it.
  follower->Stop();
  ASSERT_OK(follower->Start(ports_[follower->id() - 1], ports_));
  EXPECT_EQ(follower->Get("after"), "snapshot");
  ASSERT_OK(leader->Propose("put last write"));
  ASSERT_TRUE(WaitUntil([&] { return follower->Contents() == leader->Contents(); }));
  for (auto& member : members_) {
    EXPECT_TRUE(WaitUntil([&] { return member->Contents() == leader->Contents(); }))
        << "member " << member->id();
  }
}

// Goal: a member killed between the two steps of a snapshot install (its state
// machine switched to the checkpoint, its WAL not yet told) restarts correctly: the
// WAL is made to start after the state machine's index, and the member catches up.
TEST_F(RaftNodeTest, ACrashBetweenInstallingAndLoggingASnapshotIsRepairedAtStart) {
  for (auto& member : members_) member->set_snapshot_entries(40);
  StartAll();
  Member* leader = WaitForLeader();
  ASSERT_NE(leader, nullptr);
  Member* follower = members_[leader->id() % kMembers].get();
  ASSERT_OK(leader->Propose("put first 1"));
  ASSERT_TRUE(WaitUntil([&] { return follower->Get("first") == "1"; }));
  follower->Stop();
  for (int i = 0; i < 120; ++i) ASSERT_OK(leader->Propose(absl::StrCat("put k", i, " v", i)));
  // The checkpointer thread takes them after the applies that make one due.
  std::vector<storage::CheckpointInfo> checkpoints;
  ASSERT_TRUE(WaitUntil([&] {
    absl::StatusOr<std::vector<storage::CheckpointInfo>> listed =
        storage::ListCheckpoints(leader->dir() + "/data/checkpoints/raft");
    if (listed.ok()) checkpoints = *std::move(listed);
    return !checkpoints.empty();
  })) << "the leader took a checkpoint";
  {
    // The first step of an install, done by hand: the WAL still ends where it was.
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<storage::StateMachine> state,
                         storage::StateMachine::Open(follower->StateOptions()));
    ASSERT_OK(state->ReplaceWithCheckpoint(checkpoints.back().path).status());
  }
  ASSERT_OK(follower->Start(ports_[follower->id() - 1], ports_));
  EXPECT_GE(follower->node().Status().log_first_index,
            checkpoints.back().manifest.raft().index() + 1);
  ASSERT_OK(leader->Propose("put last 1"));
  ASSERT_TRUE(WaitUntil([&] { return follower->Contents() == leader->Contents(); }));
}

// Goal: a WAL that starts after what the state machine holds (volumes that do not
// belong together) is refused at start with DataLoss, not silently skipped.
TEST_F(RaftNodeTest, AWalCompactedPastTheStateMachineIsRefused) {
  Member* member = members_[0].get();
  {
    std::filesystem::create_directories(member->dir());
    storage::WalOptions options;
    options.dir = member->dir() + "/wal";
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<storage::Wal> wal, storage::Wal::Open(options));
    storage::WalWrite write;
    write.snapshot.emplace();
    write.snapshot->set_index(500);
    write.snapshot->set_term(3);
    write.hard_state.emplace();
    write.hard_state->set_term(3);
    write.hard_state->set_commit(500);
    ASSERT_OK(wal->Write(std::move(write)));
  }
  EXPECT_THAT(member->Start(ports_[0], ports_),
              StatusIs(absl::StatusCode::kDataLoss, "do not belong together"));
}

// Goal: a checkpoint taken while entries are applied is named after the state it
// holds, so the snapshot the log is compacted to (its manifest's index) can always be
// found and sent. Before, the name came from the applied index read before the
// checkpoint held up applies: a follower that needed that snapshot waited forever.
TEST(SnapshotStoreTest, ACheckpointTakenDuringAppliesIsFoundByTheStateItHolds) {
  const std::string dir = absl::StrCat(::testing::TempDir(), "/snapshot-store-", ::getpid());
  std::filesystem::remove_all(dir);
  storage::StateMachineOptions options;
  options.data_dir = dir;
  options.identity = {kCluster, 1, "stead-0"};
  options.logger = Logger(LogLevel::kWarning);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<storage::StateMachine> state,
                       storage::StateMachine::Open(options));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<SnapshotStore> snapshots,
                       SnapshotStore::Open(dir, Logger(LogLevel::kWarning)));
  auto apply = [&](raft::Index index) {
    storage::ApplyBatch batch;
    batch.index = index;
    batch.term = 1;
    batch.mutations.push_back(
        storage::Mutation::Put("kv", absl::StrCat("k", index % 50), std::string(100, 'v')));
    return state->Apply(batch);
  };
  ASSERT_OK(apply(1));
  std::atomic<bool> stop{false};
  std::atomic<raft::Index> applied{1};
  std::thread applier([&] {
    for (raft::Index index = 2; !stop && index < 2'000'000; ++index) {
      if (!apply(index).ok()) return;
      applied = index;
    }
  });
  int taken = 0;
  for (int round = 0; round < 40; ++round) {
    absl::StatusOr<pb::SnapshotManifest> manifest = snapshots->Take(*state);
    if (!manifest.ok()) continue;  // AlreadyExists: no apply since the last one
    ++taken;
    EXPECT_OK(snapshots->PinTaken(manifest->raft()).status())
        << "checkpoint of index " << manifest->raft().index() << " not found by its state";
  }
  stop = true;
  applier.join();
  EXPECT_GE(taken, 20);
  EXPECT_GT(applied.load(), 40u) << "applies ran while the checkpoints were taken";
  snapshots.reset();
  state.reset();
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace stead::server
