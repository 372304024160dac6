#include "server/raft_node.h"

#include <algorithm>
#include <random>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/check.h"
#include "base/status_macros.h"
#include "proto/peer.pb.h"
#include "raft/conf_change.h"

namespace stead::server {

namespace asio = boost::asio;

template <typename Fn>
void RaftNode::PostGuarded(const Strand& strand, const std::shared_ptr<Guard>& guard, Fn fn) {
  asio::post(strand, [guard, fn = std::move(fn)]() mutable {
    MutexLock lock(&guard->mu);
    if (guard->node != nullptr) fn();
  });
}

RaftNode::RaftNode(asio::io_context& io, RaftNodeOptions options, storage::Wal* wal,
                   storage::StateMachine* state_machine, PeerTransport* transport,
                   SnapshotStore* snapshots, ApplyFunction apply,
                   ConfChangeFunction on_conf_change)
    : options_(std::move(options)),
      wal_(wal),
      state_machine_(state_machine),
      transport_(transport),
      snapshots_(snapshots),
      apply_(std::move(apply)),
      on_conf_change_(std::move(on_conf_change)),
      logger_(options_.raft.logger),
      strand_(asio::make_strand(io)),
      tick_timer_(strand_) {
  std::random_device random;
  // A restarted follower may still get the answer to a round its previous life asked
  // for; a random start keeps that answer from matching a round of this life.
  next_read_round_ = ((uint64_t{random()} << 32) ^ random()) | 1;
  MutexLock lock(&waiters_mu_);
  next_proposal_id_ = (uint64_t{random()} << 32) ^ random();
}

RaftNode::~RaftNode() { Stop(); }

absl::Status RaftNode::Start() {
  STEAD_RETURN_IF_ERROR(ReconcileStorage());
  raft::Config config = options_.raft;
  config.applied = state_machine_->applied_index();
  absl::StatusOr<std::unique_ptr<raft::Raft>> raft = raft::Raft::Create(config, wal_);
  if (!raft.ok()) return raft.status();
  raft_ = std::move(raft).value();
  pipeline_ = std::make_unique<raft::ReadyPipeline>(
      raft_.get(), static_cast<raft::ReadyPipeline::Runtime*>(this));
  applier_conf_state_ = state_machine_->applied().conf_state();
  applier_work_ = std::make_unique<
      asio::executor_work_guard<asio::io_context::executor_type>>(applier_io_.get_executor());
  applier_thread_ = std::thread([this] { applier_io_.run(); });
  checkpoint_work_ = std::make_unique<
      asio::executor_work_guard<asio::io_context::executor_type>>(checkpoint_io_.get_executor());
  checkpoint_thread_ = std::thread([this] { checkpoint_io_.run(); });
  // Before any checkpoint: a checkpoint of damaged state would spread the damage.
  asio::post(checkpoint_io_, [this] { VerifyStateChecksums(); });
  PublishStatus();  // before any strand handler runs, so Status() is never blank
  {
    MutexLock lock(&guard_->mu);
    guard_->node = this;
  }
  STEAD_LOG(logger_, Info) << "raft node started term=" << raft_->term()
                           << " last_index=" << raft_->last_index()
                           << " applied=" << config.applied;
  PostToStrand([this] {
    ProcessReadys();
    ScheduleTick();
  });
  return absl::OkStatus();
}

absl::Status RaftNode::ReconcileStorage() {
  const pb::SnapshotMetadata applied = state_machine_->applied();
  if (const pb::SnapshotMetadata logged = wal_->LatestSnapshot(); logged.index() > applied.index()) {
    return absl::DataLossError(absl::StrCat(
        "the WAL starts after index ", logged.index(), " but the state machine applied only ",
        applied.index(), ": the WAL and data volumes do not belong together (restore the "
        "matching data volume, or wipe both and let the member rejoin)"));
  }
  if (applied.index() > wal_->LatestSnapshot().index()) {
    // The state machine may hold a snapshot the WAL does not know of: an install
    // interrupted between its two steps. The WAL then starts after it.
    const absl::StatusOr<raft::Term> term = wal_->TermAt(applied.index());
    if (!term.ok() || *term != applied.term()) {
      STEAD_LOG(logger_, Warning) << "the state machine holds index " << applied.index()
                                  << " which the WAL lacks (a snapshot install was interrupted): "
                                     "the WAL now starts after it";
      STEAD_RETURN_IF_ERROR(Annotate(wal_->Compact(applied), "record the installed snapshot"));
    }
  }
  // The WAL's snapshot is what the core sends followers: a checkpoint of it must exist
  // (it may not after a restore from a backup). Take one now if it does not.
  if (const pb::SnapshotMetadata logged = wal_->LatestSnapshot();
      logged.index() > 0 && !snapshots_->PinTaken(logged).ok()) {
    const absl::StatusOr<pb::SnapshotManifest> taken = snapshots_->Take(*state_machine_);
    // AlreadyExists: there is one of the applied state already.
    if (!taken.ok() && !absl::IsAlreadyExists(taken.status())) {
      return Annotate(taken.status(), "take a checkpoint");
    }
    STEAD_RETURN_IF_ERROR(Annotate(wal_->Compact(applied), "compact the WAL"));
    STEAD_LOG(logger_, Info) << "the log now starts after checkpoint index=" << applied.index();
  }
  STEAD_RETURN_IF_ERROR(snapshots_->RemoveReceivedThrough(applied.index()));
  STEAD_RETURN_IF_ERROR(snapshots_->RemoveBelow(wal_->LatestSnapshot().index()));
  STEAD_ASSIGN_OR_RETURN(const std::vector<storage::CheckpointInfo> taken, snapshots_->List());
  const raft::Index newest = taken.empty() ? 0 : taken.back().manifest.raft().index();
  if (!taken.empty()) {
    MutexLock lock(&checkpoint_mu_);
    newest_checkpoint_ = taken.back().manifest.raft();
  }
  entries_since_checkpoint_ = applied.index() - std::min(applied.index(), newest);
  return absl::OkStatus();
}

void RaftNode::Stop() {
  if (stopped_.exchange(true)) return;
  if (raft_ == nullptr) return;  // never started
  {
    // From here on no strand handler runs: the strand-only state is ours.
    MutexLock lock(&guard_->mu);
    guard_->node = nullptr;
  }
  for (auto& [id, read] : reads_) read.done(absl::UnavailableError("node stopping"));
  reads_.clear();
  // Let the applier finish what it was handed (its strand posts are now no-ops).
  applier_work_.reset();
  applier_thread_.join();
  checkpoint_work_.reset();
  checkpoint_thread_.join();
  std::map<uint64_t, Waiter> waiters;
  {
    MutexLock lock(&waiters_mu_);
    waiters.swap(waiters_);
  }
  for (auto& [id, waiter] : waiters) {
    waiter.done(absl::UnavailableError("node stopping; the command may still be committed"));
  }
  STEAD_LOG(logger_, Info) << "raft node stopped";
}

std::optional<uint64_t> RaftNode::AddWaiter(absl::Time deadline, ProposeCallback& done) {
  if (stopped_) {
    done(absl::UnavailableError("node stopped"));
    return std::nullopt;
  }
  MutexLock lock(&waiters_mu_);
  if (waiters_.size() >= options_.max_pending_requests) {
    done(absl::ResourceExhaustedError(
        absl::StrCat(waiters_.size(), " proposals pending (max_pending_requests): back off")));
    return std::nullopt;
  }
  const uint64_t id = next_proposal_id_++;
  waiters_.emplace(id, Waiter{deadline, std::move(done)});
  if (options_.metrics.proposals) options_.metrics.proposals->Increment();
  return id;
}

void RaftNode::FailWaiter(uint64_t id, const absl::Status& status) {
  if (options_.metrics.proposals_failed) options_.metrics.proposals_failed->Increment();
  CompleteWaiter(id, status);
}

void RaftNode::CompleteWaiter(uint64_t id, absl::StatusOr<std::string> result) {
  ProposeCallback done;
  {
    MutexLock lock(&waiters_mu_);
    auto it = waiters_.find(id);
    if (it == waiters_.end()) return;
    done = std::move(it->second.done);
    waiters_.erase(it);
  }
  done(std::move(result));
}

void RaftNode::ProposeConfChange(pb::ConfChange change, absl::Time deadline,
                                 ProposeCallback done) {
  const std::optional<uint64_t> id = AddWaiter(deadline, done);
  if (!id) return;
  change.set_id(*id);
  PostToStrand([this, change = std::move(change)] {
    absl::Status status;
    if (failed_) {
      status = absl::UnavailableError("this member stopped after an error");
    } else {
      status = raft_->ProposeConfChange(change);
    }
    if (!status.ok()) FailWaiter(change.id(), status);
    ProcessReadys();
  });
}

void RaftNode::Propose(std::string command, absl::Time deadline, ProposeCallback done) {
  const std::optional<uint64_t> waiter = AddWaiter(deadline, done);
  if (!waiter) return;
  bool post = false;
  {
    MutexLock lock(&proposals_mu_);
    proposals_.push_back(QueuedProposal{*waiter, std::move(command)});
    post = !proposals_drain_posted_;
    proposals_drain_posted_ = true;
  }
  // One strand handler proposes everything queued meanwhile, so the core puts it all in
  // one Ready: one WAL write and one APPEND per follower for the lot.
  if (post) PostToStrand([this] { ProposeQueued(); });
}

void RaftNode::ProposeQueued() {
  std::vector<QueuedProposal> queued;
  {
    MutexLock lock(&proposals_mu_);
    queued.swap(proposals_);
    proposals_drain_posted_ = false;
  }
  for (QueuedProposal& queued_proposal : queued) {
    absl::Status status;
    if (failed_) {
      status = absl::UnavailableError("this member stopped after an error");
    } else if (raft_->role() != raft::Role::kLeader) {
      status = absl::UnavailableError(absl::StrCat("not leader; leader is node ", raft_->leader()));
    } else {
      pb::Proposal proposal;
      proposal.set_proposer_id(raft_->id());
      proposal.set_proposal_id(queued_proposal.id);
      proposal.set_command(std::move(queued_proposal.command));
      status = raft_->Propose(proposal.SerializeAsString());
    }
    if (!status.ok()) FailWaiter(queued_proposal.id, status);
  }
  ProcessReadys();
}

void RaftNode::ReadBarrier(absl::Time deadline, ReadCallback done) {
  if (stopped_) {
    done(absl::UnavailableError("node stopped"));
    return;
  }
  PostToStrand([this, deadline, done = std::move(done)]() mutable {
    if (failed_) {
      done(absl::UnavailableError("this member stopped after an error"));
      return;
    }
    // A follower's round asks the leader for its read index; a follower that knows no
    // leader fails its reads when the round cannot start (StartReadRound).
    if (reads_.size() >= options_.max_pending_requests) {
      done(absl::ResourceExhaustedError(
          absl::StrCat(reads_.size(), " reads pending (max_pending_requests): back off")));
      return;
    }
    reads_.emplace(next_read_id_++, PendingRead{deadline, std::move(done)});
    if (read_round_in_flight_ == 0) StartReadRound();
    ProcessReadys();
  });
}

void RaftNode::StartReadRound() {
  const uint64_t round = next_read_round_++;
  if (next_read_round_ == 0) next_read_round_ = 1;  // 0 means no round
  if (absl::Status status = raft_->ReadIndex(absl::StrCat("round-", round)); !status.ok()) {
    for (auto it = reads_.begin(); it != reads_.end();) {
      if (it->second.round == 0) {
        it->second.done(status);
        it = reads_.erase(it);
      } else {
        ++it;
      }
    }
    return;
  }
  read_round_in_flight_ = round;
  read_round_leader_ = raft_->leader();
  read_round_started_ = absl::Now();
  ++read_rounds_started_;
  for (auto& [id, read] : reads_) {
    if (read.round == 0) read.round = round;
  }
}

void RaftNode::TransferLeadership(raft::NodeId target) {
  PostToStrand([this, target] {
    if (failed_) return;
    if (absl::Status status = raft_->TransferLeadership(target); !status.ok()) {
      STEAD_LOG(logger_, Info) << "leadership transfer to node " << target
                               << " not started: " << status.message();
    }
    ProcessReadys();
  });
}

void RaftNode::Step(pb::Message message) {
  PostToStrand([this, message = std::move(message)] {
    if (failed_) return;
    const absl::Status status = raft_->Step(message);
    if (absl::IsInvalidArgument(status)) {
      // A malformed message from a peer: dropped, the core is unchanged.
      STEAD_LOG(logger_, Warning) << "dropping a message from node " << message.from() << ": "
                                  << status.message();
    } else if (!status.ok()) {
      Fail(Annotate(status, "raft step"));
      return;
    }
    ProcessReadys();
  });
}

void RaftNode::ReportUnreachable(raft::NodeId peer) {
  PostToStrand([this, peer] {
    if (!failed_) raft_->ReportUnreachable(peer);
  });
}

RaftNodeStatus RaftNode::Status() const {
  RaftNodeStatus status;
  {
    MutexLock lock(&status_mu_);
    status = status_;
  }
  // Read now rather than at the last publication: the readiness check right after a
  // read that found damage must already fail.
  status.snapshot_offered = snapshots_->OfferedIndex();
  status.state_damage = state_machine_->damage();
  status.state_verified = state_machine_->checksums_verified();
  return status;
}

void RaftNode::ScheduleTick() {
  tick_timer_.expires_after(absl::ToChronoNanoseconds(options_.tick_interval));
  tick_timer_.async_wait([guard = guard_, this](boost::system::error_code error) {
    if (error) return;  // cancelled
    MutexLock lock(&guard->mu);
    if (guard->node == nullptr) return;
    OnTick();
  });
}

void RaftNode::OnTick() {
  if (failed_) return;
  raft_->Tick();
  ExpireWaiters(absl::Now());
  ProcessReadys();
  ScheduleTick();
}

void RaftNode::ProcessReadys() {
  if (failed_) return;
  // Bounded: each Ready drains what the core accumulated; a core that keeps producing
  // work is served again on the next input or tick. The pipeline takes none while a
  // received snapshot is being installed (they come after it).
  pipeline_->Drain(64);
  PublishStatus();
}

void RaftNode::OnSoftState(const raft::SoftState& soft_state) {
  if (soft_state.leader == last_leader_) return;
  last_leader_ = soft_state.leader;
  ++leader_changes_;
  STEAD_LOG(logger_, Info) << "leader is now node " << last_leader_ << " term=" << raft_->term()
                           << " role=" << raft::RoleName(soft_state.role);
}

void RaftNode::Submit(raft::LogWrite write, uint64_t sequence) {
  storage::WalWrite wal_write;
  wal_write.snapshot = std::move(write.snapshot);
  wal_write.entries = std::move(write.entries);
  wal_write.hard_state = std::move(write.hard_state);
  wal_write.sync = write.sync;
  // The WAL runs this on one of its own threads; the work belongs on the raft strand.
  wal_->Submit(std::move(wal_write), [strand = strand_, guard = guard_, this,
                                      sequence](absl::Status status) {
    PostGuarded(strand, guard, [this, sequence, status] { OnWalWritten(sequence, status); });
  });
}

void RaftNode::Send(std::vector<pb::Message> messages) { SendAll(messages); }

void RaftNode::Apply(std::vector<pb::Entry> committed_entries) {
  asio::post(applier_io_, [this, entries = std::move(committed_entries)]() mutable {
    ApplyEntries(std::move(entries));
  });
}

void RaftNode::OnReadStates(std::vector<raft::ReadState> read_states) {
  bool round_answered = false;
  for (raft::ReadState& read_state : read_states) {
    if (read_state.context != absl::StrCat("round-", read_round_in_flight_)) continue;
    for (auto& [id, read] : reads_) {
      if (read.round == read_round_in_flight_) read.index = read_state.index;
    }
    read_round_in_flight_ = 0;
    round_answered = true;
  }
  if (round_answered) {
    CompleteReads();
    // The reads that arrived meanwhile share the next round (its Ready is taken by the
    // drain this call is part of, or by the caller's next ProcessReadys).
    if (std::any_of(reads_.begin(), reads_.end(),
                    [](const auto& entry) { return entry.second.round == 0; })) {
      StartReadRound();
    }
  }
}

void RaftNode::ObserveWriteLatency(absl::Duration latency) {
  if (options_.metrics.wal_write_seconds) {
    options_.metrics.wal_write_seconds->Observe(absl::ToDoubleSeconds(latency));
  }
}

void RaftNode::OnWalWritten(uint64_t sequence, absl::Status status) {
  if (failed_) return;
  // A failure stops the pipeline, which calls Fail: this member recovers from its WAL
  // on restart.
  pipeline_->OnWritten(sequence, status);
  ProcessReadys();
}

void RaftNode::SendAll(std::vector<pb::Message>& messages) {
  for (pb::Message& message : messages) {
    if (message.type() == pb::MESSAGE_TYPE_SNAPSHOT) {
      SendSnapshot(std::move(message));
    } else {
      transport_->Send(std::move(message));
    }
  }
  messages.clear();
}

void RaftNode::SendSnapshot(pb::Message message) {
  const raft::NodeId to = message.to();
  absl::StatusOr<SnapshotStore::Pin> pin = snapshots_->PinTaken(message.snapshot());
  if (!pin.ok()) {
    // Removed by a newer compaction meanwhile: the core offers the newer one next.
    STEAD_LOG(logger_, Info) << "no checkpoint to send node " << to << ": "
                             << pin.status().message();
    PostToStrand([this, to] {
      if (failed_) return;
      raft_->ReportSnapshot(to, false);
      ProcessReadys();
    });
    return;
  }
  const std::string path = **pin;
  // The pin lives in the callback: the checkpoint stays until the transfer ends.
  transport_->SendSnapshot(
      std::move(message), path,
      [strand = strand_, guard = guard_, this, to, pin = *std::move(pin)](absl::Status status) {
        PostGuarded(strand, guard, [this, to, status] { ReportSnapshotOutcome(to, status); });
      });
}

void RaftNode::ReportSnapshotOutcome(raft::NodeId to, const absl::Status& status) {
  if (failed_) return;
  if (status.ok()) {
    snapshot_failures_.erase(to);
    raft_->ReportSnapshot(to, true);
    ProcessReadys();
    return;
  }
  // Until the core hears of the failure it sends `to` nothing but heartbeats, so
  // holding the report back is what spaces the offers out: a follower whose volume is
  // too small would otherwise be offered the snapshot again at once, over and over.
  const int failures = ++snapshot_failures_[to];
  const absl::Duration backoff =
      std::min(options_.snapshot_retry_min * (int64_t{1} << std::min(failures - 1, 20)),
               options_.snapshot_retry_max);
  STEAD_LOG(logger_, Warning) << "snapshot to node " << to << " failed (" << failures
                              << " in a row): " << status.message() << "; offering it again in "
                              << backoff;
  std::unique_ptr<asio::steady_timer>& timer = snapshot_retry_timers_[to];
  if (timer == nullptr) timer = std::make_unique<asio::steady_timer>(strand_);
  timer->expires_after(absl::ToChronoNanoseconds(backoff));
  timer->async_wait([guard = guard_, this, to](boost::system::error_code error) {
    if (error) return;  // cancelled
    MutexLock lock(&guard->mu);
    if (guard->node == nullptr || failed_) return;
    raft_->ReportSnapshot(to, false);
    ProcessReadys();
  });
}

void RaftNode::InstallSnapshot(const pb::SnapshotMetadata& snapshot) {
  absl::StatusOr<SnapshotStore::Pin> pin = snapshots_->PinReceived(snapshot);
  if (!pin.ok()) {
    // The transport hands the core a SNAPSHOT message only once it is staged.
    pipeline_->OnSnapshotInstalled(Annotate(pin.status(), "the snapshot to install"));
    return;
  }
  STEAD_LOG(logger_, Info) << "installing snapshot index=" << snapshot.index()
                           << " term=" << snapshot.term();
  asio::post(applier_io_, [this, snapshot, pin = *std::move(pin)]() mutable {
    absl::Status installed = ReplaceState(*pin, snapshot);
    pin.reset();
    PostToStrand([this, installed = std::move(installed)] {
      if (failed_) return;
      // The state machine holds the snapshot; now the pipeline has the WAL record it
      // (Start() repairs a crash in between), then goes on with the Ready as usual.
      pipeline_->OnSnapshotInstalled(installed);
      ProcessReadys();
    });
  });
}

void RaftNode::OnAppliedOnStrand(raft::Index index) {
  if (failed_) return;
  raft_->OnApplied(index);
  CompleteReads();
  ProcessReadys();
}

void RaftNode::CompleteReads() {
  const raft::Index applied = raft_->applied_index();
  for (auto it = reads_.begin(); it != reads_.end();) {
    if (it->second.index != 0 && it->second.index <= applied) {
      ++reads_served_;
      it->second.done(absl::OkStatus());
      it = reads_.erase(it);
    } else {
      ++it;
    }
  }
}

void RaftNode::ExpireWaiters(absl::Time now) {
  for (auto it = reads_.begin(); it != reads_.end();) {
    if (it->second.deadline <= now) {
      it->second.done(absl::DeadlineExceededError(
          "read not confirmed in time (leadership could not be confirmed, or applying lags)"));
      it = reads_.erase(it);
    } else {
      ++it;
    }
  }
  // A round the core never answers (leadership lost meanwhile, the request to the leader
  // or its answer lost) must not hold up the reads behind it: after an election timeout,
  // or at once when the leader changed, they get a round of their own (on a follower
  // that knows no leader, that fails them with Unavailable).
  if (read_round_in_flight_ != 0 &&
      (raft_->leader() != read_round_leader_ ||
       now - read_round_started_ >
           options_.tick_interval * 2 * options_.raft.election_timeout_ticks)) {
    read_round_in_flight_ = 0;
    for (auto& [id, read] : reads_) {
      if (read.index == 0) read.round = 0;
    }
    if (std::any_of(reads_.begin(), reads_.end(),
                    [](const auto& entry) { return entry.second.round == 0; })) {
      StartReadRound();
    }
  }
  std::vector<ProposeCallback> expired;
  {
    MutexLock lock(&waiters_mu_);
    for (auto it = waiters_.begin(); it != waiters_.end();) {
      if (it->second.deadline <= now) {
        expired.push_back(std::move(it->second.done));
        it = waiters_.erase(it);
      } else {
        ++it;
      }
    }
  }
  if (options_.metrics.proposals_failed) options_.metrics.proposals_failed->Increment(expired.size());
  for (ProposeCallback& done : expired) {
    done(absl::DeadlineExceededError(
        "deadline passed before the command was applied; its outcome is unknown"));
  }
}

void RaftNode::PublishStatus() {
  const raft::RaftStatus status = raft_->Status();
  MutexLock lock(&status_mu_);
  status_.id = status.id;
  status_.term = status.term;
  status_.role = status.role;
  status_.leader = status.leader;
  status_.commit = status.commit;
  status_.leader_commit = status.leader_commit;
  status_.applied = status.applied;
  status_.last_index = status.last_index;
  status_.is_voter = raft::IsVoter(status.conf_state, status.id);
  status_.leader_changes = leader_changes_;
  status_.reads = reads_served_;
  status_.read_rounds = read_rounds_started_;
  status_.snapshots_taken = snapshots_taken_;
  status_.snapshots_installed = snapshots_installed_;
  status_.log_first_index = wal_->FirstIndex();
  status_.conf_state = status.conf_state;
  status_.peers = status.peers;
}

void RaftNode::Fail(absl::Status status) {
  if (failed_) {
    // Work queued behind the first failure fails in turn (applies after the one that
    // did not happen): the first error and its advice are the ones to act on.
    STEAD_LOG(logger_, Warning) << "after the error that stopped this member: "
                                << status.ToString();
    return;
  }
  // A damaged state machine's error says what to do already (StateMachine::damage()).
  const char* const advice =
      absl::IsResourceExhausted(status)
          ? "; a volume is full: grow it (docs/resize-volumes.md), then restart this member "
            "to recover from its WAL"
      : absl::IsDataLoss(status)
          ? ""
          : "; restart it to recover from its WAL, and check the disk and the log above if it "
            "fails again";
  STEAD_LOG(logger_, Error) << "stopping this member: " << status.ToString() << advice;
  {
    MutexLock lock(&status_mu_);
    if (status_.fatal.ok()) status_.fatal = status;
  }
  failed_ = true;
  tick_timer_.cancel();
}

void RaftNode::ApplyEntries(std::vector<pb::Entry> entries) {
  const absl::Time start = absl::Now();
  // The whole batch is one write: each entry's command reads the state with the
  // earlier ones staged over it, and proposers hear of their entries only once the
  // write that holds them is done (a read right after must see it).
  const std::unique_ptr<storage::StagedApply> staged = state_machine_->StartApply();
  std::vector<std::pair<uint64_t, absl::StatusOr<std::string>>> results;
  raft::Index last = 0;
  const auto commit = [&]() -> absl::Status {
    STEAD_RETURN_IF_ERROR(staged->Commit());
    for (auto& [waiter, result] : results) CompleteWaiter(waiter, std::move(result));
    results.clear();
    return absl::OkStatus();
  };
  for (const pb::Entry& entry : entries) {
    absl::Status status = ApplyEntry(entry, *staged, &results);
    // Bounded, so that a long catch-up does not hold one huge batch in memory.
    if (status.ok() && staged->staged_bytes() >= kMaxStagedApplyBytes) status = commit();
    if (!status.ok()) {
      PostToStrand([this, status] { Fail(Annotate(status, "apply")); });
      return;
    }
    last = entry.index();
    ++entries_since_checkpoint_;
    bytes_since_checkpoint_ += entry.ByteSizeLong();
  }
  if (absl::Status status = commit(); !status.ok()) {
    PostToStrand([this, status] { Fail(Annotate(status, "apply")); });
    return;
  }
  if (options_.metrics.apply_seconds) {
    options_.metrics.apply_seconds->Observe(absl::ToDoubleSeconds(absl::Now() - start));
  }
  if (last != 0 && options_.on_applied) options_.on_applied();
  if (last != 0) PostToStrand([this, last] { OnAppliedOnStrand(last); });
  if (last != 0) MaybeTakeCheckpoint();
}

void RaftNode::MaybeTakeCheckpoint() {
  const bool due =
      (options_.snapshot_entries > 0 && entries_since_checkpoint_ >= options_.snapshot_entries) ||
      (options_.snapshot_bytes > 0 && bytes_since_checkpoint_ >= options_.snapshot_bytes);
  if (!due || checkpoint_running_.exchange(true)) return;
  entries_since_checkpoint_ = 0;
  bytes_since_checkpoint_ = 0;
  asio::post(checkpoint_io_, [this] {
    TakeCheckpoint();
    checkpoint_running_ = false;
  });
}

void RaftNode::VerifyStateChecksums() {
  const absl::Time start = absl::Now();
  const absl::Status verified = state_machine_->VerifyChecksums(stopped_);
  // A mismatch was logged by the state machine, with what to do.
  if (!verified.ok()) return;
  STEAD_LOG(logger_, Info) << "verified the state machine's checksums in "
                           << absl::ToDoubleSeconds(absl::Now() - start) << " s";
}

void RaftNode::TakeCheckpoint() {
  const absl::Time start = absl::Now();
  const absl::StatusOr<pb::SnapshotManifest> taken = snapshots_->Take(*state_machine_);
  if (!taken.ok()) {
    // Not fatal: the log keeps growing until the next attempt, one interval later.
    STEAD_LOG(logger_, Warning) << "cannot take a checkpoint: " << taken.status().ToString()
                                << "; the log is not compacted (check the data volume)";
    return;
  }
  ++snapshots_taken_;
  // The log keeps the entries after the previous checkpoint, so a follower lagging by
  // less than an interval catches up from the log instead of a whole snapshot.
  pb::SnapshotMetadata compact_to;
  {
    MutexLock lock(&checkpoint_mu_);
    // A snapshot installed meanwhile may be newer than what was just taken.
    if (newest_checkpoint_.index() < taken->raft().index()) {
      compact_to = newest_checkpoint_;
      newest_checkpoint_ = taken->raft();
    }
  }
  absl::Status compacted;
  if (compact_to.index() > wal_->LatestSnapshot().index()) {
    compacted = wal_->Compact(compact_to);
    if (compacted.ok()) compacted = snapshots_->RemoveBelow(compact_to.index());
  }
  if (!compacted.ok()) {
    STEAD_LOG(logger_, Warning) << "took checkpoint index=" << taken->raft().index()
                                << " but cannot compact the log: " << compacted.ToString();
    return;
  }
  STEAD_LOG(logger_, Info) << "took checkpoint index=" << taken->raft().index() << " ("
                           << taken->total_bytes() << " bytes) in "
                           << absl::ToDoubleMilliseconds(absl::Now() - start)
                           << " ms; the log starts after index " << wal_->LatestSnapshot().index();
}

absl::Status RaftNode::ReplaceState(const std::string& checkpoint_dir,
                                    const pb::SnapshotMetadata& snapshot) {
  STEAD_ASSIGN_OR_RETURN(const pb::SnapshotManifest manifest,
                         state_machine_->ReplaceWithCheckpoint(checkpoint_dir));
  applier_conf_state_ = manifest.raft().conf_state();
  entries_since_checkpoint_ = 0;
  bytes_since_checkpoint_ = 0;
  // Kept as this member's own checkpoint: it is what the WAL will start after, and
  // what this member sends if it leads later.
  STEAD_RETURN_IF_ERROR(snapshots_->KeepReceived(snapshot));
  {
    MutexLock lock(&checkpoint_mu_);
    newest_checkpoint_ = manifest.raft();
  }
  ++snapshots_installed_;
  STEAD_LOG(logger_, Info) << "installed snapshot index=" << snapshot.index() << " ("
                           << manifest.total_bytes() << " bytes)";
  if (options_.on_snapshot_installed) options_.on_snapshot_installed();
  if (options_.on_applied) options_.on_applied();
  return absl::OkStatus();
}

absl::Status RaftNode::ApplyEntry(
    const pb::Entry& entry, storage::StagedApply& staged,
    std::vector<std::pair<uint64_t, absl::StatusOr<std::string>>>* results) {
  storage::ApplyBatch batch;
  batch.index = entry.index();
  batch.term = entry.term();
  absl::StatusOr<std::string> result = std::string();
  pb::Proposal proposal;
  bool has_proposal = false;
  uint64_t conf_change_id = 0;  // the waiter of a conf change, if it is ours
  if (entry.type() == pb::ENTRY_TYPE_CONF_CHANGE) {
    // The core applies the same validity rule: a change that is no longer valid when
    // committed (its member was meanwhile added or removed) changes nothing.
    pb::ConfChange change;
    if (!change.ParseFromString(entry.data())) {
      result = absl::DataLossError("undecodable membership change");
    } else if (absl::Status valid = raft::ValidateConfChange(applier_conf_state_, change);
               !valid.ok()) {
      result = absl::FailedPreconditionError(valid.message());
    } else {
      applier_conf_state_ = raft::ApplyConfChange(applier_conf_state_, change);
      batch.conf_state = applier_conf_state_;
      if (on_conf_change_) on_conf_change_(change, applier_conf_state_, &batch.mutations);
    }
    conf_change_id = change.id();
  } else if (!entry.data().empty()) {
    has_proposal = proposal.ParseFromString(entry.data());
    if (!has_proposal) {
      // Deterministic on every member: an undecodable entry changes nothing.
      STEAD_LOG(logger_, Error) << "entry " << entry.index() << " is not a proposal; skipped";
    } else {
      result = apply_(proposal.command(), entry, staged, &batch.mutations);
      if (!result.ok()) batch.mutations.clear();
    }
  }
  absl::Status applied = staged.Stage(batch);
  if (absl::IsInvalidArgument(applied)) {
    // Over a storage limit: the command fails for its proposer, identically on every
    // member, and the entry still counts as applied.
    result = applied;
    batch.mutations.clear();
    applied = staged.Stage(batch);
  }
  if (!applied.ok()) return applied;
  if (has_proposal && proposal.proposer_id() == options_.raft.id) {
    results->emplace_back(proposal.proposal_id(), std::move(result));
  } else if (conf_change_id != 0) {
    // Waiter ids start at a random 64-bit value, so another member's id matches one of
    // ours only by a negligible chance.
    results->emplace_back(conf_change_id, std::move(result));
  }
  return absl::OkStatus();
}

}  // namespace stead::server
