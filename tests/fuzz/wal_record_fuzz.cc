// Fuzz target: bytes of a WAL segment through the record decoder and the payload
// decoders recovery uses. Must never crash or read outside the buffer, and every record
// it accepts must re-encode to the same bytes.
#include <cstddef>
#include <cstdint>
#include <string>

#include "base/check.h"
#include "proto/raft.pb.h"
#include "storage/wal_record.h"

namespace {

void DecodePayload(stead::storage::RecordType type, absl::string_view payload) {
  using stead::storage::RecordType;
  switch (type) {
    case RecordType::kSegmentHeader:
      stead::storage::DecodeSegmentHeader(payload).IgnoreError();  // any outcome but a crash
      break;
    case RecordType::kSnapshot:
      stead::storage::DecodeSnapshotMarker(payload).IgnoreError();
      break;
    case RecordType::kEntry: {
      stead::pb::Entry entry;
      (void)entry.ParseFromArray(payload.data(), static_cast<int>(payload.size()));
      break;
    }
    case RecordType::kHardState: {
      stead::pb::HardState hard_state;
      (void)hard_state.ParseFromArray(payload.data(), static_cast<int>(payload.size()));
      break;
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  absl::string_view buffer(reinterpret_cast<const char*>(data), size);
  // Walk the buffer as recovery does, record after record, until one is not whole.
  for (int records = 0; records < 100000 && !buffer.empty(); ++records) {
    const stead::storage::ParsedRecord record = stead::storage::ParseRecord(buffer);
    if (record.result != stead::storage::ParsedRecord::Result::kOk) break;
    STEAD_CHECK_LE(record.claimed_bytes, buffer.size());
    STEAD_CHECK_EQ(record.claimed_bytes, stead::storage::kRecordHeaderBytes + record.payload.size());
    std::string encoded;
    stead::storage::AppendRecord(record.type, record.payload, &encoded);
    STEAD_CHECK(encoded == buffer.substr(0, record.claimed_bytes)) << "re-encoding differs";
    DecodePayload(record.type, record.payload);
    buffer.remove_prefix(record.claimed_bytes);
  }
  return 0;
}
