#include "raft/test_network.h"

#include <algorithm>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "base/check.h"

namespace stead::raft::testing {
namespace {

// Upper bound on delivery rounds in Stabilize(): a healthy cluster goes quiet in a few
// rounds; hitting it means a livelock, which the CHECK reports.
constexpr int kMaxStabilizeRounds = 10000;

}  // namespace

std::string DescribeEntry(const pb::Entry& entry) {
  std::string out = absl::StrCat(entry.term(), "/", entry.index());
  if (entry.type() == pb::ENTRY_TYPE_CONF_CHANGE) {
    pb::ConfChange change;
    if (!change.ParseFromString(entry.data())) return absl::StrCat(out, "(bad conf change)");
    const char* kind = "?";
    switch (change.type()) {
      case pb::CONF_CHANGE_TYPE_ADD_LEARNER:
        kind = "add-learner";
        break;
      case pb::CONF_CHANGE_TYPE_ADD_VOTER:
        kind = "add-voter";
        break;
      case pb::CONF_CHANGE_TYPE_REMOVE_NODE:
        kind = "remove";
        break;
      default:
        break;
    }
    return absl::StrCat(out, "(", kind, " ", change.node_id(), ")");
  }
  if (!entry.data().empty()) absl::StrAppend(&out, ":", entry.data());
  return out;
}

std::string DescribeMessage(const pb::Message& m) {
  std::string type = pb::MessageType_Name(m.type());
  if (type.rfind("MESSAGE_TYPE_", 0) == 0) type = type.substr(13);
  std::string out = absl::StrCat(m.from(), "->", m.to(), " ", type, " term=", m.term());
  switch (m.type()) {
    case pb::MESSAGE_TYPE_PRE_VOTE:
    case pb::MESSAGE_TYPE_VOTE:
      absl::StrAppend(&out, " log_term=", m.log_term(), " index=", m.index(),
                      m.transfer() ? " transfer" : "");
      break;
    case pb::MESSAGE_TYPE_APPEND: {
      absl::StrAppend(&out, " log_term=", m.log_term(), " index=", m.index(),
                      " commit=", m.commit());
      if (m.entries_size() > 0) {
        absl::StrAppend(&out, " entries=[");
        for (int i = 0; i < m.entries_size(); ++i) {
          absl::StrAppend(&out, i == 0 ? "" : " ", DescribeEntry(m.entries(i)));
        }
        absl::StrAppend(&out, "]");
      }
      break;
    }
    case pb::MESSAGE_TYPE_APPEND_RESPONSE:
      absl::StrAppend(&out, " index=", m.index());
      if (m.reject()) {
        absl::StrAppend(&out, " reject hint=", m.reject_hint(), "/", m.reject_hint_term());
      }
      break;
    case pb::MESSAGE_TYPE_HEARTBEAT:
      absl::StrAppend(&out, " commit=", m.commit());
      [[fallthrough]];
    case pb::MESSAGE_TYPE_HEARTBEAT_RESPONSE:
    case pb::MESSAGE_TYPE_READ_INDEX:
      if (!m.context().empty()) absl::StrAppend(&out, " context=", absl::CHexEscape(m.context()));
      break;
    case pb::MESSAGE_TYPE_READ_INDEX_RESPONSE:
      absl::StrAppend(&out, " index=", m.index(), " context=", absl::CHexEscape(m.context()));
      break;
    case pb::MESSAGE_TYPE_PRE_VOTE_RESPONSE:
    case pb::MESSAGE_TYPE_VOTE_RESPONSE:
      if (m.reject()) absl::StrAppend(&out, " reject");
      break;
    case pb::MESSAGE_TYPE_SNAPSHOT:
      absl::StrAppend(&out, " snapshot=", m.snapshot().term(), "/", m.snapshot().index());
      break;
    default:
      break;
  }
  return out;
}

TestNetwork::TestNetwork(const std::vector<NodeId>& voters, std::function<void(Config&)> adjust)
    : adjust_(std::move(adjust)) {
  const std::vector<pb::Entry> bootstrap = Raft::BootstrapEntries(voters);
  for (NodeId id : voters) {
    Node& node = nodes_[id];
    node.storage = std::make_unique<MemoryLogStorage>();
    STEAD_CHECK_OK(node.storage->Append(bootstrap));
    pb::HardState hard_state;
    hard_state.set_term(1);
    hard_state.set_commit(bootstrap.size());
    node.storage->SetHardState(hard_state);
    CreateRaft(id);
  }
  ProcessReadys();
}

void TestNetwork::AddEmptyNode(NodeId id) {
  Node& node = nodes_[id];
  node.storage = std::make_unique<MemoryLogStorage>();
  CreateRaft(id);
}

void TestNetwork::CreateRaft(NodeId id) {
  Node& node = nodes_.at(id);
  Config config;
  config.id = id;
  config.random_seed = id;
  config.applied = node.applied_index;
  config.logger = Logger(LogLevel::kWarning);
  if (adjust_) adjust_(config);
  node.config = config;
  absl::StatusOr<std::unique_ptr<Raft>> raft = Raft::Create(config, node.storage.get());
  STEAD_CHECK_OK(raft.status());
  node.raft = *std::move(raft);
}

std::vector<NodeId> TestNetwork::ids() const {
  std::vector<NodeId> out;
  for (const auto& [id, node] : nodes_) out.push_back(id);
  return out;
}

void TestNetwork::ProcessReady(NodeId id) {
  Node& node = nodes_.at(id);
  Ready ready = node.raft->TakeReady();
  // Messages that need nothing durable go out first, as a runtime would send them while
  // it writes.
  for (pb::Message& message : ready.messages) queue_.push_back(std::move(message));
  if (ready.snapshot) {
    if (trace_ != nullptr) {
      trace_->push_back(absl::StrCat(id, " installed snapshot ", ready.snapshot->term(), "/",
                                     ready.snapshot->index()));
    }
    STEAD_CHECK_OK(node.storage->ApplySnapshot(*ready.snapshot));
    node.installed_snapshot_index = ready.snapshot->index();
    node.applied_index = ready.snapshot->index();
    // The state machine becomes the snapshot: take it from any node that applied it.
    for (const auto& [other_id, other] : nodes_) {
      if (other_id == id || other.applied_index < ready.snapshot->index()) continue;
      node.applied.clear();
      for (const auto& applied : other.applied) {
        if (applied.first <= ready.snapshot->index()) node.applied.push_back(applied);
      }
      break;
    }
  }
  STEAD_CHECK_OK(node.storage->Append(ready.entries));
  if (ready.hard_state) node.storage->SetHardState(*ready.hard_state);
  if (auto position = ready.PersistedPosition()) {
    node.raft->OnPersisted(position->first, position->second);
  }
  for (pb::Message& message : ready.messages_after_persist) queue_.push_back(std::move(message));
  ApplyCommitted(id, ready.committed_entries);
  for (ReadState& state : ready.read_states) {
    if (trace_ != nullptr) {
      trace_->push_back(
          absl::StrCat(id, " read-state index=", state.index, " context=", state.context));
    }
    node.read_states.push_back(std::move(state));
  }
}

void TestNetwork::ApplyCommitted(NodeId id, const std::vector<pb::Entry>& entries) {
  Node& node = nodes_.at(id);
  for (const pb::Entry& entry : entries) {
    STEAD_CHECK_EQ(entry.index(), node.applied_index + 1) << "node " << id;
    node.applied_index = entry.index();
    if (trace_ != nullptr) {
      trace_->push_back(absl::StrCat(id, " applied ", DescribeEntry(entry)));
    }
    if (entry.type() == pb::ENTRY_TYPE_NORMAL && !entry.data().empty()) {
      node.applied.emplace_back(entry.index(), entry.data());
    }
  }
  if (!entries.empty()) node.raft->OnApplied(node.applied_index);
}

void TestNetwork::ProcessReadys() {
  for (int round = 0; round < kMaxStabilizeRounds; ++round) {
    bool any = false;
    for (auto& [id, node] : nodes_) {
      if (node.raft != nullptr && !node.manual && node.raft->HasReady()) {
        ProcessReady(id);
        any = true;
      }
    }
    if (!any) return;
  }
  STEAD_CHECK(false) << "Readys never drained";
}

size_t TestNetwork::DeliverOnce() {
  std::deque<pb::Message> batch = std::move(queue_);
  queue_.clear();
  size_t delivered = 0;
  for (pb::Message& message : batch) {
    auto it = nodes_.find(message.to());
    const bool reachable = it != nodes_.end() && it->second.raft != nullptr &&
                           cut_.count({message.from(), message.to()}) == 0;
    const bool snapshot = message.type() == pb::MESSAGE_TYPE_SNAPSHOT;
    auto sender = nodes_.find(message.from());
    if (trace_ != nullptr) {
      trace_->push_back(absl::StrCat(DescribeMessage(message), reachable ? "" : " (dropped)"));
    }
    if (!reachable) {
      if (snapshot && sender != nodes_.end() && sender->second.raft != nullptr) {
        sender->second.raft->ReportSnapshot(message.to(), false);
      }
      continue;
    }
    absl::Status status = it->second.raft->Step(message);
    if (!status.ok()) step_errors_.push_back(status.ToString());
    if (snapshot && sender != nodes_.end() && sender->second.raft != nullptr) {
      sender->second.raft->ReportSnapshot(message.to(), true);
    }
    ++delivered;
  }
  ProcessReadys();
  return delivered;
}

void TestNetwork::Stabilize() {
  ProcessReadys();
  for (int round = 0; round < kMaxStabilizeRounds; ++round) {
    if (queue_.empty()) return;
    DeliverOnce();
  }
  STEAD_CHECK(false) << "network did not stabilize";
}

void TestNetwork::Tick(NodeId id, int count) {
  for (int i = 0; i < count; ++i) {
    nodes_.at(id).raft->Tick();
    ProcessReadys();
  }
}

void TestNetwork::TickAll(int count) {
  for (int i = 0; i < count; ++i) {
    for (auto& [id, node] : nodes_) {
      if (node.raft != nullptr) node.raft->Tick();
    }
    Stabilize();
  }
}

void TestNetwork::Elect(NodeId id) {
  STEAD_CHECK_OK(nodes_.at(id).raft->Campaign());
  Stabilize();
}

NodeId TestNetwork::Leader() const {
  NodeId leader = kNoNode;
  Term best_term = 0;
  for (const auto& [id, node] : nodes_) {
    if (node.raft == nullptr || node.raft->role() != Role::kLeader) continue;
    if (node.raft->term() > best_term) {
      best_term = node.raft->term();
      leader = id;
    }
  }
  return leader;
}

void TestNetwork::Isolate(NodeId id) {
  for (const auto& [other, node] : nodes_) {
    if (other != id) Cut(id, other);
  }
}

void TestNetwork::DropIf(const std::function<bool(const pb::Message&)>& drop) {
  queue_.erase(std::remove_if(queue_.begin(), queue_.end(), drop), queue_.end());
}

void TestNetwork::Crash(NodeId id) {
  Node& node = nodes_.at(id);
  node.raft.reset();
  queue_.erase(std::remove_if(queue_.begin(), queue_.end(),
                              [id](const pb::Message& m) { return m.from() == id; }),
               queue_.end());
}

void TestNetwork::Restart(NodeId id) {
  Node& node = nodes_.at(id);
  STEAD_CHECK(node.raft == nullptr);
  // The state machine of this harness is volatile: it restarts from the snapshot and
  // re-applies the committed entries handed out again.
  const Index snapshot_index = node.storage->LatestSnapshot().index();
  node.applied_index = snapshot_index;
  std::erase_if(node.applied, [&](const auto& applied) { return applied.first > snapshot_index; });
  CreateRaft(id);
  ProcessReadys();
}

void TestNetwork::Compact(NodeId id, Index index) {
  Node& node = nodes_.at(id);
  STEAD_CHECK_LE(index, node.applied_index);
  STEAD_CHECK_OK(node.storage->Compact(index, node.raft->conf_state()));
}

}  // namespace stead::raft::testing
