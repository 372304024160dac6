// WAL segment files: their names and the scan of their records at recovery.
//
// A segment is named "<sequence>-<first index>.wal", both as 16 lower-case hex digits,
// so that a directory listing sorts segments in log order and shows where each starts.
#ifndef STEAD_STORAGE_SEGMENT_H_
#define STEAD_STORAGE_SEGMENT_H_

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "raft/types.h"
#include "storage/wal_record.h"

namespace stead::storage {

std::string SegmentFileName(uint64_t sequence, raft::Index first_index);
// True when `name` is a segment file name; fills the two numbers.
bool ParseSegmentFileName(absl::string_view name, uint64_t* sequence, raft::Index* first_index);

// One whole record found by ScanSegment.
struct ScannedRecord {
  RecordType type;
  absl::string_view payload;
  uint64_t offset = 0;  // of the record header in the file
  uint64_t bytes = 0;   // header + payload
};

struct SegmentScanResult {
  // End of the last whole record: where the next record goes.
  uint64_t valid_bytes = 0;
  // Bytes after valid_bytes that were recognised as a torn or unwritten tail.
  uint64_t torn_bytes = 0;
};

// Walks the records of a segment's `contents`, calling `visit` for each whole record in
// order (its error, annotated with the file name and offset, stops the scan).
//
// Where a record is not whole and valid:
//  - in the last segment (`last_segment`), if nothing but zero bytes follows the end
//    the bad record claims (a crash mid-append: short record, zero-filled space, CRC
//    mismatch on the last record), the scan ends there and reports the tail as torn;
//  - anywhere else it is DataLoss "wal segment NAME: ... at offset N".
// Known limit: a crash that persists a later page of one group write but not an
// earlier one leaves garbage followed by data, which is reported as DataLoss (safe:
// nothing is dropped silently) although no acknowledged write was lost.
absl::StatusOr<SegmentScanResult> ScanSegment(
    absl::string_view contents, absl::string_view name, bool last_segment,
    const std::function<absl::Status(const ScannedRecord&)>& visit);

}  // namespace stead::storage

#endif  // STEAD_STORAGE_SEGMENT_H_
