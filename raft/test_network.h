// A tiny in-process network of Raft nodes for the unit tests in raft/ (the seeded,
// fault-injecting simulator lives in tests/sim/).
//
// The network plays the runtime for every node: it persists each Ready into the node's
// MemoryLogStorage at once, acknowledges it (OnPersisted), "applies" committed entries by
// recording them, and queues the Ready's messages. Deliver() hands queued messages to
// their destination in FIFO order, dropping those that cross a cut link. Everything is
// deterministic: nodes are visited in id order and there is no clock.
//
// Not thread-safe.
#ifndef STEAD_RAFT_TEST_NETWORK_H_
#define STEAD_RAFT_TEST_NETWORK_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "proto/raft.pb.h"
#include "raft/memory_log_storage.h"
#include "raft/raft.h"

namespace stead::raft::testing {

class TestNetwork {
 public:
  struct Node {
    std::unique_ptr<MemoryLogStorage> storage;
    std::unique_ptr<Raft> raft;
    // Applied NORMAL entries with data, in order: (index, data).
    std::vector<std::pair<Index, std::string>> applied;
    Index applied_index = 0;
    // Index of the latest snapshot installed from a leader (0 if none).
    Index installed_snapshot_index = 0;
    std::vector<ReadState> read_states;
    Config config;
    // Its Readys are left to the test (e.g. a ReadyPipeline driven step by step):
    // ProcessReadys() skips it.
    bool manual = false;
  };

  // Starts a bootstrapped cluster of `voters` (each persisted BootstrapEntries and
  // HardState{term 1, commit n}). `adjust` may change each node's config.
  explicit TestNetwork(const std::vector<NodeId>& voters,
                       std::function<void(Config&)> adjust = nullptr);

  // Adds a node with an empty log and membership (a member that will join).
  void AddEmptyNode(NodeId id);

  Raft& raft(NodeId id) { return *nodes_.at(id).raft; }
  Node& node(NodeId id) { return nodes_.at(id); }
  std::vector<NodeId> ids() const;

  // Processes every pending Ready of every node (persist, acknowledge, apply, queue
  // messages), repeatedly until none has one.
  void ProcessReadys();
  // Queues a message a manual node sends.
  void Enqueue(pb::Message message) { queue_.push_back(std::move(message)); }
  // Applies committed entries on `id` (in order, traced) and reports them to its core.
  void ApplyCommitted(NodeId id, const std::vector<pb::Entry>& entries);
  // Delivers the messages queued so far (not those they cause). Returns how many were
  // delivered.
  size_t DeliverOnce();
  // Processes Readys and delivers messages until the network is quiet (bounded).
  void Stabilize();
  // Ticks `id` `count` times, processing Readys after each tick.
  void Tick(NodeId id, int count = 1);
  // Ticks every node once, `count` times, stabilizing after each round.
  void TickAll(int count);
  // Campaign on `id` and stabilize.
  void Elect(NodeId id);
  // The single leader among reachable nodes of the highest term, or kNoNode.
  NodeId Leader() const;

  // Links: a message from a to b is dropped while (a, b) is cut.
  void Cut(NodeId a, NodeId b) {
    cut_.insert({a, b});
    cut_.insert({b, a});
  }
  void CutOneWay(NodeId from, NodeId to) { cut_.insert({from, to}); }
  void Isolate(NodeId id);
  void Heal() { cut_.clear(); }
  // Drops every queued message.
  void DropAll() { queue_.clear(); }
  // Messages currently queued (not yet delivered).
  const std::deque<pb::Message>& queue() const { return queue_; }
  // Drops queued messages for which `drop` returns true.
  void DropIf(const std::function<bool(const pb::Message&)>& drop);

  // Crash: the node loses its Raft object (and nothing persisted). Restart recreates it
  // from its storage.
  void Crash(NodeId id);
  void Restart(NodeId id);

  // Compacts `id`'s log through `index` (must be applied).
  void Compact(NodeId id, Index index);

  // When set, every delivered or dropped message and every applied entry is described
  // as one line appended here (for the data-driven script tests).
  void set_trace(std::vector<std::string>* trace) { trace_ = trace; }

  // Errors returned by Step (must stay empty in normal tests).
  const std::vector<std::string>& step_errors() const { return step_errors_; }

 private:
  void ProcessReady(NodeId id);
  void CreateRaft(NodeId id);

  std::map<NodeId, Node> nodes_;
  std::deque<pb::Message> queue_;
  std::set<std::pair<NodeId, NodeId>> cut_;
  std::function<void(Config&)> adjust_;
  std::vector<std::string> step_errors_;
  std::vector<std::string>* trace_ = nullptr;
};

// One line describing a message: "1->2 APPEND term=2 log_term=1 index=3 commit=3
// entries=[2/4]".
std::string DescribeMessage(const pb::Message& message);
// "term/index", plus ":data" for a command or "(add-voter 4)" for a membership change.
std::string DescribeEntry(const pb::Entry& entry);

}  // namespace stead::raft::testing

#endif  // STEAD_RAFT_TEST_NETWORK_H_
