#include "tests/sim/simulator.h"

#include <algorithm>
#include <cstdio>
#include <cstdint>
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

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "base/log.h"
#include "proto/raft.pb.h"
#include "raft/memory_log_storage.h"
#include "raft/raft.h"
#include "raft/types.h"
#include "tests/sim/invariants.h"
#include "tests/sim/linearizability.h"

namespace stead::sim {
namespace {

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

// A Ready taken from the core, waiting to become durable.
struct QueuedReady {
  raft::Ready ready;
  // The term the node led when it took this Ready (0 if it was not leader): every entry
  // in it was then in a leader's log, which Leader Completeness constrains.
  Term leader_term = 0;
};

struct Node {
  NodeId id = raft::kNoNode;
  // Shut down for good after its removal from the cluster.
  bool removed = false;
  bool stop_scheduled = false;
  // Incremented on every crash and restart; events of an older life are ignored.
  uint64_t incarnation = 0;
  // Durable: the log volume and the state machine's data volume.
  std::unique_ptr<raft::MemoryLogStorage> storage;
  StateMachine state;
  StateMachine snapshot_state;  // the state at storage->LatestSnapshot()
  // Volatile.
  std::unique_ptr<raft::Raft> raft;  // null while down
  std::map<Index, StateMachine> staged_snapshots;  // received checkpoints, by index
  std::deque<QueuedReady> persist_queue;           // taken, not yet durable
  uint64_t persist_done_time = 0;                  // when the last queued Ready is durable
  std::vector<std::pair<Index, uint64_t>> pending_reads;  // (read index, op id)
  Index taken_last_index = 0;  // last index handed out for persistence
  bool was_leader = false;     // leader at the end of the previous step
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
  Index index = 0;      // writes: where the proposer appended it
  bool failed = false;  // definitely not executed
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

  // --- Violations.
  void Fail(const std::string& what);
  bool failed() const { return !violation_.empty(); }

  // --- Events.
  void Schedule(Event event);
  void Dispatch(Event& event);
  Node* Find(NodeId id);
  Node* FindUp(NodeId id, uint64_t incarnation);

  // --- Nodes.
  Node& AddNode(NodeId id);
  void Start(Node& node);
  void Crash(Node& node, const char* why);
  void CrashAndScheduleRestart(Node& node, const char* why);
  int DownCount() const;
  Index SettledLastIndex(const Node& node) const;
  void Drain(Node& node);
  void HandleReady(Node& node, raft::Ready ready);
  void Persist(Node& node);
  void ApplyEntry(Node& node, const pb::Entry& entry);
  void MaybeCompact(Node& node);
  void AnswerReads(Node& node);

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
  Node* ClientTarget();
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

