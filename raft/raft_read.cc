// Linearizable reads without writing to the log: ReadIndex (thesis §6.4) and, opt-in,
// lease reads (thesis §6.4.1).
#include <algorithm>
#include <functional>
#include <utility>

#include "absl/strings/match.h"
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

}  // namespace

absl::Status Raft::ReadIndex(std::string context) {
  if (role_ != Role::kLeader) {
    return absl::UnavailableError(absl::StrCat("not leader; leader is ", leader_));
  }
  if (context.empty()) return absl::InvalidArgumentError("read context must not be empty");
  if (absl::StartsWith(context, kLeaseContextPrefix)) {
    return absl::InvalidArgumentError("read context uses the reserved lease prefix");
  }
  if (read_only_->Contains(context) ||
      std::find(reads_waiting_for_commit_.begin(), reads_waiting_for_commit_.end(), context) !=
          reads_waiting_for_commit_.end()) {
    return absl::AlreadyExistsError("a read with this context is in progress");
  }
  if (read_only_->size() + reads_waiting_for_commit_.size() >= ReadOnly::kMaxPendingReads) {
    return absl::ResourceExhaustedError("too many reads in progress; retry later");
  }
  if (!CommittedInCurrentTerm()) {
    // Thesis §6.4 step 1: until the leader commits an entry of its term it does not know
    // the latest commit index; the read waits for the no-op to commit.
    reads_waiting_for_commit_.push_back(std::move(context));
    return absl::OkStatus();
  }
  ServeRead(std::move(context));
  return absl::OkStatus();
}

bool Raft::CommittedInCurrentTerm() const {
  absl::StatusOr<Term> term = log_->TermAt(log_->committed());
  return term.ok() && *term == term_;
}

void Raft::ServeRead(std::string context) {
  const Index read_index = log_->committed();
  const bool sole_voter = progress_->voters().size() == 1 && progress_->IsVoter(id_);
  if (sole_voter || HoldsLease()) {
    // A single voter is its own quorum. A lease guarantees no other leader was elected
    // yet -- if the tick rates agree (see ReadOnlyMode).
    read_states_.push_back(ReadState{read_index, std::move(context)});
    return;
  }
  // Thesis §6.4 steps 2-3: record the commit index, then confirm leadership with a
  // heartbeat round; the answer waits for a quorum of acknowledgements.
  read_only_->Add(read_index, context, id_);
  BroadcastHeartbeat(context);
}

void Raft::ServePendingReads() {
  std::vector<std::string> contexts = std::move(reads_waiting_for_commit_);
  reads_waiting_for_commit_.clear();
  for (std::string& context : contexts) ServeRead(std::move(context));
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
    read_states_.push_back(std::move(state));
  }
}

}  // namespace stead::raft
