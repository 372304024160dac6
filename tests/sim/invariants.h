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
// and, beyond the paper, State Machine Content: two nodes that applied the same index
// hold the same state machine contents there (what a buggy applier breaks while every
// Raft invariant holds; production compares content hashes the same way).
//
// Commit terms: Leader Completeness constrains leaders of terms after the term in which
// an entry was committed, which the simulator cannot observe directly. Each observation
// gives an upper bound (the term of the leader whose commit index passed the entry, or
// the applying node's term: it learned of the commit from a leader no newer than that);
// the checker keeps the smallest and constrains only leaders of later terms, so a
// deposed leader that never learned of a newer term is not a false alarm.
//
// Each method returns a Violation naming the check that failed, or an empty one (false
// in a condition) when the invariant holds. Thread-safety: not thread-safe (one
// simulator thread).
#ifndef STEAD_TESTS_SIM_INVARIANTS_H_
#define STEAD_TESTS_SIM_INVARIANTS_H_

#include <cstdint>
#include <map>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"
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

// Every check a simulated run can fail. A violation carries the check that reported it,
// so a test of a planted bug asserts which check caught the bug, not merely that the
// run failed.
enum class Check {
  kNone,
  kElectionSafety,            // at most one leader per term
  kLeaderAppendOnly,          // a leader of one term only appends
  kLogMatching,               // equal (index, term) means equal entries and prefixes
  kLeaderCompleteness,        // committed entries are in every later leader's log
  kStateMachineSafety,        // one entry per applied index, one applied prefix
  kStateMachineContent,       // equal state machine contents at an equal applied index
  kMonotonicity,              // per node: term, commit and vote never go back
  kApplyOrder,                // committed entries handed out in order, without gaps
  kExactlyOnce,               // no command applies twice
  kAcknowledgedWrites,        // at the end, every acknowledged write is on every member
  kLinearizability,           // the client history has no linearization (refuted)
  kLinearizabilityUndecided,  // the linearizability search gave up (neither way)
  kLiveness,                  // one leader and every member caught up after healing
  kContract,                  // the runtime's contracts: storage errors, unknown messages...
};

// The check's name as reports print it, e.g. "leader completeness".
absl::string_view CheckName(Check check);
inline std::ostream& operator<<(std::ostream& out, Check check) { return out << CheckName(check); }

// What failed and why; empty (false in a condition) when nothing failed.
struct Violation {
  Check check = Check::kNone;
  std::string what;  // without the check's name
  explicit operator bool() const { return check != Check::kNone; }
  // "<check name>: <what>".
  std::string ToString() const;
};

class SafetyChecker {
 public:
  // A node's state machine right after applying one index.
  struct AppliedEntry {
    raft::Term term = 0;
    uint64_t content_hash = 0;  // EntryContentHash of the entry applied
    // Fingerprint of every entry applied through this index (state machine prefix).
    uint64_t chain_hash = 0;
    // Fingerprint of the state machine's contents after applying it.
    uint64_t state_hash = 0;
  };

  // Election Safety. `is_new` is set when (term, node) was not seen before.
  Violation OnLeader(raft::Term term, raft::NodeId node, bool* is_new);

  // Log Matching for entries a node made durable; `previous_term` is the term the node
  // holds at entries[0].index - 1 (0 at the start of the log).
  Violation OnPersistedEntries(raft::NodeId node, raft::Term previous_term,
                               const std::vector<pb::Entry>& entries);

  // State Machine Safety and State Machine Content: `node` applied `index` (again,
  // after a crash rolled its state machine back, compared like any other). `node_term`
  // is the applying node's current term. `is_new` is set the first time any node
  // applies `index`.
  Violation OnApplied(raft::NodeId node, raft::Index index, const AppliedEntry& applied,
                      raft::Term node_term, bool* is_new);

  // A leader's commit index passed `entry` (read from its own durable log). Two
  // different entries committed at one index violate State Machine Safety before any
  // node even applies them.
  Violation OnCommitted(raft::NodeId leader, raft::Term leader_term, const pb::Entry& entry);

  // A state machine copy (snapshot) at `index` must equal what was applied there: the
  // same prefix (State Machine Safety) and the same contents (State Machine Content).
  Violation OnSnapshotState(raft::NodeId node, raft::Index index, uint64_t chain_hash,
                            uint64_t state_hash) const;

  // Leader Completeness: `entry` is in the log of a leader of `leader_term`; if its
  // index is known committed (a leader's commit index passed it, or a node applied it)
  // in a term before `leader_term`, they must be the same entry.
  Violation CheckLeaderEntry(raft::NodeId leader, raft::Term leader_term,
                             const pb::Entry& entry) const;

  // The newest term that had a leader (0 when none).
  raft::Term newest_leader_term() const {
    return leader_by_term_.empty() ? 0 : leader_by_term_.rbegin()->first;
  }
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
  struct FirstApplied {
    AppliedEntry entry;
    raft::NodeId node = raft::kNoNode;
  };
  std::map<raft::Index, FirstApplied> applied_;
  struct CommittedEntry {
    raft::Term term = 0;
    uint64_t content_hash = 0;
    raft::Term commit_term_bound = 0;  // the entry was committed in this term or before
  };
  std::map<raft::Index, CommittedEntry> committed_;
  Violation RecordCommitted(raft::NodeId node, raft::Index index, raft::Term term,
                            uint64_t content_hash, raft::Term observer_term);
};

}  // namespace stead::sim

#endif  // STEAD_TESTS_SIM_INVARIANTS_H_
