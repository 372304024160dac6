// Construction, the common part of Step(), ticks and the Ready cycle. Elections are in
// raft_election.cc, log replication in raft_replication.cc, membership changes and
// leadership transfer in raft_membership.cc, reads in raft_read.cc.
#include "raft/raft.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/check.h"
#include "base/status_macros.h"
#include "raft/conf_change.h"
#include "raft/message_validation.h"
#include "raft/progress.h"
#include "raft/raft_log.h"
#include "raft/read_only.h"

namespace stead::raft {

const char* RoleName(Role role) {
  switch (role) {
    case Role::kFollower:
      return "follower";
    case Role::kPreCandidate:
      return "pre-candidate";
    case Role::kCandidate:
      return "candidate";
    case Role::kLeader:
      return "leader";
  }
  return "unknown";
}

bool Ready::empty() const {
  return !soft_state && !hard_state && !snapshot && entries.empty() && committed_entries.empty() &&
         messages.empty() && messages_after_persist.empty() && read_states.empty();
}

bool Ready::MustPersist() const { return hard_state || snapshot || !entries.empty(); }

std::optional<std::pair<Index, Term>> Ready::PersistedPosition() const {
  if (!entries.empty()) return std::make_pair(entries.back().index(), entries.back().term());
  if (snapshot) return std::make_pair(snapshot->index(), snapshot->term());
  return std::nullopt;
}

namespace {

// Bounds that keep tick arithmetic far from overflow.
constexpr int kMaxElectionTimeoutTicks = 1 << 20;
constexpr int kMaxElapsedTicks = 1 << 28;

bool SameHardState(const pb::HardState& a, const pb::HardState& b) {
  return a.term() == b.term() && a.vote() == b.vote() && a.commit() == b.commit();
}

absl::Status ValidateConfig(const Config& config) {
  if (config.id == kNoNode) return absl::InvalidArgumentError("raft config: id must not be 0");
  if (config.heartbeat_interval_ticks <= 0) {
    return absl::InvalidArgumentError("raft config: heartbeat_interval_ticks must be > 0");
  }
  if (config.election_timeout_ticks <= config.heartbeat_interval_ticks) {
    return absl::InvalidArgumentError(
        "raft config: election_timeout_ticks must be greater than heartbeat_interval_ticks");
  }
  if (config.election_timeout_ticks > kMaxElectionTimeoutTicks) {
    return absl::InvalidArgumentError(absl::StrCat(
        "raft config: election_timeout_ticks must be at most ", kMaxElectionTimeoutTicks));
  }
  if (config.max_inflight_messages == 0) {
    return absl::InvalidArgumentError("raft config: max_inflight_messages must be > 0");
  }
  if (config.max_message_bytes == 0) {
    return absl::InvalidArgumentError("raft config: max_message_bytes must be > 0");
  }
  if (config.read_only_mode == ReadOnlyMode::kLeaseBased && !config.check_quorum) {
    return absl::InvalidArgumentError("raft config: lease-based reads require check_quorum");
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Raft>> Raft::Create(Config config, const LogStorage* storage) {
  STEAD_RETURN_IF_ERROR(ValidateConfig(config));
  STEAD_CHECK(storage != nullptr);
  const PersistedState state = storage->InitialState();
  STEAD_ASSIGN_OR_RETURN(RaftLog log,
                         Annotate(RaftLog::Open(storage, state.hard_state, config.applied),
                                  absl::StrCat("raft node ", config.id)));
  std::unique_ptr<Raft> raft(new Raft(std::move(config), storage, std::move(log)));
  STEAD_RETURN_IF_ERROR(raft->Restore(state));
  return raft;
}

std::vector<pb::Entry> Raft::BootstrapEntries(const std::vector<NodeId>& voters,
                                              const std::vector<std::string>& contexts) {
  STEAD_CHECK(contexts.empty() || contexts.size() == voters.size());
  std::vector<pb::Entry> entries;
  for (size_t i = 0; i < voters.size(); ++i) {
    pb::ConfChange change;
    change.set_type(pb::CONF_CHANGE_TYPE_ADD_VOTER);
    change.set_node_id(voters[i]);
    if (!contexts.empty()) change.set_context(contexts[i]);
    pb::Entry entry;
    entry.set_term(1);
    entry.set_index(i + 1);
    entry.set_type(pb::ENTRY_TYPE_CONF_CHANGE);
    entry.set_data(change.SerializeAsString());
    entries.push_back(std::move(entry));
  }
  return entries;
}

Raft::Raft(Config config, const LogStorage* storage, RaftLog log)
    : config_(std::move(config)),
      storage_(storage),
      id_(config_.id),
      logger_(config_.logger.WithContext("raft", config_.id)),
      random_(config_.random_seed),
      log_(std::make_unique<RaftLog>(std::move(log))),
      progress_(std::make_unique<ProgressTracker>(config_.max_inflight_messages)),
      read_only_(std::make_unique<ReadOnly>()) {}

Raft::~Raft() = default;

absl::Status Raft::Restore(const PersistedState& state) {
  term_ = state.hard_state.term();
  voted_for_ = state.hard_state.vote();
  conf_state_ = state.snapshot.conf_state();
  // Replay the membership changes after the snapshot: committed ones take effect now,
  // later ones wait for their commit.
  const Index last = log_->LastIndex();
  for (Index low = log_->FirstIndex(); low <= last;) {
    STEAD_ASSIGN_OR_RETURN(
        std::vector<pb::Entry> entries,
        Annotate(log_->Entries(low, last + 1, RaftLog::kMaxCommittedBytesPerReady),
                 absl::StrCat("raft node ", id_, ": reading the log")));
    if (entries.empty()) break;
    TrackConfChanges(entries);
    low = entries.back().index() + 1;
  }
  ApplyCommittedConfChanges();
  progress_->ApplyConf(conf_state_, log_->LastIndex());
  BecomeFollower(term_, kNoNode);
  previous_hard_state_ = HardState();
  previous_soft_state_ = CurrentSoftState();
  STEAD_LOG(logger_, Info) << "started term=" << term_ << " commit=" << log_->committed()
                           << " applied=" << log_->applied() << " last_index=" << last
                           << " voters=" << conf_state_.voters_size()
                           << " learners=" << conf_state_.learners_size();
  CheckInvariants();
  return absl::OkStatus();
}

Index Raft::commit_index() const { return log_->committed(); }
Index Raft::last_index() const { return log_->LastIndex(); }
Index Raft::applied_index() const { return log_->applied(); }

pb::HardState Raft::HardState() const {
  pb::HardState hard_state;
  hard_state.set_term(term_);
  hard_state.set_vote(voted_for_);
  hard_state.set_commit(log_->committed());
  return hard_state;
}

SoftState Raft::CurrentSoftState() const { return SoftState{leader_, role_}; }

bool Raft::Promotable() const {
  return progress_->IsVoter(id_) && !log_->pending_snapshot().has_value();
}

void Raft::CheckInvariants() const {
  STEAD_CHECK_LE(log_->committed(), log_->LastIndex());
  STEAD_CHECK_GE(term_, previous_hard_state_.term()) << "term went backwards";
  STEAD_CHECK_GE(log_->committed(), previous_hard_state_.commit()) << "commit went backwards";
  if (role_ == Role::kLeader) {
    STEAD_CHECK_EQ(leader_, id_);
    STEAD_CHECK_EQ(voted_for_, id_);
  }
  if (role_ == Role::kCandidate) STEAD_CHECK_EQ(voted_for_, id_);
  if (role_ != Role::kLeader) STEAD_CHECK_EQ(lead_transferee_, kNoNode);
}

absl::Status Raft::Step(const pb::Message& message) {
  STEAD_RETURN_IF_ERROR(ValidateMessage(message, id_));
  absl::Status status = absl::OkStatus();
  if (StepTerm(message)) {
    switch (message.type()) {
      case pb::MESSAGE_TYPE_PRE_VOTE:
      case pb::MESSAGE_TYPE_VOTE:
        HandleVoteRequest(message);
        break;
      default:
        switch (role_) {
          case Role::kLeader:
            status = StepLeader(message);
            break;
          case Role::kPreCandidate:
          case Role::kCandidate:
            status = StepCandidate(message);
            break;
          case Role::kFollower:
            status = StepFollower(message);
            break;
        }
    }
  }
  CheckInvariants();
  return status;
}

bool Raft::StepTerm(const pb::Message& message) {
  const pb::MessageType type = message.type();
  const bool vote_request = type == pb::MESSAGE_TYPE_VOTE || type == pb::MESSAGE_TYPE_PRE_VOTE;
  if (message.term() > term_) {
    // Thesis §4.2.3: a node that hears from a live leader ignores votes, so a removed or
    // partitioned server cannot depose it. A transfer (TIMEOUT_NOW) is the exception: the
    // leader itself asked for this election.
    if (vote_request && InLeaderLease() && !message.transfer()) {
      STEAD_LOG(logger_, Debug) << "term=" << term_ << " ignoring " << pb::MessageType_Name(type)
                                << " from " << message.from() << " term=" << message.term()
                                << ": leader " << leader_ << " is live";
      return false;
    }
    // PreVote (thesis §9.6) never changes the receiver's term; a granted pre-vote carries
    // the term the candidate would campaign in, so it does not change ours either.
    if (type == pb::MESSAGE_TYPE_PRE_VOTE) return true;
    if (type == pb::MESSAGE_TYPE_PRE_VOTE_RESPONSE && !message.reject()) return true;
    const bool from_leader = type == pb::MESSAGE_TYPE_APPEND ||
                             type == pb::MESSAGE_TYPE_HEARTBEAT ||
                             type == pb::MESSAGE_TYPE_SNAPSHOT;
    STEAD_LOG(logger_, Info) << "term=" << term_ << " received " << pb::MessageType_Name(type)
                             << " from " << message.from()
                             << " with higher term=" << message.term();
    BecomeFollower(message.term(), from_leader ? message.from() : kNoNode);
    return true;
  }
  if (message.term() < term_) {
    if ((config_.check_quorum || config_.pre_vote) &&
        (type == pb::MESSAGE_TYPE_APPEND || type == pb::MESSAGE_TYPE_HEARTBEAT)) {
      // A leader from an older term (it was partitioned away). With CheckQuorum or
      // PreVote our term may have risen without an election it could see; tell it our
      // term so it steps down instead of being ignored forever.
      pb::Message response;
      response.set_type(pb::MESSAGE_TYPE_APPEND_RESPONSE);
      response.set_to(message.from());
      SendAfterPersist(std::move(response));
    } else if (type == pb::MESSAGE_TYPE_PRE_VOTE) {
      pb::Message response;
      response.set_type(pb::MESSAGE_TYPE_PRE_VOTE_RESPONSE);
      response.set_to(message.from());
      response.set_reject(true);
      SendAfterPersist(std::move(response));
    }
    return false;
  }
  return true;
}

absl::Status Raft::StepLeader(const pb::Message& message) {
  switch (message.type()) {
    case pb::MESSAGE_TYPE_APPEND_RESPONSE:
      HandleAppendResponse(message);
      return absl::OkStatus();
    case pb::MESSAGE_TYPE_HEARTBEAT_RESPONSE:
      HandleHeartbeatResponse(message);
      return absl::OkStatus();
    case pb::MESSAGE_TYPE_READ_INDEX:
      HandleReadIndexRequest(message);
      return absl::OkStatus();
    case pb::MESSAGE_TYPE_APPEND:
    case pb::MESSAGE_TYPE_HEARTBEAT:
    case pb::MESSAGE_TYPE_SNAPSHOT:
      // Election safety makes this impossible among correct nodes.
      STEAD_LOG(logger_, Error) << "term=" << term_ << " leader received "
                                << pb::MessageType_Name(message.type()) << " from "
                                << message.from() << " in its own term; ignored";
      return absl::FailedPreconditionError(absl::StrCat("raft node ", id_, ": a second leader ",
                                                        message.from(), " in term ", term_));
    default:
      return absl::OkStatus();  // stale vote responses, TIMEOUT_NOW to a leader
  }
}

absl::Status Raft::StepCandidate(const pb::Message& message) {
  switch (message.type()) {
    case pb::MESSAGE_TYPE_APPEND:
      BecomeFollower(term_, message.from());
      return HandleAppend(message);
    case pb::MESSAGE_TYPE_HEARTBEAT:
      BecomeFollower(term_, message.from());
      return HandleHeartbeat(message);
    case pb::MESSAGE_TYPE_SNAPSHOT:
      BecomeFollower(term_, message.from());
      return HandleSnapshot(message);
    case pb::MESSAGE_TYPE_PRE_VOTE_RESPONSE:
    case pb::MESSAGE_TYPE_VOTE_RESPONSE:
      HandleVoteResponse(message);
      return absl::OkStatus();
    case pb::MESSAGE_TYPE_READ_INDEX_RESPONSE:
      // Asked as a follower of this term (a pre-candidate keeps its term).
      HandleReadIndexResponse(message);
      return absl::OkStatus();
    default:
      return absl::OkStatus();
  }
}

absl::Status Raft::StepFollower(const pb::Message& message) {
  switch (message.type()) {
    case pb::MESSAGE_TYPE_APPEND:
      election_elapsed_ = 0;
      leader_ = message.from();
      return HandleAppend(message);
    case pb::MESSAGE_TYPE_HEARTBEAT:
      election_elapsed_ = 0;
      leader_ = message.from();
      return HandleHeartbeat(message);
    case pb::MESSAGE_TYPE_SNAPSHOT:
      election_elapsed_ = 0;
      leader_ = message.from();
      return HandleSnapshot(message);
    case pb::MESSAGE_TYPE_TIMEOUT_NOW:
      HandleTimeoutNow(message);
      return absl::OkStatus();
    case pb::MESSAGE_TYPE_READ_INDEX_RESPONSE:
      HandleReadIndexResponse(message);
      return absl::OkStatus();
    default:
      return absl::OkStatus();
  }
}

void Raft::Tick() {
  if (startup_ticks_ < config_.election_timeout_ticks) ++startup_ticks_;
  if (role_ == Role::kLeader) {
    TickHeartbeat();
  } else {
    TickElection();
  }
  CheckInvariants();
}

void Raft::TickElection() {
  // Saturate: a learner never campaigns and may tick for years.
  if (election_elapsed_ < kMaxElapsedTicks) ++election_elapsed_;
  if (Promotable() && election_elapsed_ >= randomized_election_timeout_) {
    election_elapsed_ = 0;
    Hup(/*transfer=*/false);
  }
}

void Raft::TickHeartbeat() {
  ++leader_ticks_;
  ++heartbeat_elapsed_;
  ++election_elapsed_;
  if (election_elapsed_ >= config_.election_timeout_ticks) {
    election_elapsed_ = 0;
    if (config_.check_quorum) {
      // Thesis §6.2: a leader that did not hear from a quorum for an election timeout
      // steps down, so a partitioned leader stops accepting proposals. (Lease reads do
      // not rely on this check, which may notice the loss up to two timeouts late.)
      if (!progress_->QuorumActive(id_)) {
        STEAD_LOG(logger_, Warning) << "term=" << term_
                                    << " stepping down: no quorum heard from within the "
                                       "election timeout";
        BecomeFollower(term_, kNoNode);
        return;
      }
      progress_->ClearRecentActive();
    }
    // A transfer that did not finish within an election timeout is abandoned so the
    // leader accepts proposals again.
    if (lead_transferee_ != kNoNode) AbortLeaderTransfer();
  }
  if (heartbeat_elapsed_ >= config_.heartbeat_interval_ticks) {
    heartbeat_elapsed_ = 0;
    BroadcastHeartbeat(config_.read_only_mode == ReadOnlyMode::kLeaseBased ? LeaseContext() : "");
  }
}

void Raft::Send(pb::Message message) {
  message.set_from(id_);
  if (message.term() == 0) message.set_term(term_);
  STEAD_CHECK_NE(message.to(), id_);
  messages_.push_back(std::move(message));
}

void Raft::SendAfterPersist(pb::Message message) {
  message.set_from(id_);
  if (message.term() == 0) message.set_term(term_);
  STEAD_CHECK_NE(message.to(), id_);
  // A node at term 0 has never heard from anyone and has nothing to vouch for.
  if (message.term() == 0) return;
  messages_after_persist_.push_back(std::move(message));
}

bool Raft::HasReady() const {
  return CurrentSoftState() != previous_soft_state_ ||
         !SameHardState(HardState(), previous_hard_state_) || broadcast_pending_ ||
         log_->HasUnsentSnapshot() || log_->HasUnsentEntries() || log_->HasNextCommittedEntries() ||
         !messages_.empty() || !messages_after_persist_.empty() || !read_states_.empty();
}

Ready Raft::TakeReady() {
  if (broadcast_pending_) {
    broadcast_pending_ = false;
    if (role_ == Role::kLeader) BroadcastAppend();
  }
  Ready ready;
  const SoftState soft_state = CurrentSoftState();
  if (soft_state != previous_soft_state_) {
    ready.soft_state = soft_state;
    previous_soft_state_ = soft_state;
  }
  ready.snapshot = log_->TakeUnsentSnapshot();
  ready.entries = log_->TakeUnsentEntries();
  absl::StatusOr<std::vector<pb::Entry>> committed = log_->TakeNextCommittedEntries();
  if (committed.ok()) {
    ready.committed_entries = *std::move(committed);
  } else {
    // Retried on the next Ready; the runtime sees the storage error in its own logs too.
    STEAD_LOG(logger_, Error) << "term=" << term_
                              << " cannot read committed entries: " << committed.status();
  }
  for (const pb::Entry& entry : ready.committed_entries) {
    uncommitted_bytes_ -= std::min<uint64_t>(uncommitted_bytes_, entry.data().size());
  }
  const pb::HardState hard_state = HardState();
  if (!SameHardState(hard_state, previous_hard_state_)) {
    ready.hard_state = hard_state;
    previous_hard_state_ = hard_state;
  }
  ready.messages = std::move(messages_);
  messages_.clear();
  ready.messages_after_persist = std::move(messages_after_persist_);
  messages_after_persist_.clear();
  ready.read_states = std::move(read_states_);
  read_states_.clear();
  return ready;
}

void Raft::OnPersisted(Index index, Term term) {
  if (!log_->StableTo(index, term)) return;
  if (role_ != Role::kLeader) return;
  Progress* self = progress_->Find(id_);
  if (self == nullptr) return;
  // The leader counts itself only for what it has made durable (thesis §10.2.1).
  if (self->MaybeUpdate(log_->PersistedIndex()) && MaybeCommit()) BroadcastAppend();
}

void Raft::OnApplied(Index index) { log_->AppliedTo(index); }

void Raft::ReportUnreachable(NodeId peer) {
  if (role_ != Role::kLeader) return;
  Progress* progress = progress_->Find(peer);
  if (progress == nullptr) return;
  // Messages in flight were probably lost: resume by probing.
  if (progress->state == ProgressState::kReplicate) progress->BecomeProbe();
}

void Raft::ReportSnapshot(NodeId peer, bool ok) {
  if (role_ != Role::kLeader) return;
  Progress* progress = progress_->Find(peer);
  if (progress == nullptr || progress->state != ProgressState::kSnapshot) return;
  STEAD_LOG(logger_, Info) << "term=" << term_ << " snapshot at index "
                           << progress->pending_snapshot << " to " << peer
                           << (ok ? " finished" : " failed");
  if (!ok) progress->pending_snapshot = 0;
  progress->BecomeProbe();
  // Wait for the next heartbeat answer before probing: it tells whether the follower
  // installed the snapshot.
  progress->probe_sent = true;
}

RaftStatus Raft::Status() const {
  RaftStatus status;
  status.id = id_;
  status.term = term_;
  status.vote = voted_for_;
  status.role = role_;
  status.leader = leader_;
  status.commit = log_->committed();
  status.leader_commit = role_ == Role::kLeader ? log_->committed() : leader_commit_;
  status.applied = log_->applied();
  status.last_index = log_->LastIndex();
  status.lead_transferee = lead_transferee_;
  status.conf_state = conf_state_;
  if (role_ == Role::kLeader) {
    for (const auto& [peer, progress] : progress_->all()) {
      status.peers.push_back(PeerStatus{peer, progress.is_learner, progress.state, progress.match,
                                        progress.next, progress.inflights.count(),
                                        progress.recent_active || progress.active_last_round});
    }
  }
  return status;
}

}  // namespace stead::raft
