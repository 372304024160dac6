// Wal::Open: option checks, the directory lock, and recovery of the log from its
// segments (replay, torn-tail cut, consistency checks).
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/check.h"
#include "base/status_macros.h"
#include "storage/segment.h"
#include "storage/wal.h"
#include "storage/wal_internal.h"
#include "storage/wal_record.h"

namespace stead::storage {
namespace {

absl::Status ValidateOptions(const WalOptions& options) {
  const auto bad = [](absl::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat("wal options: ", what));
  };
  if (options.dir.empty()) return bad("dir is empty");
  if (options.identity.size() > SegmentHeader::kMaxIdentityBytes) {
    return bad("identity is longer than 256 bytes");
  }
  if (options.segment_bytes < (uint64_t{64} << 10) || options.segment_bytes > (uint64_t{1} << 30)) {
    return bad("segment_bytes must be in [64 KiB, 1 GiB]");
  }
  if (options.max_write_bytes > (uint64_t{1} << 30)) return bad("max_write_bytes over 1 GiB");
  if (options.max_entry_bytes == 0 || options.max_entry_bytes > options.max_write_bytes) {
    return bad("max_entry_bytes must be in [1, max_write_bytes]");
  }
  if (options.max_group_bytes == 0) return bad("max_group_bytes is 0");
  return absl::OkStatus();
}

}  // namespace

// Replays segments into the log state. The log may not start at index 1: when old
// segments were deleted after a compaction, the first remaining segment begins at its
// header's first index and the entries before it are "unknown" until a snapshot marker
// at or after them is replayed; any that are still unknown at the end were lost.
// Runs inside Open before any other thread can see the Wal, so it uses the state
// without the lock.
class Wal::Recovery {
 public:
  explicit Recovery(Wal& wal) : wal_(wal) {}

  // Visits one record of the segment `sequence`.
  absl::Status Visit(const Segment& segment,
                     const ScannedRecord& record) ABSL_NO_THREAD_SAFETY_ANALYSIS {
    if (record.offset == 0) return VisitHeader(segment, record);
    switch (record.type) {
      case RecordType::kEntry:
        return VisitEntry(segment, record);
      case RecordType::kHardState: {
        pb::HardState hard_state;
        if (!hard_state.ParseFromArray(record.payload.data(),
                                       static_cast<int>(record.payload.size()))) {
          return absl::DataLossError("hard state record does not parse");
        }
        if (hard_state.term() < wal_.hard_state_.term()) {
          return absl::DataLossError(absl::StrCat("hard state term ", hard_state.term(),
                                                  " is below an earlier one, ",
                                                  wal_.hard_state_.term()));
        }
        wal_.hard_state_ = hard_state;
        return absl::OkStatus();
      }
      case RecordType::kSnapshot:
        return VisitSnapshot(record);
      case RecordType::kSegmentHeader:
        return absl::DataLossError("segment header record in the middle of a segment");
    }
    return absl::DataLossError("unknown record type");
  }

  raft::Index base() const { return base_; }
  raft::Index last() const ABSL_NO_THREAD_SAFETY_ANALYSIS { return base_ + wal_.positions_.size(); }

 private:
  absl::Status VisitHeader(const Segment& segment,
                           const ScannedRecord& record) ABSL_NO_THREAD_SAFETY_ANALYSIS {
    if (record.type != RecordType::kSegmentHeader) {
      return absl::DataLossError("the first record is not a segment header");
    }
    STEAD_ASSIGN_OR_RETURN(SegmentHeader header, DecodeSegmentHeader(record.payload));
    if (header.sequence != segment.sequence || header.first_index != segment.first_index) {
      return absl::DataLossError(absl::StrCat("header says sequence ", header.sequence,
                                              " first index ", header.first_index,
                                              ", which does not match the file name"));
    }
    if (!wal_.options_.identity.empty() && header.identity != wal_.options_.identity) {
      return absl::FailedPreconditionError(absl::StrCat(
          "this WAL belongs to '", header.identity, "' but this node is '", wal_.options_.identity,
          "': point --wal-dir at this node's own volume, or empty the directory if it is "
          "a stale copy"));
    }
    if (!seen_header_) {
      seen_header_ = true;
      wal_.identity_ = header.identity;
      // Entries before the first segment were deleted with older segments (or there
      // are none: first index 1).
      base_ = header.first_index - 1;
      return absl::OkStatus();
    }
    if (header.identity != wal_.identity_) {
      return absl::DataLossError(absl::StrCat("segment identity '", header.identity,
                                              "' differs from earlier segments' '", wal_.identity_,
                                              "'"));
    }
    if (header.first_index != last() + 1) {
      return absl::DataLossError(absl::StrCat("segment starts at index ", header.first_index,
                                              " but the previous segment ends at ", last()));
    }
    return absl::OkStatus();
  }

