#include "tests/sim/simulator.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "tests/sim/sim_cluster.h"

namespace stead::sim {
namespace internal {

// ---------------------------------------------------------------------------------------
// Trace and violations.

void Simulator::Trace(const std::string& line) {
  trace_hash_ = FnvBytes(FnvMix(trace_hash_, now_), line);
  tail_.push_back(absl::StrCat("t=", now_, " step=", result_.stats.steps, " ", line));
  if (print_trace_) std::fprintf(stdout, "%s\n", tail_.back().c_str());
  if (tail_.size() > TraceSink::kTailLines) tail_.pop_front();
}

void Simulator::Fail(Check check, const std::string& what) {
  if (failed()) return;
  violation_ = absl::StrCat(CheckName(check), ": ", what);
  result_.check = check;
  result_.stats.violations = 1;
  std::string report =
      absl::StrCat("VIOLATION seed=", seed_, " step=", result_.stats.steps, " t=", now_, ": ",
                   violation_, "\n  replay: raft_sim --profile=", profile_.name, " --seed=", seed_,
                   "\n  ", profile_.Describe(), "\n  trace tail (oldest first):\n");
  for (const std::string& line : tail_) absl::StrAppend(&report, "    ", line, "\n");
  result_.report = std::move(report);
}

// ---------------------------------------------------------------------------------------
// Events.

// Raft is only live when a broadcast (message plus fsync) is much shorter than the
// election timeout (Raft §5.6); some worlds break that on purpose during the faulty
// phase. Healing restores a sane environment, or "no leader" would be the expected
// outcome rather than a finding.
uint64_t Simulator::PersistDelay() {
  constexpr uint64_t kHealedMaxPersistDelay = 20;
  return Range(1, settling_ ? std::min(profile_.max_persist_delay, kHealedMaxPersistDelay)
                            : profile_.max_persist_delay);
}

uint64_t Simulator::NetworkDelay() {
  constexpr uint64_t kHealedMaxJitter = 30;
  return Range(profile_.min_delay,
               settling_ ? std::min(profile_.max_delay, profile_.min_delay + kHealedMaxJitter)
                         : profile_.max_delay);
}

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
      // A clean shutdown, which flushes the state machine (it never restarts anyway).
      FlushStateMachine(*node);
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
  config.read_only_mode =
      profile_.lease_reads ? raft::ReadOnlyMode::kLeaseBased : raft::ReadOnlyMode::kReadIndex;
  config.max_message_bytes = profile_.max_message_bytes;
  config.max_inflight_messages = profile_.max_inflight_messages;
  config.applied = node.state.applied;
  config.logger = logger_.WithContext("node", node.id);
  config.unsafe_commit_previous_term_entries_for_testing =
      profile_.unsafe_commit_previous_term_entries;
  absl::StatusOr<std::unique_ptr<raft::Raft>> created =
      raft::Raft::Create(std::move(config), node.storage.get());
  if (!created.ok()) {
    Fail(Check::kContract,
         absl::StrCat("node ", node.id,
                      " failed to start from its persisted state: ", created.status().ToString()));
    return;
  }
  node.raft = std::move(created).value();
  node.runtime = std::make_unique<NodeRuntime>(this, &node);
  node.pipeline = std::make_unique<raft::ReadyPipeline>(
      node.raft.get(), node.runtime.get(),
      raft::PipelineOptions{.unsafe_send_before_persist_for_testing =
                                profile_.unsafe_send_before_persist});
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
  for (const QueuedWrite& queued : node.persist_queue) {
    if (queued.write.snapshot.has_value()) return node.storage->FirstIndex() - 1;
    if (!queued.write.entries.empty()) {
      last = std::min(last, queued.write.entries.front().index() - 1);
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
                     " unpersisted writes; state machine back from ", node.state.applied, " to ",
                     node.durable_state.applied));
  // What the state machine applied since its last flush is gone (production replays it
  // from the log, which keeps every entry after the last checkpoint); the core restarts
  // with the flushed applied index and hands the later committed entries out again.
  if (node.state.applied != node.durable_state.applied) ++result_.stats.state_rollbacks;
  node.state = node.durable_state;
  node.pipeline.reset();
  node.runtime.reset();
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
    if (node.pipeline->Drain(1) == 0) return;
  }
  if (node.up() && node.raft->HasReady() && !failed()) {
    Fail(Check::kContract,
         absl::StrCat("node ", node.id, " kept producing Readys (1000 in one step)"));
  }
}

