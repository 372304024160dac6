#include "server/frame.h"

#include <algorithm>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proto/raft.pb.h"
#include "tests/testing/status_matchers.h"

namespace stead::server {
namespace {

using ::stead::testing::StatusIs;

pb::Message MakeAppend(uint64_t index, size_t data_bytes) {
  pb::Message message;
  message.set_type(pb::MESSAGE_TYPE_APPEND);
  message.set_from(1);
  message.set_to(2);
  message.set_term(3);
  pb::Entry* entry = message.add_entries();
  entry->set_term(3);
  entry->set_index(index);
  entry->set_data(std::string(data_bytes, 'x'));
  return message;
}

// Reads every complete frame currently buffered.
std::vector<pb::Message> Drain(FrameReader& reader) {
  std::vector<pb::Message> messages;
  for (int i = 0; i < 1000; ++i) {
    absl::StatusOr<std::optional<absl::string_view>> payload = reader.Next();
    EXPECT_OK(payload);
    if (!payload.ok() || !payload->has_value()) break;
    pb::Message message;
    EXPECT_OK(ParseFramePayload(**payload, "raft message", &message));
    messages.push_back(message);
  }
  return messages;
}

TEST(Frame, RoundTripsWhateverWayTheStreamIsSplit) {
  std::string stream;
  for (uint64_t i = 1; i <= 5; ++i) ASSERT_OK(AppendFrame(MakeAppend(i, 100 * i), 1 << 20, &stream));
  // Deliver the stream in pieces of every size from 1 byte to all of it.
  for (size_t piece = 1; piece <= stream.size(); piece += 37) {
    SCOPED_TRACE(piece);
    FrameReader reader;
    std::vector<pb::Message> messages;
    for (size_t at = 0; at < stream.size(); at += piece) {
      reader.Append(absl::string_view(stream).substr(at, piece));
      for (pb::Message& message : Drain(reader)) messages.push_back(message);
    }
    ASSERT_EQ(messages.size(), 5u);
    for (uint64_t i = 0; i < 5; ++i) {
      EXPECT_EQ(messages[i].entries(0).index(), i + 1);
      EXPECT_EQ(messages[i].entries(0).data().size(), 100 * (i + 1));
    }
    EXPECT_EQ(reader.buffered_bytes(), 0u);
  }
}

// Goal: reads straight into the reader's buffer (PrepareAppend/CommitAppend, the peer
// port's way) split frames correctly whatever each read returns, keeping a partial
// frame across the buffer's moves and growth, and the buffer stays bounded.
TEST(Frame, DirectReadsOfAnySizeKeepPartialFramesAcrossMovesAndGrowth) {
  std::string stream;
  for (uint64_t i = 1; i <= 40; ++i) {
    ASSERT_OK(AppendFrame(MakeAppend(i, 37 * (i % 9) + 1), 1 << 20, &stream));
  }
  std::mt19937 random(7);
  for (const size_t room : {size_t{16}, size_t{300}, size_t{4096}}) {
    SCOPED_TRACE(room);
    FrameReader reader;
    std::vector<pb::Message> messages;
    size_t at = 0;
    while (at < stream.size()) {
      const absl::Span<char> space = reader.PrepareAppend(room);
      ASSERT_GE(space.size(), room);
      // A socket returns anything from one byte to the whole room.
      const size_t n = std::min<size_t>(stream.size() - at, 1 + random() % space.size());
      std::memcpy(space.data(), stream.data() + at, n);
      reader.CommitAppend(n);
      at += n;
      for (pb::Message& message : Drain(reader)) messages.push_back(message);
      EXPECT_LE(reader.buffered_bytes(), 1000u);
    }
    ASSERT_EQ(messages.size(), 40u);
    for (uint64_t i = 0; i < 40; ++i) {
      EXPECT_EQ(messages[i].entries(0).index(), i + 1);
      EXPECT_EQ(messages[i].entries(0).data(), std::string(37 * ((i + 1) % 9) + 1, 'x'));
    }
    EXPECT_EQ(reader.buffered_bytes(), 0u);
  }
}

TEST(Frame, WriterRefusesOversizedAndEmptyMessagesAndAppendsNothing) {
  std::string out = "keep";
  EXPECT_THAT(AppendFrame(MakeAppend(1, 2000), 1000, &out),
              StatusIs(absl::StatusCode::kInvalidArgument, "exceeds the frame limit of 1000"));
  EXPECT_THAT(AppendFrame(pb::Message(), 1000, &out),
              StatusIs(absl::StatusCode::kInvalidArgument, "empty"));
  EXPECT_EQ(out, "keep");
}

TEST(Frame, ReaderRefusesAnOversizedLengthBeforeBufferingThePayload) {
  FrameReader reader(/*max_frame_bytes=*/1024);
  reader.Append(std::string("\x7f\xff\xff\xff", 4));  // claims a 2 GiB payload
  EXPECT_THAT(reader.Next(), StatusIs(absl::StatusCode::kInvalidArgument, "exceeds the limit"));
  // The error is sticky: the stream cannot be resynchronised.
  reader.Append("more");
  EXPECT_THAT(reader.Next(), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(Frame, ReaderRefusesAnEmptyFrame) {
  FrameReader reader;
  reader.Append(std::string(4, '\0'));
  EXPECT_THAT(reader.Next(), StatusIs(absl::StatusCode::kInvalidArgument, "empty frame"));
}

TEST(Frame, GarbagePayloadIsAClearParseError) {
  pb::Message message;
  EXPECT_THAT(ParseFramePayload("\xff\xff\xff\xff\xff", "raft message", &message),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "malformed raft message: 5 bytes are not a valid stead.pb.Message"));
}

TEST(Frame, PartialHeaderAndPayloadWaitForMoreBytes) {
  std::string stream;
  ASSERT_OK(AppendFrame(MakeAppend(9, 10), 1 << 20, &stream));
  FrameReader reader;
  reader.Append(stream.substr(0, 2));
  ASSERT_OK_AND_ASSIGN(std::optional<absl::string_view> none, reader.Next());
  EXPECT_FALSE(none.has_value());
  reader.Append(stream.substr(2, 5));
  ASSERT_OK_AND_ASSIGN(none, reader.Next());
  EXPECT_FALSE(none.has_value());
  reader.Append(stream.substr(7));
  ASSERT_OK_AND_ASSIGN(std::optional<absl::string_view> payload, reader.Next());
  ASSERT_TRUE(payload.has_value());
  EXPECT_EQ(payload->size(), stream.size() - kFrameHeaderBytes);
}

// Goal: with OversizedFrames::kSkip a frame over the limit is reported with its head and
// length, never buffered whole, and the frames after it read as usual.
TEST(Frame, SkippingReaderReportsAnOversizedFrameAndStaysInStep) {
  std::string stream;
  ASSERT_OK(AppendFrame(MakeAppend(1, 5000), 1 << 20, &stream));
  const size_t oversized = stream.size() - kFrameHeaderBytes;
  ASSERT_OK(AppendFrame(MakeAppend(2, 10), 1 << 20, &stream));
  FrameReader reader(/*max_frame_bytes=*/1024, OversizedFrames::kSkip);
  struct Copied {
    std::string payload;  // a ReadFrame's view lasts only until the next Append
    uint32_t oversized_length = 0;
  };
  std::vector<Copied> frames;
  for (size_t at = 0; at < stream.size(); at += 100) {
    reader.Append(stream.substr(at, 100));
    EXPECT_LE(reader.buffered_bytes(), 1024u + 100u);
    for (;;) {
      ASSERT_OK_AND_ASSIGN(std::optional<ReadFrame> frame, reader.NextFrame());
      if (!frame.has_value()) break;
      frames.push_back({std::string(frame->payload), frame->oversized_length});
    }
  }
  ASSERT_EQ(frames.size(), 2u);
  EXPECT_EQ(frames[0].oversized_length, oversized);
  EXPECT_EQ(frames[0].payload, stream.substr(kFrameHeaderBytes, kOversizedHeadBytes));
  EXPECT_EQ(frames[1].oversized_length, 0u);
  pb::Message second;
  ASSERT_OK(ParseFramePayload(frames[1].payload, "raft message", &second));
  EXPECT_EQ(second.entries(0).index(), 2u);
  EXPECT_EQ(reader.buffered_bytes(), 0u);
}

// Goal: mid_frame() tells a reader between frames from one inside a frame, the skipped
// rest of an oversized frame included (the client port's read timeout relies on it).
TEST(Frame, MidFrameHoldsFromAFramesFirstByteUntilItIsReturnedOrSkippedWhole) {
  std::string small;
  std::string big;
  ASSERT_OK(AppendFrame(MakeAppend(1, 10), 1 << 20, &small));
  ASSERT_OK(AppendFrame(MakeAppend(2, 5000), 1 << 20, &big));
  FrameReader reader(/*max_frame_bytes=*/1024, OversizedFrames::kSkip);
  EXPECT_FALSE(reader.mid_frame());
  reader.Append(small.substr(0, 1));
  EXPECT_TRUE(reader.mid_frame());
  reader.Append(small.substr(1));
  ASSERT_OK_AND_ASSIGN(std::optional<ReadFrame> whole, reader.NextFrame());
  ASSERT_TRUE(whole.has_value());
  EXPECT_FALSE(reader.mid_frame());

  reader.Append(big.substr(0, 100));
  ASSERT_OK_AND_ASSIGN(std::optional<ReadFrame> head, reader.NextFrame());
  ASSERT_TRUE(head.has_value());
  EXPECT_GT(head->oversized_length, 0u);
  ASSERT_OK_AND_ASSIGN(std::optional<ReadFrame> none, reader.NextFrame());
  EXPECT_FALSE(none.has_value());
  EXPECT_EQ(reader.buffered_bytes(), 0u);
  EXPECT_TRUE(reader.mid_frame()) << "the rest of the oversized frame is still to come";
  reader.Append(big.substr(100));
  ASSERT_OK_AND_ASSIGN(none, reader.NextFrame());
  EXPECT_FALSE(none.has_value());
  EXPECT_FALSE(reader.mid_frame());
}

}  // namespace
}  // namespace stead::server
