#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "tests/sim/linearizability.h"
#include "tests/sim/sim_cluster.h"

namespace stead::sim::internal {

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
      return Fail(Check::kContract,
                  absl::StrCat("leader ", node.id, " storage: ", entries.status().ToString()));
    }
    for (const pb::Entry& entry : *entries) {
      if (Violation v = checker_.CheckLeaderEntry(node.id, term, entry)) return Fail(v);
    }
  }
  const Index committed = checker_.MaxCommittedBefore(term);
  if (node.raft->last_index() < committed) {
    Fail(Check::kLeaderCompleteness,
         absl::StrCat("leader ", node.id, " of term ", term, " has last index ",
                      node.raft->last_index(), " but index ", committed, " was committed"));
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
    return Fail(Check::kContract,
                absl::StrCat("leader ", node.id, " storage: ", entries.status().ToString()));
  }
  for (const pb::Entry& entry : *entries) {
    if (Violation v = checker_.OnCommitted(node.id, node.raft->term(), entry)) return Fail(v);
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
      return Fail(Check::kMonotonicity, absl::StrCat("node ", id, " term went back from ",
                                                     node.last_term, " to ", raft.term()));
    }
    if (raft.commit_index() < node.last_commit) {
      return Fail(Check::kMonotonicity,
                  absl::StrCat("node ", id, " commit index went back from ", node.last_commit,
                               " to ", raft.commit_index()));
    }
    node.last_term = raft.term();
    node.last_commit = raft.commit_index();
    const bool leader = raft.role() == raft::Role::kLeader;
    if (leader) {
      bool is_new = false;
      if (Violation v = checker_.OnLeader(raft.term(), id, &is_new)) return Fail(v);
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
        return Fail(Check::kAcknowledgedWrites,
                    absl::StrCat("acknowledged write ", op_id, " (key ", op.key, " index ",
                                 op.index, ") is missing on member ", id));
      }
    }
  }
  // Every client operation, checked for linearizability per key. A write of unknown
  // outcome that the settled cluster never applied can no longer commit (the leader's
  // whole log is committed), so it definitely did not take effect; one that was
  // applied completed at the latest when it was first applied.
  const std::set<uint64_t>& final_commands =
      leader->raft == nullptr ? std::set<uint64_t>() : nodes_[leader->id].state.applied_commands;
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
    // A search that gave up proves nothing either way: reported apart from a refuted
    // history, so a test expecting a refutation is not satisfied by a timeout.
    Fail(linearizable.search_exhausted ? Check::kLinearizabilityUndecided : Check::kLinearizability,
         absl::StrCat("client history: ", linearizable.explanation));
  }
}

}  // namespace stead::sim::internal
