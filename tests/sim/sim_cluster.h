// Internal to tests/sim: the simulated cluster's types and the Simulator class, whose
// implementation is split by concern across simulator.cc (event loop, nodes, the
// runtime under each node's raft::ReadyPipeline: storage, apply), sim_network.cc (messages,
// snapshots streaming, partitions), sim_nemesis.cc (faults, membership changes, transfers, clients)
// and sim_checks.cc (per-step invariants and the final checks). Only simulator.h is the public
// entry.
//
// Thread-safety: a Simulator is single-threaded.
#ifndef STEAD_TESTS_SIM_SIM_CLUSTER_H_
#define STEAD_TESTS_SIM_SIM_CLUSTER_H_

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <queue>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "base/log.h"
#include "proto/raft.pb.h"
#include "raft/memory_log_storage.h"
#include "raft/raft.h"
#include "raft/ready_pipeline.h"
#include "raft/types.h"
#include "tests/sim/invariants.h"
#include "tests/sim/linearizability.h"
#include "tests/sim/profile.h"
#include "tests/sim/simulator.h"

namespace stead::sim::internal {

using raft::Index;
using raft::NodeId;
using raft::Term;

// The state machine each simulated node applies committed entries to: a small key-value
// map plus what the checks need. A copy of it is a snapshot's "bytes".
struct StateMachine {
  Index applied = 0;
  // Fingerprint of every entry applied so far, in order (State Machine Safety compares
  // it across nodes and against snapshots).
  uint64_t chain_hash = kFnvOffset;
  std::map<uint64_t, int64_t> kv;
  // Command ids applied: a command must never apply twice (exactly once).
  std::set<uint64_t> applied_commands;
  // Membership as of `applied`, tracked from applied CONF_CHANGE entries; it is the
  // conf_state a snapshot at `applied` records.
  pb::ConfState conf_state;

  // Fingerprint of the data (the key-value pairs), what production's content hash
  // covers: equal on every node at one applied index (State Machine Content).
  uint64_t ContentHash() const {
    uint64_t hash = kFnvOffset;
    for (const auto& [key, value] : kv) {
      hash = FnvMix(FnvMix(hash, key), static_cast<uint64_t>(value));
    }
    return hash;
  }
};

enum class EventKind {
  kTick,
  kDeliver,
  kPersist,
  kSnapshotDone,
  kNemesis,
  kCrash,
  kRestart,
  kStop,
};

struct Event {
  uint64_t time = 0;
  uint64_t sequence = 0;  // tie-break: FIFO among events at one time
  EventKind kind = EventKind::kTick;
  NodeId node = raft::kNoNode;
  uint64_t incarnation = 0;
  uint64_t transfer = 0;  // kSnapshotDone: key into Simulator::transfers_
  pb::Message message;
};

struct LaterEvent {
  bool operator()(const Event& a, const Event& b) const {
    if (a.time != b.time) return a.time > b.time;
    return a.sequence > b.sequence;
  }
};

// A write the node's pipeline submitted, waiting to become durable.
struct QueuedWrite {
  raft::LogWrite write;
  uint64_t sequence = 0;
  // The term the node led when it took the Ready (0 if it was not leader): every entry
  // in it was then in a leader's log, which Leader Completeness constrains.
  Term leader_term = 0;
};

class Simulator;
struct Node;

// The simulated runtime under one node's pipeline: simulated storage is its log writer,
// the simulated network its transport, the simulated state machine its applier.
class NodeRuntime final : public raft::ReadyPipeline::Runtime {
 public:
  NodeRuntime(Simulator* simulator, Node* node) : simulator_(simulator), node_(node) {}
  void Submit(raft::LogWrite write, uint64_t sequence) override;
  void Send(std::vector<pb::Message> messages) override;
  void Apply(std::vector<pb::Entry> committed_entries) override;
  absl::Time Now() override;
  void InstallSnapshot(const pb::SnapshotMetadata& snapshot) override;
  void Fail(absl::Status status) override;
  void OnReadyTaken(const raft::Ready& ready) override;
  void OnReadStates(std::vector<raft::ReadState> read_states) override;

