// The WAL writer (group commit, truncation, compaction) and the LogStorage reads.
// Open and recovery live in wal_recovery.cc.
#include "storage/wal.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/check.h"
#include "base/status_macros.h"
#include "storage/segment.h"
#include "storage/wal_internal.h"
#include "storage/wal_record.h"

namespace stead::storage {
namespace {

std::string Serialize(const google::protobuf::MessageLite& message) {
  std::string out;
  STEAD_CHECK(message.SerializeToString(&out));
  return out;
}

// The status every write gets once the WAL has failed.
absl::Status RefusedStatus(const absl::Status& failure) {
  return absl::Status(failure.code(),
                      absl::StrCat("wal refuses writes after an earlier failure; reopen it "
                                   "(recovery reads what reached the disk): ",
                                   failure.message()));
}

}  // namespace

// The log as it will be once the group being built is durable. Durable entries
// (base, kept_last] stay where they are; `appended` holds the entries kept_last+1 ...
// written by this group. Built by the writer thread only.
struct Wal::Plan {
  struct NewEntry {
    pb::Entry entry;
    Position position;
  };
  raft::Index durable_base = 0;  // snapshot index of the durable log
  raft::Index base = 0;
  raft::Term base_term = 0;
  raft::Index kept_last = 0;
  std::deque<NewEntry> appended;
  pb::SnapshotMetadata snapshot;
  bool snapshot_changed = false;
  pb::HardState hard_state;
  bool hard_state_changed = false;
  uint64_t entry_count = 0;

