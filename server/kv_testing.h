// Test helper: the key-value state machine without Raft. KvHarness keeps a log of
// write commands and applies them to a real StateMachine exactly as RaftNode does
// (ApplyFunction on a StagedApply, an over-limit batch staged empty, one commit per
// batch), and can close and reopen the state machine — flushed, or as after a crash,
// replaying the log from the applied index — or go back to a checkpoint and replay
// from there.
//
// Not thread-safe.
#ifndef STEAD_SERVER_KV_TESTING_H_
#define STEAD_SERVER_KV_TESTING_H_

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "base/check.h"
#include "server/kv_apply.h"
#include "server/kv_store.h"
#include "storage/state_machine.h"

namespace stead::server {

// A transaction that puts `to` at `key` if the key's value is `from`.
inline pb::ClientRequest CompareAndSwapRequest(const std::string& key, const std::string& from,
                                               const std::string& to) {
  pb::ClientRequest request;
  pb::Compare* compare = request.mutable_txn()->add_compare();
  compare->set_key(key);
  compare->set_target(pb::Compare::TARGET_VALUE);
  compare->set_result(pb::Compare::RESULT_EQUAL);
  compare->set_value(from);
  pb::PutRequest* put = request.mutable_txn()->add_success()->mutable_put();
  put->set_key(key);
  put->set_value(to);
  return request;
}

class KvHarness {
 public:
  // Opens a state machine in `dir` (emptied first: a run that was killed leaves its
  // directory; created; removed by the destructor). With
  // `forgetful`, every entry is applied by a new ApplyFunction, as by a member that
  // just restarted: what one function remembers between entries must not matter.
  KvHarness(std::string dir, KvApplyOptions options, bool forgetful = false)
      : dir_(std::move(dir)), options_(options), forgetful_(forgetful),
        apply_(MakeKvApplyFunction(std::move(options))) {
    std::filesystem::remove_all(dir_);
    Open();
  }
  ~KvHarness() {
    state_.reset();
    std::filesystem::remove_all(dir_);
  }
  KvHarness(const KvHarness&) = delete;
  KvHarness& operator=(const KvHarness&) = delete;

  // Appends `request` to the log, applies it and returns its response.
  pb::ClientResponse Write(const pb::ClientRequest& request) {
    return WriteBatch({request}).front();
  }
  // Appends `requests` to the log and applies them in one batch (one commit).
  std::vector<pb::ClientResponse> WriteBatch(const std::vector<pb::ClientRequest>& requests) {
    const size_t first = log_.size() + 1;
    for (const pb::ClientRequest& request : requests) log_.push_back(request.SerializeAsString());
    std::vector<pb::ClientResponse> responses;
    for (const std::string& result : ApplyLogEntries(first, log_.size())) {
      STEAD_CHECK(responses.emplace_back().ParseFromString(result));
    }
    return responses;
  }

  // `max_response_bytes` as ReadRange's; 0: pages bounded by count alone.
  absl::StatusOr<KvRead> Read(const pb::RangeRequest& request,
                              size_t max_response_bytes = 0) const {
    return ReadRange(request, max_response_bytes, *state_);
  }

  // Closes and reopens the state machine. With `crash`, what was applied since the last
  // flush is lost and re-applied from the log.
  void Restart(bool crash) {
    // The state machine never flushes on close (see Open): a clean restart flushes first.
    if (!crash) STEAD_CHECK_OK(state_->Flush().status());
    state_.reset();
    Open();
    ApplyLogEntries(state_->applied_index() + 1, log_.size());
    STEAD_CHECK_EQ(state_->applied_index(), log_.size());
  }

  // Takes a checkpoint of the state as it is now (the unit of Raft snapshots).
  void Checkpoint() {
    last_checkpoint_ = dir_ + "/checkpoints/cp-" + std::to_string(++checkpoints_);
    STEAD_CHECK_OK(state_->CreateCheckpoint(last_checkpoint_).status());
  }
  // Switches the state machine to the last checkpoint and applies the log after it, as
  // a member does that receives a Raft snapshot and then the log tail. Whether there was
  // a checkpoint to install.
  bool InstallLastCheckpoint() {
    if (last_checkpoint_.empty()) return false;
    state_.reset();
    absl::StatusOr<std::unique_ptr<storage::StateMachine>> state =
        storage::StateMachine::OpenFromCheckpoint(Options(), last_checkpoint_);
    STEAD_CHECK_OK(state.status());
    state_ = std::move(*state);
    ApplyLogEntries(state_->applied_index() + 1, log_.size());
    STEAD_CHECK_EQ(state_->applied_index(), log_.size());
    return true;
  }

  const storage::StateMachine& state() const { return *state_; }
  // For what takes checkpoints itself (BackupService); valid until the next Restart.
  storage::StateMachine& mutable_state() { return *state_; }

 private:
  storage::StateMachineOptions Options() const {
    storage::StateMachineOptions options;
    options.data_dir = dir_;
    options.identity = {0xfeed, 1, "kv-0"};
    options.keyspaces = KvKeyspaces();
    options.logger = Logger(LogLevel::kWarning);
    options.flush_on_close = false;
    options.write_buffer_bytes = 1 << 20;
    return options;
  }

  void Open() {
    absl::StatusOr<std::unique_ptr<storage::StateMachine>> state =
        storage::StateMachine::Open(Options());
    STEAD_CHECK_OK(state.status());
    state_ = std::move(*state);
  }

  // Applies log entries [first, last] (1-based) in one batch as RaftNode::ApplyEntries
  // does and returns their results (an error as a response carrying it).
  std::vector<std::string> ApplyLogEntries(size_t first, size_t last) {
    const std::unique_ptr<storage::StagedApply> staged = state_->StartApply();
    std::vector<std::string> results;
    for (size_t index = first; index <= last; ++index) {
      pb::Entry entry;
      entry.set_index(index);
      entry.set_term(1);
      storage::ApplyBatch batch;
      batch.index = index;
      batch.term = 1;
      const ApplyFunction apply = forgetful_ ? MakeKvApplyFunction(options_) : apply_;
      absl::StatusOr<std::string> result = apply(log_[index - 1], entry, *staged, &batch.mutations);
      STEAD_CHECK_OK(result.status());
      absl::Status applied = staged->Stage(batch);
      if (absl::IsInvalidArgument(applied)) {
        result = applied;  // as RaftNode: the storage limit is the proposer's result
        batch.mutations.clear();
        applied = staged->Stage(batch);
      }
      STEAD_CHECK_OK(applied);
      if (!result.ok()) {
        pb::ClientResponse response;
        response.mutable_error()->set_code(static_cast<int32_t>(result.status().code()));
        response.mutable_error()->set_message(std::string(result.status().message()));
        result = response.SerializeAsString();
      }
      results.push_back(*std::move(result));
    }
    STEAD_CHECK_OK(staged->Commit());
    return results;
  }

  const std::string dir_;
  const KvApplyOptions options_;
  const bool forgetful_;
  const ApplyFunction apply_;
  std::vector<std::string> log_;  // entry i + 1 is log_[i]
  int checkpoints_ = 0;
  std::string last_checkpoint_;
  std::unique_ptr<storage::StateMachine> state_;
};

}  // namespace stead::server

#endif  // STEAD_SERVER_KV_TESTING_H_
