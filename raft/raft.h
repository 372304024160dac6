// The Raft consensus core: a pure, deterministic state machine.
//
// One Raft object per node. It performs no I/O, starts no threads and reads no clock:
// time arrives as Tick(), messages as Step(), client requests as Propose(),
// ProposeConfChange(), ReadIndex() and TransferLeadership(). Everything the node must do
// in the outside world comes out as a Ready batch (TakeReady()):
//
//   1. persist `snapshot`, then `entries` (truncating the persisted suffix from
//      entries[0].index first), then `hard_state` (or all atomically), in the order the
//      Readys were taken; installing the snapshot replaces the state machine's contents;
//   2. send `messages` at once, and `messages_after_persist` only once step 1 is durable;
//   3. apply `committed_entries` in order (at once if convenient: they were all reported
//      durable already), and answer `read_states` once applied reaches their index; an
//      installed snapshot counts as applied through its index;
//   4. acknowledge: OnPersisted(last entry index, its term) (or the snapshot's index and
//      term when the Ready held a snapshot and no entries) once step 1 is durable, and
//      OnApplied(index) as the state machine progresses.
//
// Readys may be pipelined: TakeReady() may be called again before the previous Ready
// was persisted; the runtime persists them in order. Given the same sequence of inputs
// (including Config::random_seed) the core produces the same sequence of outputs, which
// is what makes the deterministic simulator in tests/sim/ possible.
//
// Safety rules implemented here (see the .cc files for the paper sections):
//   - randomized election timeouts in [election_timeout_ticks, 2 * election_timeout_ticks);
//   - PreVote (thesis §9.6) and CheckQuorum (§6.2) on by default; a follower that heard
//     from a live leader within the election timeout ignores (Pre)Vote requests unless
//     they come from a leadership transfer (leader stickiness, §4.2.3);
//   - a leader appends a no-op at the start of its term and commits only by counting
//     replicas of entries of its own term (§3.6.2, Figure 3.7);
//   - membership changes one server at a time (§4.1), only after the leader committed an
//     entry of its term, with at most one change not yet committed; a change takes effect
//     on each node when that node learns it is committed;
//   - ReadIndex reads (§6.4), also on followers through the leader, and optional lease
//     reads (§6.4.1, see ReadOnlyMode).
//
// Thread-safety: not thread-safe; call every method from one thread (the raft strand).
#ifndef STEAD_RAFT_RAFT_H_
#define STEAD_RAFT_RAFT_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "base/log.h"
#include "proto/raft.pb.h"
#include "raft/log_storage.h"
#include "raft/progress_state.h"
#include "raft/types.h"