  raft::Index last() const { return appended.empty() ? kept_last : appended.back().entry.index(); }
};

// The callbacks of one group, each with the status it completes with.
struct Wal::Completion {
  std::vector<Callback> callbacks;
  std::vector<absl::Status> statuses;
};

Wal::Wal(WalOptions options) : options_(std::move(options)) {
  completer_ = std::thread([this] { CompletionLoop(); });
}

Wal::~Wal() {
  {
    MutexLock lock(&mu_);
    stopping_ = true;
  }
  queue_cv_.SignalAll();
  if (writer_.joinable()) writer_.join();
  // The writer has queued its last group: stop the completion thread once it has run it.
  {
    MutexLock lock(&completion_mu_);
    completion_stopping_ = true;
  }
  completion_cv_.SignalAll();
  completer_.join();
}

void Wal::Submit(WalWrite write, Callback done) {
  STEAD_CHECK(done != nullptr);
  Pending pending{std::move(write), std::move(done), absl::OkStatus(), 0};
  const std::vector<pb::Entry>& entries = pending.write.entries;
  for (size_t i = 0; i < entries.size() && pending.rejected.ok(); ++i) {
    const pb::Entry& entry = entries[i];
    const uint64_t entry_bytes = entry.ByteSizeLong();
    pending.bytes += entry_bytes;
    if (entry_bytes > options_.max_entry_bytes) {
      pending.rejected = absl::InvalidArgumentError(
          absl::StrCat("entry index ", entry.index(), " is ", entry_bytes,
                       " bytes, over the limit max_entry_bytes=", options_.max_entry_bytes));
    } else if (entry.index() == 0 || entry.term() == 0) {
      pending.rejected = absl::InvalidArgumentError(absl::StrCat(
          "entry with index ", entry.index(), " and term ", entry.term(), ": both must be > 0"));
    } else if (i > 0 && (entry.index() != entries[i - 1].index() + 1 ||
                         entry.term() < entries[i - 1].term())) {
      pending.rejected = absl::InvalidArgumentError(absl::StrCat(
          "entries are not consecutive with non-decreasing terms: index ", entry.index(), " term ",
          entry.term(), " after index ", entries[i - 1].index(), " term ", entries[i - 1].term()));
    }
  }
  if (pending.rejected.ok() && pending.bytes > options_.max_write_bytes) {
    pending.rejected = absl::InvalidArgumentError(
        absl::StrCat("write of ", entries.size(), " entries is ", pending.bytes,
                     " bytes, over the limit max_write_bytes=", options_.max_write_bytes));
  }
  {
    MutexLock lock(&mu_);
    STEAD_CHECK(!stopping_) << "Submit on a WAL being destroyed";
    if (pending.rejected.ok() && pending_bytes_ + pending.bytes > options_.max_pending_bytes) {
      pending.rejected = absl::ResourceExhaustedError(absl::StrCat(
          "wal has ", pending_bytes_,
          " bytes queued, limit max_pending_bytes=", options_.max_pending_bytes, "; back off"));
    }
    if (!pending.rejected.ok()) pending.bytes = 0;
    pending_bytes_ += pending.bytes;
    queue_.push_back(std::move(pending));
  }
  queue_cv_.Signal();
}

absl::Status Wal::Write(WalWrite write) {
  STEAD_CHECK(std::this_thread::get_id() != writer_.get_id() &&
              std::this_thread::get_id() != completer_.get_id())
      << "Wal::Write called from a WAL callback would wait for itself";
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  absl::Status result;
  Submit(std::move(write), [&](absl::Status status) {
    std::lock_guard<std::mutex> lock(mu);
    result = std::move(status);
    done = true;
    cv.notify_one();
  });
  std::unique_lock<std::mutex> lock(mu);
  cv.wait(lock, [&] { return done; });
  return result;
}

absl::Status Wal::Compact(const pb::SnapshotMetadata& snapshot) {
  WalWrite write;
  write.snapshot = snapshot;
  return Write(std::move(write));
}

void Wal::WriterLoop() {
  while (true) {
    std::vector<Pending> group;
    {
      MutexLock lock(&mu_);
      while (!stopping_ && queue_.empty()) queue_cv_.Wait(&mu_);
      if (queue_.empty()) return;  // stopping, and everything submitted is done
      uint64_t group_bytes = 0;
      while (!queue_.empty() &&
             (group.empty() || group_bytes + queue_.front().bytes <= options_.max_group_bytes)) {
        group_bytes += queue_.front().bytes;
        pending_bytes_ -= queue_.front().bytes;
        group.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    ProcessGroup(group);
  }
}

void Wal::Complete(std::vector<Pending>& group, const std::vector<absl::Status>& results,
                   const absl::Status* all) {
  Completion completion;
  completion.callbacks.reserve(group.size());
  completion.statuses.reserve(group.size());
  for (size_t i = 0; i < group.size(); ++i) {
    const absl::Status& status =
        !group[i].rejected.ok() ? group[i].rejected : (all != nullptr ? *all : results[i]);
    completion.callbacks.push_back(std::move(group[i].done));
    // Each callback gets a status of its own rather than a reference-counted copy:
    // Debian's abseil is not built for TSan, which then cannot see the count's
    // synchronisation when callers move the status to other threads.
    completion.statuses.emplace_back(status.code(), status.message());
  }
  bool run_here;
  {
    MutexLock lock(&completion_mu_);
    // Running the callbacks here delays the next group by their time. That pays off
    // while it is shorter than a sync: the writes they prompt (a closed loop of
    // submitters) join that group instead of waiting for a whole further sync. When it
    // is longer (many submitters to wake on a fast disk), the completion thread runs
    // them while the writer syncs the writes already queued.
    run_here = completions_.empty() && !completer_running_ &&
               callback_estimate_ * static_cast<int64_t>(group.size()) <= sync_estimate_;
    if (!run_here) completions_.push_back(std::move(completion));
  }
  if (run_here) {
    RunCallbacks(completion);
  } else {
    completion_cv_.Signal();
  }
}

void Wal::RunCallbacks(Completion& completion) {
  if (completion.callbacks.empty()) return;
  const auto start = std::chrono::steady_clock::now();
  for (size_t i = 0; i < completion.callbacks.size(); ++i) {
    completion.callbacks[i](std::move(completion.statuses[i]));
  }
  const std::chrono::nanoseconds each =
      (std::chrono::steady_clock::now() - start) /
      static_cast<int64_t>(completion.callbacks.size());
  MutexLock lock(&completion_mu_);
  callback_estimate_ = (3 * callback_estimate_ + each) / 4;
}

void Wal::CompletionLoop() {
  while (true) {
    std::deque<Completion> ready;
    {
      MutexLock lock(&completion_mu_);
      completer_running_ = false;
      while (!completion_stopping_ && completions_.empty()) completion_cv_.Wait(&completion_mu_);
      if (completions_.empty()) return;  // stopping, and every callback has run
      ready.swap(completions_);
      completer_running_ = true;
    }
    // Groups were queued in submission order and run here one at a time, so callbacks
    // keep that order.
    for (Completion& completion : ready) RunCallbacks(completion);
  }
}

void Wal::ProcessGroup(std::vector<Pending>& group) {
  std::vector<absl::Status> results(group.size());
  const auto complete = [this, &group, &results](const absl::Status* all) {
    Complete(group, results, all);
  };
  if (absl::Status failure = health(); !failure.ok()) {
    const absl::Status refused = RefusedStatus(failure);
    complete(&refused);
    return;
  }
  std::shared_ptr<Segment> active;
  {
    MutexLock lock(&mu_);
    active = segments_.back();
  }
  if (active_bytes_ >= options_.segment_bytes) {
    // Only the last segment may end torn: sync what an unsynced group left in this one.
    absl::Status rolled = active_unsynced_ ? active->file->DataSync() : absl::OkStatus();
    if (!rolled.ok()) {
      EnterFailedState(rolled);
      complete(&rolled);
      return;
    }
    active_unsynced_ = false;
    rolled = CreateSegment(active->sequence + 1, LastIndex() + 1);
    if (!rolled.ok()) {
      complete(&rolled);
      return;
    }
    MutexLock lock(&mu_);
    active = segments_.back();
  }

  Plan plan = StartPlan();
  std::string buffer;
  for (size_t i = 0; i < group.size(); ++i) {
    if (group[i].rejected.ok()) results[i] = PlanWrite(group[i].write, plan, buffer, active_bytes_);
  }
  if (plan.hard_state_changed) {
    // Only the last hard state of the group matters: all of it becomes durable at once.
    AppendRecord(RecordType::kHardState, Serialize(plan.hard_state), &buffer);
  }

  const bool sync = std::any_of(group.begin(), group.end(),
                                [](const Pending& pending) { return pending.write.sync; });
  if (!buffer.empty()) {
    absl::Status written = active->file->WriteAt(active_bytes_, buffer);
    if (!written.ok()) {
      if (written.code() == absl::StatusCode::kResourceExhausted) {
        // Nothing was synced, so cutting the partial group off leaves the file as it was
        // after the last durable group: later writes can go on once space is freed.
        absl::Status cut = active->file->Truncate(active_bytes_);
        if (!cut.ok()) EnterFailedState(cut);
        written = Annotate(written, "wal append failed, nothing of this group was persisted");
      } else {
        EnterFailedState(written);
      }
      complete(&written);
      return;
    }
    if (sync) {
      const auto sync_start = std::chrono::steady_clock::now();
      absl::Status synced = active->file->DataSync();
      const std::chrono::nanoseconds sync_time = std::chrono::steady_clock::now() - sync_start;
      sync_estimate_ = (3 * sync_estimate_ + sync_time) / 4;
      if (!synced.ok()) {
        EnterFailedState(synced);
        complete(&synced);
        return;
      }
    }
    active_unsynced_ = !sync;
  }
  ApplyPlan(plan);
  active_bytes_ += buffer.size();
  {
    MutexLock lock(&mu_);
    stats_.groups += !buffer.empty() && sync ? 1 : 0;
    stats_.unsynced_groups += !buffer.empty() && !sync ? 1 : 0;
    stats_.bytes += buffer.size();
    stats_.entries += plan.entry_count;
    for (const absl::Status& status : results) stats_.writes += status.ok() ? 1 : 0;
  }
  // Before the callbacks, so that a Compact() that returns has deleted what it could.
  // A failure here fails later writes, not this group: its records are durable.
  if (plan.snapshot_changed) DeleteObsoleteSegments();
  complete(nullptr);
}

raft::Term Wal::PlannedTermAt(const Plan& plan, raft::Index index) const {
  STEAD_CHECK_GE(index, plan.base);
  STEAD_CHECK_LE(index, plan.last());
  if (index == plan.base) return plan.base_term;
  if (index <= plan.kept_last) return positions_[index - plan.durable_base - 1].term;
  return plan.appended[index - plan.kept_last - 1].entry.term();
}

Wal::Plan Wal::StartPlan() const {
  MutexLock lock(&mu_);
  Plan plan;
  plan.durable_base = snapshot_.index();
  plan.base = snapshot_.index();
  plan.base_term = snapshot_.term();
  plan.kept_last = snapshot_.index() + positions_.size();
  plan.snapshot = snapshot_;
  plan.hard_state = hard_state_;
  return plan;
}

absl::Status Wal::ValidateWrite(const WalWrite& write, const Plan& plan, bool new_snapshot,
                                bool snapshot_matches) const {
  if (write.hard_state.has_value() && write.hard_state->term() < plan.hard_state.term()) {
    return absl::InvalidArgumentError(absl::StrCat("hard state term ", write.hard_state->term(),
                                                   " is below the persisted term ",
                                                   plan.hard_state.term()));
  }
  if (write.entries.empty()) return absl::OkStatus();
  // The log the entries go into: after the snapshot of this write, if any.
  const raft::Index base = new_snapshot ? write.snapshot->index() : plan.base;
  const raft::Index last = new_snapshot && !snapshot_matches ? base : std::max(plan.last(), base);
  const pb::Entry& first = write.entries.front();
  if (first.index() <= base || first.index() > last + 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("entries start at index ", first.index(), " but the log holds (", base, ", ",
                     last, "]: must start in [", base + 1, ", ", last + 1, "]"));
  }
  const raft::Index previous = first.index() - 1;
  const raft::Term previous_term =
      new_snapshot && previous == base ? write.snapshot->term() : PlannedTermAt(plan, previous);
  if (first.term() < previous_term) {
    return absl::InvalidArgumentError(absl::StrCat("entry index ", first.index(), " has term ",
                                                   first.term(), ", below the term ", previous_term,
                                                   " of the entry before it"));
  }
  return absl::OkStatus();
}

absl::Status Wal::PlanWrite(WalWrite& write, Plan& plan, std::string& buffer,
                            uint64_t buffer_offset) const {
  const bool new_snapshot = write.snapshot.has_value() && write.snapshot->index() > plan.base;
  const bool snapshot_matches =
      new_snapshot && write.snapshot->index() <= plan.last() &&
      PlannedTermAt(plan, write.snapshot->index()) == write.snapshot->term();
  // Validate everything before changing the plan, so a refused write leaves no trace.
  STEAD_RETURN_IF_ERROR(ValidateWrite(write, plan, new_snapshot, snapshot_matches));

  if (new_snapshot) {
    const raft::Index index = write.snapshot->index();
    plan.base = index;
    plan.base_term = write.snapshot->term();
    if (snapshot_matches) {
      while (!plan.appended.empty() && plan.appended.front().entry.index() <= index) {
        plan.appended.pop_front();
      }
      plan.kept_last = std::max(plan.kept_last, index);
    } else {
      plan.appended.clear();
      plan.kept_last = index;
    }
    plan.snapshot = *write.snapshot;
    plan.snapshot_changed = true;
    AppendRecord(RecordType::kSnapshot, EncodeSnapshotMarker({*write.snapshot, !snapshot_matches}),
                 &buffer);
  }
  if (!write.entries.empty()) {
    const raft::Index first_index = write.entries.front().index();
    if (first_index <= plan.kept_last) {
      plan.kept_last = first_index - 1;
      plan.appended.clear();
    } else {
      plan.appended.resize(first_index - plan.kept_last - 1);
    }
    std::string payload;
    for (pb::Entry& entry : write.entries) {
      const uint64_t offset = buffer_offset + buffer.size();
      payload.clear();
      STEAD_CHECK(entry.AppendToString(&payload));
      AppendRecord(RecordType::kEntry, payload, &buffer);
      const uint64_t bytes = buffer_offset + buffer.size() - offset;
      const raft::Term term = entry.term();
      plan.appended.push_back({std::move(entry), Position{term, 0, offset, bytes}});
      ++plan.entry_count;
    }
  }
  if (write.hard_state.has_value()) {
    plan.hard_state = *write.hard_state;
    plan.hard_state_changed = true;
  }
  return absl::OkStatus();
}

void Wal::ApplyPlan(Plan& plan) {
  MutexLock lock(&mu_);
  const uint64_t active_sequence = segments_.back()->sequence;
  const raft::Index durable_last = snapshot_.index() + positions_.size();
  // Drop replaced entries, then compacted ones, then add the new ones.
  if (plan.kept_last < durable_last) {
    const raft::Index keep = std::max(plan.kept_last, snapshot_.index());
    positions_.resize(keep - snapshot_.index());
    while (!cache_.empty() && cache_.back().index() > keep) {
      cache_bytes_ -= cache_.back().ByteSizeLong();
      cache_.pop_back();
    }
  }
  if (plan.snapshot_changed) {
    raft::Index first_kept = snapshot_.index() + 1;
    while (!positions_.empty() && first_kept <= plan.base) {
      positions_.pop_front();
      ++first_kept;
    }
    while (!cache_.empty() && cache_.front().index() <= plan.base) {
      cache_bytes_ -= cache_.front().ByteSizeLong();
      cache_.pop_front();
    }
    // When everything durable was discarded or compacted, the log now restarts after
    // the snapshot (possibly beyond durable_last when a newer snapshot was installed).
    snapshot_ = plan.snapshot;
  }
  for (Plan::NewEntry& added : plan.appended) {
    added.position.sequence = active_sequence;
    positions_.push_back(added.position);
    STEAD_CHECK_EQ(snapshot_.index() + positions_.size(), added.entry.index());
    cache_bytes_ += added.position.bytes - kRecordHeaderBytes;
    cache_.push_back(std::move(added.entry));
  }
  while (cache_bytes_ > options_.cache_bytes && !cache_.empty()) {
    cache_bytes_ -= cache_.front().ByteSizeLong();
    cache_.pop_front();
  }
  if (plan.hard_state_changed) {
    STEAD_CHECK_GE(plan.hard_state.term(), hard_state_.term());
    hard_state_ = plan.hard_state;
  }
  STEAD_CHECK(cache_.empty() || cache_.back().index() == snapshot_.index() + positions_.size());
}

void Wal::EnterFailedState(const absl::Status& status) {
  STEAD_LOG(options_.logger, Error)
      << "wal dir=" << options_.dir << " entered the failed state and refuses writes until "
      << "reopened (no sync is ever retried): " << status.ToString();
  MutexLock lock(&mu_);
  if (failed_.ok()) failed_ = status;
}

absl::Status Wal::CreateSegment(uint64_t sequence, raft::Index first_index) {
  const std::string name = SegmentFileName(sequence, first_index);
  const std::string path = JoinPath(options_.dir, name);
  STEAD_ASSIGN_OR_RETURN(std::unique_ptr<File> created,
                         File::CreateNew(path, options_.fault_injector));
  std::shared_ptr<File> file = std::move(created);
  // Removes a segment that never became part of the log; its failure only leaves a
  // file that recovery recognises as a torn last segment.
  const auto discard = [&] {
    file.reset();
    RemoveFile(path).IgnoreError();       // best effort, see above
    SyncDir(options_.dir).IgnoreError();  // best effort, see above
  };
  if (absl::Status status = file->Preallocate(options_.segment_bytes); !status.ok()) {
    discard();
    if (!absl::IsResourceExhausted(status)) return status;
    // Most likely a volume smaller than a segment (the first one fails at the first
    // start): say how large it must be.
    const uint64_t segment_mib = options_.segment_bytes >> 20;
    return absl::ResourceExhaustedError(absl::StrCat(
        status.message(), ": each WAL segment preallocates ", segment_mib,
        " MiB and the log moves to a new one before it drops the old, so the WAL volume "
        "needs at least ", 2 * segment_mib, " MiB free; grow it (docs/resize-volumes.md)"));
  }
  std::string buffer;
  SegmentHeader header;
  header.sequence = sequence;
  header.first_index = first_index;
  header.identity = identity_;
  AppendRecord(RecordType::kSegmentHeader, EncodeSegmentHeader(header), &buffer);
  pb::HardState hard_state;
  pb::SnapshotMetadata snapshot;
  {
    MutexLock lock(&mu_);
    hard_state = hard_state_;
    snapshot = snapshot_;
  }
  // Copies of the current hard state and snapshot marker, so that this segment alone
  // carries them once older segments are deleted.
  if (hard_state.ByteSizeLong() > 0) {
    AppendRecord(RecordType::kHardState, Serialize(hard_state), &buffer);
  }
  if (snapshot.index() > 0) {
    AppendRecord(RecordType::kSnapshot, EncodeSnapshotMarker({snapshot, false}), &buffer);
  }
  if (absl::Status status = file->WriteAt(0, buffer); !status.ok()) {
    if (status.code() != absl::StatusCode::kResourceExhausted) EnterFailedState(status);
    discard();
    return status;
  }
  if (absl::Status status = file->DataSync(); !status.ok()) {
    EnterFailedState(status);
    discard();
    return status;
  }
  if (absl::Status status = SyncDir(options_.dir, options_.fault_injector); !status.ok()) {
    EnterFailedState(status);
    return status;
  }
  auto segment = std::make_shared<Segment>();
  segment->sequence = sequence;
  segment->first_index = first_index;
  segment->name = name;
  segment->file = std::move(file);
  MutexLock lock(&mu_);
  STEAD_CHECK(segments_.empty() || segments_.back()->sequence + 1 == sequence);
  segments_.push_back(std::move(segment));
  active_bytes_ = buffer.size();
  ++stats_.segments_created;
  return absl::OkStatus();
}

void Wal::DeleteObsoleteSegments() {
  std::vector<std::shared_ptr<Segment>> obsolete;
  {
    MutexLock lock(&mu_);
    // Every entry still in the log is in this segment or a later one; older segments
    // hold only compacted or replaced entries, and their hard state and snapshot marker
    // were copied into every later segment when it was created.
    const uint64_t keep_from =
        positions_.empty() ? segments_.back()->sequence : positions_.front().sequence;
    while (segments_.size() > 1 && segments_.front()->sequence < keep_from) {
      obsolete.push_back(segments_.front());
      segments_.pop_front();
    }
  }
  if (obsolete.empty()) return;
  // Oldest first: a crash part-way leaves a suffix of the sequence, which recovery
  // accepts, never a gap.
  for (const std::shared_ptr<Segment>& segment : obsolete) {
    if (absl::Status status = RemoveFile(JoinPath(options_.dir, segment->name)); !status.ok()) {
      EnterFailedState(status);
      return;
    }
  }
  if (absl::Status status = SyncDir(options_.dir, options_.fault_injector); !status.ok()) {
    EnterFailedState(status);
    return;
  }
  MutexLock lock(&mu_);
  stats_.segments_deleted += obsolete.size();
}

absl::Status Wal::health() const {
  MutexLock lock(&mu_);
  return failed_;
}

WalStats Wal::stats() const {
  MutexLock lock(&mu_);
  return stats_;
}

std::vector<std::string> Wal::SegmentNames() const {
  MutexLock lock(&mu_);
  std::vector<std::string> names;
  for (const std::shared_ptr<Segment>& segment : segments_) names.push_back(segment->name);
  return names;
}

raft::PersistedState Wal::InitialState() const {
  MutexLock lock(&mu_);
  return raft::PersistedState{hard_state_, snapshot_};
}

raft::Index Wal::FirstIndex() const {
  MutexLock lock(&mu_);
  return snapshot_.index() + 1;
}

raft::Index Wal::LastIndex() const {
  MutexLock lock(&mu_);
  return snapshot_.index() + positions_.size();
}

pb::SnapshotMetadata Wal::LatestSnapshot() const {
  MutexLock lock(&mu_);
  return snapshot_;
}

absl::StatusOr<raft::Term> Wal::TermAt(raft::Index index) const {
  MutexLock lock(&mu_);
  const raft::Index last = snapshot_.index() + positions_.size();
  if (index < snapshot_.index() || index > last) {
    return absl::OutOfRangeError(absl::StrCat("term of index ", index,
                                              " requested; the log holds [", snapshot_.index(),
                                              ", ", last, "]"));
  }
  if (index == snapshot_.index()) return snapshot_.term();
  return positions_[index - snapshot_.index() - 1].term;
}

absl::Status Wal::DecodeEntryRecord(const Segment& segment, const Position& position,
                                    raft::Index index, absl::string_view record, pb::Entry* entry) {
  const auto corrupt = [&](absl::string_view why) {
    return absl::DataLossError(absl::StrCat("wal segment ", segment.name,
                                            ": corrupt record at offset ", position.offset,
                                            " (entry ", index, "): ", why));
  };
  const ParsedRecord parsed = ParseRecord(record);
  if (parsed.result != ParsedRecord::Result::kOk || parsed.type != RecordType::kEntry ||
      parsed.claimed_bytes != record.size()) {
    return corrupt(parsed.error.empty() ? "not a whole entry record" : parsed.error);
  }
  if (!entry->ParseFromArray(parsed.payload.data(), static_cast<int>(parsed.payload.size()))) {
    return corrupt("entry does not parse");
  }
  if (entry->index() != index || entry->term() != position.term) {
    return corrupt(absl::StrCat("holds index ", entry->index(), " term ", entry->term(),
                                ", expected term ", position.term));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<pb::Entry>> Wal::Entries(raft::Index low, raft::Index high,
                                                    uint64_t max_bytes) const {
  struct DiskRead {
    std::shared_ptr<Segment> segment;
    Position position;
    raft::Index index;
  };
  std::vector<DiskRead> disk;
  std::vector<pb::Entry> result;
  {
    MutexLock lock(&mu_);
    const raft::Index first = snapshot_.index() + 1;
    const raft::Index last = snapshot_.index() + positions_.size();
    if (low < first || high > last + 1 || low > high) {
      return absl::OutOfRangeError(absl::StrCat(
          "entries [", low, ", ", high, ") requested; the log holds [", first, ", ", last, "]"));
    }
    const raft::Index cache_first = cache_.empty() ? last + 1 : cache_.front().index();
    const uint64_t first_sequence = segments_.front()->sequence;
    uint64_t total_bytes = 0;
    for (raft::Index index = low; index < high; ++index) {
      const Position& position = positions_[index - first];
      const uint64_t entry_bytes = position.bytes - kRecordHeaderBytes;
      if (index > low && total_bytes + entry_bytes > max_bytes) break;
      total_bytes += entry_bytes;
      if (index >= cache_first) {
        result.push_back(cache_[index - cache_first]);
      } else {
        STEAD_CHECK_GE(position.sequence, first_sequence);
        disk.push_back({segments_[position.sequence - first_sequence], position, index});
      }
    }
  }
  // Disk entries all precede the cached ones; read them outside the lock (the records
  // are immutable once written, and the shared_ptr keeps a deleted segment readable).
  std::vector<pb::Entry> from_disk(disk.size());
  std::string run_bytes;
  for (size_t begin = 0; begin < disk.size();) {
    // One read for each run of records that lie back to back in one segment.
    size_t end = begin + 1;
    while (end < disk.size() && disk[end].segment == disk[begin].segment &&
           disk[end].position.offset ==
               disk[end - 1].position.offset + disk[end - 1].position.bytes) {
      ++end;
    }
    const Segment& segment = *disk[begin].segment;
    const uint64_t run_offset = disk[begin].position.offset;
    const uint64_t run_size =
        disk[end - 1].position.offset + disk[end - 1].position.bytes - run_offset;
    if (absl::Status read = segment.file->ReadAt(run_offset, run_size, &run_bytes); !read.ok()) {
      // A segment shorter than its durable records is data loss; other errors (EIO) keep
      // their code.
      return read.code() == absl::StatusCode::kOutOfRange
                 ? absl::DataLossError(absl::StrCat("wal segment ", segment.name,
                                                    " lost durable records: ", read.message()))
                 : Annotate(read, absl::StrCat("wal segment ", segment.name));
    }
    for (size_t i = begin; i < end; ++i) {
      const Position& position = disk[i].position;
      const absl::string_view record =
          absl::string_view(run_bytes).substr(position.offset - run_offset, position.bytes);
      STEAD_RETURN_IF_ERROR(
          DecodeEntryRecord(segment, position, disk[i].index, record, &from_disk[i]));
    }
    begin = end;
  }
  if (from_disk.empty()) return result;
  from_disk.insert(from_disk.end(), std::make_move_iterator(result.begin()),
                   std::make_move_iterator(result.end()));
  return from_disk;
}

}  // namespace stead::storage
