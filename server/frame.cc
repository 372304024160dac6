#include "server/frame.h"

#include "absl/strings/str_cat.h"

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

absl::StatusOr<std::optional<std::string>> FrameReader::Next() {
  if (!error_.ok()) return error_;
  if (buffered_bytes() < kFrameHeaderBytes) return std::nullopt;
  const uint32_t length = DecodeLength(buffer_.data() + consumed_);
  if (length == 0 || length > max_frame_bytes_) {
    error_ = absl::InvalidArgumentError(
        length == 0 ? std::string("empty frame")
                    : absl::StrCat("frame of ", length, " bytes exceeds the limit of ",
                                   max_frame_bytes_, " bytes"));
    return error_;
  }
  if (buffered_bytes() - kFrameHeaderBytes < length) return std::nullopt;
  std::string payload = buffer_.substr(consumed_ + kFrameHeaderBytes, length);
  consumed_ += kFrameHeaderBytes + length;
  // Drop the consumed prefix once it dominates the buffer, keeping appends amortised O(1).
  if (consumed_ > buffer_.size() / 2) {
    buffer_.erase(0, consumed_);
    consumed_ = 0;
  }
  return payload;
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
