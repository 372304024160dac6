#include "raft/read_only.h"

#include <algorithm>
#include <utility>

#include "base/check.h"
#include "raft/raft.h"

namespace stead::raft {

bool ReadOnly::Contains(const std::string& context) const {
  return std::any_of(requests_.begin(), requests_.end(),
                     [&](const Request& request) { return request.context == context; });
}

void ReadOnly::Add(Index index, std::string context, NodeId self) {
  STEAD_CHECK(!Contains(context)) << "duplicate read context";
  STEAD_CHECK(requests_.empty() || requests_.back().index <= index)
      << "read indexes must not decrease";
  Request request;
  request.index = index;
  request.context = std::move(context);
  request.acks.insert(self);
  requests_.push_back(std::move(request));
}

std::optional<std::set<NodeId>> ReadOnly::RecordAck(const std::string& context, NodeId from) {
  for (Request& request : requests_) {
    if (request.context == context) {
      request.acks.insert(from);
      return request.acks;
    }
  }
  return std::nullopt;
}

std::vector<ReadState> ReadOnly::ReleaseThrough(const std::string& context) {
  std::vector<ReadState> released;
  if (!Contains(context)) return released;
  while (!requests_.empty()) {
    Request request = std::move(requests_.front());
    requests_.pop_front();
    const bool last = request.context == context;
    released.push_back(ReadState{request.index, std::move(request.context)});
    if (last) break;
  }
  return released;
}

}  // namespace stead::raft