void Simulator::CheckReady(Node& node, const raft::Ready& ready) {
  if (ready.soft_state.has_value()) {
    Trace(absl::StrCat("node=", node.id, " role=", raft::RoleName(ready.soft_state->role),
                       " leader=", ready.soft_state->leader, " term=", node.raft->term()));
  }
  // Leader Append-Only: a leader that stayed leader in one term only appends.
  if (!ready.entries.empty() && node.was_leader && !ready.soft_state.has_value() &&
      node.raft->role() == raft::Role::kLeader && node.leader_term == node.raft->term() &&
      ready.entries.front().index() != node.taken_last_index + 1) {
    Fail(Check::kLeaderAppendOnly,
         absl::StrCat("leader ", node.id, " of term ", node.leader_term,
                      " handed out entries from index ", ready.entries.front().index(),
                      " after index ", node.taken_last_index));
    return;
  }
  if (ready.snapshot.has_value()) node.taken_last_index = ready.snapshot->index();
  if (!ready.entries.empty()) node.taken_last_index = ready.entries.back().index();
}

void Simulator::AddReadStates(Node& node, const std::vector<raft::ReadState>& read_states) {
  for (const raft::ReadState& read : read_states) {
    uint64_t op_id = 0;
    if (!absl::SimpleAtoi(read.context, &op_id) || ops_.count(op_id) == 0) {
      Fail(Check::kContract,
           absl::StrCat("node ", node.id, " answered an unknown read '", read.context, "'"));
      return;
    }
    node.pending_reads.emplace_back(read.index, op_id);
  }
  AnswerReads(node);
}

void Simulator::SubmitWrite(Node& node, raft::LogWrite write, uint64_t sequence) {
  // Durable some time later, strictly in the order of submission.
  node.persist_done_time = std::max(now_ + PersistDelay(), node.persist_done_time);
  Event persist;
  persist.kind = EventKind::kPersist;
  persist.node = node.id;
  persist.incarnation = node.incarnation;
  persist.time = node.persist_done_time;
  Schedule(std::move(persist));
  const Term leader_term = node.raft->role() == raft::Role::kLeader ? node.raft->term() : Term{0};
  node.persist_queue.push_back(QueuedWrite{std::move(write), sequence, leader_term});
}

void Simulator::ApplyCommitted(Node& node, const std::vector<pb::Entry>& entries) {
  // The applier: synchronous here, so applied state is reported at once.
  for (const pb::Entry& entry : entries) {
    ApplyEntry(node, entry);
    if (failed() || !node.up()) return;
  }
  // No die is drawn in worlds that flush every apply, so they replay as before the
  // state machine could lose its tail.
  if (profile_.state_flush_probability >= 1.0 || Chance(profile_.state_flush_probability)) {
    FlushStateMachine(node);
  }
  node.raft->OnApplied(node.state.applied);
  MaybeCompact(node);
  AnswerReads(node);
}

void Simulator::FlushStateMachine(Node& node) { node.durable_state = node.state; }

