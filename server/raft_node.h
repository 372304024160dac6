// RaftNode: drives one raft::Raft with real storage and a real network.
//
// It owns the raft strand (the only place the core is touched), turns a steady timer
// into Tick(), and is the runtime of a raft::ReadyPipeline, which owns the ordering rules
// of each Ready (raft/ready_pipeline.h; the simulator drives the same one): its log
// writer is the WAL (group commit; the callback posts back to the strand), its
// transport the PeerTransport, its applier the node's own applier thread, which
// applies committed entries to the StateMachine. See server/README.md.
//
// Snapshots: every snapshot_entries or snapshot_bytes of applied entries a checkpointer
// thread takes a checkpoint (SnapshotStore; the applier waits only for its flush and
// hard links) and compacts the WAL to the checkpoint before it,
// so the log always keeps about one interval of entries for followers that lag
// briefly. A SNAPSHOT message the core sends is streamed by the transport from the
// pinned checkpoint; after a failed transfer (e.g. the follower's volume is full) the
// core hears of the failure, and may offer again, only after a backoff that doubles
// with each consecutive failure to that follower (snapshot_retry_*). A received snapshot is installed on the applier thread (the state
// machine first, then the WAL marker; Start() repairs a crash in between), while the
// pipeline takes no further Readys.
//
// Proposals carry a (proposer, id) pair so the member that proposed a command can hand
// the apply result to its waiter. A waiter's outcome is exactly one of: the result;
// Unavailable (not leader: nothing was proposed, the message names the leader if
// known); ResourceExhausted (too many pending); DeadlineExceeded (the command may or
// may not be committed later: retry with the same client id and sequence).
//
// Thread-safety: every public method may be called from any thread. Callbacks run on
// the raft strand or the applier thread and must not block.
#ifndef STEAD_SERVER_RAFT_NODE_H_
#define STEAD_SERVER_RAFT_NODE_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "base/asio.h"
#include "base/log.h"
#include "base/mutex.h"
#include "raft/raft.h"
#include "raft/ready_pipeline.h"
#include "server/metrics.h"
#include "server/peer_transport.h"
#include "server/snapshot_store.h"
#include "storage/state_machine.h"
#include "storage/wal.h"

