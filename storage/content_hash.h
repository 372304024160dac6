// The content hash of a state machine: one 64-bit number that two members holding the
// same user data agree on, whatever order the data was written in (`steadctl endpoint
// hash`, convergence checks in tests).
//
// Definition (stable; tools outside stead may recompute it): FNV-1a 64 (offset basis
// 0xcbf29ce484222325, prime 0x100000001b3) over, for every pair of every user keyspace
// but those the caller leaves out (keyspaces in byte order of their names, keys in byte
// order within each),
//   u32 keyspace length | keyspace | u32 key length | key | u32 value length | value
// with the lengths little-endian. The lengths make the encoding unambiguous, so
// ("ab","c") and ("a","bc") hash differently. The `meta` column family (applied index,
// node identity) is not user data and is left out: it differs between members. The
// runtime also leaves out its `members` keyspace (BackupService): the member records say
// who holds the data, not what it is, and a restored cluster rewrites them, so a
// restored member hashes like the member its backup came from.
//
// Thread-safety: a ContentHasher is used by one thread at a time.
#ifndef STEAD_STORAGE_CONTENT_HASH_H_
#define STEAD_STORAGE_CONTENT_HASH_H_

#include <cstdint>

#include "absl/strings/string_view.h"

namespace stead::storage {

// The hash and how many pairs it covers.
struct ContentHash {
  uint64_t hash = 0;
  uint64_t key_count = 0;  // pairs hashed, over every user keyspace
  bool operator==(const ContentHash&) const = default;
};

// Accumulates pairs in the order they are added (the caller iterates in key order).
class ContentHasher {
 public:
  static constexpr uint64_t kOffsetBasis = 0xcbf29ce484222325ull;
  static constexpr uint64_t kPrime = 0x100000001b3ull;

  void Add(absl::string_view keyspace, absl::string_view key, absl::string_view value);
  ContentHash result() const { return ContentHash{hash_, key_count_}; }

 private:
  void AddBytes(absl::string_view bytes);
  void AddLength(uint64_t length);

  uint64_t hash_ = kOffsetBasis;
  uint64_t key_count_ = 0;
};

}  // namespace stead::storage

#endif  // STEAD_STORAGE_CONTENT_HASH_H_
