// Fuzz target: a byte stream from an untrusted socket through FrameReader and the
// protobuf decoders of both connection types. Must never crash, hang or allocate more
// than the frame limit, whatever the bytes.
#include <cstddef>
#include <cstdint>
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
  for (size_t at = 0; at < stream.size(); at += piece) {
    reader.Append(stream.substr(at, piece));
    for (int frames = 0; frames < 1024; ++frames) {
      absl::StatusOr<std::optional<std::string>> payload = reader.Next();
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