namespace stead::server {

// Instruments the node updates; any may be null.
struct RaftNodeMetrics {
  Counter* proposals = nullptr;         // commands and membership changes proposed
  Counter* proposals_failed = nullptr;  // refused, failed or timed out
  Histogram* wal_write_seconds = nullptr;  // a Ready handed to the WAL until durable
  Histogram* apply_seconds = nullptr;      // one batch of committed entries applied
};

struct RaftNodeOptions {
  // The core's configuration: id, timeouts, PreVote, ... `applied` is set by Start()
  // from the state machine.
  raft::Config raft;
  // Wall time of one Tick(). Default: 100 ms.
  absl::Duration tick_interval = absl::Milliseconds(100);
  // Proposals and reads waiting at once; beyond it new ones fail with
  // ResourceExhausted. Default: 10000.
  size_t max_pending_requests = 10000;
  RaftNodeMetrics metrics;
  // Runs on the applier thread after each batch of entries is applied (the state
  // machine shows them); must not block. May be null.
  std::function<void()> on_applied;
  // Log compaction: a checkpoint is taken once this many entries, or this many bytes
  // of entries, were applied since the previous one; 0 disables that trigger.
  // Default: 50000 entries, 128 MiB.
  uint64_t snapshot_entries = 50000;
  uint64_t snapshot_bytes = uint64_t{128} << 20;
  // Runs on the applier thread after a snapshot from the leader replaced the state
  // machine (e.g. to reload the membership it holds), before on_applied. May be null.
  std::function<void()> on_snapshot_installed;
  // How long the leader waits after a failed snapshot transfer before it may offer that
  // follower a snapshot again: snapshot_retry_min after the first failure in a row,
  // doubling with each further one up to snapshot_retry_max. Default: 1 s, 30 s.
  absl::Duration snapshot_retry_min = absl::Seconds(1);
  absl::Duration snapshot_retry_max = absl::Seconds(30);
};

// What one committed command does. Runs on the applier thread, in log order, once per
// entry on every member (so it must be deterministic). It may read `state` (which holds
// every earlier entry: the state machine with the earlier entries of the same apply
// batch laid over it), appends the mutations to make and returns the result for the
// proposer, or an error that is also the proposer's result (the entry then changes
// nothing).
using ApplyFunction = std::function<absl::StatusOr<std::string>(
    absl::string_view command, const pb::Entry& entry, const storage::StateReader& state,
    std::vector<storage::Mutation>* mutations)>;

// What a committed membership change does besides changing the configuration. Runs on
// the applier thread, in log order, on every member, before the change is stored:
// `after` is the configuration it leads to; mutations appended are written in the same
// batch (the runtime records the member's name and addresses).
using ConfChangeFunction = std::function<void(const pb::ConfChange& change,
                                              const pb::ConfState& after,
                                              std::vector<storage::Mutation>* mutations)>;

// A point-in-time summary published by the raft strand for metrics and health checks.
struct RaftNodeStatus {
  raft::NodeId id = raft::kNoNode;
  raft::Term term = 0;
  raft::Role role = raft::Role::kFollower;
  raft::NodeId leader = raft::kNoNode;
  raft::Index commit = 0;
  raft::Index applied = 0;
  // The leader's commit index as far as this member knows (raft::RaftStatus).
  raft::Index leader_commit = 0;
  raft::Index last_index = 0;
  bool is_voter = false;
  uint64_t leader_changes = 0;
  // Linearizable reads served here (as leader or follower), and the ReadIndex rounds
  // they shared (heartbeat rounds on the leader, requests to the leader on a follower).
  uint64_t reads = 0;
  uint64_t read_rounds = 0;
  // Checkpoints taken for log compaction, and snapshots installed from a leader.
  uint64_t snapshots_taken = 0;
  uint64_t snapshots_installed = 0;
  // The first index the WAL still holds (entries before it are in a checkpoint).
  raft::Index log_first_index = 0;
  // Read when Status() is called, not published: the newest snapshot a leader offered
  // this member (SnapshotStore::OfferedIndex; above `applied`, this member waits for it
  // and its own state is not current), the state machine's damage and whether its
  // checksums were verified since the start (the checkpointer thread verifies them
  // first thing; StateMachine::VerifyChecksums). A damaged state machine serves nothing.
  raft::Index snapshot_offered = 0;
  absl::Status state_damage;
  bool state_verified = false;
  pb::ConfState conf_state;
  // Leader only: replication progress of every member, itself included.
  std::vector<raft::PeerStatus> peers;
  // Set when the node stopped itself after an error it cannot continue from (a failed
  // WAL sync, a state machine that refuses an entry): the operator must act.
  absl::Status fatal;
};

// Privately a raft::ReadyPipeline::Runtime: the pipeline calls it on the raft strand.
class RaftNode : private raft::ReadyPipeline::Runtime {
 public:
  using ProposeCallback = std::function<void(absl::StatusOr<std::string> result)>;
  using ReadCallback = std::function<void(absl::Status status)>;

  // Borrows `io`, `wal`, `state_machine`, `transport` and `snapshots`; all must outlive
  // the node. The transport's message and unreachable handlers must forward to Step()
  // and ReportUnreachable(), and its snapshot sink must be `snapshots`.
  RaftNode(boost::asio::io_context& io, RaftNodeOptions options, storage::Wal* wal,
           storage::StateMachine* state_machine, PeerTransport* transport,
           SnapshotStore* snapshots, ApplyFunction apply,
           ConfChangeFunction on_conf_change = nullptr);
  RaftNode(const RaftNode&) = delete;
  RaftNode& operator=(const RaftNode&) = delete;
  ~RaftNode();  // Stop()

  // Reconciles the WAL with the state machine (see ReconcileStorage), creates the core
  // from them and starts ticking. Errors from raft::Raft::Create (bad config,
  // inconsistent persisted state); DataLoss when the WAL was compacted past the state
  // machine (volumes that do not belong together).
  absl::Status Start();
  // Stops ticking, fails every waiter with Unavailable, and waits for the applier to
  // finish the entries handed to it. Idempotent. Call it before destroying the WAL or
  // the state machine; the io_context may keep running.
  void Stop();

  // Proposes `command` (see the class comment for the outcomes).
  void Propose(std::string command, absl::Time deadline, ProposeCallback done);
  // Proposes a one-server membership change; `done` gets "" once it is applied here,
  // FailedPrecondition if the log refused it at apply time (it was no longer valid), or
  // the outcomes of Propose. `change.id` is set by the node.
  void ProposeConfChange(pb::ConfChange change, absl::Time deadline, ProposeCallback done);
  // Linearizable read barrier (ReadIndex): `done(OK)` once the local state machine has
  // applied every write committed before the call; then read it locally. Works on every
  // member: on a follower or learner each round is one request to the leader, which
  // answers with its confirmed commit index, and the barrier passes once this member
  // applied through it. Unavailable when this member knows no leader;
  // DeadlineExceeded when the leader could not confirm its leadership in time (e.g. it
  // was deposed) or this member did not apply through the read index in time.
  void ReadBarrier(absl::Time deadline, ReadCallback done);
  // Asks the core to hand leadership to `target`; the outcome is observed in Status().
  void TransferLeadership(raft::NodeId target);

