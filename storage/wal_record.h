// The on-disk record format of the WAL.
//
// A segment file is a sequence of records. Every record is a 12-byte header followed by
// its payload:
//
//   offset 0  uint32 LE  CRC32C of bytes [8, 12 + length): type, reserved, payload
//   offset 4  uint32 LE  length of the payload in bytes
//   offset 8  uint8      RecordType
//   offset 9  3 bytes    reserved, zero
//   offset 12 payload
//
// The first record of every segment is a kSegmentHeader (SegmentHeader below). The
// others carry a serialized pb::Entry, pb::HardState, or a snapshot marker
// (SnapshotMarker below). Decoding never trusts the input: lengths are bounded, types
// and reserved bytes checked, and the CRC verified before a payload is returned.
#ifndef STEAD_STORAGE_WAL_RECORD_H_
#define STEAD_STORAGE_WAL_RECORD_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "proto/raft.pb.h"
#include "raft/types.h"

namespace stead::storage {

enum class RecordType : uint8_t {
  kSegmentHeader = 1,
  kEntry = 2,
  kHardState = 3,
  kSnapshot = 4,
};

inline constexpr uint64_t kRecordHeaderBytes = 12;
// No record payload may be larger; bounds what a corrupt length field can make a reader
// allocate. Entry limits (WalOptions) are far below it.
inline constexpr uint64_t kMaxRecordPayloadBytes = uint64_t{1} << 30;

// Appends one encoded record to `out`. Precondition: payload.size() <=
// kMaxRecordPayloadBytes.
void AppendRecord(RecordType type, absl::string_view payload, std::string* out);

// The outcome of decoding the record at the start of a buffer.
struct ParsedRecord {
  enum class Result {
    kOk,         // a whole, checksummed record
    kTruncated,  // the buffer ends inside the header or the payload
    kZero,       // the header is all zero bytes (preallocated space, never written)
    kCorrupt,    // CRC mismatch, unknown type, non-zero reserved bytes or bad length
  };
  Result result = Result::kCorrupt;
  RecordType type = RecordType::kEntry;
  absl::string_view payload;  // valid for kOk only; points into the buffer
  // Bytes the record claims to occupy (header + length); for kTruncated/kCorrupt with a
  // readable header this may exceed the buffer. kRecordHeaderBytes for kZero.
  uint64_t claimed_bytes = 0;
  std::string error;  // why the record is kCorrupt
};

// Decodes the record at the start of `buffer`. Never reads outside it.
ParsedRecord ParseRecord(absl::string_view buffer);

// Payload of a segment's first record. Identifies the format, where the segment sits
// in the sequence, and which WAL it belongs to.
struct SegmentHeader {
  static constexpr absl::string_view kMagic = "STEADWAL";
  static constexpr uint32_t kFormatVersion = 1;
  static constexpr uint64_t kMaxIdentityBytes = 256;

  uint32_t format_version = kFormatVersion;
  // Segments are numbered 1, 2, 3, ... without gaps; deletion only removes the oldest.
  uint64_t sequence = 0;
  // Index the next entry appended after the segment was created was expected to have
  // (last index + 1 at that time).
  raft::Index first_index = 0;
  // The WAL's identity (e.g. cluster and node id) so that a volume from elsewhere is
  // recognised; empty when the operator did not set one.
  std::string identity;
};

std::string EncodeSegmentHeader(const SegmentHeader& header);
// DataLoss when the payload is not a valid header (bad magic, size, identity length);
// FailedPrecondition for a format version this build does not read.
absl::StatusOr<SegmentHeader> DecodeSegmentHeader(absl::string_view payload);

// Payload of a kSnapshot record: the log now starts after `metadata.index`.
struct SnapshotMarker {
  pb::SnapshotMetadata metadata;
  // True: every entry in the log was discarded (a snapshot that does not match the log
  // was installed). False: entries after metadata.index are kept (compaction, or a
  // snapshot whose last entry matches the log, Raft §7).
  bool discard_log = false;
};

std::string EncodeSnapshotMarker(const SnapshotMarker& marker);
absl::StatusOr<SnapshotMarker> DecodeSnapshotMarker(absl::string_view payload);

}  // namespace stead::storage

#endif  // STEAD_STORAGE_WAL_RECORD_H_