namespace stead::raft {

class RaftLog;
class ProgressTracker;
class ReadOnly;

enum class Role { kFollower, kPreCandidate, kCandidate, kLeader };

// "follower", "pre-candidate", "candidate", "leader".
const char* RoleName(Role role);

// How the leader serves ReadIndex().
enum class ReadOnlyMode {
  // Thesis §6.4: the leader records its commit index, confirms it is still leader with a
  // heartbeat round acknowledged by a quorum, then answers. Safe whatever the clocks do.
  kReadIndex,
  // Thesis §6.4.1: the leader answers at once while it holds a lease, and falls back to a
  // ReadIndex round otherwise. Every heartbeat carries the leader's tick count; a
  // follower that answers it ignores vote requests for an election timeout after
  // receiving it (leader stickiness, which requires check_quorum on every node), and a
  // node that restarts ignores them for its first election timeout. So no other leader
  // can be elected until an election timeout after the heartbeat a quorum last
  // acknowledged; the lease ends a safety margin (a tenth of the election timeout, at
  // least one tick) before that. This counts ticks on different nodes as equal time: it
  // is only safe if tick rates differ by less than that margin. A paused process, a VM
  // migration or a drifting clock on the leader can break that assumption and return
  // stale data. A leader that sent TIMEOUT_NOW gives up its lease for the rest of its
  // term (that election bypasses stickiness, and the message may arrive late).
  kLeaseBased,
};

struct Config {
  // This node's id. Default: kNoNode, which Create() refuses: always set it.
  NodeId id = kNoNode;
  // A follower that hears nothing from a leader for the randomized timeout, drawn from
  // [election_timeout_ticks, 2 * election_timeout_ticks), campaigns. Must be greater than
  // heartbeat_interval_ticks and at most 2^20. Default: 10.
  int election_timeout_ticks = 10;
  // A leader sends heartbeats this often. Default: 1.
  int heartbeat_interval_ticks = 1;
  // Seeds the only source of randomness (election jitter). Default: 0.
  uint64_t random_seed = 0;
  // Run a PreVote round before incrementing the term (thesis §9.6). Default: true.
  bool pre_vote = true;
  // A leader that has not heard from a quorum within an election timeout steps down, and
  // followers ignore votes while they hear from a leader (thesis §6.2). Default: true.
  bool check_quorum = true;
  // Default: kReadIndex. kLeaseBased needs check_quorum (see ReadOnlyMode).
  ReadOnlyMode read_only_mode = ReadOnlyMode::kReadIndex;
  // Upper bound on the entry bytes in one APPEND message (at least one entry is always
  // sent). Default: 1 MiB.
  uint64_t max_message_bytes = 1 << 20;
  // APPEND messages in flight per follower in the replicate state. Default: 256.
  size_t max_inflight_messages = 256;
  // Bytes of proposed but not yet committed entries a leader accepts; Propose() beyond
  // that returns ResourceExhausted. Default: 64 MiB.
  uint64_t max_uncommitted_bytes = 64 << 20;
  // What the state machine had applied when the node (re)started. Committed entries
  // after it are handed out again. Default: 0.
  Index applied = 0;
  // Where the core logs; the simulator captures it. Default: stderr at info.
  Logger logger;
  // Test-only: lets a leader commit entries of earlier terms by counting replicas, the
  // known safety bug of Raft §5.4.2 / Figure 8. The simulator's self-test turns it on
  // to prove it detects the violation. Default: false. Never set it in production.
  bool unsafe_commit_previous_term_entries_for_testing = false;
};

// Volatile state that is useful for logging and routing; not persisted.
struct SoftState {
  NodeId leader = kNoNode;
  Role role = Role::kFollower;
  bool operator==(const SoftState& other) const = default;
};

// The answer to a ReadIndex(context) request: the read is linearizable once the state
// machine has applied at least `index`.
struct ReadState {
  Index index = 0;
  std::string context;
};

struct Ready {
  // Set when it changed since the previous Ready.
  std::optional<SoftState> soft_state;
  // Set when it changed; must be durable before messages_after_persist are sent.
  std::optional<pb::HardState> hard_state;
  // A received snapshot to install. Its bytes were staged by the runtime before Step()
  // delivered the SNAPSHOT message. Installing it replaces the whole log and state.
  std::optional<pb::SnapshotMetadata> snapshot;
  // To append durably. If entries[0].index is <= the last persisted index, the persisted
  // suffix from entries[0].index on is truncated first.
  std::vector<pb::Entry> entries;
  // To apply in order. Contains only entries this node has persisted.
  std::vector<pb::Entry> committed_entries;
  // May be sent at once: the leader's APPEND, HEARTBEAT, SNAPSHOT and TIMEOUT_NOW (the
  // leader writes its own log in parallel with replicating it, thesis §10.2.1).
  std::vector<pb::Message> messages;
  // Send only once this Ready's hard_state, snapshot and entries are durable (votes,
  // append acknowledgements, anything that vouches for persisted state).
  std::vector<pb::Message> messages_after_persist;
  // Answers to ReadIndex requests.
  std::vector<ReadState> read_states;

