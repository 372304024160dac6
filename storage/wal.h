// The Raft log on the WAL volume (`--wal-dir`): a segmented, append-only,
// group-committed write-ahead log that also holds the hard state and snapshot markers.
//
// Files: `LOCK` (flock, one process per directory) and segments
// "<sequence>-<first index>.wal" (segment.h) of records (wal_record.h). Each segment
// starts with a header, then a copy of the current hard state and snapshot marker, so
// that deleting older segments never loses them.
//
// Truncation is logical: an entry whose index is <= the last index replaces that entry
// and everything after it, on disk by appending it (recovery replays the replacement
// the same way) and in memory once durable. Written bytes are therefore never modified,
// which lets readers read records while the writer appends. Segments are deleted when
// a snapshot marker makes every entry in them obsolete (oldest first, then the
// directory is fsynced); recovery then starts from the first remaining segment and
// requires a replayed snapshot marker to cover everything before it.
//
// Segments are preallocated with FALLOC_FL_KEEP_SIZE: blocks are reserved, but the file
// size still ends at the last record, so the end of the data is the end of the file and
// a power loss can only cut it back (zero-filled space is handled as well).
//
// Recovery (Open): a damaged record in the last segment followed only by zero or absent
// bytes is a torn tail from a crash mid-append, which was never acknowledged: it is cut
// off. Any other damage, a missing segment or an index gap is DataLoss naming the file
// and offset; nothing is skipped.
//
// Durability: a single writer thread takes every queued write, appends their records,
// issues ONE fdatasync for the group and only then makes the new entries visible and
// runs the callbacks in submission order. Hard state is therefore durable before the
// callback that lets the runtime send the votes and acknowledgements it backs.
//
// Who runs the callbacks: the writer itself when that is expected to take no longer
// than a sync (so that writes submitted from the callbacks join the next group), else a
// completion thread, while the writer already writes and syncs the next group. With
// many concurrent submitters on a fast disk, waking them one by one takes longer than
// the sync, and overlapping the two is what lets group commit keep up with the disk.
//
// Failure model (fsyncgate): after a failed fdatasync the kernel may have dropped the
// dirty pages, so the WAL never retries: it completes the group with the error and
// enters a failed state in which every later write fails until the WAL is reopened
// (recovery then reads what actually reached the disk). A write that fails with ENOSPC
// before any sync is different: the partial group is cut off the file, the group fails
// with ResourceExhausted, nothing acknowledged is lost, and later writes work again once
// space has been freed, without a reopen.
#ifndef STEAD_STORAGE_WAL_H_
#define STEAD_STORAGE_WAL_H_

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "base/log.h"
#include "base/mutex.h"
#include "proto/raft.pb.h"
#include "raft/log_storage.h"
#include "raft/types.h"
#include "storage/file.h"
#include "storage/limits.h"
#include "storage/segment.h"

namespace stead::storage {

// The default WalOptions::max_entry_bytes.
inline constexpr uint64_t kDefaultMaxWalEntryBytes = uint64_t{4} << 20;
static_assert(kDefaultMaxEntryBytes + 1024 <= kDefaultMaxWalEntryBytes);

struct WalOptions {
  // Directory of the log (`--wal-dir`); created (one level) when missing.
  std::string dir;
  // Identity written into every segment header (e.g. "cluster=<id> node=<id>"). When
  // set and the directory holds segments with another identity, Open fails with
  // FailedPrecondition. Empty accepts any existing log. At most 256 bytes.
  // Default: "".
  std::string identity;
  // A segment is closed and a new one started once it holds this many bytes (a group is
  // never split, so a segment may exceed it by one group). Space is preallocated, and a
  // new segment is made before old ones are dropped: the volume needs room for two (an
  // Open that cannot preallocate one says so, ResourceExhausted). 64 KiB .. 1 GiB.
  // Default: 64 MiB.
  uint64_t segment_bytes = uint64_t{64} << 20;
  // Largest serialized pb::Entry accepted; larger ones fail with InvalidArgument. The
  // default leaves room for a command of kDefaultMaxEntryBytes (a maximal client
  // request and its proposal envelope) with the entry's own fields. Default: 4 MiB.
  uint64_t max_entry_bytes = kDefaultMaxWalEntryBytes;
  // Largest total of serialized entries in one WalWrite; InvalidArgument above it.
  // At most 1 GiB. Default: 64 MiB.
  uint64_t max_write_bytes = uint64_t{64} << 20;
  // The writer stops adding writes to a group once it holds this many bytes (a single
  // larger write still forms a group of its own). Default: 16 MiB.
  uint64_t max_group_bytes = uint64_t{16} << 20;
  // Bytes submitted but not yet written; a Submit beyond it fails with
  // ResourceExhausted (back off). Default: 256 MiB.
  uint64_t max_pending_bytes = uint64_t{256} << 20;
  // Recently appended entries kept in memory for Entries() (serialized bytes).
  // Default: 8 MiB.
  uint64_t cache_bytes = uint64_t{8} << 20;
  // Where the WAL logs recovery and failures. Default: stderr at info.
  Logger logger;
  // Test seam: injects errors into writes, syncs and preallocation. Must outlive the
  // WAL. Default: none.
  FileFaultInjector* fault_injector = nullptr;
};

// One unit of work for the writer: what a Raft Ready asks to persist. Applied in the
// order snapshot, entries, hard state.
struct WalWrite {
  // Install or compact to this snapshot: the log then starts after `snapshot->index`.
  // If the log holds that index with the same term, later entries are kept (Raft §7);
  // otherwise the whole log is discarded. A snapshot at or below the current one is
  // ignored.
  std::optional<pb::SnapshotMetadata> snapshot;
  // Consecutive entries. The first index may be <= LastIndex() (but > the snapshot
  // index): that entry and every later one are replaced. A first index above
  // LastIndex() + 1 (a gap) is InvalidArgument.
  std::vector<pb::Entry> entries;
  // The hard state to persist; its term must not be below the persisted one.
  std::optional<pb::HardState> hard_state;
  // false: this write needs no fdatasync of its own. For a hard state that only moves
  // the commit index, which Raft can learn again from the leader: it is written in
  // order and becomes durable with the next synced group (a crash may lose it, never
  // tear the log). A group syncs if any of its writes asks to.
  bool sync = true;
};

struct WalStats {
  uint64_t groups = 0;   // groups written with an fdatasync (plus segment rolls)
  uint64_t unsynced_groups = 0;  // groups of writes that asked for no sync (WalWrite::sync)
  uint64_t writes = 0;   // WalWrites completed successfully
  uint64_t entries = 0;  // entries appended
  uint64_t bytes = 0;    // record bytes written
  uint64_t segments_created = 0;
  uint64_t segments_deleted = 0;
};

// Thread-safety: all methods are thread-safe. The LogStorage reads never block on disk
// syncs (they may read segment files). Callbacks run on the writer or the completion
// thread, one at a time, in submission order; they must be short (post to another
// executor: the next sync or callbacks wait for them) and must not call Write() or
// Compact() (which would wait for a callback queued behind the running one). They may
// call Submit().
class Wal final : public raft::LogStorage {
 public:
  using Callback = std::function<void(absl::Status)>;

