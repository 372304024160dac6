#include "storage/content_hash.h"

#include "base/check.h"

namespace stead::storage {

void ContentHasher::AddBytes(absl::string_view bytes) {
  uint64_t hash = hash_;
  for (const char byte : bytes) {
    hash ^= static_cast<unsigned char>(byte);
    hash *= kPrime;
  }
  hash_ = hash;
}

void ContentHasher::AddLength(uint64_t length) {
  // Keys, values and keyspace names are far below 4 GiB (storage/limits.h).
  STEAD_CHECK_LE(length, uint64_t{UINT32_MAX});
  char bytes[4];
  for (int i = 0; i < 4; ++i) bytes[i] = static_cast<char>((length >> (8 * i)) & 0xffu);
  AddBytes(absl::string_view(bytes, sizeof(bytes)));
}

void ContentHasher::Add(absl::string_view keyspace, absl::string_view key,
                        absl::string_view value) {
  AddLength(keyspace.size());
  AddBytes(keyspace);
  AddLength(key.size());
  AddBytes(key);
  AddLength(value.size());
  AddBytes(value);
  ++key_count_;
}

}  // namespace stead::storage