  bool empty() const;
  // True when the Ready holds something to persist (hard_state, snapshot or entries).
  bool MustPersist() const;
  // The (index, term) to pass to OnPersisted() once this Ready is durable: the last
  // entry's, else the snapshot's; nullopt when there are neither.
  std::optional<std::pair<Index, Term>> PersistedPosition() const;
};

// What the leader knows about one member, for metrics and tests.
struct PeerStatus {
  NodeId id = kNoNode;
  bool is_learner = false;
  ProgressState state = ProgressState::kProbe;
  Index match = 0;
  Index next = 0;
  size_t inflight_count = 0;
  // Heard from the peer in the current or the previous CheckQuorum round (an election
  // timeout each): not "nobody" just after a round starts, as the quorum check's own
  // flag is.
  bool recent_active = false;
};

// A point-in-time view of one node, for metrics and tests.
struct RaftStatus {
  NodeId id = kNoNode;
  Term term = 0;
  NodeId vote = kNoNode;
  Role role = Role::kFollower;
  NodeId leader = kNoNode;
  Index commit = 0;
  Index applied = 0;
  Index last_index = 0;
  // How far the leader's commit index is known to have got: a leader's own commit; on a
  // follower the highest an APPEND (accepted or not), HEARTBEAT (its `index`) or
  // SNAPSHOT of the current leader carried this term, 0 until one arrived. A follower
  // that lags far behind (its log needs a snapshot) learns here how far, which its own
  // commit index cannot tell.
  Index leader_commit = 0;
  NodeId lead_transferee = kNoNode;
  pb::ConfState conf_state;
  // Leader only: every member including itself, sorted by id.
  std::vector<PeerStatus> peers;
};

class Raft {
 public:
  // Starts from storage->InitialState() and the persisted log. `storage` is borrowed and
  // must outlive the Raft object.
  //
  // A brand-new cluster is bootstrapped by the runtime BEFORE Create: it persists
  // BootstrapEntries(voters) and HardState{term=1, commit=voters.size()} on every initial
  // member. A joining node starts with an empty log and empty membership and learns
  // everything from the leader. Membership is rebuilt from the snapshot's conf_state plus
  // the committed CONF_CHANGE entries after it.
  //
  // Errors: InvalidArgument for a bad config; DataLoss when the persisted state is
  // inconsistent (commit beyond the log); storage errors are passed up.
  static absl::StatusOr<std::unique_ptr<Raft>> Create(Config config, const LogStorage* storage);

  // One CONF_CHANGE ADD_VOTER entry per initial voter, at term 1, indexes 1..n, each
  // with the runtime's context for that voter (none when `contexts` is empty).
  static std::vector<pb::Entry> BootstrapEntries(const std::vector<NodeId>& voters,
                                                 const std::vector<std::string>& contexts = {});

  ~Raft();
  Raft(const Raft&) = delete;
  Raft& operator=(const Raft&) = delete;

  // Handles a message from a peer. Errors: InvalidArgument for a malformed message (it is
  // dropped and the state is unchanged); storage errors are passed up.
  absl::Status Step(const pb::Message& message);

  // Advances logical time by one tick.
  void Tick();

  // Appends a command to the leader's log. Errors: Unavailable "not leader" (see
  // leader() for a hint) or while a leadership transfer is in progress (retry: the
  // leader is about to change); ResourceExhausted when max_uncommitted_bytes would be
  // exceeded.
  absl::Status Propose(std::string data);

  // Appends a one-server membership change. Errors: Unavailable "not leader" or during
  // a leadership transfer; FailedPrecondition when another change is not yet
  // committed or when the leader has not yet committed an entry of its own term;
  // InvalidArgument for a malformed change or one that would leave no voter;
  // AlreadyExists / NotFound for adding a present or removing an absent member. The
  // change takes effect on each node when it is committed, and is also handed out in
  // committed_entries for the runtime.
  absl::Status ProposeConfChange(const pb::ConfChange& change);

  // Starts a linearizable read; the answer arrives as a ReadState carrying `context`,
  // which must be non-empty and unique among this node's reads in progress. On the
  // leader the read is confirmed as in ReadOnlyMode. A follower or learner sends the
  // leader a READ_INDEX request; the leader serves it like its own read and answers
  // with its confirmed read index, which the follower hands out as the ReadState (apply
  // through it, then read locally). A deposed leader never answers, and a lost request
  // or answer is never repeated, so the caller needs a deadline. Errors: Unavailable
  // "not leader" on a candidate or a follower that knows no leader; InvalidArgument for
  // an empty context or one starting with "\x01" (reserved for the core's own
  // contexts); on the leader, AlreadyExists for a context in progress and
  // ResourceExhausted beyond 4096 reads in progress (a follower cannot tell: the leader
  // leaves such a request unanswered).
  absl::Status ReadIndex(std::string context);

  // Hands leadership to `target`: catches it up, then sends TIMEOUT_NOW. Proposals are
  // refused meanwhile; the transfer is abandoned after an election timeout. Errors:
  // Unavailable "not leader"; InvalidArgument when target is not a voter. Transferring
  // to the leader itself is a no-op.
  absl::Status TransferLeadership(NodeId target);

  // Starts an election now (with a PreVote round if configured). Errors:
  // FailedPrecondition when this node is not a voter or is already leader.
  absl::Status Campaign();

