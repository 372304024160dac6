#include "storage/wal_record.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "base/check.h"
#include "storage/crc32c.h"

namespace stead::storage {
namespace {

void PutFixed32(uint32_t value, char* out) {
  for (int i = 0; i < 4; ++i) out[i] = static_cast<char>((value >> (8 * i)) & 0xff);
}

void PutFixed64(uint64_t value, char* out) {
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((value >> (8 * i)) & 0xff);
}

uint32_t GetFixed32(const char* in) {
  uint32_t value = 0;
  for (int i = 0; i < 4; ++i) {
    value |= static_cast<uint32_t>(static_cast<unsigned char>(in[i])) << (8 * i);
  }
  return value;
}

uint64_t GetFixed64(const char* in) {
  uint64_t value = 0;
  for (int i = 0; i < 8; ++i) {
    value |= static_cast<uint64_t>(static_cast<unsigned char>(in[i])) << (8 * i);
  }
  return value;
}

bool IsKnownType(uint8_t type) {
  return type >= static_cast<uint8_t>(RecordType::kSegmentHeader) &&
         type <= static_cast<uint8_t>(RecordType::kSnapshot);
}

// magic(8) + version(4) + sequence(8) + first_index(8) + identity length(4).
constexpr size_t kSegmentHeaderFixedBytes = 32;

}  // namespace

void AppendRecord(RecordType type, absl::string_view payload, std::string* out) {
  STEAD_CHECK_LE(payload.size(), kMaxRecordPayloadBytes);
  const size_t start = out->size();
  out->resize(start + kRecordHeaderBytes);
  char* header = out->data() + start;
  PutFixed32(static_cast<uint32_t>(payload.size()), header + 4);
  header[8] = static_cast<char>(type);
  header[9] = header[10] = header[11] = 0;
  // The checksum covers the type and reserved bytes too, so a flipped type is caught.
  // Computed before the append below, which may reallocate `out` (and move `header`).
  const uint32_t crc = Crc32cExtend(Crc32c(absl::string_view(header + 8, 4)), payload);
  PutFixed32(crc, header);
  out->append(payload.data(), payload.size());
}

ParsedRecord ParseRecord(absl::string_view buffer) {
  ParsedRecord parsed;
  if (buffer.size() < kRecordHeaderBytes) {
    // A partial header that is all zeros is unwritten space, not a torn record.
    bool all_zero = true;
    for (char c : buffer) all_zero = all_zero && c == 0;
    parsed.result = all_zero && !buffer.empty() ? ParsedRecord::Result::kZero
                                                : ParsedRecord::Result::kTruncated;
    parsed.claimed_bytes = kRecordHeaderBytes;
    return parsed;
  }
  const char* header = buffer.data();
  bool header_zero = true;
  for (uint64_t i = 0; i < kRecordHeaderBytes; ++i) header_zero = header_zero && header[i] == 0;
  if (header_zero) {
    parsed.result = ParsedRecord::Result::kZero;
    parsed.claimed_bytes = kRecordHeaderBytes;
    return parsed;
  }
  const uint32_t crc = GetFixed32(header);
  const uint64_t length = GetFixed32(header + 4);
  const uint8_t type = static_cast<uint8_t>(header[8]);
  parsed.claimed_bytes = kRecordHeaderBytes + length;
  if (length > kMaxRecordPayloadBytes) {
    parsed.error =
        absl::StrCat("record length ", length, " exceeds the maximum ", kMaxRecordPayloadBytes);
    return parsed;
  }
  if (buffer.size() < parsed.claimed_bytes) {
    parsed.result = ParsedRecord::Result::kTruncated;
    return parsed;
  }
  const absl::string_view payload = buffer.substr(kRecordHeaderBytes, length);
  const uint32_t actual = Crc32cExtend(Crc32c(absl::string_view(header + 8, 4)), payload);
  if (actual != crc) {
    parsed.error = absl::StrCat("crc mismatch (stored ", crc, ", computed ", actual,
                                ") in a record of ", length, " bytes");
    return parsed;
  }
  // Checked after the CRC: a record with a valid checksum and an unknown type was
  // written by a newer format, which deserves its own message.
  if (!IsKnownType(type) || header[9] != 0 || header[10] != 0 || header[11] != 0) {
    parsed.error =
        absl::StrCat("unknown record type ", static_cast<int>(type), " or non-zero reserved bytes");
    return parsed;
  }
  parsed.result = ParsedRecord::Result::kOk;
  parsed.type = static_cast<RecordType>(type);
  parsed.payload = payload;
  return parsed;
}

std::string EncodeSegmentHeader(const SegmentHeader& header) {
  STEAD_CHECK_LE(header.identity.size(), SegmentHeader::kMaxIdentityBytes);
  std::string out(kSegmentHeaderFixedBytes, '\0');
  std::memcpy(out.data(), SegmentHeader::kMagic.data(), 8);
  PutFixed32(header.format_version, out.data() + 8);
  PutFixed64(header.sequence, out.data() + 12);
  PutFixed64(header.first_index, out.data() + 20);
  PutFixed32(static_cast<uint32_t>(header.identity.size()), out.data() + 28);
  out += header.identity;
  return out;
}

absl::StatusOr<SegmentHeader> DecodeSegmentHeader(absl::string_view payload) {
  if (payload.size() < kSegmentHeaderFixedBytes) {
    return absl::DataLossError(
        absl::StrCat("segment header of ", payload.size(), " bytes is too short"));
  }
  if (payload.substr(0, 8) != SegmentHeader::kMagic) {
    return absl::DataLossError("segment header has a bad magic: not a stead WAL segment");
  }
  SegmentHeader header;
  header.format_version = GetFixed32(payload.data() + 8);
  if (header.format_version != SegmentHeader::kFormatVersion) {
    return absl::FailedPreconditionError(absl::StrCat(
        "segment format version ", header.format_version,
        " is not supported by this build (reads version ", SegmentHeader::kFormatVersion, ")"));
  }
  header.sequence = GetFixed64(payload.data() + 12);
  header.first_index = GetFixed64(payload.data() + 20);
  const uint64_t identity_bytes = GetFixed32(payload.data() + 28);
  if (identity_bytes > SegmentHeader::kMaxIdentityBytes ||
      payload.size() != kSegmentHeaderFixedBytes + identity_bytes) {
    return absl::DataLossError(absl::StrCat("segment header identity length ", identity_bytes,
                                            " does not match its size ", payload.size()));
  }
  if (header.sequence == 0 || header.first_index == 0) {
    return absl::DataLossError("segment header has sequence or first index 0");
  }
  header.identity = std::string(payload.substr(kSegmentHeaderFixedBytes));
  return header;
}

std::string EncodeSnapshotMarker(const SnapshotMarker& marker) {
  std::string out(1, marker.discard_log ? '\1' : '\0');
  std::string metadata;
  STEAD_CHECK(marker.metadata.SerializeToString(&metadata));
  out += metadata;
  return out;
}

absl::StatusOr<SnapshotMarker> DecodeSnapshotMarker(absl::string_view payload) {
  if (payload.empty() || (payload[0] != '\0' && payload[0] != '\1')) {
    return absl::DataLossError("snapshot marker has a bad flags byte");
  }
  SnapshotMarker marker;
  marker.discard_log = payload[0] == '\1';
  payload.remove_prefix(1);
  if (!marker.metadata.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
    return absl::DataLossError("snapshot marker metadata does not parse");
  }
  return marker;
}

}  // namespace stead::storage
