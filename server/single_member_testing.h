// Test helper: one voter with real storage, transport and RaftNode applying key-value
// commands, elected by itself — the member behind tests of the client port
// (ClientService, KvService, the test client). Stop it before the io_context stops.
//
// Not thread-safe; the node itself is.
#ifndef STEAD_SERVER_SINGLE_MEMBER_TESTING_H_
#define STEAD_SERVER_SINGLE_MEMBER_TESTING_H_

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <utility>

#include "absl/time/clock.h"
#include "base/asio.h"
#include "base/check.h"
#include "base/log.h"
#include "raft/raft.h"
#include "server/kv_apply.h"
#include "server/kv_service.h"
#include "server/peer_transport.h"
#include "server/raft_node.h"
#include "server/snapshot_store.h"
#include "storage/state_machine.h"
#include "storage/wal.h"

namespace stead::server {

class SingleMember {
 public:
  static constexpr uint64_t kCluster = 0xc0ffee;

  // Opens (bootstrapping) storage under `root`, starts the node and waits until it
  // leads. `limits` applies to the key-value service.
  SingleMember(boost::asio::io_context& io, const std::string& root, const Logger& logger,
               const KvLimits& limits = KvLimits()) {
    storage::WalOptions wal_options;
    wal_options.dir = root + "/wal";
    wal_options.logger = logger;
    wal_ = storage::Wal::Open(wal_options).value();
    if (wal_->LastIndex() == 0) {
      storage::WalWrite bootstrap;
      bootstrap.entries = raft::Raft::BootstrapEntries({1});
      bootstrap.hard_state.emplace();
      bootstrap.hard_state->set_term(1);
      bootstrap.hard_state->set_commit(1);
      STEAD_CHECK_OK(wal_->Write(std::move(bootstrap)));
    }
    storage::StateMachineOptions sm_options;
    sm_options.data_dir = root + "/data";
    sm_options.identity = {kCluster, 1, "stead-0"};
    sm_options.keyspaces = KvKeyspaces();
    sm_options.logger = logger;
    state_ = storage::StateMachine::Open(sm_options).value();
    snapshots_ = SnapshotStore::Open(sm_options.data_dir, logger).value();

    PeerTransportOptions transport_options;
    transport_options.cluster_id = kCluster;
    transport_options.node_id = 1;
    transport_ = std::make_unique<PeerTransport>(io, transport_options, logger,
                                                 [](pb::Message) {}, [](raft::NodeId) {});
    RaftNodeOptions options;
    options.raft.id = 1;
    options.raft.logger = logger;
    options.tick_interval = absl::Milliseconds(5);
    node_ = std::make_unique<RaftNode>(io, options, wal_.get(), state_.get(), transport_.get(),
                                       snapshots_.get(), ApplyKvCommand);
    STEAD_CHECK_OK(node_->Start());
    KvServiceOptions kv_options;
    kv_options.cluster_id = kCluster;
    kv_options.limits = limits;
    kv_ = std::make_unique<KvService>(kv_options, logger, node_.get(), state_.get(),
                                      [](raft::NodeId) { return std::optional<MemberAddress>(); });
    // A single voter elects itself within a few election timeouts; reads are served
    // once the state machine's checksums were verified.
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    while ((node_->Status().role != raft::Role::kLeader || !state_->checksums_verified()) &&
           absl::Now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
  ~SingleMember() { Stop(); }
  SingleMember(const SingleMember&) = delete;
  SingleMember& operator=(const SingleMember&) = delete;

  // Stops the transport and the node; the storage stays open until destruction.
  void Stop() {
    transport_->Stop();
    node_->Stop();
  }

  KvService& kv() { return *kv_; }
  RaftNode& node() { return *node_; }
  storage::StateMachine& state() { return *state_; }

 private:
  std::unique_ptr<storage::Wal> wal_;
  std::unique_ptr<storage::StateMachine> state_;
  std::unique_ptr<SnapshotStore> snapshots_;
  std::unique_ptr<PeerTransport> transport_;
  std::unique_ptr<RaftNode> node_;
  std::unique_ptr<KvService> kv_;
};

}  // namespace stead::server

#endif  // STEAD_SERVER_SINGLE_MEMBER_TESTING_H_
