#include "tests/sim/invariants.h"

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"

namespace stead::sim {

uint64_t FnvBytes(uint64_t hash, const std::string& bytes) {
  for (const char c : bytes) {
    hash ^= static_cast<unsigned char>(c);
    hash *= 1099511628211ULL;
  }
  return hash;
}

uint64_t FnvMix(uint64_t hash, uint64_t value) {
  for (int i = 0; i < 8; ++i) {
    hash ^= (value >> (8 * i)) & 0xff;
    hash *= 1099511628211ULL;
  }
  return hash;
}

uint64_t EntryContentHash(const pb::Entry& entry) {
  return FnvBytes(FnvMix(kFnvOffset, static_cast<uint64_t>(entry.type())), entry.data());
}

absl::string_view CheckName(Check check) {
  switch (check) {
    case Check::kNone:
      return "none";
    case Check::kElectionSafety:
      return "election safety";
    case Check::kLeaderAppendOnly:
      return "leader append-only";
    case Check::kLogMatching:
      return "log matching";
    case Check::kLeaderCompleteness:
      return "leader completeness";
    case Check::kStateMachineSafety:
      return "state machine safety";
    case Check::kStateMachineContent:
      return "state machine content";
    case Check::kMonotonicity:
      return "monotonicity";
    case Check::kApplyOrder:
      return "apply order";
    case Check::kExactlyOnce:
      return "exactly once";
    case Check::kAcknowledgedWrites:
      return "acknowledged writes";
    case Check::kLinearizability:
      return "linearizability";
    case Check::kLinearizabilityUndecided:
      return "linearizability undecided";
    case Check::kLiveness:
      return "liveness";
    case Check::kContract:
      return "runtime contract";
  }
  return "unknown";
}

std::string Violation::ToString() const { return absl::StrCat(CheckName(check), ": ", what); }

Violation SafetyChecker::OnLeader(raft::Term term, raft::NodeId node, bool* is_new) {
  *is_new = false;
  const auto [it, inserted] = leader_by_term_.emplace(term, node);
  if (inserted) {
    *is_new = true;
    return {};
  }
  if (it->second != node) {
    return {Check::kElectionSafety,
            absl::StrCat("nodes ", it->second, " and ", node, " were both leader in term ", term)};
  }
  return {};
}

Violation SafetyChecker::OnPersistedEntries(raft::NodeId node, raft::Term previous_term,
                                            const std::vector<pb::Entry>& entries) {
  raft::Term previous = previous_term;
  for (const pb::Entry& entry : entries) {
    const uint64_t content = EntryContentHash(entry);
    const auto [it, inserted] =
        logged_.try_emplace({entry.index(), entry.term()}, LoggedEntry{content, previous, node});
    if (!inserted) {
      // By induction over the index, equal content and equal previous term at every
      // (index, term) pair is exactly Log Matching.
      if (it->second.content_hash != content) {
        return {Check::kLogMatching,
                absl::StrCat("node ", node, " persisted a different entry at index ", entry.index(),
                             " term ", entry.term(), " than node ", it->second.first_node)};
      }
      if (it->second.previous_term != previous) {
        return {Check::kLogMatching,
                absl::StrCat("node ", node, " holds term ", previous, " at index ",
                             entry.index() - 1, " before entry index ", entry.index(), " term ",
                             entry.term(), " where node ", it->second.first_node, " holds term ",
                             it->second.previous_term)};
      }
    }
    previous = entry.term();
  }
  return {};
}

Violation SafetyChecker::OnApplied(raft::NodeId node, raft::Index index,
                                   const AppliedEntry& applied, raft::Term node_term,
                                   bool* is_new) {
  *is_new = false;
  if (Violation v = RecordCommitted(node, index, applied.term, applied.content_hash, node_term)) {
    return v;
  }
  const auto [it, inserted] = applied_.try_emplace(index, FirstApplied{applied, node});
  if (inserted) {
    *is_new = true;
    return {};
  }
  const AppliedEntry& first = it->second.entry;
  if (first.term != applied.term || first.content_hash != applied.content_hash) {
    return {Check::kStateMachineSafety,
            absl::StrCat("node ", node, " applied index ", index, " term ", applied.term,
                         " but node ", it->second.node, " applied term ", first.term,
                         first.term == applied.term ? " with other content" : "")};
  }
  if (first.chain_hash != applied.chain_hash) {
    return {Check::kStateMachineSafety,
            absl::StrCat("node ", node, " applied index ", index,
                         " on top of a different applied prefix than node ", it->second.node)};
  }
  if (first.state_hash != applied.state_hash) {
    // Same entries in the same order, different data: the applier itself went wrong.
    return {Check::kStateMachineContent,
            absl::StrCat("node ", node, " and node ", it->second.node,
                         " hold different state machine contents after applying the same ", index,
                         " entries")};
  }
  return {};
}

Violation SafetyChecker::RecordCommitted(raft::NodeId node, raft::Index index, raft::Term term,
                                         uint64_t content_hash, raft::Term observer_term) {
  const auto [it, inserted] =
      committed_.try_emplace(index, CommittedEntry{term, content_hash, observer_term});
  if (inserted) return {};
  it->second.commit_term_bound = std::min(it->second.commit_term_bound, observer_term);
  if (it->second.term != term || it->second.content_hash != content_hash) {
    return {Check::kStateMachineSafety,
            absl::StrCat("index ", index, " was committed with term ", it->second.term,
                         " and, seen at node ", node, ", with term ", term,
                         it->second.term == term ? " and other content" : "")};
  }
  return {};
}

Violation SafetyChecker::OnCommitted(raft::NodeId leader, raft::Term leader_term,
                                     const pb::Entry& entry) {
  return RecordCommitted(leader, entry.index(), entry.term(), EntryContentHash(entry), leader_term);
}

raft::Index SafetyChecker::MaxCommittedBefore(raft::Term term) const {
  for (auto it = committed_.rbegin(); it != committed_.rend(); ++it) {
    if (it->second.commit_term_bound < term) return it->first;
  }
  return 0;
}

Violation SafetyChecker::OnSnapshotState(raft::NodeId node, raft::Index index, uint64_t chain_hash,
                                         uint64_t state_hash) const {
  const auto it = applied_.find(index);
  if (it == applied_.end()) return {};
  if (it->second.entry.chain_hash != chain_hash) {
    return {Check::kStateMachineSafety,
            absl::StrCat("node ", node, " installed a snapshot at index ", index,
                         " whose applied prefix differs from what node ", it->second.node,
                         " applied there")};
  }
  if (it->second.entry.state_hash != state_hash) {
    return {Check::kStateMachineContent,
            absl::StrCat("node ", node, " installed a snapshot at index ", index,
                         " whose contents differ from node ", it->second.node, "'s there")};
  }
  return {};
}

Violation SafetyChecker::CheckLeaderEntry(raft::NodeId leader, raft::Term leader_term,
                                          const pb::Entry& entry) const {
  const auto it = committed_.find(entry.index());
  if (it == committed_.end() || it->second.commit_term_bound >= leader_term) return {};
  if (it->second.term != entry.term() || it->second.content_hash != EntryContentHash(entry)) {
    return {
        Check::kLeaderCompleteness,
        absl::StrCat("leader ", leader, " of term ", leader_term, " holds term ", entry.term(),
                     " at index ", entry.index(), " where term ", it->second.term,
                     " was committed (in term ", it->second.commit_term_bound, " at the latest)")};
  }
  return {};
}

const SafetyChecker::AppliedEntry* SafetyChecker::Applied(raft::Index index) const {
  const auto it = applied_.find(index);
  return it == applied_.end() ? nullptr : &it->second.entry;
}

}  // namespace stead::sim
