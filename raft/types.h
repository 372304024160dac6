// The Raft vocabulary shared by raft/, storage/ and server/.
#ifndef STEAD_RAFT_TYPES_H_
#define STEAD_RAFT_TYPES_H_

#include <cstdint>

namespace stead::raft {

// Position of an entry in the log; the first entry has index 1, 0 means "none".
using Index = uint64_t;
// A leadership epoch; 0 means "none", real terms start at 1.
using Term = uint64_t;
// A member's Raft id, unique for the life of the cluster and never reused (a member
// that rejoins with an empty volume gets a new one). 0 means "no node".
using NodeId = uint64_t;

inline constexpr NodeId kNoNode = 0;

}  // namespace stead::raft

#endif  // STEAD_RAFT_TYPES_H_
