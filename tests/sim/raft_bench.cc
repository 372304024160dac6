// raft_bench: throughput of the Raft core alone. Three cores in one thread exchange
// messages through an in-memory queue; persistence is MemoryLogStorage (no I/O) and
// applying is counting. What is measured is the core's own cost per committed
// proposal: Ready construction, replication bookkeeping, commit counting and protobuf
// copies. Not run by ctest; run by hand:
//
//   build/release/tests/sim/raft_bench
//
// Each benchmark reports `ops/s`: proposals committed (applied on the leader) per
// second of wall time, for a given number of proposals per batch.
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "base/check.h"
#include "base/log.h"
#include "benchmark/benchmark.h"
#include "proto/raft.pb.h"
#include "raft/memory_log_storage.h"
#include "raft/raft.h"

namespace stead::sim {
namespace {

class BenchCluster {
 public:
  explicit BenchCluster(int size) {
    std::vector<raft::NodeId> voters;
    for (int i = 1; i <= size; ++i) voters.push_back(static_cast<raft::NodeId>(i));
    // Logs at warning: the benchmark measures the core, not formatting log lines.
    const Logger logger(LogLevel::kWarning);
    for (const raft::NodeId id : voters) {
      auto node = std::make_unique<Node>();
      STEAD_CHECK_OK(node->storage.Append(raft::Raft::BootstrapEntries(voters)));
      pb::HardState hard_state;
      hard_state.set_term(1);
      hard_state.set_commit(voters.size());
      node->storage.SetHardState(hard_state);
      raft::Config config;
      config.id = id;
      config.random_seed = id;
      config.logger = logger;
      auto created = raft::Raft::Create(std::move(config), &node->storage);
      STEAD_CHECK_OK(created.status());
      node->raft = std::move(created).value();
      nodes_.push_back(std::move(node));
    }
    STEAD_CHECK_OK(leader().Campaign());
    Settle();
    STEAD_CHECK(leader().role() == raft::Role::kLeader);
  }

  raft::Raft& leader() { return *nodes_[0]->raft; }

  // Proposes `batch` commands on the leader and runs the cluster until they are all
  // applied on the leader. Returns how many were applied.
  uint64_t ProposeAndCommit(int batch) {
    for (int i = 0; i < batch; ++i) {
      STEAD_CHECK_OK(leader().Propose(std::string(kCommandBytes, 'x')));
    }
    const uint64_t before = applied_on_leader_;
    Settle();
    return applied_on_leader_ - before;
  }

 private:
  static constexpr size_t kCommandBytes = 64;
  // Log entries kept before compacting, so memory stays flat over long runs.
  static constexpr raft::Index kCompactEvery = 20000;

  struct Node {
    raft::MemoryLogStorage storage;
    std::unique_ptr<raft::Raft> raft;
    raft::Index applied = 0;
  };

  // Handles every Ready at once (persist = write to memory) and delivers every message
  // until the cluster is quiet.
  void Settle() {
    for (int round = 0; round < 10000; ++round) {
      bool busy = false;
      for (size_t i = 0; i < nodes_.size(); ++i) busy |= HandleReadys(i);
      while (!inbox_.empty()) {
        busy = true;
        pb::Message message = std::move(inbox_.front());
        inbox_.pop_front();
        STEAD_CHECK_OK(nodes_[message.to() - 1]->raft->Step(message));
      }
      if (!busy) return;
    }
    STEAD_CHECK(false) << "benchmark cluster did not settle";
  }

  bool HandleReadys(size_t i) {
    Node& node = *nodes_[i];
    bool any = false;
    while (node.raft->HasReady()) {
      any = true;
      raft::Ready ready = node.raft->TakeReady();
      for (pb::Message& message : ready.messages) inbox_.push_back(std::move(message));
      if (!ready.entries.empty()) STEAD_CHECK_OK(node.storage.Append(ready.entries));
      if (ready.hard_state.has_value()) node.storage.SetHardState(*ready.hard_state);
      if (const auto position = ready.PersistedPosition(); position.has_value()) {
        node.raft->OnPersisted(position->first, position->second);
      }
      for (pb::Message& message : ready.messages_after_persist) {
        inbox_.push_back(std::move(message));
      }
      if (!ready.committed_entries.empty()) {
        node.applied = ready.committed_entries.back().index();
        if (i == 0) applied_on_leader_ += ready.committed_entries.size();
        node.raft->OnApplied(node.applied);
        if (node.applied - node.storage.FirstIndex() > kCompactEvery) {
          STEAD_CHECK_OK(node.storage.Compact(node.applied, node.raft->conf_state()));
        }
      }
    }
    return any;
  }

  std::vector<std::unique_ptr<Node>> nodes_;
  std::deque<pb::Message> inbox_;
  uint64_t applied_on_leader_ = 0;
};

void BM_CommitThreeNodes(benchmark::State& state) {
  const int batch = static_cast<int>(state.range(0));
  BenchCluster cluster(3);
  uint64_t committed = 0;
  for (auto _ : state) {
    committed += cluster.ProposeAndCommit(batch);
  }
  state.counters["ops/s"] =
      benchmark::Counter(static_cast<double>(committed), benchmark::Counter::kIsRate);
  state.counters["batch"] = batch;
}
BENCHMARK(BM_CommitThreeNodes)->Arg(1)->Arg(16)->Arg(256)->Arg(1024);

}  // namespace
}  // namespace stead::sim

BENCHMARK_MAIN();
