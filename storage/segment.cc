#include "storage/segment.h"

#include <algorithm>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace stead::storage {
namespace {

bool ParseHex16(absl::string_view text, uint64_t* value) {
  if (text.size() != 16) return false;
  uint64_t result = 0;
  for (char c : text) {
    int digit;
    if (c >= '0' && c <= '9') {
      digit = c - '0';
    } else if (c >= 'a' && c <= 'f') {
      digit = c - 'a' + 10;
    } else {
      return false;
    }
    result = (result << 4) | static_cast<uint64_t>(digit);
  }
  *value = result;
  return true;
}

bool AllZero(absl::string_view bytes) {
  return std::all_of(bytes.begin(), bytes.end(), [](char c) { return c == 0; });
}

}  // namespace

std::string SegmentFileName(uint64_t sequence, raft::Index first_index) {
  char name[64];
  std::snprintf(name, sizeof name, "%016llx-%016llx.wal", static_cast<unsigned long long>(sequence),
                static_cast<unsigned long long>(first_index));
  return name;
}

bool ParseSegmentFileName(absl::string_view name, uint64_t* sequence, raft::Index* first_index) {
  // 16 hex + '-' + 16 hex + ".wal"
  if (name.size() != 37 || name[16] != '-' || name.substr(33) != ".wal") return false;
  return ParseHex16(name.substr(0, 16), sequence) && ParseHex16(name.substr(17, 16), first_index);
}

absl::StatusOr<SegmentScanResult> ScanSegment(
    absl::string_view contents, absl::string_view name, bool last_segment,
    const std::function<absl::Status(const ScannedRecord&)>& visit) {
  uint64_t offset = 0;
  while (offset < contents.size()) {
    const absl::string_view rest = contents.substr(offset);
    const ParsedRecord parsed = ParseRecord(rest);
    if (parsed.result == ParsedRecord::Result::kOk) {
      const ScannedRecord record{parsed.type, parsed.payload, offset, parsed.claimed_bytes};
      STEAD_RETURN_IF_ERROR(
          Annotate(visit(record), absl::StrCat("wal segment ", name, " offset ", offset)));
      offset += parsed.claimed_bytes;
      continue;
    }
    // A crash mid-append leaves at most one damaged record followed only by unwritten
    // (zero or absent) bytes, and only in the segment being appended to. The bytes after
    // the span the bad record claims must all be zero for it to count as that tail.
    const uint64_t claimed_end = std::min<uint64_t>(rest.size(), parsed.claimed_bytes);
    const bool tail_is_empty = AllZero(rest.substr(claimed_end));
    if (last_segment && tail_is_empty) {
      return SegmentScanResult{offset, rest.size()};
    }
    std::string why;
    switch (parsed.result) {
      case ParsedRecord::Result::kTruncated:
        why = absl::StrCat("record of ", parsed.claimed_bytes, " bytes is cut short at ",
                           rest.size(), " bytes");
        break;
      case ParsedRecord::Result::kZero:
        why = "zero bytes where a record header should be";
        break;
      default:
        why = parsed.error;
        break;
    }
    return absl::DataLossError(absl::StrCat(
        "wal segment ", name, ": corrupt record at offset ", offset, ": ", why,
        last_segment ? " (not a torn tail: data follows it)" : " (not in the last segment)"));
  }
  return SegmentScanResult{offset, 0};
}

}  // namespace stead::storage