  // Opens the log in options.dir, recovering it: replays every segment, cuts a torn
  // tail back to the last whole record, and starts the writer thread.
  // Errors: InvalidArgument (bad options), FailedPrecondition (another process holds
  // the directory, or another identity's log), DataLoss (corruption that is not a torn
  // tail, a missing segment or index gap; the message names the file and offset),
  // Internal/ResourceExhausted/PermissionDenied for I/O failures.
  static absl::StatusOr<std::unique_ptr<Wal>> Open(WalOptions options);

  // Writes everything already submitted and runs its callbacks, then stops the writer
  // and completion threads.
  ~Wal() override;

  Wal(const Wal&) = delete;
  Wal& operator=(const Wal&) = delete;

  // Queues `write`; `done` runs exactly once (see "Callbacks" above) after the write is
  // durable (OK) or has failed: InvalidArgument (limits, index gap, term going back),
  // ResourceExhausted (disk full or too much pending; nothing of this write was
  // persisted), or the I/O error that put the WAL in its failed state (the write may or
  // may not be on disk; it was never reported durable).
  void Submit(WalWrite write, Callback done);
  // Submit and wait. Must not be called from a callback.
  absl::Status Write(WalWrite write);
  // Records a snapshot marker for `snapshot` (a checkpoint of the state machine taken
  // through snapshot.index) and deletes the segments wholly below it. Waits.
  absl::Status Compact(const pb::SnapshotMetadata& snapshot);

  // OK while healthy; the error that put the WAL in its failed state otherwise.
  absl::Status health() const;
  WalStats stats() const;
  // Names of the segment files, oldest first.
  std::vector<std::string> SegmentNames() const;

  // raft::LogStorage. Reads return what is durable: a write becomes visible when its
  // group has been synced.
  raft::PersistedState InitialState() const override;
  raft::Index FirstIndex() const override;
  raft::Index LastIndex() const override;
  absl::StatusOr<raft::Term> TermAt(raft::Index index) const override;
  absl::StatusOr<std::vector<pb::Entry>> Entries(raft::Index low, raft::Index high,
                                                 uint64_t max_bytes) const override;
  pb::SnapshotMetadata LatestSnapshot() const override;

 private:
  struct Segment;
  struct Position;
  struct Pending;
  struct Plan;
  struct Completion;
  class Recovery;

  explicit Wal(WalOptions options);

