// Linearizable reads without writing to the log: ReadIndex (thesis §6.4) and, opt-in,
// lease reads (thesis §6.4.1). A follower's read is served by the leader, which answers
// with the read index (READ_INDEX / READ_INDEX_RESPONSE).
#include <algorithm>
#include <functional>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "base/check.h"
#include "raft/progress.h"
#include "raft/quorum.h"
#include "raft/raft.h"
#include "raft/raft_log.h"
#include "raft/read_only.h"

namespace stead::raft {
namespace {

// Heartbeat contexts of lease mode start with this; client read contexts may not.
constexpr absl::string_view kLeaseContextPrefix("\x01lease:");
// The key under which a leader tracks a read it serves for another member; it also
// travels as the context of that read's heartbeat round.
constexpr absl::string_view kRemoteReadPrefix("\x01read:");

std::string RemoteReadKey(NodeId from, absl::string_view context) {
  return absl::StrCat(kRemoteReadPrefix, from, ":", context);
}

// Splits a remote read key into the asker and its context; false for the leader's own
// reads.
bool ParseRemoteReadKey(absl::string_view key, NodeId* from, std::string* context) {
  if (!absl::ConsumePrefix(&key, kRemoteReadPrefix)) return false;
  const size_t colon = key.find(':');
  if (colon == absl::string_view::npos || !absl::SimpleAtoi(key.substr(0, colon), from)) {
    return false;
  }
  *context = std::string(key.substr(colon + 1));
  return true;
}

}  // namespace

absl::Status Raft::ReadIndex(std::string context) {
  if (context.empty()) return absl::InvalidArgumentError("read context must not be empty");
  if (context[0] == kReservedContextByte) {
    return absl::InvalidArgumentError("read context starts with the reserved byte \\x01");
  }
  if (role_ == Role::kLeader) return StartRead(std::move(context));
  if (role_ != Role::kFollower || leader_ == kNoNode) {
    return absl::UnavailableError(absl::StrCat("not leader; leader is ", leader_));
  }
  // A follower (or learner) asks the leader, which serves the read as its own and
  // answers with the read index; the follower then only has to apply through it. The
  // leader may be deposed or the message lost: then no answer comes (caller's deadline).
  pb::Message request;
  request.set_type(pb::MESSAGE_TYPE_READ_INDEX);
  request.set_to(leader_);
  request.set_context(std::move(context));
  Send(std::move(request));
  return absl::OkStatus();
}

absl::Status Raft::StartRead(std::string key) {
  if (read_only_->Contains(key) ||
      std::find(reads_waiting_for_commit_.begin(), reads_waiting_for_commit_.end(), key) !=
          reads_waiting_for_commit_.end()) {
    return absl::AlreadyExistsError("a read with this context is in progress");
  }
  if (read_only_->size() + reads_waiting_for_commit_.size() >= ReadOnly::kMaxPendingReads) {
    return absl::ResourceExhaustedError("too many reads in progress; retry later");
  }
  if (!CommittedInCurrentTerm()) {
    // Thesis §6.4 step 1: until the leader commits an entry of its term it does not know
    // the latest commit index; the read waits for the no-op to commit.
    reads_waiting_for_commit_.push_back(std::move(key));
    return absl::OkStatus();
  }
  ServeRead(std::move(key));
  return absl::OkStatus();
}

void Raft::HandleReadIndexRequest(const pb::Message& message) {
  // Served exactly like the leader's own reads, under a key no local context can take.
  // A refusal (a duplicate of a read in progress, too many reads) goes unanswered.
  if (absl::Status status = StartRead(RemoteReadKey(message.from(), message.context()));
      !status.ok()) {
    STEAD_LOG(logger_, Debug) << "term=" << term_ << " not serving a read for " << message.from()
                              << ": " << status.message();
  }
}

void Raft::HandleReadIndexResponse(const pb::Message& message) {
  // Same term, so it comes from the leader of this term, which confirmed the index after
  // it received the request.
  read_states_.push_back(ReadState{message.index(), message.context()});
}

void Raft::DeliverRead(ReadState state) {
  NodeId from = kNoNode;
  std::string context;
  if (!ParseRemoteReadKey(state.context, &from, &context)) {
    read_states_.push_back(std::move(state));
    return;
  }
  pb::Message response;
  response.set_type(pb::MESSAGE_TYPE_READ_INDEX_RESPONSE);
  response.set_to(from);
  response.set_index(state.index);
  response.set_context(std::move(context));
  Send(std::move(response));
}

bool Raft::CommittedInCurrentTerm() const {
  absl::StatusOr<Term> term = log_->TermAt(log_->committed());
  return term.ok() && *term == term_;
}

void Raft::ServeRead(std::string key) {
  const Index read_index = log_->committed();
  const bool sole_voter = progress_->voters().size() == 1 && progress_->IsVoter(id_);
  if (sole_voter || HoldsLease()) {
    // A single voter is its own quorum. A lease guarantees no other leader was elected
    // yet -- if the tick rates agree (see ReadOnlyMode).
    DeliverRead(ReadState{read_index, std::move(key)});
    return;
  }
  // Thesis §6.4 steps 2-3: record the commit index, then confirm leadership with a
  // heartbeat round; the answer waits for a quorum of acknowledgements.
  read_only_->Add(read_index, key, id_);
  BroadcastHeartbeat(key);
}

void Raft::ServePendingReads() {
  std::vector<std::string> keys = std::move(reads_waiting_for_commit_);
  reads_waiting_for_commit_.clear();
  for (std::string& key : keys) ServeRead(std::move(key));
}

std::string Raft::LeaseContext() const { return absl::StrCat(kLeaseContextPrefix, leader_ticks_); }

void Raft::HandleLeaseAck(const pb::Message& message) {
  if (config_.read_only_mode != ReadOnlyMode::kLeaseBased) return;
  absl::string_view context = message.context();
  if (!absl::ConsumePrefix(&context, kLeaseContextPrefix)) return;
  uint64_t tick = 0;
  // An unparsable or future tick is not from this leader: ignore it.
  if (!absl::SimpleAtoi(context, &tick) || tick > leader_ticks_) return;
  uint64_t& acked = lease_acks_[message.from()];
  acked = std::max(acked, tick);
}

bool Raft::HoldsLease() const {
  if (config_.read_only_mode != ReadOnlyMode::kLeaseBased || lead_transferee_ != kNoNode ||
      sent_timeout_now_) {
    return false;
  }
  // The quorum-th most recent acknowledged heartbeat (the leader counts as now): no
  // majority can elect another leader before it plus an election timeout.
  std::vector<uint64_t> ticks;
  for (NodeId voter : progress_->voters()) {
    if (voter == id_) {
      ticks.push_back(leader_ticks_);
    } else if (auto it = lease_acks_.find(voter); it != lease_acks_.end()) {
      ticks.push_back(it->second);
    }
  }
  const size_t majority = MajoritySize(progress_->voters().size());
  if (ticks.size() < majority) return false;
  std::sort(ticks.begin(), ticks.end(), std::greater<uint64_t>());
  const uint64_t timeout = static_cast<uint64_t>(config_.election_timeout_ticks);
  const uint64_t margin = std::max<uint64_t>(1, timeout / 10);
  return leader_ticks_ + margin < ticks[majority - 1] + timeout;
}

void Raft::HandleReadAck(const pb::Message& message) {
  std::optional<std::set<NodeId>> acks = read_only_->RecordAck(message.context(), message.from());
  if (!acks) return;
  size_t voter_acks = 0;
  for (NodeId id : *acks) {
    if (progress_->IsVoter(id)) ++voter_acks;
  }
  if (voter_acks < MajoritySize(progress_->voters().size())) return;
  for (ReadState& state : read_only_->ReleaseThrough(message.context())) {
    DeliverRead(std::move(state));
  }
}

}  // namespace stead::raft
