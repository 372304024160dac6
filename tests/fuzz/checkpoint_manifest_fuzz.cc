// Fuzz target: bytes from a checkpoint's manifest file, a peer's snapshot stream or the
// `meta` column family through the decoders that guard them. Must never crash, hang or
// allocate beyond the manifest limit, and whatever decodes must re-encode to bytes that
// decode to the same manifest (the encoding is deterministic).
#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "google/protobuf/stubs/logging.h"
#include "base/check.h"
#include "storage/checkpoint.h"
#include "storage/node_metadata.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // Protobuf logs every string field with invalid UTF-8; the decoders report it anyway.
  static const bool quiet = [] {
    google::protobuf::SetLogHandler(nullptr);
    return true;
  }();
  (void)quiet;
  const absl::string_view bytes(reinterpret_cast<const char*>(data), size);
  const absl::StatusOr<stead::pb::SnapshotManifest> manifest =
      stead::storage::DecodeManifestFile(bytes);
  if (manifest.ok()) {
    STEAD_CHECK_OK(stead::storage::ValidateManifest(*manifest));
    const std::string encoded = stead::storage::EncodeManifestFile(*manifest);
    const absl::StatusOr<stead::pb::SnapshotManifest> again =
        stead::storage::DecodeManifestFile(encoded);
    STEAD_CHECK_OK(again.status());
    STEAD_CHECK(stead::storage::EncodeManifestFile(*again) == encoded);
  }
  // The same bytes as a stored node metadata record.
  stead::storage::DecodeNodeMetadata(bytes).IgnoreError();  // Any outcome but a crash is fine.
  return 0;
}
