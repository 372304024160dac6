// The entries the WAL crash test writes, shared by the writer process and the checker,
// so that every entry found after a crash can be checked byte for byte.
#ifndef STEAD_TESTS_STORAGE_CRASH_ENTRIES_H_
#define STEAD_TESTS_STORAGE_CRASH_ENTRIES_H_

#include <cstdint>
#include <string>

#include "absl/strings/str_cat.h"
#include "raft/types.h"

namespace stead::storage::crash_test {

// Payload of the entry (index, term): 64..575 bytes chosen by a hash of both, starting
// with a readable prefix.
inline std::string EntryData(raft::Index index, raft::Term term) {
  uint64_t hash = index * 0x9e3779b97f4a7c15ULL ^ (term + 0x632be59bd9b4e019ULL);
  hash ^= hash >> 29;
  std::string data = absl::StrCat("index=", index, " term=", term, " ");
  data.resize(64 + hash % 512, static_cast<char>('A' + (hash >> 8) % 26));
  return data;
}

}  // namespace stead::storage::crash_test

#endif  // STEAD_TESTS_STORAGE_CRASH_ENTRIES_H_
