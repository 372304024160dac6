// ReadyPipeline: the ordering rules of a raft::Ready, shared by the server runtime and
// the simulator so that the simulation tests what production runs.
//
// The pipeline takes Readys from the core and does, for each, in this order:
//
//   1. tells the runtime what it handles itself: the Ready as taken (OnReadyTaken, for
//      checks and traces), then a soft state change (OnSoftState);
//   2. sends `messages` at once (the leader writes its log in parallel with replicating
//      it, thesis §10.2.1);
//   3. a Ready with a snapshot: asks the runtime to install it (InstallSnapshot) and
//      waits for OnSnapshotInstalled before it goes on with that Ready or takes another;
//   4. submits the durable part (snapshot, entries, hard state) as one LogWrite with the
//      next sequence number, and holds `messages_after_persist` until OnWritten reports
//      that write durable; a Ready with nothing to persist attaches them to the newest
//      write still in flight (they may vouch for what it persists) and sends them at
//      once only when no write is in flight. "Persist before you vouch";
//   5. hands `committed_entries` to the applier at once (the core hands out only entries
//      it was told are durable), then `read_states` to the runtime (OnReadStates).
//
// The runtime completes writes with OnWritten(sequence, status) in submission order;
// OnWritten sends the messages held for that write, then calls Raft::OnPersisted with
// the write's last entry (or its snapshot). A write that needs no sync is one whose
// hard state differs from the previous one only in its commit index (a member that
// loses a commit index learns it again from the leader); a new term, vote, entries or
// a snapshot always need a sync. A failed write or snapshot install stops the
// pipeline for good (the runtime's Fail): the core's view of what is durable may be
// wrong, so the member must recover from its log.
//
// The runtime reports applied indexes to the core itself (Raft::OnApplied), since
// applying may be asynchronous.
//
// No I/O, no threads, no clock of its own: it is driven by calls, and the runtime's
// clock (Runtime::Now) only measures how long writes take.
//
// Thread-safety: not thread-safe; call it from the thread that drives the core.
#ifndef STEAD_RAFT_READY_PIPELINE_H_
#define STEAD_RAFT_READY_PIPELINE_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "proto/raft.pb.h"
#include "raft/raft.h"
#include "raft/types.h"

namespace stead::raft {

// The durable part of one Ready, to be written in this order: snapshot, entries
// (truncating the persisted suffix from entries[0].index first), hard state.
struct LogWrite {
  std::optional<pb::SnapshotMetadata> snapshot;
  std::vector<pb::Entry> entries;
  std::optional<pb::HardState> hard_state;
  // Whether it must be synced before it is reported durable (see the file comment).
  bool sync = false;
};

struct PipelineOptions {
  // Test-only: sends messages_after_persist as soon as the Ready is taken, before the
  // write that covers them is durable (votes and acknowledgements vouching for state a
  // crash may lose). The simulator's self-test turns it on to prove it notices.
  // Default: false. Never set it in production.
  bool unsafe_send_before_persist_for_testing = false;
};

class ReadyPipeline {
 public:
  // What the runtime implements: a log writer, a transport, an applier, a clock, and
  // the parts of a Ready the pipeline leaves to it.
  class Runtime {
   public:
    virtual ~Runtime() = default;
    // Log writer: starts writing `write`; the runtime later calls OnWritten(sequence,
    // status), in submission order.
    virtual void Submit(LogWrite write, uint64_t sequence) = 0;
    // Transport: sends the messages (best effort; the core retries what is lost).
    virtual void Send(std::vector<pb::Message> messages) = 0;
    // Applier: applies committed entries in order, at once or later, and reports
    // progress to the core with Raft::OnApplied.
    virtual void Apply(std::vector<pb::Entry> committed_entries) = 0;
    // Clock: only for the write latency reported to ObserveWriteLatency.
    virtual absl::Time Now() = 0;
    // Installs a received snapshot's state; the runtime calls OnSnapshotInstalled when
    // done (it may do so before this returns).
    virtual void InstallSnapshot(const pb::SnapshotMetadata& snapshot) = 0;
    // The pipeline stopped after a failed write or install (already annotated).
    virtual void Fail(absl::Status status) = 0;

    // Optional observers.
    virtual void OnReadyTaken(const Ready& /*ready*/) {}
    virtual void OnSoftState(const SoftState& /*soft_state*/) {}
    virtual void OnReadStates(std::vector<ReadState> /*read_states*/) {}
    virtual void ObserveWriteLatency(absl::Duration /*latency*/) {}
  };

  // Borrows `raft` and `runtime`; both must outlive the pipeline.
  ReadyPipeline(Raft* raft, Runtime* runtime, PipelineOptions options = {});
  ReadyPipeline(const ReadyPipeline&) = delete;
  ReadyPipeline& operator=(const ReadyPipeline&) = delete;

  // Takes and handles Readys while the core has one, at most `max_readys` of them,
  // and not while a snapshot is being installed or after a failure. Returns how many.
  int Drain(int max_readys);
  // Handles one Ready the caller took from the core (Drain does this).
  void Handle(Ready ready);

  // The write `sequence` (the oldest in flight) finished. Returns the position
  // reported to Raft::OnPersisted, if the write had entries or a snapshot.
  std::optional<std::pair<Index, Term>> OnWritten(uint64_t sequence, const absl::Status& status);
  // The snapshot handed to Runtime::InstallSnapshot is installed (or not).
  void OnSnapshotInstalled(const absl::Status& status);

  bool failed() const { return failed_; }
  bool installing_snapshot() const { return installing_.has_value(); }
  size_t writes_in_flight() const { return in_flight_.size(); }
  // Messages held until the writes in flight are durable.
  size_t held_messages() const;

 private:
  struct InFlightWrite {
    uint64_t sequence = 0;
    std::optional<std::pair<Index, Term>> position;
    std::vector<pb::Message> messages_after_persist;
    absl::Time submitted;
  };

  // Steps 4 and 5 of the file comment.
  void PersistAndApply(Ready ready);
  void Stop(absl::Status status);

  Raft* const raft_;
  Runtime* const runtime_;
  const PipelineOptions options_;
  bool failed_ = false;
  // The Ready waiting for its snapshot to be installed.
  std::optional<Ready> installing_;
  uint64_t next_sequence_ = 1;
  std::deque<InFlightWrite> in_flight_;
  // The last hard state submitted: the next one needs a sync unless only its commit
  // index differs.
  std::optional<pb::HardState> last_hard_state_;
};

}  // namespace stead::raft

#endif  // STEAD_RAFT_READY_PIPELINE_H_
