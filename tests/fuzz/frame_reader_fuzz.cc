// Fuzz target: a byte stream from an untrusted socket through FrameReader and the
// protobuf decoders of both connection types. Must never crash, hang or allocate more
// than the frame limit, whatever the bytes.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>

#include "proto/kv.pb.h"
#include "proto/raft.pb.h"
#include "server/frame.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  // The first byte chooses how the stream is split into reads.
  const size_t piece = 1 + data[0] % 64;
  const absl::string_view stream(reinterpret_cast<const char*>(data) + 1, size - 1);
  stead::server::FrameReader reader(/*max_frame_bytes=*/4096);
  // Its top bit chooses copies (Append) or reads into the reader's room (PrepareAppend).
  const bool direct = (data[0] & 0x80) != 0;
  for (size_t at = 0; at < stream.size(); at += piece) {
    const absl::string_view read = stream.substr(at, piece);
    if (direct) {
      const absl::Span<char> room = reader.PrepareAppend(read.size());
      std::memcpy(room.data(), read.data(), read.size());
      reader.CommitAppend(read.size());
    } else {
      reader.Append(read);
    }
    for (int frames = 0; frames < 1024; ++frames) {
      absl::StatusOr<std::optional<absl::string_view>> payload = reader.Next();
      if (!payload.ok()) return 0;  // the connection would be closed
      if (!payload->has_value()) break;
      stead::pb::Message raft_message;
      stead::server::ParseFramePayload(**payload, "raft message", &raft_message).IgnoreError();
      stead::pb::ClientRequest request;
      stead::server::ParseFramePayload(**payload, "client request", &request).IgnoreError();
    }
  }
  return 0;
}
