// The leader's ReadIndex requests waiting for a heartbeat quorum (Raft thesis §6.4).
//
// Each request records the commit index at the time it was made and the members that
// acknowledged a heartbeat carrying its context. Once a quorum acknowledged a request,
// it and every older request are confirmed: leadership was confirmed after they were all
// made.
//
// Not thread-safe.
#ifndef STEAD_RAFT_READ_ONLY_H_
#define STEAD_RAFT_READ_ONLY_H_

#include <cstddef>
#include <deque>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "raft/types.h"

namespace stead::raft {

struct ReadState;

// Read contexts starting with this byte are the core's own (lease heartbeats, the keys
// of reads the leader serves for other members); a client's may not.
inline constexpr char kReservedContextByte = '\x01';

class ReadOnly {
 public:
  // The most requests a leader keeps waiting; beyond it ReadIndex() is refused.
  static constexpr size_t kMaxPendingReads = 4096;

  bool Contains(const std::string& context) const;
  size_t size() const { return requests_.size(); }

  // Queues a request made at commit index `index`, acknowledged by `self` already.
  // Precondition: !Contains(context).
  void Add(Index index, std::string context, NodeId self);

  // Records that `from` acknowledged the heartbeat for `context`; returns the members
  // that acknowledged it so far, or nullopt for an unknown (answered or stale) context.
  std::optional<std::set<NodeId>> RecordAck(const std::string& context, NodeId from);

  // Removes and returns the request for `context` and every older one, oldest first.
  std::vector<ReadState> ReleaseThrough(const std::string& context);

  // Drops every request (leadership lost: they are never answered).
  void Reset() { requests_.clear(); }

 private:
  struct Request {
    Index index = 0;
    std::string context;
    std::set<NodeId> acks;
  };
  std::deque<Request> requests_;  // oldest first
};

}  // namespace stead::raft

#endif  // STEAD_RAFT_READ_ONLY_H_
