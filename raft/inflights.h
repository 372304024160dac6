// The window of APPEND messages a leader has sent to one follower and not yet seen
// acknowledged (flow control in the replicate state).
//
// Each in-flight message is recorded by the index of its last entry and its entry bytes.
// The window is full when it holds max_count messages, or when max_bytes (if non-zero)
// is reached. Acknowledging index i frees every message whose last index is <= i.
//
// Not thread-safe.
#ifndef STEAD_RAFT_INFLIGHTS_H_
#define STEAD_RAFT_INFLIGHTS_H_

#include <cstddef>
#include <cstdint>
#include <deque>

#include "raft/types.h"

namespace stead::raft {

class Inflights {
 public:
  // max_count >= 1; max_bytes == 0 means no byte limit.
  Inflights(size_t max_count, uint64_t max_bytes);

  // Records a message whose last entry is `last_index`. Precondition: !Full() and
  // last_index is greater than every recorded one.
  void Add(Index last_index, uint64_t bytes);
  // Frees every message whose last index is <= index.
  void FreeLE(Index index);
  // Frees only the oldest message (used while probing: one message at a time).
  void FreeFirstOne();
  void Reset();

  bool Full() const;
  size_t count() const { return messages_.size(); }
  uint64_t bytes() const { return bytes_; }

 private:
  struct InflightMessage {
    Index last_index = 0;
    uint64_t bytes = 0;
  };

  size_t max_count_;
  uint64_t max_bytes_;
  std::deque<InflightMessage> messages_;  // ascending last_index
  uint64_t bytes_ = 0;                    // sum of messages_[i].bytes
};

}  // namespace stead::raft

#endif  // STEAD_RAFT_INFLIGHTS_H_