bool Simulator::PersistSnapshot(Node& node, const pb::SnapshotMetadata& metadata) {
  raft::MemoryLogStorage& storage = *node.storage;
  const auto staged = node.staged_snapshots.find(metadata.index());
  if (staged == node.staged_snapshots.end()) {
    return FailFalse(Check::kContract,
                     absl::StrCat("node ", node.id, " was told to install snapshot index ",
                                  metadata.index(), " whose bytes were never staged"));
  }
  if (metadata.index() < node.state.applied) {
    return FailFalse(Check::kStateMachineSafety,
                     absl::StrCat("node ", node.id, " installs snapshot index ", metadata.index(),
                                  " below its applied index ", node.state.applied));
  }
  if (const absl::Status status = storage.ApplySnapshot(metadata); !status.ok()) {
    return FailFalse(Check::kContract,
                     absl::StrCat("node ", node.id, " snapshot install: ", status.ToString()));
  }
  node.state = staged->second;
  node.snapshot_state = staged->second;
  // Production flushes the switched-in checkpoint before the WAL records the snapshot.
  node.durable_state = staged->second;
  node.staged_snapshots.erase(node.staged_snapshots.begin(), std::next(staged));
  ++result_.stats.snapshots;
  Trace(absl::StrCat("node=", node.id, " installed snapshot index=", metadata.index(),
                     " term=", metadata.term()));
  if (Violation v = checker_.OnSnapshotState(node.id, metadata.index(), node.state.chain_hash,
                                             node.state.ContentHash())) {
    return FailFalse(v);
  }
  return true;
}

bool Simulator::PersistEntries(Node& node, const std::vector<pb::Entry>& entries,
                               Term leader_term) {
  raft::MemoryLogStorage& storage = *node.storage;
  // Entries at or below the snapshot are skipped by the storage; check the rest.
  std::vector<pb::Entry> kept;
  for (const pb::Entry& entry : entries) {
    if (entry.index() > storage.FirstIndex() - 1) kept.push_back(entry);
  }
  if (!kept.empty()) {
    const Index before = kept.front().index() - 1;
    Term previous_term = 0;
    if (before > 0) {
      absl::StatusOr<Term> term = storage.TermAt(before);
      if (!term.ok()) {
        return FailFalse(Check::kContract, absl::StrCat("node ", node.id, " persists index ",
                                                        before + 1, " but holds no entry at ",
                                                        before, ": ", term.status().ToString()));
      }
      previous_term = *term;
    }
    if (Violation v = checker_.OnPersistedEntries(node.id, previous_term, kept)) {
      return FailFalse(v);
    }
    if (leader_term != 0) {
      for (const pb::Entry& entry : kept) {
        if (Violation v = checker_.CheckLeaderEntry(node.id, leader_term, entry)) {
          return FailFalse(v);
        }
      }
    }
  }
  if (const absl::Status status = storage.Append(entries); !status.ok()) {
    return FailFalse(Check::kContract,
                     absl::StrCat("node ", node.id, " append: ", status.ToString()));
  }
  return true;
}

bool Simulator::PersistHardState(Node& node, const pb::HardState& after) {
  raft::MemoryLogStorage& storage = *node.storage;
  const pb::HardState before = storage.hard_state();
  if (after.term() < before.term()) {
    return FailFalse(Check::kMonotonicity, absl::StrCat("node ", node.id, " persisted term ",
                                                        after.term(), " after ", before.term()));
  }
  if (after.term() == before.term() && before.vote() != raft::kNoNode &&
      after.vote() != before.vote()) {
    return FailFalse(Check::kMonotonicity,
                     absl::StrCat("node ", node.id, " changed its persisted vote in term ",
                                  after.term(), " from ", before.vote(), " to ", after.vote()));
  }
  if (after.commit() < before.commit()) {
    return FailFalse(Check::kMonotonicity,
                     absl::StrCat("node ", node.id, " persisted commit ", after.commit(), " after ",
                                  before.commit()));
  }
  storage.SetHardState(after);
  return true;
}

void Simulator::Persist(Node& node) {
  if (node.persist_queue.empty()) {
    Fail(Check::kContract,
         absl::StrCat("node ", node.id, ": persist event without a queued write"));
    return;
  }
  QueuedWrite queued = std::move(node.persist_queue.front());
  node.persist_queue.pop_front();
  const raft::LogWrite& write = queued.write;

  // The contract's order (snapshot, entries, hard state); the whole write becomes
  // durable in this one step, as if written atomically (synced or not: a crash loses
  // only what is still queued).
  if (write.snapshot.has_value() && !PersistSnapshot(node, *write.snapshot)) return;
  if (!write.entries.empty() && !PersistEntries(node, write.entries, queued.leader_term)) return;
  if (write.hard_state.has_value() && !PersistHardState(node, *write.hard_state)) return;
  // The pipeline sends the messages held for this write and calls OnPersisted.
  node.pipeline->OnWritten(queued.sequence, absl::OkStatus());
  if (failed() || !node.up()) return;
  Drain(node);
}

