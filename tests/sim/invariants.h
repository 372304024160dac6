// Cluster-wide Raft safety invariants, checked incrementally from what the simulator
// observes (the checks are kept apart from the simulation logic so a reviewer can read
// the specification in one place).
//
// Raft paper Figure 3 / thesis Figure 3.2:
//   Election Safety      at most one leader per term, across the whole history;
//   Log Matching         two persisted logs with an entry of the same index and term
//                        hold the same entry there and agree on everything before;
//   Leader Completeness  an entry applied (hence committed) anywhere is in the log of
//                        every leader of a later term;
//   State Machine Safety no two nodes apply different entries at one index.
//
// Commit terms: Leader Completeness constrains leaders of terms after the term in which
// an entry was committed, which the simulator cannot observe directly. Each observation
// gives an upper bound (the term of the leader whose commit index passed the entry, or
// the applying node's term: it learned of the commit from a leader no newer than that);
// the checker keeps the smallest and constrains only leaders of later terms, so a
// deposed leader that never learned of a newer term is not a false alarm.
//
// Each method returns an empty string when the invariant holds and a description of
// the violation otherwise. Thread-safety: not thread-safe (one simulator thread).
#ifndef STEAD_TESTS_SIM_INVARIANTS_H_
#define STEAD_TESTS_SIM_INVARIANTS_H_

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "proto/raft.pb.h"
#include "raft/types.h"

namespace stead::sim {

// FNV-1a over bytes and integers: stable across processes (unlike absl::Hash, which is
// seeded per process), so it can fingerprint traces and entries.
uint64_t FnvBytes(uint64_t hash, const std::string& bytes);
uint64_t FnvMix(uint64_t hash, uint64_t value);
inline constexpr uint64_t kFnvOffset = 14695981039346656037ULL;

// Fingerprint of an entry's content (type and data), not of its position.
uint64_t EntryContentHash(const pb::Entry& entry);

class SafetyChecker {
 public:
  struct AppliedEntry {
    raft::Term term = 0;
    uint64_t content_hash = 0;
    // Fingerprint of every entry applied through this index (state machine prefix).
    uint64_t chain_hash = 0;
  };

  // Election Safety. `is_new` is set when (term, node) was not seen before.
  std::string OnLeader(raft::Term term, raft::NodeId node, bool* is_new);

  // Log Matching for entries a node made durable; `previous_term` is the term the node
  // holds at entries[0].index - 1 (0 at the start of the log).
  std::string OnPersistedEntries(raft::NodeId node, raft::Term previous_term,
                                 const std::vector<pb::Entry>& entries);

  // State Machine Safety. `node_term` is the applying node's current term. `is_new` is
  // set the first time any node applies `index`.
  std::string OnApplied(raft::NodeId node, raft::Index index, raft::Term term,
                        uint64_t content_hash, uint64_t chain_hash, raft::Term node_term,
                        bool* is_new);

  // A leader's commit index passed `entry` (read from its own durable log). Two
  // different entries committed at one index violate State Machine Safety before any
  // node even applies them.
  std::string OnCommitted(raft::NodeId leader, raft::Term leader_term, const pb::Entry& entry);

  // A state machine copy (snapshot) at `index` must equal the applied prefix there.
  std::string OnSnapshotState(raft::NodeId node, raft::Index index, uint64_t chain_hash) const;

  // Leader Completeness: `entry` is in the log of a leader of `leader_term`; if its
  // index is known committed (a leader's commit index passed it, or a node applied it)
  // in a term before `leader_term`, they must be the same entry.
  std::string CheckLeaderEntry(raft::NodeId leader, raft::Term leader_term,
                               const pb::Entry& entry) const;

  // Highest index applied anywhere (0 when none).
  raft::Index max_applied() const { return applied_.empty() ? 0 : applied_.rbegin()->first; }
  // Highest index known committed (0 when none).
  raft::Index max_committed() const { return committed_.empty() ? 0 : committed_.rbegin()->first; }
  // Highest index known committed in a term before `term` (0 when none): a leader of
  // `term` must hold at least that many entries.
  raft::Index MaxCommittedBefore(raft::Term term) const;
  const AppliedEntry* Applied(raft::Index index) const;

 private:
  struct LoggedEntry {
    uint64_t content_hash = 0;
    raft::Term previous_term = 0;
    raft::NodeId first_node = raft::kNoNode;
  };
  std::map<raft::Term, raft::NodeId> leader_by_term_;
  std::map<std::pair<raft::Index, raft::Term>, LoggedEntry> logged_;
  std::map<raft::Index, AppliedEntry> applied_;
  struct CommittedEntry {
    raft::Term term = 0;
    uint64_t content_hash = 0;
    raft::Term commit_term_bound = 0;  // the entry was committed in this term or before
  };
  std::map<raft::Index, CommittedEntry> committed_;
  std::string RecordCommitted(raft::NodeId node, raft::Index index, raft::Term term,
                              uint64_t content_hash, raft::Term observer_term);
};

}  // namespace stead::sim

#endif  // STEAD_TESTS_SIM_INVARIANTS_H_
