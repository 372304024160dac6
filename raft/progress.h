// What a leader tracks about each member's log (Raft thesis §3.5 nextIndex/matchIndex,
// plus the flow-control states of progress_state.h), and the set of all of them.
//
// Not thread-safe.
#ifndef STEAD_RAFT_PROGRESS_H_
#define STEAD_RAFT_PROGRESS_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "proto/raft.pb.h"
#include "raft/inflights.h"
#include "raft/progress_state.h"
#include "raft/quorum.h"
#include "raft/types.h"

namespace stead::raft {

// One follower (or the leader itself) as seen by the leader.
//
// Invariants: match < next; in kSnapshot, pending_snapshot > 0; the in-flight window is
// empty outside kReplicate.
struct Progress {
  Progress(Index next_index, size_t max_inflight_messages, bool learner);

  // The highest index known to be replicated on the member (0 when unknown). Only
  // increases while this node stays leader.
  Index match = 0;
  // The index of the next entry to send.
  Index next = 1;
  ProgressState state = ProgressState::kProbe;
  // kSnapshot: the index of the snapshot being streamed.
  Index pending_snapshot = 0;
  // kProbe: an APPEND was sent and its answer (or the next heartbeat) is awaited.
  bool probe_sent = false;
  // Heard from the member since the last CheckQuorum round.
  bool recent_active = false;
  // recent_active as the last CheckQuorum round ended: with it, "heard lately" does not
  // drop to nobody at the start of every round (PeerStatus::recent_active).
  bool active_last_round = false;
  bool is_learner = false;
  Inflights inflights;

  void BecomeProbe();
  void BecomeReplicate();
  void BecomeSnapshot(Index snapshot_index);

  // The member acknowledged entries through `index`. Returns true when match advanced.
  // Also unpauses a probe and moves next past `index`.
  bool MaybeUpdate(Index index);

  // An APPEND carrying entries up to `last_index` (or none, last_index = next - 1) with
  // `bytes` of entries was sent.
  void SentEntries(Index last_index, uint64_t bytes);

  // The member rejected an APPEND whose preceding entry was `rejected`; `hint_index` is
  // where the leader should resume (next = hint_index + 1). Returns false for a stale
  // rejection that must be ignored.
  bool MaybeDecreaseTo(Index rejected, Index hint_index);

  // Whether no further APPEND should be sent now.
  bool IsPaused() const;

  std::string DebugString() const;
};

// The progress of every member, plus the votes of the current election.
class ProgressTracker {
 public:
  explicit ProgressTracker(size_t max_inflight_messages);

  // Makes the tracked members those of `conf_state`. New members start probing at
  // last_index + 1; members that stay keep their progress; a learner promoted to voter
  // keeps its progress.
  void ApplyConf(const pb::ConfState& conf_state, Index last_index);
  // Forgets all progress and restarts every member at next = last_index + 1, match 0.
  void ResetAll(Index last_index);

  const std::vector<NodeId>& voters() const { return voters_; }
  const std::vector<NodeId>& learners() const { return learners_; }
  bool IsVoter(NodeId id) const;

  // nullptr for a non-member.
  Progress* Find(NodeId id);
  const Progress* Find(NodeId id) const;
  std::map<NodeId, Progress>& all() { return progress_; }
  const std::map<NodeId, Progress>& all() const { return progress_; }

  // The highest index replicated on a majority of voters.
  Index QuorumCommitted() const;
  // Whether a majority of voters were recently active (`self` always counts).
  bool QuorumActive(NodeId self) const;
  void ClearRecentActive();

  void ResetVotes() { votes_.clear(); }
  // Records a vote (the first answer of each voter counts) and returns the tally.
  VoteResult RecordVote(NodeId id, bool granted);
  VoteResult TallyVotes() const;

 private:
  const size_t max_inflight_messages_;
  std::vector<NodeId> voters_;    // sorted
  std::vector<NodeId> learners_;  // sorted
  std::map<NodeId, Progress> progress_;
  std::map<NodeId, bool> votes_;
};

}  // namespace stead::raft

#endif  // STEAD_RAFT_PROGRESS_H_
