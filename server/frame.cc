#include "server/frame.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/check.h"
#include "base/status_macros.h"

namespace stead::server {
namespace {

uint32_t DecodeLength(const char* bytes) {
  const auto* b = reinterpret_cast<const unsigned char*>(bytes);
  return (uint32_t{b[0]} << 24) | (uint32_t{b[1]} << 16) | (uint32_t{b[2]} << 8) | uint32_t{b[3]};
}

}  // namespace

absl::Status AppendFrame(const google::protobuf::MessageLite& message, uint32_t max_frame_bytes,
                         std::string* out) {
  const size_t size = message.ByteSizeLong();
  if (size == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("refusing to send an empty ", message.GetTypeName(), " frame"));
  }
  if (size > max_frame_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(message.GetTypeName(), " of ", size,
                                                   " bytes exceeds the frame limit of ",
                                                   max_frame_bytes, " bytes"));
  }
  const auto length = static_cast<uint32_t>(size);
  const size_t header_at = out->size();
  out->resize(header_at + kFrameHeaderBytes + size);
  char* header = out->data() + header_at;
  header[0] = static_cast<char>(length >> 24);
  header[1] = static_cast<char>(length >> 16);
  header[2] = static_cast<char>(length >> 8);
  header[3] = static_cast<char>(length);
  if (!message.SerializeToArray(header + kFrameHeaderBytes, static_cast<int>(size))) {
    out->resize(header_at);
    return absl::InvalidArgumentError(
        absl::StrCat("cannot serialize ", message.GetTypeName(), " (missing fields?)"));
  }
  return absl::OkStatus();
}

void FrameReader::Append(absl::string_view bytes) {
  if (bytes.empty()) return;
  const absl::Span<char> room = PrepareAppend(bytes.size());
  std::memcpy(room.data(), bytes.data(), bytes.size());
  CommitAppend(bytes.size());
}

absl::Span<char> FrameReader::PrepareAppend(size_t min_bytes) {
  Reserve(min_bytes);
  return absl::Span<char>(buffer_.get() + end_, capacity_ - end_);
}

void FrameReader::CommitAppend(size_t bytes) {
  STEAD_CHECK(bytes <= capacity_ - end_);
  end_ += bytes;
}

void FrameReader::Reserve(size_t bytes) {
  if (capacity_ - end_ >= bytes) return;
  const size_t buffered = buffered_bytes();
  if (buffered + bytes <= capacity_ && begin_ > 0) {
    std::memmove(buffer_.get(), buffer_.get() + begin_, buffered);
  } else {
    const size_t capacity = std::max(2 * capacity_, buffered + bytes);
    std::unique_ptr<char[]> grown(new char[capacity]);
    if (buffered > 0) std::memcpy(grown.get(), buffer_.get() + begin_, buffered);
    buffer_ = std::move(grown);
    capacity_ = capacity;
  }
  begin_ = 0;
  end_ = buffered;
}

absl::StatusOr<std::optional<absl::string_view>> FrameReader::Next() {
  for (;;) {
    STEAD_ASSIGN_OR_RETURN(std::optional<ReadFrame> frame, NextFrame());
    if (!frame.has_value()) return std::nullopt;
    if (frame->oversized_length == 0) return frame->payload;
  }
}

absl::StatusOr<std::optional<ReadFrame>> FrameReader::NextFrame() {
  if (!error_.ok()) return error_;
  if (skip_bytes_ > 0) {
    const size_t skipped = std::min(skip_bytes_, buffered_bytes());
    begin_ += skipped;
    skip_bytes_ -= skipped;
    if (skip_bytes_ > 0) return std::nullopt;
  }
  if (buffered_bytes() < kFrameHeaderBytes) return std::nullopt;
  const uint32_t length = DecodeLength(buffer_.get() + begin_);
  if (length == 0 || (length > max_frame_bytes_ && oversized_ == OversizedFrames::kFail)) {
    error_ = absl::InvalidArgumentError(
        length == 0 ? std::string("empty frame")
                    : absl::StrCat("frame of ", length, " bytes exceeds the limit of ",
                                   max_frame_bytes_, " bytes"));
    return error_;
  }
  ReadFrame frame;
  size_t take = length;
  if (length > max_frame_bytes_) {
    frame.oversized_length = length;
    take = std::min<size_t>(length, kOversizedHeadBytes);
  }
  if (buffered_bytes() - kFrameHeaderBytes < take) return std::nullopt;
  frame.payload = absl::string_view(buffer_.get() + begin_ + kFrameHeaderBytes, take);
  begin_ += kFrameHeaderBytes + take;
  skip_bytes_ = length - take;
  return frame;
}

absl::Status ParseFramePayload(absl::string_view payload, absl::string_view what,
                               google::protobuf::MessageLite* message) {
  if (!message->ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
    return absl::InvalidArgumentError(
        absl::StrCat("malformed ", what, ": ", payload.size(), " bytes are not a valid ",
                     message->GetTypeName()));
  }
  return absl::OkStatus();
}

}  // namespace stead::server