bool Simulator::ApplyCommand(Node& node, const pb::Entry& entry) {
  StateMachine& state = node.state;
  const std::vector<absl::string_view> parts = absl::StrSplit(entry.data(), ' ');
  uint64_t op_id = 0;
  uint64_t key = 0;
  int64_t value = 0;
  if (parts.size() != 3 || !absl::SimpleAtoi(parts[0], &op_id) ||
      !absl::SimpleAtoi(parts[1], &key) || !absl::SimpleAtoi(parts[2], &value)) {
    return FailFalse(
        Check::kContract,
        absl::StrCat("node ", node.id, " applied a command nobody proposed: '", entry.data(), "'"));
  }
  if (!state.applied_commands.insert(op_id).second) {
    return FailFalse(Check::kExactlyOnce, absl::StrCat("node ", node.id, " applied command ", op_id,
                                                       " twice (again at ", entry.index(), ")"));
  }
  if (!UnsafeDropApply(node, entry)) state.kv[key] = value;
  if (const auto op = ops_.find(op_id); op != ops_.end() && op->second.first_applied_time == 0) {
    op->second.first_applied_time = Clock();
  }
  return true;
}

bool Simulator::ApplyConfChange(Node& node, const pb::Entry& entry) {
  StateMachine& state = node.state;
  pb::ConfChange change;
  if (!change.ParseFromString(entry.data())) {
    return FailFalse(
        Check::kContract,
        absl::StrCat("node ", node.id, " applied an unparsable conf change at ", entry.index()));
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
    case pb::CONF_CHANGE_TYPE_REMOVE_NODE:
      voters.erase(target);
      learners.erase(target);
      ScheduleStop(target);
      break;
    default:
      return FailFalse(Check::kContract,
                       absl::StrCat("node ", node.id, " applied a conf change of unknown type"));
  }
  state.conf_state.clear_voters();
  state.conf_state.clear_learners();
  for (const uint64_t id : voters) state.conf_state.add_voters(id);
  for (const uint64_t id : learners) state.conf_state.add_learners(id);
  return true;
}

void Simulator::ScheduleStop(NodeId id) {
  // The operator shuts a removed member down once its removal is committed; give it a
  // little while, as a real runbook would.
  Node* removed = Find(id);
  if (removed == nullptr || removed->stop_scheduled) return;
  removed->stop_scheduled = true;
  Event stop;
  stop.kind = EventKind::kStop;
  stop.node = id;
  stop.time = now_ + Range(0, 3 * static_cast<uint64_t>(profile_.election_timeout_ticks)) *
                         kMicroticksPerTick;
  Schedule(std::move(stop));
}

bool Simulator::CheckLeadersHold(const pb::Entry& entry) {
  // Leader Completeness for leaders elected before this index was first applied: their
  // settled entry there must be this one.
  const Index index = entry.index();
  for (auto& [id, other] : nodes_) {
    if (!other.up() || other.raft->role() != raft::Role::kLeader) continue;
    if (index < other.storage->FirstIndex() || index > SettledLastIndex(other)) continue;
    absl::StatusOr<std::vector<pb::Entry>> held = other.storage->Entries(index, index + 1, 1);
    if (!held.ok() || held->empty()) continue;
    if (Violation v = checker_.CheckLeaderEntry(id, other.raft->term(), held->front())) {
      return FailFalse(v);
    }
  }
  return true;
}

