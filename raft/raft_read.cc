// Linearizable reads without writing to the log: ReadIndex (thesis §6.4) and, opt-in,
// lease reads (thesis §6.4.1).
#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/check.h"
#include "raft/progress.h"
#include "raft/quorum.h"
#include "raft/raft.h"
#include "raft/raft_log.h"
#include "raft/read_only.h"

namespace stead::raft {

absl::Status Raft::ReadIndex(std::string context) {
  if (role_ != Role::kLeader) {
    return absl::UnavailableError(absl::StrCat("not leader; leader is ", leader_));
  }
  if (context.empty()) return absl::InvalidArgumentError("read context must not be empty");
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
  if (sole_voter || config_.read_only_mode == ReadOnlyMode::kLeaseBased) {
    // A single voter is its own quorum. With leases, CheckQuorum guarantees no other
    // leader was elected while ours holds -- if the clocks agree (see ReadOnlyMode).
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
