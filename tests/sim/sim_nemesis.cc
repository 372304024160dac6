#include <algorithm>
#include <cstdint>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "tests/sim/sim_cluster.h"

namespace stead::sim::internal {

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
      change.set_node_id(
          conf.learners(static_cast<int>(Range(0, static_cast<uint64_t>(learners) - 1))));
      break;
    case 2:
      change.set_type(pb::CONF_CHANGE_TYPE_REMOVE_NODE);
      change.set_node_id(
          conf.voters(static_cast<int>(Range(0, static_cast<uint64_t>(voters) - 1))));
      break;
    default:
      change.set_type(pb::CONF_CHANGE_TYPE_REMOVE_NODE);
      change.set_node_id(
          conf.learners(static_cast<int>(Range(0, static_cast<uint64_t>(learners) - 1))));
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
  if (leader != nullptr && profile_.leadership_transfers && Chance(profile_.transfer_probability)) {
    const pb::ConfState& conf = leader->raft->conf_state();
    if (conf.voters_size() > 1) {
      const NodeId target =
          conf.voters(static_cast<int>(Range(0, static_cast<uint64_t>(conf.voters_size()) - 1)));
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

Node* Simulator::ClientTarget(Client& client) {
  // A client sticks to the node it believes leads for as long as that node still
  // thinks so (a deposed leader cut off from the others does, until CheckQuorum), as a
  // real client keeps its connection; otherwise it finds the leader (by redirects) or,
  // sometimes, any node. Deposed leaders must refuse, never answer, or answer right.
  Node* sticky = Find(client.node);
  if (sticky != nullptr && sticky->up() && sticky->raft->role() == raft::Role::kLeader &&
      !Chance(0.05)) {
    return sticky;
  }
  Node* leader = Leader();
  client.node = leader == nullptr ? raft::kNoNode : leader->id;
  if (leader != nullptr && !Chance(0.2)) return leader;
  std::vector<NodeId> up;
  for (const auto& [id, node] : nodes_) {
    if (node.up()) up.push_back(id);
  }
  if (up.empty()) return nullptr;
  return &nodes_[up[Range(0, up.size() - 1)]];
}

Node* Simulator::FollowerTarget() {
  std::vector<NodeId> followers;
  for (const auto& [id, node] : nodes_) {
    if (node.up() && node.raft->role() != raft::Role::kLeader) followers.push_back(id);
  }
  if (followers.empty()) return nullptr;
  return &nodes_[followers[Range(0, followers.size() - 1)]];
}

void Simulator::ClientLoad() {
  // Each client has at most one request outstanding, like a real synchronous client; it
  // gives up after a timeout (the outcome then stays unknown) and moves on. This bounds
  // the concurrency per key, which keeps the linearizability search small.
  const uint64_t timeout =
      3 * static_cast<uint64_t>(profile_.election_timeout_ticks) * kMicroticksPerTick;
  std::set<NodeId> touched;
  for (Client& client : clients_) {
    if (client.op != 0) {
      const ClientOp& op = ops_[client.op];
      if (op.return_time == 0 && !op.failed && now_ < client.deadline) continue;
      client.op = 0;
    }
    const bool write = Chance(profile_.write_probability);
    if (!write && !Chance(profile_.read_probability)) continue;
    // Reads sometimes go to a follower or learner, which asks the leader for the read
    // index (only drawn in worlds that enable it, so the others replay as before).
    Node* target = !write && profile_.follower_read_probability > 0 &&
                           Chance(profile_.follower_read_probability)
                       ? FollowerTarget()
                       : nullptr;
    if (target == nullptr) target = ClientTarget(client);
    if (target == nullptr) continue;
    ClientOp op;
    op.id = next_op_id_++;
    op.is_write = write;
    op.key = Range(1, static_cast<uint64_t>(profile_.keys));
    op.node = target->id;
    op.incarnation = target->incarnation;
    op.call_time = Clock();
    op.at_follower = !write && target->raft->role() != raft::Role::kLeader;
    bool answer_now = false;
    if (write) {
      op.value = static_cast<int64_t>(op.id);
      // Not drained until every client had its turn: proposals of one tick are batched
      // into the same Ready and APPEND.
      if (!target->raft->Propose(absl::StrCat(op.id, " ", op.key, " ", op.value)).ok()) {
        continue;  // definitely not executed: not part of the history
      }
      op.index = target->raft->last_index();
      pending_writes_[{target->id, op.index}] = op.id;
    } else if (UnsafeLocalReadServes(*target)) {
      // The planted stale-read bug: the leader's own commit index as the read index,
      // with no heartbeat round; answered below, once the read is recorded.
      target->pending_reads.emplace_back(target->raft->commit_index(), op.id);
      answer_now = true;
    } else if (!target->raft->ReadIndex(absl::StrCat(op.id)).ok()) {
      continue;
    }
    ops_[op.id] = op;
    client.op = op.id;
    client.deadline = now_ + timeout;
    touched.insert(target->id);
    if (answer_now) AnswerReads(*target);
  }
  for (const NodeId id : touched) {
    Node* node = Find(id);
    if (node != nullptr && node->up()) Drain(*node);
  }
}

}  // namespace stead::sim::internal
