// stead::Node embedded: several Nodes in one process form a cluster, serve reads and
// writes without sockets, restart on their volumes, grow by a learner that is promoted,
// shrink by a removal, and refuse bad options, foreign volumes and foreign peers.
#include "stead/node.h"

#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/asio.h"
#include "base/check.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/test_certificates.h"
#include "tests/testing/tls_test_client.h"
#include "server/kv_testing.h"
#include "server/peer_transport.h"
#include "tests/testing/kv_test_client.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/subprocess.h"

namespace stead {
namespace {

using ::testing::HasSubstr;
using testing::IsOkAndHolds;
using testing::StatusIs;

constexpr absl::Duration kClusterTimeout = absl::Seconds(30);

// Polls `condition` every 10 ms until it holds or `timeout` passes.
bool Eventually(const std::function<bool()>& condition, absl::Duration timeout = kClusterTimeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    if (condition()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return condition();
}

class EmbeddedClusterTest : public ::testing::Test {
 protected:
  static constexpr int kMaxMembers = 5;

  EmbeddedClusterTest() {
    root_ = absl::StrCat(::testing::TempDir(), "/node_test_", ::getpid(), "_",
                         ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(root_);
    for (int i = 0; i < kMaxMembers; ++i) {
      for (uint16_t* port : {&client_ports_[i], &peer_ports_[i], &http_ports_[i]}) {
        *port = testing::FreeLoopbackPort().value();
      }
    }
  }
  ~EmbeddedClusterTest() override {
    nodes_.clear();
    std::filesystem::remove_all(root_);
  }

  NodeOptions OptionsFor(int ordinal, int initial_size = 3) const {
    std::vector<std::string> peers;
    for (int i = 0; i < kMaxMembers; ++i) {
      peers.push_back(absl::StrCat("stead-", i, "=127.0.0.1:", peer_ports_[i]));
    }
    NodeOptions options;
    options.name = absl::StrCat("stead-", ordinal);
    options.data_dir = absl::StrCat(root_, "/", options.name, "/data");
    options.wal_dir = absl::StrCat(root_, "/", options.name, "/wal");
    options.client_addr = absl::StrCat("127.0.0.1:", client_ports_[ordinal]);
    options.peer_addr = absl::StrCat("127.0.0.1:", peer_ports_[ordinal]);
    options.http_addr = absl::StrCat("127.0.0.1:", http_ports_[ordinal]);
    options.advertise_host = "127.0.0.1";
    options.peers = absl::StrJoin(peers, ",");
    options.initial_cluster_size = initial_size;
    options.tick_interval_ms = 20;
    options.log_level = "warning";
    options.shutdown_timeout_ms = 5000;
    options.promote_learners = promote_learners_;
    return options;
  }

  Node& StartMember(int ordinal) {
    absl::StatusOr<std::unique_ptr<Node>> node = Node::Start(OptionsFor(ordinal));
    STEAD_CHECK_OK(node.status());
    nodes_[ordinal] = std::move(node).value();
    return *nodes_[ordinal];
  }

  void StartCluster(int size) {
    // Highest ordinal first: bootstrap must not depend on the start order.
    for (int i = size - 1; i >= 0; --i) StartMember(i);
    for (int i = 0; i < size; ++i) ASSERT_OK(nodes_[i]->WaitUntilReady(kClusterTimeout));
  }

  // The ordinal of the member all others agree is the leader; -1 if none yet.
  int Leader() const {
    for (const auto& [ordinal, node] : nodes_) {
      if (node->Status().state == "leader") return ordinal;
    }
    return -1;
  }

  int WaitForLeader() {
    int leader = -1;
    Eventually([&] { return (leader = Leader()) >= 0; });
    return leader;
  }

  // One admin request through member `ordinal`'s client port (a follower forwards it to
  // the leader); an answer with an error becomes that status.
  absl::StatusOr<pb::ClientResponse> Admin(int ordinal, pb::ClientRequest request) const {
    testing::KvTestClient client({absl::StrCat("127.0.0.1:", client_ports_[ordinal])});
    absl::StatusOr<pb::ClientResponse> response =
        client.Call(std::move(request), absl::Seconds(10));
    if (response.ok() && response->has_error()) return testing::StatusFromError(response->error());
    return response;
  }

  static pb::ClientRequest TransferTo(const std::string& name) {
    pb::ClientRequest request;
    request.mutable_leader_transfer()->set_name(name);
    return request;
  }

  static pb::ClientRequest Promote(const std::string& name) {
    pb::ClientRequest request;
    request.mutable_member_promote()->set_name(name);
    return request;
  }

  std::string root_;
  std::string promote_learners_;  // OptionsFor's --promote-learners; empty: the default
  uint16_t client_ports_[kMaxMembers] = {};
  uint16_t peer_ports_[kMaxMembers] = {};
  uint16_t http_ports_[kMaxMembers] = {};
  std::map<int, std::unique_ptr<Node>> nodes_;
};

// Goal: three Nodes in one process bootstrap a cluster (started in reverse order),
// elect one leader, and serve writes and reads through the embedded API on any member
// (followers forward writes to the leader).
TEST_F(EmbeddedClusterTest, ThreeNodesFormAClusterAndServe) {
  StartCluster(3);
  const int leader = WaitForLeader();
  ASSERT_GE(leader, 0);
  const NodeStatus status = nodes_[leader]->Status();
  EXPECT_NE(status.cluster_id, 0u);
  for (const auto& [ordinal, node] : nodes_) {
    EXPECT_EQ(node->Status().cluster_id, status.cluster_id) << "stead-" << ordinal;
    EXPECT_EQ(node->Status().leader_id, status.node_id) << "stead-" << ordinal;
  }

  ASSERT_OK(nodes_[leader]->Put("greeting", "hello"));
  EXPECT_THAT(nodes_[leader]->Get("greeting"), IsOkAndHolds(std::optional<std::string>("hello")));
  for (const auto& [ordinal, node] : nodes_) {
    EXPECT_TRUE(Eventually([&] {
      absl::StatusOr<std::optional<std::string>> value =
          node->Get("greeting", ReadConsistency::kSerializable);
      return value.ok() && *value == std::optional<std::string>("hello");
    })) << "stead-" << ordinal << " never applied the write";
  }

  // A follower passes writes on to the leader; the other follower serves the
  // linearizable read itself and sees the write the leader acknowledged.
  const int follower = (leader + 1) % 3;
  ASSERT_OK(nodes_[follower]->Put("greeting", "from a follower"));
  EXPECT_THAT(nodes_[leader]->Get("greeting"),
              IsOkAndHolds(std::optional<std::string>("from a follower")));
  const int other = (leader + 2) % 3;
  EXPECT_THAT(nodes_[other]->Get("greeting"),
              IsOkAndHolds(std::optional<std::string>("from a follower")));

  ASSERT_OK(nodes_[leader]->Delete("greeting"));
  EXPECT_THAT(nodes_[leader]->Get("greeting"), IsOkAndHolds(std::optional<std::string>()));
}

// Goal: the client port serves the same cluster (a write through the leader's port is
// readable linearizably there), and a client sending random bytes is dropped without
// disturbing anyone.
TEST_F(EmbeddedClusterTest, ClientPortServesAndRandomBytesAreRefused) {
  StartCluster(3);
  const int leader = WaitForLeader();
  ASSERT_GE(leader, 0);
  std::vector<std::string> endpoints;
  for (int i = 0; i < 3; ++i) endpoints.push_back(absl::StrCat("127.0.0.1:", client_ports_[i]));
  testing::KvTestClient client(endpoints);
  ASSERT_OK(client.PutWithRetry("k", "v1", absl::Seconds(10)));

  {
    boost::asio::io_context io;
    boost::asio::ip::tcp::socket garbage(io);
    garbage.connect({boost::asio::ip::make_address("127.0.0.1"), client_ports_[leader]});
    const std::string noise = "\xff\xff\xff\xff this is not a frame";
    boost::asio::write(garbage, boost::asio::buffer(noise));
    char byte;
    boost::system::error_code ec;
    garbage.read_some(boost::asio::buffer(&byte, 1), ec);
    EXPECT_TRUE(ec) << "the connection sending garbage stayed open";
  }

  ASSERT_OK(client.PutWithRetry("k", "v2", absl::Seconds(10)));
  EXPECT_THAT(client.GetWithRetry("k", {}, absl::Seconds(10)),
              IsOkAndHolds(std::optional<std::string>("v2")));
}

// Goal: the key-value model through a real three-member cluster: a transaction's
// compare-and-swap succeeds once and then fails on the stale value, a retried put with
// the same client id and sequence returns its first response and changes nothing, and
// every header carries the revision. Requests go to a follower's client port (it
// forwards to the leader).
TEST_F(EmbeddedClusterTest, TxnCompareAndSwapAndRetriedPutThroughTheCluster) {
  StartCluster(3);
  const int leader = WaitForLeader();
  ASSERT_GE(leader, 0);
  const int follower = (leader + 1) % 3;
  testing::KvTestClient client({absl::StrCat("127.0.0.1:", client_ports_[follower])});
  auto cas = [](const std::string& from, const std::string& to) {
    return server::CompareAndSwapRequest("counter", from, to);
  };
  pb::ClientRequest first = cas("", "1");
  first.mutable_txn()->mutable_compare(0)->set_target(pb::Compare::TARGET_VERSION);
  first.mutable_txn()->mutable_compare(0)->set_version(0);  // created only if absent
  absl::StatusOr<pb::ClientResponse> created = client.Call(first, absl::Seconds(10));
  ASSERT_OK(created.status());
  ASSERT_FALSE(created->has_error()) << created->error().message();
  EXPECT_TRUE(created->txn().succeeded());
  const int64_t revision = created->header().revision();
  EXPECT_GT(revision, 0);
  absl::StatusOr<pb::ClientResponse> swapped = client.Call(cas("1", "2"), absl::Seconds(10));
  ASSERT_OK(swapped.status());
  EXPECT_TRUE(swapped->txn().succeeded());
  EXPECT_EQ(swapped->header().revision(), revision + 1);
  absl::StatusOr<pb::ClientResponse> stale = client.Call(cas("1", "3"), absl::Seconds(10));
  ASSERT_OK(stale.status());
  EXPECT_FALSE(stale->txn().succeeded());
  EXPECT_EQ(stale->header().revision(), revision + 1);

  pb::ClientRequest put;
  put.set_client_id(0x5eed);
  put.set_sequence(1);
  put.mutable_put()->set_key("once");
  put.mutable_put()->set_value("first");
  absl::StatusOr<pb::ClientResponse> applied = client.Call(put, absl::Seconds(10));
  ASSERT_OK(applied.status());
  ASSERT_FALSE(applied->has_error()) << applied->error().message();
  put.mutable_put()->set_value("retry");  // a retry is answered from the table, not applied
  absl::StatusOr<pb::ClientResponse> retried = client.Call(put, absl::Seconds(10));
  ASSERT_OK(retried.status());
  EXPECT_EQ(retried->header().revision(), applied->header().revision());
  EXPECT_THAT(nodes_[leader]->Get("once"), IsOkAndHolds(std::optional<std::string>("first")));
  EXPECT_THAT(nodes_[leader]->Get("counter"), IsOkAndHolds(std::optional<std::string>("2")));
}

// Goal: a member stopped (gracefully or not) and started again on its volumes keeps
// its identity and its data, and catches up on what it missed.
TEST_F(EmbeddedClusterTest, RestartedMemberKeepsIdentityAndCatchesUp) {
  StartCluster(3);
  int leader = WaitForLeader();
  ASSERT_GE(leader, 0);
  ASSERT_OK(nodes_[leader]->Put("before", "1"));
  const int restarted = (leader + 1) % 3;
  const uint64_t id = nodes_[restarted]->Status().node_id;
  nodes_.erase(restarted);  // a hard stop

  leader = WaitForLeader();
  ASSERT_OK(nodes_[leader]->Put("while-down", "2"));

  Node& node = StartMember(restarted);
  ASSERT_OK(node.WaitUntilReady(kClusterTimeout));
  EXPECT_EQ(node.Status().node_id, id);
  for (const char* key : {"before", "while-down"}) {
    EXPECT_TRUE(Eventually([&] {
      absl::StatusOr<std::optional<std::string>> value = node.Get(key, ReadConsistency::kSerializable);
      return value.ok() && value->has_value();
    })) << key;
  }

  // Graceful shutdown of the leader hands leadership over; the rest keeps serving.
  leader = WaitForLeader();
  ASSERT_OK(nodes_[leader]->Shutdown());
  nodes_.erase(leader);
  const int next = WaitForLeader();
  ASSERT_GE(next, 0);
  EXPECT_NE(next, leader);
  ASSERT_OK(nodes_[next]->Put("after", "3"));
}

// Goal: members started later join as learners, are promoted to voters once caught
// up, and a removed member leaves the configuration and stays idle.
TEST_F(EmbeddedClusterTest, LaterMembersJoinAsLearnersAndArePromoted) {
  StartCluster(3);
  int leader = WaitForLeader();
  ASSERT_GE(leader, 0);
  for (int i = 0; i < 50; ++i) ASSERT_OK(nodes_[leader]->Put(absl::StrCat("key", i), "value"));

  StartMember(3);
  StartMember(4);
  for (int ordinal : {3, 4}) {
    ASSERT_OK(nodes_[ordinal]->WaitUntilReady(kClusterTimeout)) << "stead-" << ordinal;
    EXPECT_TRUE(nodes_[ordinal]->Status().voter);
    // Ready allows applying to trail commit a little: the data arrives soon after.
    EXPECT_TRUE(Eventually([&] {
      absl::StatusOr<std::optional<std::string>> value =
          nodes_[ordinal]->Get("key49", ReadConsistency::kSerializable);
      return value.ok() && *value == std::optional<std::string>("value");
    })) << "stead-" << ordinal << " never applied key49";
  }

  leader = WaitForLeader();
  const int removed = leader == 4 ? 3 : 4;
  ASSERT_OK(nodes_[leader]->RemoveMember(absl::StrCat("stead-", removed)));
  EXPECT_TRUE(Eventually([&] { return nodes_[removed]->Status().state == "removed"; }));
  EXPECT_FALSE(nodes_[removed]->Status().ready);
  leader = WaitForLeader();
  ASSERT_OK(nodes_[leader]->Put("after-removal", "yes"));
  EXPECT_THAT(nodes_[leader]->RemoveMember(absl::StrCat("stead-", removed)),
              StatusIs(absl::StatusCode::kNotFound));
}

// Goal: leadership moves on request: to a named member (asked through a follower,
// which forwards), to the most caught-up voter when none is named, not at all when the
// named member leads already; an unknown member is NotFound. Each answer names the
// previous and the new leader, and every member then follows the new one.
TEST_F(EmbeddedClusterTest, LeaderTransferToANamedMemberOrTheMostCaughtUp) {
  StartCluster(3);
  const int first = WaitForLeader();
  ASSERT_GE(first, 0);
  ASSERT_OK(nodes_[first]->Put("before", "1"));
  const int asked = (first + 1) % 3;
  const int target = (first + 2) % 3;

  absl::StatusOr<pb::ClientResponse> named =
      Admin(asked, TransferTo(absl::StrCat("stead-", target)));
  ASSERT_OK(named.status());
  EXPECT_EQ(named->leader_transfer().previous_leader().name(), absl::StrCat("stead-", first));
  EXPECT_FALSE(named->leader_transfer().previous_leader().is_leader());
  EXPECT_EQ(named->leader_transfer().leader().name(), absl::StrCat("stead-", target));
  EXPECT_TRUE(named->leader_transfer().leader().is_leader());
  EXPECT_EQ(named->leader_transfer().leader().id(), nodes_[target]->Status().node_id);
  EXPECT_TRUE(Eventually([&] { return Leader() == target; }));
  for (const auto& [ordinal, node] : nodes_) {
    EXPECT_TRUE(Eventually([&] {
      return node->Status().leader_id == nodes_[target]->Status().node_id;
    })) << "stead-"
        << ordinal;
  }
  ASSERT_OK(nodes_[target]->Put("after", "2"));

  absl::StatusOr<pb::ClientResponse> same =
      Admin(first, TransferTo(absl::StrCat("stead-", target)));
  ASSERT_OK(same.status());
  EXPECT_EQ(same->leader_transfer().previous_leader().id(), same->leader_transfer().leader().id());
  EXPECT_EQ(same->leader_transfer().leader().name(), absl::StrCat("stead-", target));
  EXPECT_EQ(Leader(), target);

  absl::StatusOr<pb::ClientResponse> anyone = Admin(target, TransferTo(""));
  ASSERT_OK(anyone.status());
  EXPECT_EQ(anyone->leader_transfer().previous_leader().name(), absl::StrCat("stead-", target));
  const std::string next = anyone->leader_transfer().leader().name();
  EXPECT_NE(next, absl::StrCat("stead-", target));
  EXPECT_TRUE(Eventually([&] { return Leader() >= 0 && absl::StrCat("stead-", Leader()) == next; }))
      << next;

  EXPECT_THAT(Admin(target, TransferTo("stead-7")),
              StatusIs(absl::StatusCode::kNotFound, "no member stead-7"));
  EXPECT_THAT(nodes_[Leader()]->Get("after"), IsOkAndHolds(std::optional<std::string>("2")));
}

// Goal: with --promote-learners=manual a joining member stays a learner until it is
// promoted on request; promotion refuses a learner that stopped and fell behind
// (FailedPrecondition naming it), answers a voter with already_voter and an unknown
// member with NotFound. Leadership cannot go to a learner.
TEST_F(EmbeddedClusterTest, ManualPromotionOfALearner) {
  promote_learners_ = "manual";
  StartCluster(3);
  int leader = WaitForLeader();
  ASSERT_GE(leader, 0);
  for (int i = 0; i < 20; ++i) ASSERT_OK(nodes_[leader]->Put(absl::StrCat("key", i), "value"));

  StartMember(3);
  StartMember(4);
  for (int ordinal : {3, 4}) {
    EXPECT_TRUE(Eventually([&] {
      const NodeStatus status = nodes_[ordinal]->Status();
      return status.state == "learner" &&
             status.applied_index >= nodes_[leader]->Status().commit_index;
    })) << "stead-"
        << ordinal << " is " << nodes_[ordinal]->Status().state;
  }
  // Well past the time the leader would have promoted them by itself.
  std::this_thread::sleep_for(std::chrono::seconds(1));
  EXPECT_FALSE(nodes_[3]->Status().voter);
  EXPECT_FALSE(nodes_[4]->Status().voter);

  EXPECT_THAT(Admin(leader, TransferTo("stead-3")),
              StatusIs(absl::StatusCode::kFailedPrecondition, "stead-3 is a learner"));

  // A leader that has not heard from the learner within an election timeout (a new
  // one, on a loaded machine) refuses for now: retried, bounded by the wait.
  absl::StatusOr<pb::ClientResponse> promoted;
  EXPECT_TRUE(Eventually([&] {
    leader = WaitForLeader();
    promoted = Admin((leader + 1) % 3, Promote("stead-3"));
    return !absl::IsFailedPrecondition(promoted.status());
  }));
  ASSERT_OK(promoted.status());
  EXPECT_FALSE(promoted->member_promote().already_voter());
  bool listed_as_voter = false;
  for (const pb::Member& member : promoted->member_promote().members()) {
    if (member.name() == "stead-3") listed_as_voter = !member.is_learner();
  }
  EXPECT_TRUE(listed_as_voter);
  EXPECT_TRUE(Eventually([&] { return nodes_[3]->Status().voter; }));

  absl::StatusOr<pb::ClientResponse> again = Admin(leader, Promote("stead-3"));
  ASSERT_OK(again.status());
  EXPECT_TRUE(again->member_promote().already_voter());
  EXPECT_THAT(Admin(leader, Promote("stead-9")), StatusIs(absl::StatusCode::kNotFound, "stead-9"));

  // A learner that stopped while the log grew past the promotion lag is refused,
  // with its name (and its lag, or that it is silent) in the message.
  nodes_.erase(4);
  leader = WaitForLeader();
  for (int i = 0; i < 120; ++i) ASSERT_OK(nodes_[leader]->Put(absl::StrCat("more", i), "value"));
  EXPECT_THAT(Admin(leader, Promote("stead-4")),
              StatusIs(absl::StatusCode::kFailedPrecondition, "stead-4"));
}

// Goal: a process of another cluster that dials a member is refused at the hello and
// changes nothing; the cluster keeps serving.
TEST_F(EmbeddedClusterTest, PeerOfAnotherClusterIsRefused) {
  StartCluster(3);
  const int leader = WaitForLeader();
  ASSERT_GE(leader, 0);

  boost::asio::io_context io;
  server::PeerTransportOptions options;
  options.cluster_id = 0xbad;
  options.node_id = 77;
  options.node_name = "intruder";
  server::PeerTransport intruder(io, options, Logger(LogLevel::kError), [](pb::Message) {},
                                 [](raft::NodeId) {});
  const uint64_t target = nodes_[leader]->Status().node_id;
  intruder.SetPeer(target, "127.0.0.1", peer_ports_[leader]);
  pb::Message vote;
  vote.set_type(pb::MESSAGE_TYPE_VOTE);
  vote.set_from(77);
  vote.set_to(target);
  vote.set_term(1000);
  intruder.Send(vote);
  io.run_for(std::chrono::seconds(1));
  const auto peers = intruder.Peers();
  EXPECT_FALSE(peers.at(target).connected);
  EXPECT_GT(peers.at(target).connect_failures, 0u);
  // The intruder learns which cluster the member belongs to: were it a member on
  // stale volumes, that is what it would report.
  EXPECT_EQ(peers.at(target).other_cluster_id, nodes_[leader]->Status().cluster_id);
  intruder.Stop();

  EXPECT_EQ(Leader(), leader);
  EXPECT_LT(nodes_[leader]->Status().term, 1000u);
  ASSERT_OK(nodes_[leader]->Put("still", "serving"));
}

// The options of stead-0 forming a cluster of one on free loopback ports, its volumes
// under `root`.
NodeOptions OneMemberOptions(const std::string& root) {
  NodeOptions options;
  options.name = "stead-0";
  options.data_dir = root + "/data";
  options.wal_dir = root + "/wal";
  options.peers = absl::StrCat("stead-0=127.0.0.1:", testing::FreeLoopbackPort().value());
  options.initial_cluster_size = 1;
  options.peer_addr = options.peers.substr(options.peers.find('=') + 1);
  options.client_addr = absl::StrCat("127.0.0.1:", testing::FreeLoopbackPort().value());
  options.http_addr = absl::StrCat("127.0.0.1:", testing::FreeLoopbackPort().value());
  return options;
}

// Goal: the embedding's recovery and tuning options reach their flags (each is checked
// as the flag is), so an embedded member restores, clones and tunes as `stead` does.
TEST(NodeStartTest, RecoveryAndTuningOptionsReachTheirFlags) {
  const std::string root = absl::StrCat(::testing::TempDir(), "/node_options_", ::getpid());
  std::filesystem::remove_all(root);
  NodeOptions options = OneMemberOptions(root);

  options.new_cluster_identity = "not a token!";
  absl::StatusOr<std::unique_ptr<Node>> node = Node::Start(options);
  EXPECT_THAT(node, StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(node.status().message(), HasSubstr("new-cluster-identity"));

  options.new_cluster_identity = "clone1";
  options.restore_from = root + "/backup.snap";
  node = Node::Start(options);
  EXPECT_THAT(node, StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(node.status().message(), HasSubstr("restore-from"));

  options.restore_from.clear();
  options.force_new_cluster = "stead-0";
  node = Node::Start(options);
  EXPECT_THAT(node, StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(node.status().message(), HasSubstr("force-new-cluster"));

  // Alone, --restore-from is taken and looks for its file.
  options.force_new_cluster.clear();
  options.new_cluster_identity.clear();
  options.restore_from = root + "/backup.snap";
  node = Node::Start(options);
  EXPECT_FALSE(node.ok());
  EXPECT_THAT(node.status().message(), HasSubstr("backup.snap"));

  options.restore_from.clear();
  options.snapshot_entries = -1;
  node = Node::Start(options);
  EXPECT_THAT(node, StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(node.status().message(), HasSubstr("snapshot-entries"));

  options.snapshot_entries = 0;
  options.watch_history_revisions = -5;
  node = Node::Start(options);
  EXPECT_THAT(node, StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(node.status().message(), HasSubstr("watch-history-revisions"));

  options.watch_history_revisions = 0;
  options.max_response_bytes = 100;
  node = Node::Start(options);
  EXPECT_THAT(node, StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(node.status().message(), HasSubstr("max-response-bytes"));

  options.max_response_bytes = 0;
  options.max_client_connections = -3;
  node = Node::Start(options);
  EXPECT_THAT(node, StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(node.status().message(), HasSubstr("max-client-connections"));

  options.max_client_connections = 0;
  options.client_read_timeout_ms = -1;
  node = Node::Start(options);
  EXPECT_THAT(node, StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(node.status().message(), HasSubstr("client-read-timeout"));

  options.client_read_timeout_ms = 0;
  options.io_threads = -2;
  node = Node::Start(options);
  EXPECT_THAT(node, StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(node.status().message(), HasSubstr("io-threads"));
  std::filesystem::remove_all(root);
}

// Goal: bad options and volumes of another member are refused at start with a message
// naming the problem, and nothing is written.
TEST(NodeStartTest, BadOptionsAndForeignVolumesAreRefused) {
  const std::string root = absl::StrCat(::testing::TempDir(), "/node_start_", ::getpid());
  std::filesystem::remove_all(root);
  NodeOptions options = OneMemberOptions(root);
  options.wal_dir = root + "/data";
  EXPECT_THAT(Node::Start(options), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_FALSE(std::filesystem::exists(root + "/data"));

  options.wal_dir = root + "/wal";
  options.name = "not a member name";
  EXPECT_THAT(Node::Start(options), StatusIs(absl::StatusCode::kInvalidArgument));

  // A one-member cluster forms by itself and writes its identity.
  options.name = "stead-0";
  options.tick_interval_ms = 20;
  {
    absl::StatusOr<std::unique_ptr<Node>> node = Node::Start(options);
    ASSERT_OK(node.status());
    ASSERT_OK((*node)->WaitUntilReady(kClusterTimeout));
    ASSERT_OK((*node)->Put("k", "v"));
  }
  // The same volumes under another member's name are refused.
  options.name = "stead-1";
  options.peers += absl::StrCat(",stead-1=127.0.0.1:", testing::FreeLoopbackPort().value());
  absl::StatusOr<std::unique_ptr<Node>> wrong = Node::Start(options);
  EXPECT_THAT(wrong, StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(wrong.status().message(), HasSubstr("stead-0"));
  std::filesystem::remove_all(root);
}

// Goal: the embedding's TLS options reach their flags: a bad file is refused naming
// the flag, and good ones make each port speak TLS with its certificate.
TEST(NodeStartTest, TlsOptionsReachTheirFlagsAndEachPortSpeaksTls) {
  const std::string root = absl::StrCat(::testing::TempDir(), "/node_tls_", ::getpid());
  std::filesystem::remove_all(root);
  NodeOptions options = OneMemberOptions(root);
  options.tick_interval_ms = 20;
  testing::TestCertificateAuthority ca("embedded CA");
  const std::string dir = testing::MakeTempDir();
  auto files = [&](const std::string& name) {
    return testing::WritePemFiles(
        dir, name, ca.Issue({.common_name = name, .ip_addresses = {"127.0.0.1"}}), ca);
  };
  const testing::TestPemFiles client = files("client-port"), peer = files("peer-port"),
                              http = files("http-port"), app = files("app");
  options.client_tls = {client.cert_file, "/nonexistent/client.key", client.ca_file, true};
  absl::StatusOr<std::unique_ptr<Node>> node = Node::Start(options);
  EXPECT_THAT(node, StatusIs(absl::StatusCode::kInvalidArgument, "--client-key-file"));

  options.client_tls.key_file = client.key_file;
  options.peer_tls = {peer.cert_file, peer.key_file, peer.ca_file, false};
  options.http_tls = {http.cert_file, http.key_file, "", false};
  node = Node::Start(options);
  ASSERT_OK(node.status());
  ASSERT_OK((*node)->WaitUntilReady(kClusterTimeout));
  ASSERT_OK((*node)->Put("k", "v"));
  const NodeStatus status = (*node)->Status();
  const wire::TlsOptions with_certificate = {
      .cert_file = app.cert_file, .key_file = app.key_file, .trusted_ca_file = app.ca_file};
  for (const auto& [port, common_name] :
       {std::pair<uint16_t, std::string>{status.client_port, "client-port"},
        {status.peer_port, "peer-port"},
        {status.http_port, "http-port"}}) {
    SCOPED_TRACE(common_name);
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<testing::TlsTestClient> probe,
                         testing::TlsTestClient::Connect(port, with_certificate));
    EXPECT_EQ(probe->served_common_name(), common_name);
  }
  node->reset();
  std::filesystem::remove_all(root);
}

}  // namespace
}  // namespace stead
