#include "storage/wal_record.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "storage/segment.h"
#include "tests/testing/status_matchers.h"

namespace stead::storage {
namespace {

using ::stead::testing::StatusIs;

TEST(WalRecord, RoundTripsEveryType) {
  for (RecordType type : {RecordType::kSegmentHeader, RecordType::kEntry, RecordType::kHardState,
                          RecordType::kSnapshot}) {
    std::string buffer;
    AppendRecord(type, "payload bytes", &buffer);
    ASSERT_EQ(buffer.size(), kRecordHeaderBytes + 13);
    const ParsedRecord parsed = ParseRecord(buffer);
    ASSERT_EQ(parsed.result, ParsedRecord::Result::kOk) << parsed.error;
    EXPECT_EQ(parsed.type, type);
    EXPECT_EQ(parsed.payload, "payload bytes");
    EXPECT_EQ(parsed.claimed_bytes, buffer.size());
  }
}

TEST(WalRecord, ClassifiesDamagedRecords) {
  std::string good;
  AppendRecord(RecordType::kEntry, "0123456789", &good);
  const struct {
    const char* name;
    std::string input;
    ParsedRecord::Result want;
  } cases[] = {
      {"empty", "", ParsedRecord::Result::kTruncated},
      {"partial header", good.substr(0, 5), ParsedRecord::Result::kTruncated},
      {"partial payload", good.substr(0, good.size() - 1), ParsedRecord::Result::kTruncated},
      {"zero header", std::string(kRecordHeaderBytes + 4, '\0'), ParsedRecord::Result::kZero},
      {"short zero header", std::string(3, '\0'), ParsedRecord::Result::kZero},
      {"flipped payload bit",
       [&] {
         std::string s = good;
         s[kRecordHeaderBytes + 3] ^= 0x10;
         return s;
       }(),
       ParsedRecord::Result::kCorrupt},
      {"flipped type",
       [&] {
         std::string s = good;
         s[8] = static_cast<char>(RecordType::kHardState);
         return s;
       }(),
       ParsedRecord::Result::kCorrupt},
      {"huge length",
       [&] {
         std::string s = good;
         s[7] = '\x7f';
         return s;
       }(),
       ParsedRecord::Result::kCorrupt},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_EQ(ParseRecord(c.input).result, c.want);
  }
}

TEST(WalRecord, SegmentHeaderRoundTripAndValidation) {
  SegmentHeader header;
  header.sequence = 7;
  header.first_index = 1234;
  header.identity = "cluster=abc node=3";
  ASSERT_OK_AND_ASSIGN(SegmentHeader decoded, DecodeSegmentHeader(EncodeSegmentHeader(header)));
  EXPECT_EQ(decoded.sequence, 7u);
  EXPECT_EQ(decoded.first_index, 1234u);
  EXPECT_EQ(decoded.identity, "cluster=abc node=3");

  std::string bad_magic = EncodeSegmentHeader(header);
  bad_magic[0] = 'X';
  EXPECT_THAT(DecodeSegmentHeader(bad_magic), StatusIs(absl::StatusCode::kDataLoss, "magic"));
  std::string future = EncodeSegmentHeader(header);
  future[8] = 9;
  EXPECT_THAT(DecodeSegmentHeader(future),
              StatusIs(absl::StatusCode::kFailedPrecondition, "version 9"));
  EXPECT_THAT(DecodeSegmentHeader(EncodeSegmentHeader(header).substr(0, 20)),
              StatusIs(absl::StatusCode::kDataLoss, "too short"));
}

TEST(WalRecord, SnapshotMarkerRoundTrip) {
  SnapshotMarker marker;
  marker.metadata.set_index(40);
  marker.metadata.set_term(3);
  marker.metadata.mutable_conf_state()->add_voters(1);
  marker.discard_log = true;
  ASSERT_OK_AND_ASSIGN(SnapshotMarker decoded, DecodeSnapshotMarker(EncodeSnapshotMarker(marker)));
  EXPECT_EQ(decoded.metadata.index(), 40u);
  EXPECT_EQ(decoded.metadata.term(), 3u);
  EXPECT_EQ(decoded.metadata.conf_state().voters_size(), 1);
  EXPECT_TRUE(decoded.discard_log);
  EXPECT_THAT(DecodeSnapshotMarker(""), StatusIs(absl::StatusCode::kDataLoss));
}

TEST(Segment, FileNamesSortInSequenceOrderAndParse) {
  EXPECT_EQ(SegmentFileName(1, 1), "0000000000000001-0000000000000001.wal");
  EXPECT_LT(SegmentFileName(9, 500), SegmentFileName(10, 20));
  uint64_t sequence = 0;
  raft::Index first_index = 0;
  ASSERT_TRUE(ParseSegmentFileName(SegmentFileName(0xab, 0x1234), &sequence, &first_index));
  EXPECT_EQ(sequence, 0xabu);
  EXPECT_EQ(first_index, 0x1234u);
  EXPECT_FALSE(ParseSegmentFileName("LOCK", &sequence, &first_index));
  EXPECT_FALSE(
      ParseSegmentFileName("000000000000000G-0000000000000001.wal", &sequence, &first_index));
}

TEST(Segment, ScanCutsOnlyATornTailOfTheLastSegment) {
  std::string contents;
  AppendRecord(RecordType::kSegmentHeader, "h", &contents);
  AppendRecord(RecordType::kEntry, "first", &contents);
  const uint64_t second_offset = contents.size();
  AppendRecord(RecordType::kEntry, "second", &contents);
  int visited = 0;
  const auto visit = [&](const ScannedRecord&) {
    ++visited;
    return absl::OkStatus();
  };
  // A half-written last record followed by zeros is a torn tail.
  std::string torn = contents.substr(0, contents.size() - 2) + std::string(100, '\0');
  ASSERT_OK_AND_ASSIGN(SegmentScanResult scan, ScanSegment(torn, "seg", true, visit));
  EXPECT_EQ(scan.valid_bytes, second_offset);
  EXPECT_EQ(visited, 2);
  // The same damage in a segment that is not the last is DataLoss.
  EXPECT_THAT(ScanSegment(torn, "seg", false, visit),
              StatusIs(absl::StatusCode::kDataLoss, "seg: corrupt record at offset"));
  // A flipped bit with whole records after it is DataLoss naming the offset.
  std::string flipped = contents;
  flipped[second_offset - 2] ^= 1;
  EXPECT_THAT(ScanSegment(flipped, "seg", true, visit),
              StatusIs(absl::StatusCode::kDataLoss, "offset 13"));
}

}  // namespace
}  // namespace stead::storage