 private:
  Simulator* const simulator_;
  Node* const node_;
};

struct Node {
  NodeId id = raft::kNoNode;
  // Shut down for good after its removal from the cluster.
  bool removed = false;
  bool stop_scheduled = false;
  // Incremented on every crash and restart; events of an older life are ignored.
  uint64_t incarnation = 0;
  // Durable: the log volume and the state machine's data volume. Production's state
  // machine does not sync each apply (storage/state_machine.h): what is durable is the
  // state as of its last flush, which a crash rolls `state` back to; the core then
  // hands out the committed entries after it again from the log.
  std::unique_ptr<raft::MemoryLogStorage> storage;
  StateMachine state;           // as applied (lost back to durable_state by a crash)
  StateMachine durable_state;   // as of the last flush
  StateMachine snapshot_state;  // the state at storage->LatestSnapshot()
  // Volatile.
  std::unique_ptr<raft::Raft> raft;                       // null while down
  std::unique_ptr<NodeRuntime> runtime;                   // with `raft`
  std::unique_ptr<raft::ReadyPipeline> pipeline;          // with `raft`
  std::map<Index, StateMachine> staged_snapshots;         // received checkpoints, by index
  std::deque<QueuedWrite> persist_queue;                  // submitted, not yet durable
  uint64_t persist_done_time = 0;                         // when the last queued Ready is durable
  std::vector<std::pair<Index, uint64_t>> pending_reads;  // (read index, op id)
  Index taken_last_index = 0;                             // last index handed out for persistence
  bool was_leader = false;                                // leader at the end of the previous step
  Term leader_term = 0;
  // Per-life monotonicity.
  Term last_term = 0;
  Index last_commit = 0;
  // Every message this node sends is lost until it crashes (a new leader that dies
  // before its entries leave it).
  bool muted = false;
  // Leader only: entries through this index were reported to the checker as committed.
  Index reported_commit = 0;
  Index commit_at_election = 0;

  // Microticks between this node's ticks: clocks run at slightly different rates.
  uint64_t tick_period = kMicroticksPerTick;

  bool up() const { return raft != nullptr; }
};

struct ClientOp {
  uint64_t id = 0;
  bool is_write = false;
  uint64_t key = 0;
  int64_t value = kAbsentValue;
  uint64_t call_time = 0;
  uint64_t return_time = 0;  // 0 while pending
  NodeId node = raft::kNoNode;
  uint64_t incarnation = 0;
  Index index = 0;           // writes: where the proposer appended it
  bool failed = false;       // definitely not executed
  bool at_follower = false;  // reads: asked of a node that was not leader
  // Writes: when some node first applied it. The entry was committed before, so a
  // response could have been sent then; this bounds writes whose proposer never
  // answered (crashed) and keeps the linearizability search small.
  uint64_t first_applied_time = 0;
};

// Captures the cores' log lines into the trace tail (without wall-clock times).
class TraceSink final : public LogSink {
 public:
  explicit TraceSink(std::deque<std::string>* tail) : tail_(tail) {}
  void Write(const LogRecord& record) override {
    tail_->push_back(FormatLogRecord(record, /*with_time=*/false));
    if (tail_->size() > kTailLines) tail_->pop_front();
  }
  static constexpr size_t kTailLines = 400;

 private:
  std::deque<std::string>* tail_;
};

class Simulator {
 public:
  Simulator(const Profile& profile, uint64_t seed, bool print_trace)
      : profile_(profile), seed_(seed), print_trace_(print_trace), random_(seed) {
    result_.seed = seed;
  }

  SimResult Run();

 private:
  // --- Randomness: the only source, drawn in a fixed order.
  uint64_t Range(uint64_t low, uint64_t high) { return low + random_() % (high - low + 1); }
  bool Chance(double probability) {
    return probability > 0 && std::uniform_real_distribution<double>(0, 1)(random_) < probability;
  }

  // --- Trace.
  void Trace(const std::string& line);
  uint64_t Clock() { return ++logical_clock_; }

  // --- Violations: the first one ends the run.
  void Fail(Check check, const std::string& what);
  void Fail(const Violation& violation) { Fail(violation.check, violation.what); }
  bool FailFalse(Check check, const std::string& what) {
    Fail(check, what);
    return false;
  }
  bool FailFalse(const Violation& violation) {
    Fail(violation);
    return false;
  }
  bool failed() const { return !violation_.empty(); }

  // --- Events.
  void Schedule(Event event);
  // Draws a persistence / network delay in microticks (smaller once healed).
  uint64_t PersistDelay();
  uint64_t NetworkDelay();
  void Dispatch(Event& event);
  Node* Find(NodeId id);
  Node* FindUp(NodeId id, uint64_t incarnation);