  // Inputs from the transport.
  void Step(pb::Message message);
  void ReportUnreachable(raft::NodeId peer);

  RaftNodeStatus Status() const;

 private:
  struct Waiter {
    absl::Time deadline;
    ProposeCallback done;
  };
  struct PendingRead {
    absl::Time deadline;
    ReadCallback done;
    uint64_t round = 0;     // the ReadIndex round it waits for; 0: the next one
    raft::Index index = 0;  // set when its round was answered
  };

  // Keeps handlers posted to the strand (by timers, the WAL writer and the applier)
  // from touching a stopped node: each runs with `mu` held and only while `node` is set.
  struct Guard {
    Mutex mu;
    RaftNode* node ABSL_GUARDED_BY(mu) = nullptr;
  };
  using Strand = boost::asio::strand<boost::asio::io_context::executor_type>;
  // Runs `fn` on `strand` unless the node has stopped by then. Static so that threads
  // which may outlive the node (the WAL writer's callbacks) need not touch it.
  template <typename Fn>
  static void PostGuarded(const Strand& strand, const std::shared_ptr<Guard>& guard, Fn fn);
  template <typename Fn>
  void PostToStrand(Fn fn) {
    PostGuarded(strand_, guard_, std::move(fn));
  }

  // Registers a waiter and returns its id; nullopt (and `done` failed) when too many wait.
  std::optional<uint64_t> AddWaiter(absl::Time deadline, ProposeCallback& done);
  // Fails and forgets waiter `id` if it is still registered.
  void FailWaiter(uint64_t id, const absl::Status& status);
  // Hands `result` to waiter `id`, if this member still has it.
  void CompleteWaiter(uint64_t id, absl::StatusOr<std::string> result);

  // --- raft strand ---
  void ScheduleTick();
  void OnTick();
  // Drains the core's Readys into the pipeline.
  void ProcessReadys();
  // The WAL finished write `sequence`: tells the pipeline.
  void OnWalWritten(uint64_t sequence, absl::Status status);
  // raft::ReadyPipeline::Runtime, on the strand: the WAL, the transport, the applier
  // thread, the wall clock, and what the pipeline leaves to the node (leader changes,
  // read rounds, installing a snapshot, stopping).
  void Submit(raft::LogWrite write, uint64_t sequence) override;
  void Send(std::vector<pb::Message> messages) override;
  void Apply(std::vector<pb::Entry> committed_entries) override;
  absl::Time Now() override { return absl::Now(); }
  void OnSoftState(const raft::SoftState& soft_state) override;
  void OnReadStates(std::vector<raft::ReadState> read_states) override;
  void ObserveWriteLatency(absl::Duration latency) override;
  // Switches the state machine to the received checkpoint on the applier thread, then
  // tells the pipeline, which writes the snapshot to the WAL.
  void InstallSnapshot(const pb::SnapshotMetadata& snapshot) override;
  void SendAll(std::vector<pb::Message>& messages);
  void SendSnapshot(pb::Message message);
  // Tells the core how the transfer to `to` ended: at once if `status` is OK, after the
  // backoff of that follower otherwise (see snapshot_retry_min).
  void ReportSnapshotOutcome(raft::NodeId to, const absl::Status& status);
  void OnAppliedOnStrand(raft::Index index);
  void ExpireWaiters(absl::Time now);
  void CompleteReads();
  void PublishStatus();
  void Fail(absl::Status status) override;

  // --- before the core exists ---
  absl::Status ReconcileStorage();

  // --- applier thread ---
  // A batch of committed entries is written in one state machine write, or in several
  // of about this many bytes of mutations while a long backlog is applied.
  static constexpr size_t kMaxStagedApplyBytes = size_t{16} << 20;
  void ApplyEntries(std::vector<pb::Entry> entries);
  // Stages `entry` in `staged`; the proposer's result, if the proposer is this member,
  // goes to `results` (waiter id, result), handed out once the batch is committed.
  absl::Status ApplyEntry(const pb::Entry& entry, storage::StagedApply& staged,
                          std::vector<std::pair<uint64_t, absl::StatusOr<std::string>>>* results);
  void MaybeTakeCheckpoint();
  // --- checkpointer thread ---
  void VerifyStateChecksums();
  void TakeCheckpoint();
  absl::Status ReplaceState(const std::string& checkpoint_dir, const pb::SnapshotMetadata& snapshot);