  struct Client {
    uint64_t op = 0;  // outstanding request, 0 when idle
    uint64_t deadline = 0;
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

// ---------------------------------------------------------------------------------------
// Trace and violations.

void Simulator::Trace(const std::string& line) {
  trace_hash_ = FnvBytes(FnvMix(trace_hash_, now_), line);
  tail_.push_back(absl::StrCat("t=", now_, " step=", result_.stats.steps, " ", line));
  if (print_trace_) std::fprintf(stdout, "%s\n", tail_.back().c_str());
  if (tail_.size() > TraceSink::kTailLines) tail_.pop_front();
}

void Simulator::Fail(const std::string& what) {
  if (failed()) return;
  violation_ = what;
  result_.stats.violations = 1;
  std::string report = absl::StrCat("VIOLATION seed=", seed_, " step=", result_.stats.steps,
                                    " t=", now_, ": ", what, "\n  replay: raft_sim --profile=",
                                    profile_.name, " --seed=", seed_, "\n  ", profile_.Describe(),
                                    "\n  trace tail (oldest first):\n");
  for (const std::string& line : tail_) absl::StrAppend(&report, "    ", line, "\n");
  result_.report = std::move(report);
}

// ---------------------------------------------------------------------------------------
// Events.

void Simulator::Schedule(Event event) {
  event.sequence = next_sequence_++;
  events_.push(std::move(event));
}

Node* Simulator::Find(NodeId id) {
  const auto it = nodes_.find(id);
  return it == nodes_.end() ? nullptr : &it->second;
}

Node* Simulator::FindUp(NodeId id, uint64_t incarnation) {
  Node* node = Find(id);
  if (node == nullptr || !node->up() || node->incarnation != incarnation) return nullptr;
  return node;
}

void Simulator::Dispatch(Event& event) {
  switch (event.kind) {
    case EventKind::kTick: {
      Node* node = FindUp(event.node, event.incarnation);
      if (node == nullptr) return;
      node->raft->Tick();
      Drain(*node);
      event.time = now_ + node->tick_period;
      Schedule(std::move(event));
      return;
    }
    case EventKind::kDeliver:
      Deliver(event);
      return;
    case EventKind::kPersist: {
      Node* node = FindUp(event.node, event.incarnation);
      if (node != nullptr) Persist(*node);
      return;
    }
    case EventKind::kSnapshotDone:
      SnapshotDone(event);
      return;
    case EventKind::kNemesis:
      Nemesis();
      event.time = now_ + kMicroticksPerTick;
      Schedule(std::move(event));
      return;
    case EventKind::kCrash: {
      Node* node = FindUp(event.node, event.incarnation);
      if (node == nullptr) return;
      if (!settling_ && profile_.figure8_script) {
        Crash(*node, "leader died before its own term's entry spread");
        ++result_.stats.crashes;
      } else if (!settling_ && DownCount() < profile_.max_crashed) {
        CrashAndScheduleRestart(*node, "new leader crash");
      } else {
        node->muted = false;
      }
      return;
    }
    case EventKind::kRestart: {
      Node* node = Find(event.node);
      if (node != nullptr && !node->up() && !node->removed &&
          node->incarnation == event.incarnation) {
        Trace(absl::StrCat("restart node=", node->id));
        Start(*node);
      }
      return;
    }
    case EventKind::kStop: {
      Node* node = Find(event.node);
      if (node == nullptr || node->removed) return;
      Trace(absl::StrCat("stop removed node=", node->id));
      if (node->up()) Crash(*node, "removed");
      node->removed = true;
      return;
    }
  }
}

// ---------------------------------------------------------------------------------------
// Nodes.

Node& Simulator::AddNode(NodeId id) {
  Node& node = nodes_[id];
  node.id = id;
  node.storage = std::make_unique<raft::MemoryLogStorage>();
  const uint64_t skew = profile_.tick_skew_percent * kMicroticksPerTick / 100;
  node.tick_period = Range(kMicroticksPerTick - skew, kMicroticksPerTick + skew);
  next_node_id_ = std::max(next_node_id_, id + 1);
  return node;
}

void Simulator::Start(Node& node) {
  raft::Config config;
  config.id = node.id;
  config.election_timeout_ticks = profile_.election_timeout_ticks;
  config.heartbeat_interval_ticks = profile_.heartbeat_interval_ticks;
  config.random_seed = random_();
  config.pre_vote = profile_.pre_vote;
  config.check_quorum = profile_.check_quorum;
  config.max_message_bytes = profile_.max_message_bytes;
  config.max_inflight_messages = profile_.max_inflight_messages;
  config.applied = node.state.applied;
  config.logger = logger_.WithContext("node", node.id);
  config.unsafe_commit_previous_term_entries_for_testing =
      profile_.unsafe_commit_previous_term_entries;
  absl::StatusOr<std::unique_ptr<raft::Raft>> created =
      raft::Raft::Create(std::move(config), node.storage.get());
  if (!created.ok()) {
    Fail(absl::StrCat("node ", node.id, " failed to start from its persisted state: ",
                      created.status().ToString()));
    return;
  }
  node.raft = std::move(created).value();
  ++node.incarnation;
  node.taken_last_index = node.storage->LastIndex();
  node.was_leader = false;
  node.last_term = node.raft->term();
  node.last_commit = node.raft->commit_index();
  node.reported_commit = 0;
  node.persist_done_time = now_;
  // Nodes tick in phase offsets of their own, as real clocks do.
  Event tick;
  tick.kind = EventKind::kTick;
  tick.node = node.id;
  tick.incarnation = node.incarnation;
  tick.time = now_ + Range(1, kMicroticksPerTick);
  Schedule(std::move(tick));
  Drain(node);
}

Index Simulator::SettledLastIndex(const Node& node) const {
  // Persisted entries from the first queued truncation on may already be replaced in the
  // core's memory (a follower truncated a stale suffix, then won an election before the
  // truncation was durable); only the prefix before it is the node's current log.
  Index last = node.storage->LastIndex();
  for (const QueuedReady& queued : node.persist_queue) {
    if (queued.ready.snapshot.has_value()) return node.storage->FirstIndex() - 1;
    if (!queued.ready.entries.empty()) {
      last = std::min(last, queued.ready.entries.front().index() - 1);
    }
  }
  return last;
}

int Simulator::DownCount() const {
  int down = 0;
  for (const auto& [id, node] : nodes_) {
    if (!node.removed && !node.up()) ++down;
  }
  return down;
}

void Simulator::CrashAndScheduleRestart(Node& node, const char* why) {
  Crash(node, why);
  ++result_.stats.crashes;
  Event restart;
  restart.kind = EventKind::kRestart;
  restart.node = node.id;
  restart.incarnation = node.incarnation;
  restart.time = now_ + Range(1, profile_.down_ticks) * kMicroticksPerTick;
  Schedule(std::move(restart));
}

void Simulator::Crash(Node& node, const char* why) {
  Trace(absl::StrCat("crash node=", node.id, " (", why, ") losing ", node.persist_queue.size(),
                     " unpersisted readys"));
  node.raft.reset();
  node.muted = false;
  node.persist_queue.clear();
  node.staged_snapshots.clear();
  node.pending_reads.clear();
  ++node.incarnation;
}

void Simulator::Drain(Node& node) {
  // Bounded: a core that never stops producing Readys is a bug, not a hang.
  for (int i = 0; i < 1000 && node.up() && !failed(); ++i) {
    if (!node.raft->HasReady()) return;
    HandleReady(node, node.raft->TakeReady());
  }
  if (node.up() && node.raft->HasReady() && !failed()) {
    Fail(absl::StrCat("node ", node.id, " kept producing Readys (1000 in one step)"));
  }
}

void Simulator::HandleReady(Node& node, raft::Ready ready) {
  if (ready.soft_state.has_value()) {
    Trace(absl::StrCat("node=", node.id, " role=", raft::RoleName(ready.soft_state->role),
                       " leader=", ready.soft_state->leader, " term=", node.raft->term()));
  }
  // Leader Append-Only: a leader that stayed leader in one term only appends.
  if (!ready.entries.empty() && node.was_leader && !ready.soft_state.has_value() &&
      node.raft->role() == raft::Role::kLeader && node.leader_term == node.raft->term() &&
      ready.entries.front().index() != node.taken_last_index + 1) {
    Fail(absl::StrCat("leader append-only: leader ", node.id, " of term ", node.leader_term,
                      " handed out entries from index ", ready.entries.front().index(),
                      " after index ", node.taken_last_index));
    return;
  }
  if (ready.snapshot.has_value()) node.taken_last_index = ready.snapshot->index();
  if (!ready.entries.empty()) node.taken_last_index = ready.entries.back().index();

  for (const pb::Message& message : ready.messages) Send(node, message);
  if (profile_.unsafe_send_before_persist) {
    // The runtime bug of etcd#14370: acknowledging what is not yet durable.
    for (const pb::Message& message : ready.messages_after_persist) Send(node, message);
    ready.messages_after_persist.clear();
  }
  for (const raft::ReadState& read : ready.read_states) {
    uint64_t op_id = 0;
    if (!absl::SimpleAtoi(read.context, &op_id) || ops_.count(op_id) == 0) {
      Fail(absl::StrCat("node ", node.id, " answered an unknown read '", read.context, "'"));
      return;
    }
    node.pending_reads.emplace_back(read.index, op_id);
  }
  AnswerReads(node);
  if (ready.hard_state.has_value() || ready.snapshot.has_value() || !ready.entries.empty() ||
      !ready.committed_entries.empty() || !ready.messages_after_persist.empty()) {
    // Durable some time later, strictly in the order Readys were taken.
    node.persist_done_time =
        std::max(now_ + Range(1, profile_.max_persist_delay), node.persist_done_time);
    Event persist;
    persist.kind = EventKind::kPersist;
    persist.node = node.id;
    persist.incarnation = node.incarnation;
    persist.time = node.persist_done_time;
    Schedule(std::move(persist));
    const Term leader_term =
        node.raft->role() == raft::Role::kLeader ? node.raft->term() : Term{0};
    node.persist_queue.push_back(QueuedReady{std::move(ready), leader_term});
  }
}

void Simulator::Persist(Node& node) {
  if (node.persist_queue.empty()) {
    Fail(absl::StrCat("node ", node.id, ": persist event without a queued Ready"));
    return;
  }
  raft::Ready ready = std::move(node.persist_queue.front().ready);
  const Term leader_term = node.persist_queue.front().leader_term;
  node.persist_queue.pop_front();
  raft::MemoryLogStorage& storage = *node.storage;

  if (ready.snapshot.has_value()) {
    const pb::SnapshotMetadata& metadata = *ready.snapshot;
    const auto staged = node.staged_snapshots.find(metadata.index());
    if (staged == node.staged_snapshots.end()) {
      return Fail(absl::StrCat("node ", node.id, " was told to install snapshot index ",
                               metadata.index(), " whose bytes were never staged"));
    }
    if (metadata.index() < node.state.applied) {
      return Fail(absl::StrCat("node ", node.id, " installs snapshot index ", metadata.index(),
                               " below its applied index ", node.state.applied));
    }
    if (const absl::Status status = storage.ApplySnapshot(metadata); !status.ok()) {
      return Fail(absl::StrCat("node ", node.id, " snapshot install: ", status.ToString()));
    }
    node.state = staged->second;
    node.snapshot_state = staged->second;
    node.staged_snapshots.erase(node.staged_snapshots.begin(), std::next(staged));
    ++result_.stats.snapshots;
    Trace(absl::StrCat("node=", node.id, " installed snapshot index=", metadata.index(),
                       " term=", metadata.term()));
    if (std::string v = checker_.OnSnapshotState(node.id, metadata.index(),
                                                 node.state.chain_hash);
        !v.empty()) {
      return Fail(v);
    }
  }
  if (!ready.entries.empty()) {
    // Entries at or below the snapshot are skipped by the storage; check the rest.
    std::vector<pb::Entry> kept;
    for (const pb::Entry& entry : ready.entries) {
      if (entry.index() > storage.FirstIndex() - 1) kept.push_back(entry);
    }
    if (!kept.empty()) {
      const Index before = kept.front().index() - 1;
      Term previous_term = 0;
      if (before > 0) {
        absl::StatusOr<Term> term = storage.TermAt(before);
        if (!term.ok()) {
          return Fail(absl::StrCat("node ", node.id, " persists index ", before + 1,
                                   " but holds no entry at ", before, ": ",
                                   term.status().ToString()));
        }
        previous_term = *term;
      }
      if (std::string v = checker_.OnPersistedEntries(node.id, previous_term, kept); !v.empty()) {
        return Fail(v);
      }
      if (leader_term != 0) {
        for (const pb::Entry& entry : kept) {
          if (std::string v = checker_.CheckLeaderEntry(node.id, leader_term, entry);
              !v.empty()) {
            return Fail(v);
          }
        }
      }
    }
    if (const absl::Status status = storage.Append(ready.entries); !status.ok()) {
      return Fail(absl::StrCat("node ", node.id, " append: ", status.ToString()));
    }
  }
  // The contract's order (snapshot, entries, hard state); the whole Ready becomes
  // durable in this one step, as if written atomically.
  if (ready.hard_state.has_value()) {
    const pb::HardState before = storage.hard_state();
    const pb::HardState& after = *ready.hard_state;
    if (after.term() < before.term()) {
      return Fail(absl::StrCat("node ", node.id, " persisted term ", after.term(), " after ",
                               before.term()));
    }
    if (after.term() == before.term() && before.vote() != raft::kNoNode &&
        after.vote() != before.vote()) {
      return Fail(absl::StrCat("node ", node.id, " changed its persisted vote in term ",
                               after.term(), " from ", before.vote(), " to ", after.vote()));
    }
    if (after.commit() < before.commit()) {
      return Fail(absl::StrCat("node ", node.id, " persisted commit ", after.commit(),
                               " after ", before.commit()));
    }
    storage.SetHardState(after);
  }
  const uint64_t incarnation = node.incarnation;
  for (const pb::Message& message : ready.messages_after_persist) Send(node, message);
  if (node.incarnation != incarnation) return;
  if (const auto position = ready.PersistedPosition(); position.has_value()) {
    node.raft->OnPersisted(position->first, position->second);
  }
  for (const pb::Entry& entry : ready.committed_entries) {
    ApplyEntry(node, entry);
    if (failed() || !node.up()) return;
  }
  if (!ready.committed_entries.empty()) {
    node.raft->OnApplied(node.state.applied);
    MaybeCompact(node);
  }
  AnswerReads(node);
  Drain(node);
}

void Simulator::ApplyEntry(Node& node, const pb::Entry& entry) {
  StateMachine& state = node.state;
  if (entry.index() != state.applied + 1) {
    return Fail(absl::StrCat("node ", node.id, " was handed committed index ", entry.index(),
                             " after applying ", state.applied));
  }
  const uint64_t content = EntryContentHash(entry);
  state.chain_hash = FnvMix(FnvMix(FnvMix(state.chain_hash, entry.index()), entry.term()), content);
  state.applied = entry.index();

  if (entry.type() == pb::ENTRY_TYPE_NORMAL && !entry.data().empty()) {
    const std::vector<absl::string_view> parts = absl::StrSplit(entry.data(), ' ');
    uint64_t op_id = 0;
    uint64_t key = 0;
    int64_t value = 0;
    if (parts.size() != 3 || !absl::SimpleAtoi(parts[0], &op_id) ||
        !absl::SimpleAtoi(parts[1], &key) || !absl::SimpleAtoi(parts[2], &value)) {
      return Fail(absl::StrCat("node ", node.id, " applied a command nobody proposed: '",
                               entry.data(), "'"));
    }
    if (!state.applied_commands.insert(op_id).second) {
      return Fail(absl::StrCat("node ", node.id, " applied command ", op_id, " twice (again at ",
                               entry.index(), ")"));
    }
    state.kv[key] = value;
    if (const auto op = ops_.find(op_id); op != ops_.end() && op->second.first_applied_time == 0) {
      op->second.first_applied_time = Clock();
    }
  } else if (entry.type() == pb::ENTRY_TYPE_CONF_CHANGE) {
    pb::ConfChange change;
    if (!change.ParseFromString(entry.data())) {
      return Fail(absl::StrCat("node ", node.id, " applied an unparsable conf change at ",
                               entry.index()));
    }
    std::set<uint64_t> voters(state.conf_state.voters().begin(), state.conf_state.voters().end());
    std::set<uint64_t> learners(state.conf_state.learners().begin(),
                                state.conf_state.learners().end());
    const NodeId target = change.node_id();
    switch (change.type()) {
      case pb::CONF_CHANGE_TYPE_ADD_LEARNER:
        learners.insert(target);
        break;
      case pb::CONF_CHANGE_TYPE_ADD_VOTER:
        learners.erase(target);
        voters.insert(target);
        break;
      case pb::CONF_CHANGE_TYPE_REMOVE_NODE: {
        voters.erase(target);
        learners.erase(target);
        // The operator shuts a removed member down once its removal is committed;
        // give it a little while, as a real runbook would.
        Node* removed = Find(target);
        if (removed != nullptr && !removed->stop_scheduled) {
          removed->stop_scheduled = true;
          Event stop;
          stop.kind = EventKind::kStop;
          stop.node = target;
          stop.time = now_ + Range(0, 3 * static_cast<uint64_t>(profile_.election_timeout_ticks)) *
                                 kMicroticksPerTick;
          Schedule(std::move(stop));
        }
        break;
      }
      default:
        return Fail(absl::StrCat("node ", node.id, " applied a conf change of unknown type"));
    }
    state.conf_state.clear_voters();
    state.conf_state.clear_learners();
    for (const uint64_t id : voters) state.conf_state.add_voters(id);
    for (const uint64_t id : learners) state.conf_state.add_learners(id);
  }

  bool is_new = false;
  if (std::string v = checker_.OnApplied(node.id, entry.index(), entry.term(), content,
                                         state.chain_hash, &is_new);
      !v.empty()) {
    return Fail(v);
  }
  if (is_new) {
    ++result_.stats.commits;
    if (entry.type() == pb::ENTRY_TYPE_CONF_CHANGE) ++result_.stats.conf_changes;
    // Leader Completeness for leaders elected before this index was first applied:
    // their persisted entry there must be this one.
    for (auto& [id, other] : nodes_) {
      if (!other.up() || other.raft->role() != raft::Role::kLeader) continue;
      const Index index = entry.index();
      if (index < other.storage->FirstIndex() || index > SettledLastIndex(other)) continue;
      absl::StatusOr<std::vector<pb::Entry>> held = other.storage->Entries(index, index + 1, 1);
      if (!held.ok() || held->empty()) continue;
      if (std::string v = checker_.CheckLeaderEntry(id, other.raft->term(), held->front());
          !v.empty()) {
        return Fail(v);
      }
    }
  }

  // Client acknowledgement: the proposer applied the index it proposed at.
  const auto pending = pending_writes_.find({node.id, entry.index()});
  if (pending != pending_writes_.end()) {
    ClientOp& op = ops_[pending->second];
    pending_writes_.erase(pending);
    if (op.incarnation == node.incarnation) {
      const std::string expected = absl::StrCat(op.id, " ", op.key, " ", op.value);
      if (entry.type() == pb::ENTRY_TYPE_NORMAL && entry.data() == expected) {
        op.return_time = Clock();
        ++result_.stats.writes_acked;
      } else {
        // Another entry is committed where this one was appended: Raft never moves an
        // entry to another index and the client never retries, so it cannot commit.
        op.failed = true;
      }
    }
  }
}

void Simulator::MaybeCompact(Node& node) {
  if (profile_.compaction_threshold == 0) return;
  const Index first = node.storage->FirstIndex();
  if (node.state.applied < first || node.state.applied - first + 1 < profile_.compaction_threshold) {
    return;
  }
  if (const absl::Status status = node.storage->Compact(node.state.applied, node.state.conf_state);
      !status.ok()) {
    return Fail(absl::StrCat("node ", node.id, " compaction at ", node.state.applied, ": ",
                             status.ToString()));
  }
  node.snapshot_state = node.state;
  ++result_.stats.compactions;
  Trace(absl::StrCat("node=", node.id, " compacted through ", node.state.applied));
}

void Simulator::AnswerReads(Node& node) {
  auto& reads = node.pending_reads;
  for (auto it = reads.begin(); it != reads.end();) {
    if (it->first > node.state.applied) {
      ++it;
      continue;
    }
    ClientOp& op = ops_[it->second];
    if (op.return_time == 0 && !op.failed) {
      const auto value = node.state.kv.find(op.key);
      op.value = value == node.state.kv.end() ? kAbsentValue : value->second;
      op.return_time = Clock();
      ++result_.stats.reads_done;
    }
    it = reads.erase(it);
  }
}

// ---------------------------------------------------------------------------------------
// Network.

void Simulator::Send(Node& from, const pb::Message& message) {
  if (message.type() == pb::MESSAGE_TYPE_SNAPSHOT) return SendSnapshot(from, message);
  Node* to = Find(message.to());
  if (to == nullptr || to->removed) return;
  if (!to->up() && Chance(0.5)) {
    // The connection was refused: the runtime tells the core.
    from.raft->ReportUnreachable(message.to());
    return;
  }
  if (from.muted || Blocked(from.id, message.to()) ||
      Chance(settling_ ? 0.0 : profile_.drop_probability)) {
    return;
  }
  const int copies = Chance(settling_ ? 0.0 : profile_.duplicate_probability) ? 2 : 1;
  for (int i = 0; i < copies; ++i) {
    Event deliver;
    deliver.kind = EventKind::kDeliver;
    deliver.node = message.to();
    deliver.message = message;
    deliver.time = now_ + Range(profile_.min_delay, profile_.max_delay);
    if (!settling_ && Chance(profile_.long_delay_probability)) {
      deliver.time = now_ + Range(1, profile_.long_delay_ticks) * kMicroticksPerTick;
    }
    Schedule(std::move(deliver));
  }
}

void Simulator::SendSnapshot(Node& from, const pb::Message& message) {
  // The "bytes" are the sender's state machine at its latest checkpoint.
  if (from.snapshot_state.applied != message.snapshot().index()) {
    return Fail(absl::StrCat("node ", from.id, " sends snapshot index ", message.snapshot().index(),
                             " but its latest checkpoint is at ", from.snapshot_state.applied));
  }
  const uint64_t transfer = next_transfer_++;
  transfers_[transfer] = from.snapshot_state;
  Trace(absl::StrCat("node=", from.id, " streams snapshot index=", message.snapshot().index(),
                     " to ", message.to()));
  Event done;
  done.kind = EventKind::kSnapshotDone;
  done.node = from.id;
  done.incarnation = from.incarnation;
  done.transfer = transfer;
  done.message = message;
  done.time = now_ + Range(1, profile_.snapshot_transfer_ticks) * kMicroticksPerTick;
  Schedule(std::move(done));
}

void Simulator::SnapshotDone(Event& event) {
  StateMachine bytes = std::move(transfers_[event.transfer]);
  transfers_.erase(event.transfer);
  const NodeId to_id = event.message.to();
  Node* to = Find(to_id);
  const bool ok = to != nullptr && to->up() && !to->removed && !Blocked(event.node, to_id) &&
                  !Chance(settling_ ? 0.0 : profile_.drop_probability);
  if (ok) {
    // The runtime verified the checkpoint; stage it, then hand the message to the core.
    to->staged_snapshots[event.message.snapshot().index()] = std::move(bytes);
    ++result_.stats.messages;
    if (const absl::Status status = to->raft->Step(event.message); !status.ok()) {
      return Fail(absl::StrCat("node ", to_id, " rejected a SNAPSHOT message: ",
                               status.ToString()));
    }
    Drain(*to);
  }
  Node* from = FindUp(event.node, event.incarnation);
  if (from != nullptr) {
    Trace(absl::StrCat("node=", from->id, " snapshot to ", to_id, ok ? " done" : " failed"));
    from->raft->ReportSnapshot(to_id, ok);
    Drain(*from);
  }
}

void Simulator::Deliver(Event& event) {
  Node* to = Find(event.node);
  if (to == nullptr || !to->up() || to->removed || Blocked(event.message.from(), event.node)) {
    return;
  }
  ++result_.stats.messages;
  const pb::Message& m = event.message;
  trace_hash_ = FnvMix(FnvMix(FnvMix(FnvMix(FnvMix(trace_hash_, static_cast<uint64_t>(m.type())),
                                            m.from()),
                                     m.term()),
                              m.index()),
                       static_cast<uint64_t>(m.entries_size()));
  if (const absl::Status status = to->raft->Step(event.message); !status.ok()) {
    return Fail(absl::StrCat("node ", to->id, " rejected message type ",
                             pb::MessageType_Name(event.message.type()), " from ",
                             event.message.from(), ": ", status.ToString()));
  }
  Drain(*to);
}

// ---------------------------------------------------------------------------------------
// Nemesis and clients.

Node* Simulator::Leader() {
  Node* best = nullptr;
  for (auto& [id, node] : nodes_) {
    if (!node.up() || node.raft->role() != raft::Role::kLeader) continue;
    if (best == nullptr || node.raft->term() > best->raft->term()) best = &node;
  }
  return best;
}

void Simulator::StartPartition() {
  std::vector<NodeId> members;
  for (const auto& [id, node] : nodes_) {
    if (!node.removed) members.push_back(id);
  }
  if (members.size() < 2) return;
  std::shuffle(members.begin(), members.end(), random_);
  const uint64_t kind = Range(0, 3);
  std::string what;
  if (kind == 0 || kind == 3) {
    // Symmetric split: a minority (or, with kind 3, the leader alone) cut off.
    size_t cut = 1 + Range(0, (members.size() - 1) / 2);
    if (kind == 3) {
      Node* leader = Leader();
      if (leader != nullptr) {
        members.erase(std::find(members.begin(), members.end(), leader->id));
        members.insert(members.begin(), leader->id);
      }
      cut = 1;
    }
    for (size_t i = 0; i < cut; ++i) {
      for (size_t j = cut; j < members.size(); ++j) {
        blocked_.insert({members[i], members[j]});
        blocked_.insert({members[j], members[i]});
      }
    }
    what = absl::StrCat(kind == 3 ? "isolate" : "split", " first ", cut, " of shuffled");
  } else if (kind == 1) {
    // One-way: some links drop in one direction only.
    const uint64_t links = Range(1, 3);
    for (uint64_t i = 0; i < links; ++i) {
      const NodeId a = members[Range(0, members.size() - 1)];
      const NodeId b = members[Range(0, members.size() - 1)];
      if (a != b) blocked_.insert({a, b});
    }
    what = "one-way";
  } else {
    // Bridge: two halves that only reach each other through members[0].
    const size_t half = 1 + members.size() / 2;
    for (size_t i = 1; i < half; ++i) {
      for (size_t j = half; j < members.size(); ++j) {
        blocked_.insert({members[i], members[j]});
        blocked_.insert({members[j], members[i]});
      }
    }
    what = absl::StrCat("bridge via ", members[0]);
  }
  std::string links;
  for (const auto& [a, b] : blocked_) absl::StrAppend(&links, " ", a, "->", b);
  Trace(absl::StrCat("partition ", what, ":", links));
  partition_end_ = now_ + Range(1, profile_.partition_ticks) * kMicroticksPerTick;
  ++result_.stats.partitions;
}

void Simulator::ChangeMembership(Node& leader) {
  const pb::ConfState& conf = leader.raft->conf_state();
  const int voters = conf.voters_size();
  const int learners = conf.learners_size();
  pb::ConfChange change;
  // Learners wanted by the profile come first; then random churn when enabled.
  const bool want_learner = learners < profile_.learners;
  uint64_t action = want_learner ? 0 : Range(0, 3);
  if (!want_learner && !profile_.membership_changes) return;
  if (action == 1 && (learners == 0 || voters >= profile_.max_voters)) action = 0;
  if (action == 2 && voters <= profile_.min_voters) action = 0;
  if (action == 3 && learners == 0) action = 0;
  if (action == 0 && voters + learners >= profile_.max_voters + 2) return;
  switch (action) {
    case 0:
      change.set_type(pb::CONF_CHANGE_TYPE_ADD_LEARNER);
      change.set_node_id(next_node_id_);
      break;
    case 1:
      change.set_type(pb::CONF_CHANGE_TYPE_ADD_VOTER);
      change.set_node_id(conf.learners(static_cast<int>(Range(0, static_cast<uint64_t>(learners) - 1))));
      break;
    case 2:
      change.set_type(pb::CONF_CHANGE_TYPE_REMOVE_NODE);
      change.set_node_id(conf.voters(static_cast<int>(Range(0, static_cast<uint64_t>(voters) - 1))));
      break;
    default:
      change.set_type(pb::CONF_CHANGE_TYPE_REMOVE_NODE);
      change.set_node_id(conf.learners(static_cast<int>(Range(0, static_cast<uint64_t>(learners) - 1))));
      break;
  }
  change.set_id(next_op_id_++);
  const absl::Status status = leader.raft->ProposeConfChange(change);
  Trace(absl::StrCat("propose conf change ", pb::ConfChangeType_Name(change.type()), " node=",
                     change.node_id(), " at leader ", leader.id, ": ", status.ToString()));
  if (status.ok() && change.type() == pb::CONF_CHANGE_TYPE_ADD_LEARNER) {
    // A joining node starts with an empty log and learns everything from the leader.
    Start(AddNode(change.node_id()));
  }
  Drain(leader);
}

void Simulator::Figure8Script() {
  // Drives the sequence of Raft paper Figure 8 with seeded timings (3 voters A, B, C):
  //  0. leader A is muted, appends entries nobody receives, and crashes;
  //  1. B is elected (by C), muted likewise, appends a different entry at the same
  //     index, crashes; A restarts;
  //  2. A is elected (by C, its log ends in an older term), replicates its old entry
  //     to C; the unsafe rule commits it and crash_on_old_term_commit kills A before
  //     its own term's entry reaches C; B restarts;
  //  3. B (last term newer than C's) is elected by C and overwrites the committed
  //     entry: Leader Completeness must fire.
  // Any phase that stalls for figure8_phase_ticks starts over with everyone up.
  Node* leader = Leader();
  auto restart = [this](NodeId id) {
    Node* node = Find(id);
    if (node != nullptr && !node->up() && !node->removed) {
      Trace(absl::StrCat("figure8: restart node=", id));
      Start(*node);
    }
  };
  const uint64_t phase_age = now_ - figure8_.phase_start;
  if (phase_age > profile_.figure8_phase_ticks * kMicroticksPerTick) {
    Trace(absl::StrCat("figure8: phase ", figure8_.phase, " stalled; starting over"));
    for (auto& [id, node] : nodes_) {
      node.muted = false;
      restart(id);
    }
    figure8_ = Figure8State{};
    figure8_.phase_start = now_;
    return;
  }
  auto next_phase = [this](int phase) {
    figure8_.phase = phase;
    figure8_.phase_start = now_;
    figure8_.armed_at = 0;
  };
  switch (figure8_.phase) {
    case 0:
    case 1: {
      if (leader == nullptr || (figure8_.phase == 1 && leader->id == figure8_.a)) return;
      if (figure8_.armed_at == 0) {
        leader->muted = true;
        figure8_.armed_at = now_ + Range(1, 4) * kMicroticksPerTick;
        Trace(absl::StrCat("figure8: phase ", figure8_.phase, " mute leader ", leader->id));
        return;
      }
      if (now_ < figure8_.armed_at || !leader->muted) return;
      if (figure8_.phase == 0) {
        figure8_.a = leader->id;
        Crash(*leader, "figure8 A");
        ++result_.stats.crashes;
        next_phase(1);
      } else {
        figure8_.b = leader->id;
        Crash(*leader, "figure8 B");
        ++result_.stats.crashes;
        restart(figure8_.a);
        next_phase(2);
      }
      return;
    }
    case 2:
      // Waits for A to be elected and die by crash_on_old_term_commit.
      if (leader != nullptr && leader->id != figure8_.a) {
        next_phase(0);  // someone else won: start over from here
        return;
      }
      if (Node* a = Find(figure8_.a); a != nullptr && !a->up() && figure8_.armed_at == 0) {
        figure8_.armed_at = now_;
        restart(figure8_.b);
        next_phase(3);
      }
      return;
    default:
      // B and C elect; the checks do the rest. Then start over.
      if (leader != nullptr) {
        restart(figure8_.a);
        next_phase(0);
      }
      return;
  }
}

void Simulator::Nemesis() {
  if (settling_) return;
  if (profile_.figure8_script) {
    Figure8Script();
    ClientLoad();
    return;
  }
  if (!blocked_.empty() && now_ >= partition_end_) {
    blocked_.clear();
    Trace("heal partition");
  }
  if (blocked_.empty() && Chance(profile_.partition_probability)) StartPartition();

  if (Chance(profile_.crash_probability)) {
    int down = 0;
    std::vector<NodeId> candidates;
    for (const auto& [id, node] : nodes_) {
      if (node.removed) continue;
      if (!node.up()) ++down;
      if (node.up()) candidates.push_back(id);
    }
    if (down < profile_.max_crashed && !candidates.empty()) {
      Node* leader = Leader();
      Node& victim = leader != nullptr && Chance(0.4)
                         ? *leader
                         : nodes_[candidates[Range(0, candidates.size() - 1)]];
      CrashAndScheduleRestart(victim, "nemesis");
    }
  }

  Node* leader = Leader();
  if (leader != nullptr && (profile_.learners > 0 || profile_.membership_changes) &&
      Chance(profile_.membership_changes ? profile_.conf_change_probability : 0.05)) {
    ChangeMembership(*leader);
  }
  leader = Leader();
  if (leader != nullptr && profile_.leadership_transfers &&
      Chance(profile_.transfer_probability)) {
    const pb::ConfState& conf = leader->raft->conf_state();
    if (conf.voters_size() > 1) {
      const NodeId target = conf.voters(static_cast<int>(Range(0, static_cast<uint64_t>(conf.voters_size()) - 1)));
      if (target != leader->id) {
        const absl::Status status = leader->raft->TransferLeadership(target);
        Trace(absl::StrCat("transfer leadership ", leader->id, " -> ", target, ": ",
                           status.ToString()));
        if (status.ok()) ++result_.stats.transfers;
        Drain(*leader);
      }
    }
  }
  ClientLoad();
}

Node* Simulator::ClientTarget() {
  // Clients mostly find the leader (by redirects), sometimes talk to a stale or random
  // node: deposed leaders must refuse or never answer.
  Node* leader = Leader();
  if (leader != nullptr && !Chance(0.2)) return leader;
  std::vector<NodeId> up;
  for (const auto& [id, node] : nodes_) {
    if (node.up()) up.push_back(id);
  }
  if (up.empty()) return nullptr;
  return &nodes_[up[Range(0, up.size() - 1)]];
}

void Simulator::ClientLoad() {
  // Each client has at most one request outstanding, like a real synchronous client; it
  // gives up after a timeout (the outcome then stays unknown) and moves on. This bounds
  // the concurrency per key, which keeps the linearizability search small.
  const uint64_t timeout = 3 * static_cast<uint64_t>(profile_.election_timeout_ticks) *
                           kMicroticksPerTick;
  std::set<NodeId> touched;
  for (Client& client : clients_) {
    if (client.op != 0) {
      const ClientOp& op = ops_[client.op];
      if (op.return_time == 0 && !op.failed && now_ < client.deadline) continue;
      client.op = 0;
    }
    const bool write = Chance(profile_.write_probability);
    if (!write && !Chance(profile_.read_probability)) continue;
    Node* target = ClientTarget();
    if (target == nullptr) continue;
    ClientOp op;
    op.id = next_op_id_++;
    op.is_write = write;
    op.key = Range(1, static_cast<uint64_t>(profile_.keys));
    op.node = target->id;
    op.incarnation = target->incarnation;
    op.call_time = Clock();
    if (write) {
      op.value = static_cast<int64_t>(op.id);
      // Not drained until every client had its turn: proposals of one tick are batched
      // into the same Ready and APPEND.
      if (!target->raft->Propose(absl::StrCat(op.id, " ", op.key, " ", op.value)).ok()) {
        continue;  // definitely not executed: not part of the history
      }
      op.index = target->raft->last_index();
      pending_writes_[{target->id, op.index}] = op.id;
    } else if (!target->raft->ReadIndex(absl::StrCat(op.id)).ok()) {
      continue;
    }
    ops_[op.id] = op;
    client.op = op.id;
    client.deadline = now_ + timeout;
    touched.insert(target->id);
  }
  for (const NodeId id : touched) {
    Node* node = Find(id);
    if (node != nullptr && node->up()) Drain(*node);
  }
}

// ---------------------------------------------------------------------------------------
// Checks.

void Simulator::CheckNewLeader(Node& node) {
  // Leader Completeness at election time: every entry applied anywhere (so committed)
  // in an earlier term is in the new leader's log.
  const Term term = node.raft->term();
  const raft::MemoryLogStorage& storage = *node.storage;
  const Index last_checked = std::min(SettledLastIndex(node), checker_.max_committed());
  if (storage.FirstIndex() <= last_checked) {
    absl::StatusOr<std::vector<pb::Entry>> entries =
        storage.Entries(storage.FirstIndex(), last_checked + 1, UINT64_MAX);
    if (!entries.ok()) {
      return Fail(absl::StrCat("leader ", node.id, " storage: ", entries.status().ToString()));
    }
    for (const pb::Entry& entry : *entries) {
      if (std::string v = checker_.CheckLeaderEntry(node.id, term, entry); !v.empty()) {
        return Fail(v);
      }
    }
  }
  const Index committed = checker_.max_applied();
  const SafetyChecker::AppliedEntry* last = checker_.Applied(committed);
  if (last != nullptr && last->term < term && node.raft->last_index() < committed) {
    Fail(absl::StrCat("leader completeness: leader ", node.id, " of term ", term,
                      " has last index ", node.raft->last_index(), " but index ", committed,
                      " was committed"));
  }
}

void Simulator::ReportLeaderCommits(Node& node) {
  // What a leader's commit index passed is committed, even if nobody applies it before
  // the leader dies (the Figure 8 scenario): record it from the leader's durable log.
  const Index commit = node.raft->commit_index();
  if (commit <= node.reported_commit) return;
  const Index low = std::max(node.reported_commit + 1, node.storage->FirstIndex());
  const Index high = std::min(commit, SettledLastIndex(node));
  if (low > high) return;  // not durable on the leader yet: report on a later step
  node.reported_commit = high;
  absl::StatusOr<std::vector<pb::Entry>> entries = node.storage->Entries(low, high + 1, UINT64_MAX);
  if (!entries.ok()) {
    return Fail(absl::StrCat("leader ", node.id, " storage: ", entries.status().ToString()));
  }
  for (const pb::Entry& entry : *entries) {
    if (std::string v = checker_.OnCommitted(node.id, entry); !v.empty()) return Fail(v);
  }
  if (entries->back().term() != node.raft->term() && high > node.commit_at_election) {
    // Only the unsafe rule moves a leader's commit index onto an older term's entry.
    Trace(absl::StrCat("node=", node.id, " term ", node.raft->term(), " committed index ", high,
                       " of term ", entries->back().term(), " by counting replicas"));
    if (!settling_ && Chance(profile_.crash_on_old_term_commit_probability)) {
      // Make the rare part of Figure 8 common: the leader dies before the entry of its
      // own term that would make the commit safe reaches a majority.
      node.muted = true;
      Event crash;
      crash.kind = EventKind::kCrash;
      crash.node = node.id;
      crash.incarnation = node.incarnation;
      crash.time = now_ + 1;
      Schedule(std::move(crash));
    }
  }
}

void Simulator::CheckAfterStep() {
  for (auto& [id, node] : nodes_) {
    if (!node.up()) continue;
    raft::Raft& raft = *node.raft;
    if (raft.term() < node.last_term) {
      return Fail(absl::StrCat("node ", id, " term went back from ", node.last_term, " to ",
                               raft.term()));
    }
    if (raft.commit_index() < node.last_commit) {
      return Fail(absl::StrCat("node ", id, " commit index went back from ", node.last_commit,
                               " to ", raft.commit_index()));
    }
    node.last_term = raft.term();
    node.last_commit = raft.commit_index();
    const bool leader = raft.role() == raft::Role::kLeader;
    if (leader) {
      bool is_new = false;
      if (std::string v = checker_.OnLeader(raft.term(), id, &is_new); !v.empty()) return Fail(v);
      if (is_new) {
        ++result_.stats.elections;
        node.commit_at_election = raft.commit_index();
        Trace(absl::StrCat("node=", id, " is leader of term ", raft.term()));
        CheckNewLeader(node);
        if (failed()) return;
        if (!settling_ && Chance(profile_.new_leader_crash_probability)) {
          // Short-lived leaders that replicate to a minority (or, muted, to nobody) and
          // die: the Figure 8 pattern of the Raft paper.
          node.muted = Chance(0.5);
          Event crash;
          crash.kind = EventKind::kCrash;
          crash.node = id;
          crash.incarnation = node.incarnation;
          crash.time = now_ + Range(1, profile_.new_leader_crash_max_delay);
          Schedule(std::move(crash));
        }
      }
      node.leader_term = raft.term();
      ReportLeaderCommits(node);
      if (failed()) return;
    }
    node.was_leader = leader;
  }
}

bool Simulator::Converged(std::string* why) {
  Node* leader = Leader();
  if (leader == nullptr) {
    *why = "no leader";
    return false;
  }
  const Index commit = leader->raft->commit_index();
  if (commit != leader->raft->last_index()) {
    *why = absl::StrCat("leader ", leader->id, " commit ", commit, " < last index ",
                        leader->raft->last_index());
    return false;
  }
  const pb::ConfState& conf = leader->raft->conf_state();
  std::vector<NodeId> members(conf.voters().begin(), conf.voters().end());
  members.insert(members.end(), conf.learners().begin(), conf.learners().end());
  for (const NodeId id : members) {
    Node* node = Find(id);
    if (node == nullptr || !node->up()) {
      *why = absl::StrCat("member ", id, " is down");
      return false;
    }
    if (node->state.applied != commit || node->raft->commit_index() != commit) {
      *why = absl::StrCat("member ", id, " applied ", node->state.applied, " commit ",
                          node->raft->commit_index(), " last index ", node->raft->last_index(),
                          " of leader ", leader->id, " commit ", commit);
      for (const raft::PeerStatus& peer : leader->raft->Status().peers) {
        if (peer.id != id) continue;
        absl::StrAppend(why, "; leader's progress: state=", raft::ProgressStateName(peer.state),
                        " match=", peer.match, " next=", peer.next,
                        " inflight=", peer.inflight_count, " active=", peer.recent_active);
      }
      return false;
    }
  }
  return true;
}

void Simulator::FinalChecks() {
  Node* leader = Leader();
  const pb::ConfState& conf = leader->raft->conf_state();
  std::vector<NodeId> members(conf.voters().begin(), conf.voters().end());
  members.insert(members.end(), conf.learners().begin(), conf.learners().end());
  // No acknowledged write lost: on every member, exactly once (the apply path already
  // refuses a second application).
  for (const auto& [op_id, op] : ops_) {
    if (!op.is_write || op.return_time == 0 || op.failed) continue;
    for (const NodeId id : members) {
      if (nodes_[id].state.applied_commands.count(op_id) == 0) {
        return Fail(absl::StrCat("acknowledged write ", op_id, " (key ", op.key, " index ",
                                 op.index, ") is missing on member ", id));
      }
    }
  }
  // Every client operation, checked for linearizability per key. A write of unknown
  // outcome that the settled cluster never applied can no longer commit (the leader's
  // whole log is committed), so it definitely did not take effect; one that was
  // applied completed at the latest when it was first applied.
  const std::set<uint64_t>& final_commands = leader->raft == nullptr
                                                 ? std::set<uint64_t>()
                                                 : nodes_[leader->id].state.applied_commands;
  std::vector<KvOperation> history;
  for (const auto& [op_id, op] : ops_) {
    if (op.failed) continue;
    if (op.is_write && op.return_time == 0 && final_commands.count(op_id) == 0) continue;
    if (!op.is_write && op.return_time == 0) continue;  // unanswered reads tell nothing
    KvOperation kv;
    kv.kind = op.is_write ? KvOperation::Kind::kPut : KvOperation::Kind::kGet;
    kv.key = op.key;
    kv.value = op.value;
    kv.call_time = op.call_time;
    kv.return_time = op.return_time;
    if (op.is_write && op.return_time == 0) kv.return_time = op.first_applied_time;
    kv.id = op.id;
    history.push_back(kv);
  }
  const LinearizabilityResult linearizable = CheckKvLinearizable(history);
  if (!linearizable.linearizable) {
    Fail(absl::StrCat("client history: ", linearizable.explanation));
  }
}

SimResult Simulator::Run() {
  std::vector<NodeId> voters;
  for (int i = 0; i < profile_.voters; ++i) voters.push_back(static_cast<NodeId>(i + 1));
  for (const NodeId id : voters) {
    // Bootstrap, as the runtime does before Create.
    Node& node = AddNode(id);
    if (const absl::Status status = node.storage->Append(raft::Raft::BootstrapEntries(voters));
        !status.ok()) {
      Fail(absl::StrCat("bootstrap append: ", status.ToString()));
      return result_;
    }
    pb::HardState hard_state;
    hard_state.set_term(1);
    hard_state.set_commit(voters.size());
    node.storage->SetHardState(hard_state);
  }
  for (const NodeId id : voters) Start(nodes_[id]);
  clients_.resize(static_cast<size_t>(profile_.clients));
  Event nemesis;
  nemesis.kind = EventKind::kNemesis;
  nemesis.time = kMicroticksPerTick / 2;
  Schedule(std::move(nemesis));

  uint64_t settle_deadline = 0;
  std::string not_converged = "never checked";
  // The event queue never empties (ticks reschedule themselves); the step and time
  // bounds end the run.
  const uint64_t kMaxSteps = profile_.steps * 20;
  while (!failed() && !events_.empty() && result_.stats.steps < kMaxSteps) {
    Event event = events_.top();
    events_.pop();
    now_ = event.time;
    ++result_.stats.steps;
    trace_hash_ = FnvMix(FnvMix(trace_hash_, static_cast<uint64_t>(event.kind)), event.node);
    const bool nemesis_tick = event.kind == EventKind::kNemesis;
    Dispatch(event);
    if (failed()) break;
    CheckAfterStep();
    if (failed()) break;

    if (!settling_ && result_.stats.steps >= profile_.steps) {
      // Heal everything and let the cluster settle before the final checks.
      settling_ = true;
      blocked_.clear();
      Trace("settle: heal all partitions, restart crashed members, stop faults");
      for (auto& [id, node] : nodes_) {
        node.muted = false;
        if (!node.up() && !node.removed) Start(node);
        if (failed()) break;
      }
      settle_deadline = now_ + profile_.settle_ticks * kMicroticksPerTick;
    }
    if (settling_ && nemesis_tick) {
      if (Converged(&not_converged)) {
        FinalChecks();
        break;
      }
      if (now_ >= settle_deadline) {
        Fail(absl::StrCat("liveness: no convergence ", profile_.settle_ticks,
                          " ticks after healing: ", not_converged));
        break;
      }
    }
  }
  if (!failed() && !settling_) Fail("run ended before the settle phase (step bound)");
  result_.trace_hash = trace_hash_;
  return result_;
}

}  // namespace

SimResult RunSimulation(const Profile& profile, uint64_t seed, bool print_trace) {
  Simulator simulator(profile, seed, print_trace);
  return simulator.Run();
}

void Accumulate(const SimStats& run, SimStats& total) {
  total.steps += run.steps;
  total.elections += run.elections;
  total.commits += run.commits;
  total.snapshots += run.snapshots;
  total.compactions += run.compactions;
  total.conf_changes += run.conf_changes;
  total.transfers += run.transfers;
  total.crashes += run.crashes;
  total.partitions += run.partitions;
  total.messages += run.messages;
  total.writes_acked += run.writes_acked;
  total.reads_done += run.reads_done;
  total.violations += run.violations;
}

std::string SummaryLine(uint64_t seeds, const SimStats& stats) {
  return absl::StrCat("SIM seeds=", seeds, " steps=", stats.steps, " elections=", stats.elections,
                      " commits=", stats.commits, " snapshots=", stats.snapshots,
                      " conf_changes=", stats.conf_changes, " transfers=", stats.transfers,
                      " crashes=", stats.crashes, " partitions=", stats.partitions,
                      " writes_acked=", stats.writes_acked, " reads=", stats.reads_done,
                      " violations=", stats.violations);
}

}  // namespace stead::sim