  // --- Nodes.
  Node& AddNode(NodeId id);
  void Start(Node& node);
  void Crash(Node& node, const char* why);
  void CrashAndScheduleRestart(Node& node, const char* why);
  // The state machine's memtables reach disk: after an applied batch (drawn per seed),
  // at a checkpoint and at a snapshot install.
  void FlushStateMachine(Node& node);
  int DownCount() const;
  Index SettledLastIndex(const Node& node) const;
  void Drain(Node& node);
  // The pipeline's runtime (NodeRuntime forwards here).
  friend class NodeRuntime;
  void CheckReady(Node& node, const raft::Ready& ready);
  void SubmitWrite(Node& node, raft::LogWrite write, uint64_t sequence);
  void ApplyCommitted(Node& node, const std::vector<pb::Entry>& entries);
  void AddReadStates(Node& node, const std::vector<raft::ReadState>& read_states);
  // A write becomes durable: the oldest in the node's persist queue.
  void Persist(Node& node);
  // Steps of Persist(); each returns false after reporting a violation.
  bool PersistSnapshot(Node& node, const pb::SnapshotMetadata& metadata);
  bool PersistEntries(Node& node, const std::vector<pb::Entry>& entries, Term leader_term);
  bool PersistHardState(Node& node, const pb::HardState& after);
  void ApplyEntry(Node& node, const pb::Entry& entry);
  // Steps of ApplyEntry(); the bool ones return false after reporting a violation.
  bool ApplyCommand(Node& node, const pb::Entry& entry);
  bool ApplyConfChange(Node& node, const pb::Entry& entry);
  void ScheduleStop(NodeId id);
  bool CheckLeadersHold(const pb::Entry& entry);
  void AcknowledgeWrite(Node& node, const pb::Entry& entry);
  void MaybeCompact(Node& node);
  void AnswerReads(Node& node);
  // Planted bugs (Profile::unsafe_*): whether the bug acts here.
  bool UnsafeLocalReadServes(const Node& node) const;
  bool UnsafeDropApply(const Node& node, const pb::Entry& entry);

  // --- Network.
  bool Blocked(NodeId from, NodeId to) const { return blocked_.count({from, to}) > 0; }
  void Send(Node& from, const pb::Message& message);
  void SendSnapshot(Node& from, const pb::Message& message);
  void Deliver(Event& event);
  void SnapshotDone(Event& event);

  // --- Nemesis and clients.
  void Nemesis();
  void Figure8Script();
  void StartPartition();
  void ChangeMembership(Node& leader);
  void ClientLoad();
  struct Client;
  Node* ClientTarget(Client& client);
  // A random running node that is not leader (a follower read), or null.
  Node* FollowerTarget();
  Node* Leader();

  // --- Checks.
  void CheckAfterStep();
  void CheckNewLeader(Node& node);
  void ReportLeaderCommits(Node& node);
  bool Converged(std::string* why);
  void FinalChecks();

  const Profile profile_;
  const uint64_t seed_;
  const bool print_trace_;
  std::mt19937_64 random_;
  SimResult result_;
  std::string violation_;

  uint64_t now_ = 0;
  uint64_t next_sequence_ = 0;
  uint64_t logical_clock_ = 0;
  std::priority_queue<Event, std::vector<Event>, LaterEvent> events_;
  std::map<NodeId, Node> nodes_;
  NodeId next_node_id_ = 1;

  bool settling_ = false;
  struct Figure8State {
    int phase = 0;
    uint64_t phase_start = 0;
    uint64_t armed_at = 0;
    NodeId a = raft::kNoNode;
    NodeId b = raft::kNoNode;
  };
  Figure8State figure8_;
  std::set<std::pair<NodeId, NodeId>> blocked_;
  uint64_t partition_end_ = 0;
  std::map<uint64_t, StateMachine> transfers_;
  uint64_t next_transfer_ = 1;
  // Profile::unsafe_drop_apply: the index whose write was dropped (0: not yet).
  Index dropped_apply_index_ = 0;

  struct Client {
    uint64_t op = 0;  // outstanding request, 0 when idle
    uint64_t deadline = 0;
    NodeId node = raft::kNoNode;  // the node it believes leads
  };
  std::vector<Client> clients_;
  std::map<uint64_t, ClientOp> ops_;
  std::map<std::pair<NodeId, Index>, uint64_t> pending_writes_;
  uint64_t next_op_id_ = 1;

  SafetyChecker checker_;
  std::deque<std::string> tail_;
  uint64_t trace_hash_ = kFnvOffset;
  std::shared_ptr<TraceSink> sink_ = std::make_shared<TraceSink>(&tail_);
  Logger logger_{sink_, LogLevel::kInfo};
};

}  // namespace stead::sim::internal

#endif  // STEAD_TESTS_SIM_SIM_CLUSTER_H_