void Simulator::AcknowledgeWrite(Node& node, const pb::Entry& entry) {
  // Client acknowledgement: the proposer applied the index it proposed at.
  const auto pending = pending_writes_.find({node.id, entry.index()});
  if (pending == pending_writes_.end()) return;
  ClientOp& op = ops_[pending->second];
  pending_writes_.erase(pending);
  if (op.incarnation != node.incarnation) return;
  const std::string expected = absl::StrCat(op.id, " ", op.key, " ", op.value);
  if (entry.type() == pb::ENTRY_TYPE_NORMAL && entry.data() == expected) {
    op.return_time = Clock();
    ++result_.stats.writes_acked;
  } else {
    // Another entry is committed where this one was appended: Raft never moves an entry
    // to another index and the client never retries, so it cannot commit.
    op.failed = true;
  }
}

void Simulator::ApplyEntry(Node& node, const pb::Entry& entry) {
  StateMachine& state = node.state;
  if (entry.index() != state.applied + 1) {
    return Fail(Check::kApplyOrder, absl::StrCat("node ", node.id, " was handed committed index ",
                                                 entry.index(), " after applying ", state.applied));
  }
  const uint64_t content = EntryContentHash(entry);
  state.chain_hash = FnvMix(FnvMix(FnvMix(state.chain_hash, entry.index()), entry.term()), content);
  state.applied = entry.index();
  if (entry.type() == pb::ENTRY_TYPE_NORMAL && !entry.data().empty()) {
    if (!ApplyCommand(node, entry)) return;
  } else if (entry.type() == pb::ENTRY_TYPE_CONF_CHANGE) {
    if (!ApplyConfChange(node, entry)) return;
  }
  bool is_new = false;
  const SafetyChecker::AppliedEntry applied{entry.term(), content, state.chain_hash,
                                            state.ContentHash()};
  if (Violation v =
          checker_.OnApplied(node.id, entry.index(), applied, node.raft->term(), &is_new)) {
    return Fail(v);
  }
  if (is_new) {
    ++result_.stats.commits;
    if (entry.type() == pb::ENTRY_TYPE_CONF_CHANGE) ++result_.stats.conf_changes;
    if (!CheckLeadersHold(entry)) return;
  }
  AcknowledgeWrite(node, entry);
}

void Simulator::MaybeCompact(Node& node) {
  if (profile_.compaction_threshold == 0) return;
  const Index first = node.storage->FirstIndex();
  if (node.state.applied < first ||
      node.state.applied - first + 1 < profile_.compaction_threshold) {
    return;
  }
  if (const absl::Status status = node.storage->Compact(node.state.applied, node.state.conf_state);
      !status.ok()) {
    return Fail(Check::kContract, absl::StrCat("node ", node.id, " compaction at ",
                                               node.state.applied, ": ", status.ToString()));
  }
  node.snapshot_state = node.state;
  // The checkpoint flushes the state machine first.
  node.durable_state = node.state;
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
      if (op.at_follower) ++result_.stats.follower_reads_done;
      if (node.raft->role() == raft::Role::kLeader &&
          checker_.newest_leader_term() > node.raft->term()) {
        ++result_.stats.deposed_leader_reads;
      }
    }
    it = reads.erase(it);
  }
}

bool Simulator::UnsafeLocalReadServes(const Node& node) const {
  if (!profile_.unsafe_local_reads || node.raft->role() != raft::Role::kLeader) return false;
  // The bug skips only the heartbeat round that confirms no newer leader exists (thesis
  // §6.4 step 3); a leader that has not committed an entry of its term yet (step 1)
  // still takes the proper path, so only a deposed leader can answer stale.
  const absl::StatusOr<Term> term = node.storage->TermAt(node.raft->commit_index());
  return term.ok() && *term == node.raft->term();
}

bool Simulator::UnsafeDropApply(const Node& node, const pb::Entry& entry) {
  if (!profile_.unsafe_drop_apply || dropped_apply_index_ != 0 ||
      node.id != static_cast<NodeId>(profile_.voters)) {
    return false;
  }
  dropped_apply_index_ = entry.index();
  Trace(absl::StrCat("node=", node.id, " planted bug: drops the write of index ", entry.index()));
  return true;
}

