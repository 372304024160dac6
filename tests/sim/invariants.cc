#include "tests/sim/invariants.h"

#include <algorithm>
#include <string>
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

std::string SafetyChecker::OnLeader(raft::Term term, raft::NodeId node, bool* is_new) {
  *is_new = false;
  const auto [it, inserted] = leader_by_term_.emplace(term, node);
  if (inserted) {
    *is_new = true;
    return "";
  }
  if (it->second != node) {
    return absl::StrCat("election safety: nodes ", it->second, " and ", node,
                        " were both leader in term ", term);
  }
  return "";
}

std::string SafetyChecker::OnPersistedEntries(raft::NodeId node, raft::Term previous_term,
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
        return absl::StrCat("log matching: node ", node, " persisted a different entry at index ",
                            entry.index(), " term ", entry.term(), " than node ",
                            it->second.first_node);
      }
      if (it->second.previous_term != previous) {
        return absl::StrCat("log matching: node ", node, " holds term ", previous, " at index ",
                            entry.index() - 1, " before entry index ", entry.index(), " term ",
                            entry.term(), " where node ", it->second.first_node, " holds term ",
                            it->second.previous_term);
      }
    }
    previous = entry.term();
  }
  return "";
}

std::string SafetyChecker::OnApplied(raft::NodeId node, raft::Index index, raft::Term term,
                                     uint64_t content_hash, uint64_t chain_hash,
                                     raft::Term node_term, bool* is_new) {
  *is_new = false;
  if (std::string v = RecordCommitted(node, index, term, content_hash, node_term); !v.empty()) {
    return v;
  }
  const auto [it, inserted] =
      applied_.try_emplace(index, AppliedEntry{term, content_hash, chain_hash});
  if (inserted) {
    *is_new = true;
    return "";
  }
  const AppliedEntry& first = it->second;
  if (first.term != term || first.content_hash != content_hash) {
    return absl::StrCat("state machine safety: node ", node, " applied index ", index, " term ",
                        term, " but another node applied term ", first.term,
                        first.term == term ? " with other content" : "");
  }
  if (first.chain_hash != chain_hash) {
    return absl::StrCat("state machine safety: node ", node, " applied index ", index,
                        " on top of a different applied prefix");
  }
  return "";
}

std::string SafetyChecker::RecordCommitted(raft::NodeId node, raft::Index index, raft::Term term,
                                           uint64_t content_hash, raft::Term observer_term) {
  const auto [it, inserted] =
      committed_.try_emplace(index, CommittedEntry{term, content_hash, observer_term});
  if (inserted) return "";
  it->second.commit_term_bound = std::min(it->second.commit_term_bound, observer_term);
  if (it->second.term != term || it->second.content_hash != content_hash) {
    return absl::StrCat("state machine safety: index ", index, " was committed with term ",
                        it->second.term, " and, seen at node ", node, ", with term ", term,
                        it->second.term == term ? " and other content" : "");
  }
  return "";
}

std::string SafetyChecker::OnCommitted(raft::NodeId leader, raft::Term leader_term,
                                       const pb::Entry& entry) {
  return RecordCommitted(leader, entry.index(), entry.term(), EntryContentHash(entry), leader_term);
}

raft::Index SafetyChecker::MaxCommittedBefore(raft::Term term) const {
  for (auto it = committed_.rbegin(); it != committed_.rend(); ++it) {
    if (it->second.commit_term_bound < term) return it->first;
  }
  return 0;
}

std::string SafetyChecker::OnSnapshotState(raft::NodeId node, raft::Index index,
                                           uint64_t chain_hash) const {
  const AppliedEntry* applied = Applied(index);
  if (applied != nullptr && applied->chain_hash != chain_hash) {
    return absl::StrCat("state machine safety: node ", node, " installed a snapshot at index ",
                        index, " whose state differs from what was applied there");
  }
  return "";
}

std::string SafetyChecker::CheckLeaderEntry(raft::NodeId leader, raft::Term leader_term,
                                            const pb::Entry& entry) const {
  const auto it = committed_.find(entry.index());
  if (it == committed_.end() || it->second.commit_term_bound >= leader_term) return "";
  if (it->second.term != entry.term() || it->second.content_hash != EntryContentHash(entry)) {
    return absl::StrCat("leader completeness: leader ", leader, " of term ", leader_term,
                        " holds term ", entry.term(), " at index ", entry.index(), " where term ",
                        it->second.term, " was committed (in term ", it->second.commit_term_bound,
                        " at the latest)");
  }
  return "";
}

const SafetyChecker::AppliedEntry* SafetyChecker::Applied(raft::Index index) const {
  const auto it = applied_.find(index);
  return it == applied_.end() ? nullptr : &it->second;
}

}  // namespace stead::sim
