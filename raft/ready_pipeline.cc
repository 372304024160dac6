#include "raft/ready_pipeline.h"

#include <utility>

#include "base/check.h"
#include "base/status_macros.h"

namespace stead::raft {

ReadyPipeline::ReadyPipeline(Raft* raft, Runtime* runtime, PipelineOptions options)
    : raft_(raft), runtime_(runtime), options_(options) {}

int ReadyPipeline::Drain(int max_readys) {
  int handled = 0;
  while (handled < max_readys && !failed_ && !installing_ && raft_->HasReady()) {
    Handle(raft_->TakeReady());
    ++handled;
  }
  return handled;
}

void ReadyPipeline::Handle(Ready ready) {
  if (failed_) return;
  STEAD_CHECK(!installing_) << "a Ready taken while a snapshot is being installed";
  runtime_->OnReadyTaken(ready);
  if (ready.soft_state) runtime_->OnSoftState(*ready.soft_state);
  if (!ready.messages.empty()) runtime_->Send(std::move(ready.messages));
  ready.messages.clear();
  if (options_.unsafe_send_before_persist_for_testing && !ready.messages_after_persist.empty()) {
    // The planted bug: vouching for state that is not durable yet.
    runtime_->Send(std::move(ready.messages_after_persist));
    ready.messages_after_persist.clear();
  }
  if (ready.snapshot) {
    // Later Readys come after the snapshot: none is taken until the runtime installed
    // it (RaftNode replaces its state machine first and repairs a crash before the
    // log records it at start; the simulator installs it when the write is durable).
    const pb::SnapshotMetadata snapshot = *ready.snapshot;
    installing_ = std::move(ready);
    runtime_->InstallSnapshot(snapshot);
    return;
  }
  PersistAndApply(std::move(ready));
}

void ReadyPipeline::OnSnapshotInstalled(const absl::Status& status) {
  if (failed_ || !installing_) return;
  Ready ready = std::move(*installing_);
  installing_.reset();
  if (!status.ok()) {
    Stop(Annotate(status, "install the snapshot"));
    return;
  }
  PersistAndApply(std::move(ready));
}

void ReadyPipeline::PersistAndApply(Ready ready) {
  if (ready.MustPersist()) {
    const uint64_t sequence = next_sequence_++;
    in_flight_.push_back(InFlightWrite{sequence, ready.PersistedPosition(),
                                       std::move(ready.messages_after_persist), runtime_->Now()});
    LogWrite write;
    write.snapshot = std::move(ready.snapshot);
    write.entries = std::move(ready.entries);
    write.hard_state = std::move(ready.hard_state);
    write.sync = write.snapshot.has_value() || !write.entries.empty();
    if (write.hard_state) {
      write.sync = write.sync || !last_hard_state_ ||
                   write.hard_state->term() != last_hard_state_->term() ||
                   write.hard_state->vote() != last_hard_state_->vote();
      last_hard_state_ = *write.hard_state;
    }
    runtime_->Submit(std::move(write), sequence);
  } else if (!ready.messages_after_persist.empty()) {
    if (in_flight_.empty()) {
      runtime_->Send(std::move(ready.messages_after_persist));
    } else {
      // They may vouch for state an earlier write, still in flight, persists.
      std::vector<pb::Message>& held = in_flight_.back().messages_after_persist;
      for (pb::Message& message : ready.messages_after_persist) held.push_back(std::move(message));
    }
  }
  if (failed_) return;  // Submit or Send may have reported a failure synchronously
  if (!ready.committed_entries.empty()) runtime_->Apply(std::move(ready.committed_entries));
  if (failed_) return;
  if (!ready.read_states.empty()) runtime_->OnReadStates(std::move(ready.read_states));
}

std::optional<std::pair<Index, Term>> ReadyPipeline::OnWritten(uint64_t sequence,
                                                                const absl::Status& status) {
  if (failed_) return std::nullopt;
  STEAD_CHECK(!in_flight_.empty()) << "write " << sequence << " completed but none is in flight";
  STEAD_CHECK_EQ(in_flight_.front().sequence, sequence) << "writes completed out of order";
  if (!status.ok()) {
    // Either later writes are refused too (a failed sync may have lost data) or nothing
    // of this one is durable: the core's view of what is durable is wrong either way.
    Stop(Annotate(status, "log write"));
    return std::nullopt;
  }
  InFlightWrite done = std::move(in_flight_.front());
  in_flight_.pop_front();
  runtime_->ObserveWriteLatency(runtime_->Now() - done.submitted);
  if (!done.messages_after_persist.empty()) runtime_->Send(std::move(done.messages_after_persist));
  if (failed_) return std::nullopt;
  if (done.position) raft_->OnPersisted(done.position->first, done.position->second);
  return done.position;
}

size_t ReadyPipeline::held_messages() const {
  size_t held = 0;
  for (const InFlightWrite& write : in_flight_) held += write.messages_after_persist.size();
  return held;
}

void ReadyPipeline::Stop(absl::Status status) {
  failed_ = true;
  installing_.reset();
  runtime_->Fail(std::move(status));
}

}  // namespace stead::raft