  absl::Status VisitEntry(const Segment& segment,
                          const ScannedRecord& record) ABSL_NO_THREAD_SAFETY_ANALYSIS {
    pb::Entry entry;
    if (!entry.ParseFromArray(record.payload.data(), static_cast<int>(record.payload.size()))) {
      return absl::DataLossError("entry record does not parse");
    }
    const raft::Index index = entry.index();
    if (index == 0 || entry.term() == 0) {
      return absl::DataLossError(absl::StrCat("entry with index ", index, " term ", entry.term()));
    }
    if (index > last() + 1) {
      return absl::DataLossError(
          absl::StrCat("entry index ", index, " leaves a gap after the last index ", last()));
    }
    if (index <= base_) {
      // Only entries replacing ones in the unknown prefix are possible here; below a
      // replayed snapshot nothing may be written.
      if (base_ <= wal_.snapshot_.index()) {
        return absl::DataLossError(absl::StrCat(
            "entry index ", index, " is at or below the snapshot index ", wal_.snapshot_.index()));
      }
      wal_.positions_.clear();
      base_ = index - 1;
    } else if (index <= last()) {
      wal_.positions_.resize(index - base_ - 1);  // a replaced suffix
    }
    if (!wal_.positions_.empty() && wal_.positions_.back().term > entry.term()) {
      return absl::DataLossError(absl::StrCat("entry index ", index, " term ", entry.term(),
                                              " is below the previous entry's term ",
                                              wal_.positions_.back().term));
    }
    wal_.positions_.push_back(
        Position{entry.term(), segment.sequence, record.offset, record.bytes});
    return absl::OkStatus();
  }

  absl::Status VisitSnapshot(const ScannedRecord& record) ABSL_NO_THREAD_SAFETY_ANALYSIS {
    STEAD_ASSIGN_OR_RETURN(SnapshotMarker marker, DecodeSnapshotMarker(record.payload));
    const raft::Index index = marker.metadata.index();
    if (index < wal_.snapshot_.index()) {
      return absl::DataLossError(absl::StrCat(
          "snapshot marker index ", index, " is below an earlier one, ", wal_.snapshot_.index()));
    }
    wal_.snapshot_ = marker.metadata;
    if (index < base_) return absl::OkStatus();  // a copy made when a segment was created
    if (marker.discard_log || index >= last()) {
      wal_.positions_.clear();
    } else {
      wal_.positions_.erase(wal_.positions_.begin(),
                            wal_.positions_.begin() + static_cast<long>(index - base_));
    }
    base_ = index;
    return absl::OkStatus();
  }

  Wal& wal_;
  bool seen_header_ = false;
  // The log holds entries base_+1 .. last(); base_ > snapshot index means the entries
  // up to base_ are unknown so far.
  raft::Index base_ = 0;
};

absl::StatusOr<std::unique_ptr<Wal>> Wal::Open(WalOptions options) {
  STEAD_RETURN_IF_ERROR(ValidateOptions(options));
  STEAD_RETURN_IF_ERROR(CreateDirIfMissing(options.dir));
  STEAD_ASSIGN_OR_RETURN(std::unique_ptr<FileLock> lock,
                         FileLock::Acquire(JoinPath(options.dir, kLockFileName)));
  std::unique_ptr<Wal> wal(new Wal(std::move(options)));
  wal->lock_ = std::move(lock);
  STEAD_RETURN_IF_ERROR(Annotate(wal->Recover(), absl::StrCat("open wal ", wal->options_.dir)));
  wal->writer_ = std::thread([raw = wal.get()] { raw->WriterLoop(); });
  return wal;
}

