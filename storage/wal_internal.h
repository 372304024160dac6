// Private parts of Wal shared by wal.cc (writer and reads) and wal_recovery.cc (Open).
// Not for use outside storage/wal*.cc.
#ifndef STEAD_STORAGE_WAL_INTERNAL_H_
#define STEAD_STORAGE_WAL_INTERNAL_H_

#include <cstdint>
#include <deque>
#include <memory>
#include <string>

#include "storage/file.h"
#include "storage/wal.h"

namespace stead::storage {

// One segment file; readers copy the shared_ptr under the WAL mutex and then read
// without it, so a deleted (unlinked) segment stays readable until they are done.
struct Wal::Segment {
  uint64_t sequence = 0;
  raft::Index first_index = 0;
  std::string name;
  std::shared_ptr<File> file;
};

// Where a durable entry lives.
struct Wal::Position {
  raft::Term term = 0;
  uint64_t sequence = 0;  // of its segment
  uint64_t offset = 0;    // of its record header
  uint64_t bytes = 0;     // record header + payload (the serialized entry)
};

// A submitted write waiting for the writer.
struct Wal::Pending {
  WalWrite write;
  Callback done;
  // Not OK: the write was refused at Submit and is completed with this, unwritten.
  absl::Status rejected;
  uint64_t bytes = 0;  // serialized entry bytes, counted in pending_bytes_
};

inline constexpr char kLockFileName[] = "LOCK";

inline std::string JoinPath(const std::string& dir, const std::string& name) {
  return dir + "/" + name;
}

}  // namespace stead::storage

#endif  // STEAD_STORAGE_WAL_INTERNAL_H_