  bool HasReady() const;
  // Hands out everything new since the previous Ready.
  Ready TakeReady();
  // Entries through `index` (with that term at `index`, so a stale acknowledgement after
  // a truncation is ignored), and every hard state and snapshot handed out with them,
  // are durable.
  void OnPersisted(Index index, Term term);
  // The state machine applied every committed entry through `index`.
  void OnApplied(Index index);
  // A send to `peer` failed: the leader goes back to probing it.
  void ReportUnreachable(NodeId peer);
  // The runtime finished (ok) or gave up (!ok) streaming the checkpoint for a SNAPSHOT
  // message to `peer`. Must be called once for every SNAPSHOT message sent: until then
  // the leader sends `peer` nothing but heartbeats.
  void ReportSnapshot(NodeId peer, bool ok);

  NodeId id() const { return id_; }
  Term term() const { return term_; }
  NodeId leader() const { return leader_; }
  Role role() const { return role_; }
  Index commit_index() const;
  Index last_index() const;
  Index applied_index() const;
  const pb::ConfState& conf_state() const { return conf_state_; }
  RaftStatus Status() const;

  // Test-only accessors.
  int ElectionElapsedForTesting() const { return election_elapsed_; }
  int RandomizedElectionTimeoutForTesting() const { return randomized_election_timeout_; }

 private:
  Raft(Config config, const LogStorage* storage, RaftLog log);

  // --- raft.cc: construction, common Step handling, ticks, Ready ---
  absl::Status Restore(const PersistedState& state);
  // Term handling shared by every role (Raft §5.1, thesis §9.6 and §4.2.3). Returns
  // false when the message must be dropped.
  bool StepTerm(const pb::Message& message);
  absl::Status StepLeader(const pb::Message& message);
  absl::Status StepCandidate(const pb::Message& message);
  absl::Status StepFollower(const pb::Message& message);
  void TickElection();
  void TickHeartbeat();
  // Queues a message to send at once / only after the current Ready is durable.
  void Send(pb::Message message);
  void SendAfterPersist(pb::Message message);
  pb::HardState HardState() const;
  SoftState CurrentSoftState() const;
  // Whether this node may campaign: a voter, with no snapshot pending installation.
  bool Promotable() const;
  void CheckInvariants() const;

  // --- raft_election.cc ---
  void ResetForTerm(Term term);
  void ResetRandomizedElectionTimeout();
  void BecomeFollower(Term term, NodeId leader);
  void BecomePreCandidate();
  void BecomeCandidate();
  void BecomeLeader();
  // Starts a (pre-)election; `transfer` marks one triggered by TIMEOUT_NOW.
  void Hup(bool transfer);
  void CampaignWith(bool pre_vote, bool transfer);
  void HandleVoteRequest(const pb::Message& message);
  void HandleVoteResponse(const pb::Message& message);
  // A follower that heard from a leader within the election timeout (thesis §4.2.3), or
  // a node in its first election timeout after a restart in lease mode: it ignores
  // (non-transfer) vote requests.
  bool InLeaderLease() const;

  // --- raft_replication.cc ---
  // Leader: assigns the current term and the next indexes to `entries`, appends them and
  // schedules their broadcast.
  void AppendEntries(std::vector<pb::Entry> entries);
  // Sends an APPEND (or a SNAPSHOT when the entries were compacted) to `to` if its
  // progress is not paused. With `send_if_empty`, also when there is nothing new (to
  // carry the commit index). Returns whether a message was sent.
  bool SendAppend(NodeId to, bool send_if_empty);
  bool SendSnapshot(NodeId to);
  void BroadcastAppend();
  void SendHeartbeat(NodeId to, const std::string& context);
  void BroadcastHeartbeat(const std::string& context);
  // Raises the commit index to what a quorum replicated, if that entry is of the
  // current term (§5.4.2). Returns whether it advanced.
  bool MaybeCommit();
  // Raises the commit index and applies the membership changes it passes.
  void AdvanceCommit(Index index);
  absl::Status HandleAppend(const pb::Message& message);
  absl::Status HandleHeartbeat(const pb::Message& message);
  absl::Status HandleSnapshot(const pb::Message& message);
  void HandleAppendResponse(const pb::Message& message);
  void HandleHeartbeatResponse(const pb::Message& message);