// ---------------------------------------------------------------------------------------
// The runtime under each node's pipeline.

void NodeRuntime::Submit(raft::LogWrite write, uint64_t sequence) {
  simulator_->SubmitWrite(*node_, std::move(write), sequence);
}

void NodeRuntime::Send(std::vector<pb::Message> messages) {
  for (const pb::Message& message : messages) simulator_->Send(*node_, message);
}

void NodeRuntime::Apply(std::vector<pb::Entry> committed_entries) {
  simulator_->ApplyCommitted(*node_, committed_entries);
}

absl::Time NodeRuntime::Now() {
  return absl::UnixEpoch() + absl::Microseconds(static_cast<int64_t>(simulator_->now_));
}

void NodeRuntime::InstallSnapshot(const pb::SnapshotMetadata& /*snapshot*/) {
  // The simulated state machine becomes the staged snapshot when the write holding it
  // is durable (PersistSnapshot), so a crash never leaves it ahead of the log.
  node_->pipeline->OnSnapshotInstalled(absl::OkStatus());
}

void NodeRuntime::Fail(absl::Status status) {
  simulator_->Fail(Check::kContract,
                   absl::StrCat("node ", node_->id, " pipeline stopped: ", status.ToString()));
}

void NodeRuntime::OnReadyTaken(const raft::Ready& ready) { simulator_->CheckReady(*node_, ready); }

void NodeRuntime::OnReadStates(std::vector<raft::ReadState> read_states) {
  simulator_->AddReadStates(*node_, read_states);
}

SimResult Simulator::Run() {
  std::vector<NodeId> voters;
  for (int i = 0; i < profile_.voters; ++i) voters.push_back(static_cast<NodeId>(i + 1));
  for (const NodeId id : voters) {
    // Bootstrap, as the runtime does before Create.
    Node& node = AddNode(id);
    if (const absl::Status status = node.storage->Append(raft::Raft::BootstrapEntries(voters));
        !status.ok()) {
      Fail(Check::kContract, absl::StrCat("bootstrap append: ", status.ToString()));
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
  bool checked = false;  // converged and the final checks ran
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
        checked = true;
        break;
      }
      if (now_ >= settle_deadline) {
        Fail(Check::kLiveness, absl::StrCat("no convergence ", profile_.settle_ticks,
                                            " ticks after healing: ", not_converged));
        break;
      }
    }
  }
  // A run that ends any other way (the step bound while settling, say, in a world
  // whose events never stop coming) has proven nothing and must not pass.
  if (!failed() && !checked) {
    Fail(Check::kLiveness,
         settling_ ? absl::StrCat("step bound hit while settling, not converged: ", not_converged)
                   : "run ended before the settle phase (step bound)");
  }
  result_.trace_hash = trace_hash_;
  return result_;
}

}  // namespace internal

SimResult RunSimulation(const Profile& profile, uint64_t seed, bool print_trace) {
  internal::Simulator simulator(profile, seed, print_trace);
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
  total.follower_reads_done += run.follower_reads_done;
  total.deposed_leader_reads += run.deposed_leader_reads;
  total.state_rollbacks += run.state_rollbacks;
  total.violations += run.violations;
}

std::string SummaryLine(uint64_t seeds, const SimStats& stats) {
  return absl::StrCat("SIM seeds=", seeds, " steps=", stats.steps, " elections=", stats.elections,
                      " commits=", stats.commits, " snapshots=", stats.snapshots,
                      " conf_changes=", stats.conf_changes, " transfers=", stats.transfers,
                      " crashes=", stats.crashes, " partitions=", stats.partitions,
                      " writes_acked=", stats.writes_acked, " reads=", stats.reads_done,
                      " follower_reads=", stats.follower_reads_done,
                      " deposed_leader_reads=", stats.deposed_leader_reads,
                      " state_rollbacks=", stats.state_rollbacks, " violations=", stats.violations);
}

}  // namespace stead::sim