absl::Status Wal::CutTornTail(std::vector<std::shared_ptr<Segment>>& found,
                              const SegmentScanResult& scan) {
  Segment& segment = *found.back();
  STEAD_LOG(options_.logger, Warning)
      << "wal dir=" << options_.dir << " segment=" << segment.name << " cutting a torn tail of "
      << scan.torn_bytes << " bytes at offset " << scan.valid_bytes
      << " (a crash interrupted an append that was never acknowledged)";
  if (scan.valid_bytes > 0) {
    // Cut (not just skip) the tail: records appended later must not be followed by
    // leftovers that a later recovery could mistake for data.
    STEAD_RETURN_IF_ERROR(segment.file->Truncate(scan.valid_bytes));
    return segment.file->DataSync();
  }
  // Not even the header survived: the segment was being created when the crash came,
  // and the previous segment (if any) is whole.
  if (found.size() == 1 && segment.sequence != 1) {
    return absl::DataLossError(
        absl::StrCat("wal segment ", segment.name, " is the only segment and has no header"));
  }
  segment.file.reset();
  STEAD_RETURN_IF_ERROR(RemoveFile(JoinPath(options_.dir, segment.name)));
  STEAD_RETURN_IF_ERROR(SyncDir(options_.dir));
  found.pop_back();
  if (!found.empty()) {
    STEAD_ASSIGN_OR_RETURN(active_bytes_, found.back()->file->Size());
  }
  return absl::OkStatus();
}

absl::Status Wal::Recover() {
  const std::string& dir = options_.dir;
  STEAD_ASSIGN_OR_RETURN(std::vector<std::string> names, ListDir(dir));
  std::vector<std::shared_ptr<Segment>> found;
  for (const std::string& name : names) {
    auto segment = std::make_shared<Segment>();
    if (!ParseSegmentFileName(name, &segment->sequence, &segment->first_index)) {
      if (name != kLockFileName) {
        STEAD_LOG(options_.logger, Warning)
            << "wal dir=" << dir << " ignores unknown file " << name;
      }
      continue;
    }
    segment->name = name;
    found.push_back(std::move(segment));
  }
  // Names sort by sequence (fixed-width hex); the sequence must have no holes.
  for (size_t i = 1; i < found.size(); ++i) {
    if (found[i]->sequence != found[i - 1]->sequence + 1) {
      return absl::DataLossError(
          absl::StrCat("wal segment with sequence ", found[i - 1]->sequence + 1, " is missing (",
                       found[i - 1]->name, " is followed by ", found[i]->name, ")"));
    }
  }
  identity_ = options_.identity;
  if (found.empty()) return CreateSegment(1, 1);

  Recovery recovery(*this);
  for (size_t i = 0; i < found.size(); ++i) {
    Segment& segment = *found[i];
    const bool last_segment = i + 1 == found.size();
    STEAD_ASSIGN_OR_RETURN(
        std::unique_ptr<File> file,
        File::OpenExisting(JoinPath(dir, segment.name), options_.fault_injector));
    segment.file = std::move(file);
    STEAD_ASSIGN_OR_RETURN(std::string contents, segment.file->ReadAll());
    STEAD_ASSIGN_OR_RETURN(
        SegmentScanResult scan,
        ScanSegment(contents, segment.name, last_segment,
                    [&](const ScannedRecord& record) { return recovery.Visit(segment, record); }));
    active_bytes_ = scan.valid_bytes;
    if (scan.valid_bytes == 0 && !last_segment) {
      return absl::DataLossError(
          absl::StrCat("wal segment ", segment.name, " is empty (not the last segment)"));
    }
    // An empty last file is a segment whose creation a crash interrupted, like a torn
    // header.
    if (scan.torn_bytes > 0 || scan.valid_bytes == 0) {
      STEAD_CHECK(last_segment);
      STEAD_RETURN_IF_ERROR(CutTornTail(found, scan));
      if (found.empty()) return CreateSegment(1, 1);
      break;
    }
  }
  if (recovery.base() != snapshot_.index()) {
    return absl::DataLossError(
        absl::StrCat("wal entries (", snapshot_.index(), ", ", recovery.base(),
                     "] are missing: segments "
                     "before ",
                     found.front()->name, " were deleted but no snapshot covers them"));
  }
  // Preallocation of the active segment is only an optimisation here.
  if (absl::Status status = found.back()->file->Preallocate(options_.segment_bytes); !status.ok()) {
    STEAD_LOG(options_.logger, Warning) << "wal dir=" << dir << " " << status.ToString();
  }
  segments_.assign(found.begin(), found.end());
  STEAD_LOG(options_.logger, Info)
      << "wal dir=" << dir << " recovered segments=" << segments_.size()
      << " first_index=" << snapshot_.index() + 1
      << " last_index=" << snapshot_.index() + positions_.size() << " term=" << hard_state_.term()
      << " commit=" << hard_state_.commit();
  return absl::OkStatus();
}

}  // namespace stead::storage