  // --- raft_membership.cc ---
  // Records the CONF_CHANGE entries among `entries` (just appended from their first
  // index on, replacing what was there).
  void TrackConfChanges(const std::vector<pb::Entry>& entries);
  void ApplyCommittedConfChanges();
  void ApplyConfState(const pb::ConfState& conf_state);
  void AbortLeaderTransfer();
  void SendTimeoutNow(NodeId to);
  void HandleTimeoutNow(const pb::Message& message);

  // --- raft_read.cc ---
  // Leader: starts the read tracked under `key` (a local context, or the key of a
  // follower's read); the errors of ReadIndex.
  absl::Status StartRead(std::string key);
  // Serves a read now that the leader has committed an entry of its term.
  void ServeRead(std::string key);
  // Hands out a confirmed read: a ReadState for a local one, a READ_INDEX_RESPONSE to
  // the member that asked for a follower's.
  void DeliverRead(ReadState state);
  void HandleReadIndexRequest(const pb::Message& message);
  void HandleReadIndexResponse(const pb::Message& message);
  void ServePendingReads();
  void HandleReadAck(const pb::Message& message);
  bool CommittedInCurrentTerm() const;
  // Lease mode: the heartbeat context carrying the current leader tick, and recording
  // an acknowledgement of one.
  std::string LeaseContext() const;
  void HandleLeaseAck(const pb::Message& message);
  // Lease mode: whether no other leader can have been elected yet (see ReadOnlyMode).
  bool HoldsLease() const;

  Config config_;
  const LogStorage* const storage_;
  const NodeId id_;
  Logger logger_;
  std::mt19937_64 random_;

  // Persistent state (thesis Figure 3.1). term_ only increases; voted_for_ changes only
  // from kNoNode within a term. Both are persisted (Ready.hard_state) before any message
  // that depends on them is sent (messages_after_persist).
  Term term_ = 0;
  NodeId voted_for_ = kNoNode;

  Role role_ = Role::kFollower;
  NodeId leader_ = kNoNode;
  // Follower: see RaftStatus::leader_commit. Only increases within a term; reset to 0
  // with the term.
  Index leader_commit_ = 0;
  // Membership as of the commit index: the snapshot's plus every committed CONF_CHANGE.
  pb::ConfState conf_state_;
  // CONF_CHANGE entries in the log above the commit index, by index. A change takes
  // effect when the commit index passes it; truncating the log drops it.
  std::map<Index, pb::ConfChange> uncommitted_conf_changes_;

  int election_elapsed_ = 0;
  int heartbeat_elapsed_ = 0;
  // Ticks since this object was created, saturating at the election timeout: in lease
  // mode the node ignores vote requests until it reaches it (see ReadOnlyMode).
  int startup_ticks_ = 0;
  // Leader: ticks since it became leader (the clock of its lease).
  uint64_t leader_ticks_ = 0;
  // Leader, lease mode: per member, the highest leader tick of a heartbeat it answered.
  std::map<NodeId, uint64_t> lease_acks_;
  // Leader: a TIMEOUT_NOW was sent in this term. It may arrive arbitrarily late and start
  // an election that ignores stickiness, so the lease is given up for the term.
  bool sent_timeout_now_ = false;
  // Drawn in [election_timeout_ticks, 2 * election_timeout_ticks) on every term change.
  int randomized_election_timeout_ = 0;

  std::unique_ptr<RaftLog> log_;
  std::unique_ptr<ProgressTracker> progress_;
  std::unique_ptr<ReadOnly> read_only_;

  // Leader: the member leadership is being transferred to, or kNoNode.
  NodeId lead_transferee_ = kNoNode;
  // Leader: bytes of proposal data appended in this term and not yet handed out as
  // committed (max_uncommitted_bytes).
  uint64_t uncommitted_bytes_ = 0;
  // Leader: proposals were appended since the last broadcast. APPENDs are built when
  // the Ready is taken, so many proposals between two Readys travel in one message.
  bool broadcast_pending_ = false;
  // Leader: read keys received before it committed an entry of its term.
  std::vector<std::string> reads_waiting_for_commit_;

  // Outputs not yet handed out in a Ready.
  std::vector<pb::Message> messages_;
  std::vector<pb::Message> messages_after_persist_;
  std::vector<ReadState> read_states_;
  // What the previous Ready handed out, to detect changes.
  SoftState previous_soft_state_;
  pb::HardState previous_hard_state_;
};

}  // namespace stead::raft

#endif  // STEAD_RAFT_RAFT_H_
