#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "tests/sim/sim_cluster.h"

namespace stead::sim::internal {

// ---------------------------------------------------------------------------------------
// Network.

void Simulator::Send(Node& from, const pb::Message& message) {
  if (message.type() == pb::MESSAGE_TYPE_SNAPSHOT) return SendSnapshot(from, message);
  Node* to = Find(message.to());
  if (to == nullptr || to->removed) return;
  if (!to->up() && Chance(0.5)) {
    // The connection was refused: the runtime tells the core.
    from.raft->ReportUnreachable(message.to());
    return;
  }
  if (from.muted || Blocked(from.id, message.to()) ||
      Chance(settling_ ? 0.0 : profile_.drop_probability)) {
    return;
  }
  const int copies = Chance(settling_ ? 0.0 : profile_.duplicate_probability) ? 2 : 1;
  for (int i = 0; i < copies; ++i) {
    Event deliver;
    deliver.kind = EventKind::kDeliver;
    deliver.node = message.to();
    deliver.message = message;
    deliver.time = now_ + NetworkDelay();
    if (!settling_ && Chance(profile_.long_delay_probability)) {
      deliver.time = now_ + Range(1, profile_.long_delay_ticks) * kMicroticksPerTick;
    }
    Schedule(std::move(deliver));
  }
}

void Simulator::SendSnapshot(Node& from, const pb::Message& message) {
  // The "bytes" are the sender's state machine at its latest checkpoint.
  if (from.snapshot_state.applied != message.snapshot().index()) {
    return Fail(Check::kContract,
                absl::StrCat("node ", from.id, " sends snapshot index ", message.snapshot().index(),
                             " but its latest checkpoint is at ", from.snapshot_state.applied));
  }
  const uint64_t transfer = next_transfer_++;
  transfers_[transfer] = from.snapshot_state;
  Trace(absl::StrCat("node=", from.id, " streams snapshot index=", message.snapshot().index(),
                     " to ", message.to()));
  Event done;
  done.kind = EventKind::kSnapshotDone;
  done.node = from.id;
  done.incarnation = from.incarnation;
  done.transfer = transfer;
  done.message = message;
  done.time = now_ + Range(1, profile_.snapshot_transfer_ticks) * kMicroticksPerTick;
  Schedule(std::move(done));
}

void Simulator::SnapshotDone(Event& event) {
  StateMachine bytes = std::move(transfers_[event.transfer]);
  transfers_.erase(event.transfer);
  const NodeId to_id = event.message.to();
  Node* to = Find(to_id);
  const bool ok = to != nullptr && to->up() && !to->removed && !Blocked(event.node, to_id) &&
                  !Chance(settling_ ? 0.0 : profile_.drop_probability);
  if (ok) {
    // The runtime verified the checkpoint; stage it, then hand the message to the core.
    to->staged_snapshots[event.message.snapshot().index()] = std::move(bytes);
    ++result_.stats.messages;
    if (const absl::Status status = to->raft->Step(event.message); !status.ok()) {
      return Fail(
          Check::kContract,
          absl::StrCat("node ", to_id, " rejected a SNAPSHOT message: ", status.ToString()));
    }
    Drain(*to);
  }
  Node* from = FindUp(event.node, event.incarnation);
  if (from != nullptr) {
    Trace(absl::StrCat("node=", from->id, " snapshot to ", to_id, ok ? " done" : " failed"));
    from->raft->ReportSnapshot(to_id, ok);
    Drain(*from);
  }
}

void Simulator::Deliver(Event& event) {
  Node* to = Find(event.node);
  if (to == nullptr || !to->up() || to->removed || Blocked(event.message.from(), event.node)) {
    return;
  }
  ++result_.stats.messages;
  const pb::Message& m = event.message;
  trace_hash_ = FnvMix(
      FnvMix(
          FnvMix(FnvMix(FnvMix(trace_hash_, static_cast<uint64_t>(m.type())), m.from()), m.term()),
          m.index()),
      static_cast<uint64_t>(m.entries_size()));
  if (const absl::Status status = to->raft->Step(event.message); !status.ok()) {
    return Fail(Check::kContract, absl::StrCat("node ", to->id, " rejected message type ",
                                               pb::MessageType_Name(event.message.type()), " from ",
                                               event.message.from(), ": ", status.ToString()));
  }
  Drain(*to);
}

void Simulator::StartPartition() {
  std::vector<NodeId> members;
  for (const auto& [id, node] : nodes_) {
    if (!node.removed) members.push_back(id);
  }
  if (members.size() < 2) return;
  std::shuffle(members.begin(), members.end(), random_);
  const uint64_t kind = Range(0, 3);
  std::string what;
  if (kind == 0 || kind == 3) {
    // Symmetric split: a minority (or, with kind 3, the leader alone) cut off.
    size_t cut = 1 + Range(0, (members.size() - 1) / 2);
    if (kind == 3) {
      Node* leader = Leader();
      if (leader != nullptr) {
        members.erase(std::find(members.begin(), members.end(), leader->id));
        members.insert(members.begin(), leader->id);
      }
      cut = 1;
    }
    for (size_t i = 0; i < cut; ++i) {
      for (size_t j = cut; j < members.size(); ++j) {
        blocked_.insert({members[i], members[j]});
        blocked_.insert({members[j], members[i]});
      }
    }
    what = absl::StrCat(kind == 3 ? "isolate" : "split", " first ", cut, " of shuffled");
  } else if (kind == 1) {
    // One-way: some links drop in one direction only.
    const uint64_t links = Range(1, 3);
    for (uint64_t i = 0; i < links; ++i) {
      const NodeId a = members[Range(0, members.size() - 1)];
      const NodeId b = members[Range(0, members.size() - 1)];
      if (a != b) blocked_.insert({a, b});
    }
    what = "one-way";
  } else {
    // Bridge: two halves that only reach each other through members[0].
    const size_t half = 1 + members.size() / 2;
    for (size_t i = 1; i < half; ++i) {
      for (size_t j = half; j < members.size(); ++j) {
        blocked_.insert({members[i], members[j]});
        blocked_.insert({members[j], members[i]});
      }
    }
    what = absl::StrCat("bridge via ", members[0]);
  }
  std::string links;
  for (const auto& [a, b] : blocked_) absl::StrAppend(&links, " ", a, "->", b);
  Trace(absl::StrCat("partition ", what, ":", links));
  partition_end_ = now_ + Range(1, profile_.partition_ticks) * kMicroticksPerTick;
  ++result_.stats.partitions;
}

}  // namespace stead::sim::internal
