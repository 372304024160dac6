// Length-prefixed frames: the unit of every stead TCP connection (peer and client).
//
// A frame is a 4-byte big-endian payload length followed by that many payload bytes;
// the payload is one serialized protobuf message. A reader refuses an empty payload or
// one longer than its limit before buffering it, so a peer cannot make a node allocate
// more than max_frame_bytes per connection.
#ifndef STEAD_SERVER_FRAME_H_
#define STEAD_SERVER_FRAME_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "google/protobuf/message_lite.h"

namespace stead::server {

inline constexpr size_t kFrameHeaderBytes = 4;
// Default limit on one frame's payload. Raft APPEND messages are bounded well below it
// by raft::Config::max_message_bytes; snapshot chunks by their chunk size.
inline constexpr uint32_t kDefaultMaxFrameBytes = 16u << 20;

// Appends `message` as one frame to `out`. InvalidArgument, with nothing appended, when
// its serialized size is 0 (readers refuse empty frames, so every message type on the
// wire must have at least one field set) or exceeds `max_frame_bytes`.
absl::Status AppendFrame(const google::protobuf::MessageLite& message, uint32_t max_frame_bytes,
                         std::string* out);

// What a FrameReader does with a frame longer than its limit.
enum class OversizedFrames {
  kFail,  // Next() fails: the connection must be closed
  kSkip,  // NextFrame() reports the frame's head and discards the rest as it arrives
};

// The bytes of an oversized frame's payload that NextFrame() reports: enough for a
// message's first field if it is a number (a tag and a 64-bit varint), such as a
// request id.
inline constexpr size_t kOversizedHeadBytes = 11;

// A frame read by FrameReader::NextFrame().
struct ReadFrame {
  // The whole payload; for an oversized frame only its first (up to
  // kOversizedHeadBytes) bytes. A view into the reader's buffer: valid until the next
  // Append or PrepareAppend on the reader.
  absl::string_view payload;
  // Non-zero for a frame over the limit: its length. Its remaining bytes are skipped.
  uint32_t oversized_length = 0;
};

// Splits a byte stream into frame payloads without copying them: a payload is a view
// into the reader's buffer, parsed where the socket's bytes landed. Not thread-safe;
// one per connection.
class FrameReader {
 public:
  explicit FrameReader(uint32_t max_frame_bytes = kDefaultMaxFrameBytes,
                       OversizedFrames oversized = OversizedFrames::kFail)
      : max_frame_bytes_(max_frame_bytes), oversized_(oversized) {}

  // Adds bytes received from the socket.
  void Append(absl::string_view bytes);
  // For reading from a socket straight into the buffer: room for at least `min_bytes`
  // after the buffered bytes, filled by the caller, who then calls CommitAppend with
  // the number of bytes written (at most the room's size). The room is not cleared.
  absl::Span<char> PrepareAppend(size_t min_bytes);
  void CommitAppend(size_t bytes);

  // The next complete payload, std::nullopt when more bytes are needed, or
  // InvalidArgument for a zero or oversized length (the connection must be closed:
  // the stream cannot be resynchronised). After an error every call returns it again.
  // With OversizedFrames::kSkip an oversized frame is skipped silently (use NextFrame).
  // The payload is a view, valid until the next Append or PrepareAppend.
  absl::StatusOr<std::optional<absl::string_view>> Next();

  // As Next(), but with OversizedFrames::kSkip a frame over the limit is not an error:
  // it is returned with its head and length once its head has arrived, and its other
  // bytes are then discarded as they are appended, so the stream stays in step and
  // never more than the limit is buffered. InvalidArgument for a zero length.
  absl::StatusOr<std::optional<ReadFrame>> NextFrame();

  // Bytes received but not yet returned as a payload (or skipped).
  size_t buffered_bytes() const { return end_ - begin_; }
  // Those bytes; after an error, from the start of the frame that caused it (so a
  // port can tell what the other side sent instead of a frame).
  absl::string_view buffered() const { return {buffer_.get() + begin_, buffered_bytes()}; }
  // Whether a frame has begun and not yet been returned or skipped whole: some of its
  // bytes are buffered, or the rest of an oversized frame is still to be discarded.
  bool mid_frame() const { return buffered_bytes() > 0 || skip_bytes_ > 0; }

 private:
  // Makes room for `bytes` after end_: moves the buffered bytes to the front, or grows
  // the buffer. Invalidates returned payloads.
  void Reserve(size_t bytes);

  const uint32_t max_frame_bytes_;
  const OversizedFrames oversized_;
  // buffer_[begin_, end_) is buffered; [end_, capacity_) is free. Not zero-filled: a
  // read of 64 KiB would otherwise clear 64 KiB first.
  std::unique_ptr<char[]> buffer_;
  size_t capacity_ = 0;
  size_t begin_ = 0;
  size_t end_ = 0;
  size_t skip_bytes_ = 0;  // bytes of an oversized frame still to discard
  absl::Status error_;
};

// Parses a payload into `message`, InvalidArgument naming `what` if it is not a valid
// encoding. Semantic validation (ids, ranges, enum values) is the caller's job.
absl::Status ParseFramePayload(absl::string_view payload, absl::string_view what,
                               google::protobuf::MessageLite* message);

}  // namespace stead::server

#endif  // STEAD_SERVER_FRAME_H_