  RaftNodeOptions options_;
  storage::Wal* const wal_;
  storage::StateMachine* const state_machine_;
  PeerTransport* const transport_;
  SnapshotStore* const snapshots_;
  const ApplyFunction apply_;
  const ConfChangeFunction on_conf_change_;
  const Logger logger_;

  Strand strand_;
  boost::asio::steady_timer tick_timer_;
  std::atomic<bool> stopped_{false};
  const std::shared_ptr<Guard> guard_ = std::make_shared<Guard>();

  // Raft strand only.
  std::unique_ptr<raft::Raft> raft_;
  // Created with the core: the Ready ordering rules, with this node as its runtime.
  std::unique_ptr<raft::ReadyPipeline> pipeline_;
  bool failed_ = false;  // set by Fail(): the core is no longer driven
  raft::NodeId last_leader_ = raft::kNoNode;
  uint64_t leader_changes_ = 0;
  // Linearizable reads share ReadIndex rounds (one heartbeat round each on the leader,
  // one request to the leader on a follower): a read joins the next round to start,
  // never one already in flight (its commit index may predate the read). One round is
  // in flight at a time.
  uint64_t next_read_id_ = 1;
  std::map<uint64_t, PendingRead> reads_;  // by read id
  uint64_t next_read_round_ = 1;
  uint64_t read_round_in_flight_ = 0;  // 0: none
  uint64_t reads_served_ = 0;
  // Consecutive failed snapshot transfers per follower; erased by a successful one.
  std::map<raft::NodeId, int> snapshot_failures_;
  // Holds back ReportSnapshot(to, false) for that backoff; at most one wait per follower
  // (the core offers it nothing new meanwhile).
  std::map<raft::NodeId, std::unique_ptr<boost::asio::steady_timer>> snapshot_retry_timers_;
  uint64_t read_rounds_started_ = 0;
  absl::Time read_round_started_;
  // The leader the round in flight was asked of (this member on the leader): a round
  // outlives no leader change.
  raft::NodeId read_round_leader_ = raft::kNoNode;
  void StartReadRound();

  // Proposals waiting for the strand, which proposes them all in one handler
  // (ProposeQueued); a drain is posted when the first one arrives.
  struct QueuedProposal {
    uint64_t id = 0;  // its waiter
    std::string command;
  };
  Mutex proposals_mu_;
  std::vector<QueuedProposal> proposals_ ABSL_GUARDED_BY(proposals_mu_);
  bool proposals_drain_posted_ ABSL_GUARDED_BY(proposals_mu_) = false;
  void ProposeQueued();

  // Waiters for proposals: completed by the applier, expired by the strand.
  mutable Mutex waiters_mu_;
  // Starts at a random value so that entries proposed before a restart can never match
  // a waiter registered after it.
  uint64_t next_proposal_id_ ABSL_GUARDED_BY(waiters_mu_) = 0;
  std::map<uint64_t, Waiter> waiters_ ABSL_GUARDED_BY(waiters_mu_);

  // The applier: a single thread with its own io_context, so entries apply in order.
  boost::asio::io_context applier_io_;
  std::unique_ptr<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>>
      applier_work_;
  std::thread applier_thread_;
  // Applier thread only.
  pb::ConfState applier_conf_state_;
  uint64_t entries_since_checkpoint_ = 0;
  uint64_t bytes_since_checkpoint_ = 0;

  // The checkpointer: takes checkpoints and compacts the WAL off the applier, which
  // then waits only for the flush and the hard links (not for checksumming the files).
  boost::asio::io_context checkpoint_io_;
  std::unique_ptr<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>>
      checkpoint_work_;
  std::thread checkpoint_thread_;
  std::atomic<bool> checkpoint_running_{false};
  Mutex checkpoint_mu_;
  // The newest checkpoint in snapshots_->taken_dir() (taken or installed).
  pb::SnapshotMetadata newest_checkpoint_ ABSL_GUARDED_BY(checkpoint_mu_);
  std::atomic<uint64_t> snapshots_taken_{0};
  std::atomic<uint64_t> snapshots_installed_{0};

  mutable Mutex status_mu_;
  RaftNodeStatus status_ ABSL_GUARDED_BY(status_mu_);
};

}  // namespace stead::server

#endif  // STEAD_SERVER_RAFT_NODE_H_