  // Recover, CutTornTail and the Recovery class run inside Open, before the writer
  // thread exists or the Wal is returned: no other thread can touch the state yet.
  absl::Status Recover() ABSL_NO_THREAD_SAFETY_ANALYSIS;
  // Cuts the torn tail `scan` found in found.back(), deleting the segment when not even
  // its header is whole.
  absl::Status CutTornTail(std::vector<std::shared_ptr<Segment>>& found,
                           const SegmentScanResult& scan) ABSL_NO_THREAD_SAFETY_ANALYSIS;
  absl::Status CreateSegment(uint64_t sequence, raft::Index first_index);
  void WriterLoop();
  void ProcessGroup(std::vector<Pending>& group);
  // Runs the callbacks of `group` or queues them for the completion thread: write i
  // completes with its Submit-time rejection, or `*all` when `all` is set, or
  // `results[i]`. Writer thread only.
  void Complete(std::vector<Pending>& group, const std::vector<absl::Status>& results,
                const absl::Status* all);
  // Runs the callbacks of `completion` and updates callback_estimate_.
  void RunCallbacks(Completion& completion);
  void CompletionLoop();
  // Adds `write` to `plan`, encoding its records into `buffer` (which starts at
  // `buffer_offset` of the active segment) and moving its entries into the plan;
  // InvalidArgument leaves the plan and `write` unchanged.
  absl::Status PlanWrite(WalWrite& write, Plan& plan, std::string& buffer,
                         uint64_t buffer_offset) const;
  absl::Status ValidateWrite(const WalWrite& write, const Plan& plan, bool new_snapshot,
                             bool snapshot_matches) const;
  // Term of `index` in the planned log, for index in [plan.base, plan.last()].
  // Writer thread only: reads positions_ without the lock (see mu_).
  raft::Term PlannedTermAt(const Plan& plan,
                           raft::Index index) const ABSL_NO_THREAD_SAFETY_ANALYSIS;
  // A plan for the next group, starting from the durable log.
  Plan StartPlan() const;
  void ApplyPlan(Plan& plan);
  void EnterFailedState(const absl::Status& status);
  void DeleteObsoleteSegments();
  // Checks and decodes the record of entry `index` read from `segment` at `position`.
  static absl::Status DecodeEntryRecord(const Segment& segment, const Position& position,
                                        raft::Index index, absl::string_view record,
                                        pb::Entry* entry);

  const WalOptions options_;
  std::unique_ptr<FileLock> lock_;

  // Guards everything below it up to the writer-only section. Never held across I/O.
  // The writer thread is the only one that changes the log state (segments_ through
  // stats_), so it may read that state without the lock (PlannedTermAt).
  mutable Mutex mu_;
  // Oldest first; the last one is active (appended to). Non-empty after Open.
  std::deque<std::shared_ptr<Segment>> segments_ ABSL_GUARDED_BY(mu_);
  // The latest durable hard state; its term only increases.
  pb::HardState hard_state_ ABSL_GUARDED_BY(mu_);
  // The latest durable snapshot marker; the log starts at snapshot_.index() + 1.
  pb::SnapshotMetadata snapshot_ ABSL_GUARDED_BY(mu_);
  // Where each durable entry snapshot_.index()+1 .. LastIndex() lives; sequences are
  // non-decreasing with the index.
  std::deque<Position> positions_ ABSL_GUARDED_BY(mu_);
  // The most recent entries (a suffix of the log), bounded by cache_bytes.
  std::deque<pb::Entry> cache_ ABSL_GUARDED_BY(mu_);
  uint64_t cache_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  // Not OK once a sync (or an unrecoverable write) failed: every write is refused.
  absl::Status failed_ ABSL_GUARDED_BY(mu_);
  WalStats stats_ ABSL_GUARDED_BY(mu_);
  // Writes submitted and not yet taken by the writer.
  std::deque<Pending> queue_ ABSL_GUARDED_BY(mu_);
  uint64_t pending_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  // Signalled when queue_ or stopping_ change.
  CondVar queue_cv_;

  // Guards the completion state below. Never held together with mu_.
  Mutex completion_mu_;
  // Groups whose callbacks are still to run, oldest first. A group is queued only once
  // every write in it is durable or has failed, so the completion thread may run the
  // callbacks as soon as it takes them; the writer meanwhile syncs the next group.
  std::deque<Completion> completions_ ABSL_GUARDED_BY(completion_mu_);
  // True while the completion thread runs callbacks it took from completions_. The
  // writer runs a group's callbacks itself only when this is false and completions_ is
  // empty: every earlier callback has then returned, which keeps them in order and one
  // at a time.
  bool completer_running_ ABSL_GUARDED_BY(completion_mu_) = false;
  // Moving average of the time one callback takes, the waking of whoever waits for it
  // included.
  std::chrono::nanoseconds callback_estimate_ ABSL_GUARDED_BY(completion_mu_){0};
  // Set by the destructor once the writer has stopped (and queued its last group).
  bool completion_stopping_ ABSL_GUARDED_BY(completion_mu_) = false;
  // Signalled when completions_ or completion_stopping_ change.
  CondVar completion_cv_;

  // Writer-only state (the writer thread, or Open before it starts).
  std::string identity_;       // the identity on disk, copied into new segments
  uint64_t active_bytes_ = 0;  // valid bytes of the active segment
  bool active_unsynced_ = false;  // the active segment holds a group written without sync
  // Moving average of the time a group's fdatasync takes.
  std::chrono::nanoseconds sync_estimate_{0};

  std::thread writer_;
  // Runs the callbacks; started by the constructor, stopped after the writer.
  std::thread completer_;
};

}  // namespace stead::storage

#endif  // STEAD_STORAGE_WAL_H_
