// Workload: the clients of a fault run, recording a History (history.h).
//
//   registers  C threads, each with a stead::Client of its own, pick random operations
//              on a few hot keys (put of a unique value, linearizable get,
//              compare-and-swap from the value the thread last read to a new unique
//              value);
//   bank       B threads read every account in one linearizable read and transfer
//              between two of them by one Txn (bank_workload.h);
//   watches    W watchers of the registers' prefix record every event
//              (watch_workload.h), across the faults and until FinishWatches.
//
// Every operation is recorded with its invoke and completion times on the run's steady
// clock and what the client learned:
//
//   ok       the call succeeded (a get's value, a CAS's swapped flag);
//   failed   a read that failed (it carries no information), or a write the client
//            refused before sending it (InvalidArgument, ResourceExhausted,
//            PermissionDenied, Unauthenticated);
//   unknown  any other failed write. The client retries an attempt on other members
//            until the call's deadline and reports only the last attempt's error, so
//            even Unavailable may follow an attempt that reached a leader: the write
//            may still commit (complete_ns = kNever).
//
// The clients dial the members' IP addresses and let the member forward to the leader
// (route_to_leader off): the leader's advertised name resolves only inside the
// namespaces.
//
// Thread-safety: Start, Stop and TakeHistory from one controlling thread.
#ifndef STEAD_TESTS_FAULT_WORKLOAD_H_
#define STEAD_TESTS_FAULT_WORKLOAD_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "base/mutex.h"
#include "absl/status/statusor.h"
#include "stead/client.h"
#include "tests/fault/bank_workload.h"
#include "tests/fault/history.h"
#include "tests/fault/watch_workload.h"

namespace stead::fault {

// Which workloads a run has (stead-fault --workloads).
struct WorkloadMix {
  bool registers = false;
  bool bank = false;
  bool watches = false;
};
// "registers,bank,watches" (any non-empty subset, in any order). InvalidArgument naming
// an unknown workload, or for none.
absl::StatusOr<WorkloadMix> ParseWorkloads(const std::string& names);

// How `clients` threads are shared: with registers and bank both, a quarter (at least
// one) do bank operations and the rest (at least one) registers; otherwise all do the
// one that runs. Watchers are extra.
struct ClientSplit {
  int registers = 0;
  int bank = 0;
};
ClientSplit SplitClients(int clients, const WorkloadMix& mix);

struct WorkloadOptions {
  std::vector<std::string> endpoints;  // "ip:port" of the members' client ports. Required.
  int clients = 16;       // register clients
  int bank_clients = 0;   // bank clients (client numbers after the register clients')
  int watchers = 0;       // watchers of the registers' prefix "r"
  int keys = 4;  // hot keys "r0".."r<keys-1>"
  BankOptions bank = {};
  uint64_t seed = 1;
  // The whole call's deadline and one attempt's, so that a partition cannot stall a
  // client for long.
  absl::Duration op_timeout = absl::Seconds(1);
  absl::Duration attempt_timeout = absl::Milliseconds(500);
  // Percentages of gets and puts; the rest are compare-and-swaps.
  int get_percent = 40;
  int put_percent = 30;
  // The run's clock zero (History times are nanoseconds since it).
  std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
  // Each client stops after this many operations even if not stopped.
  int64_t max_ops_per_client = 10'000'000;
};

// The outcome a failed write gets from the client's error (see the file comment).
Outcome ClassifyWriteError(const absl::Status& status);

// Counts of a history's register and bank operations by outcome.
struct OpCounts {
  int64_t ok = 0;
  int64_t failed = 0;
  int64_t unknown = 0;
};
OpCounts CountOutcomes(const History& history);

// The longest stretch in [from_ns, to_ns] in which no register or bank operation
// completed ok.
int64_t LongestUnavailableNs(const History& history, int64_t from_ns, int64_t to_ns);

class Workload {
 public:
  explicit Workload(WorkloadOptions options);
  Workload(const Workload&) = delete;
  Workload& operator=(const Workload&) = delete;
  // Stop.
  ~Workload();

  // Creates the clients; with bank clients, seeds the accounts; with watchers, reads
  // the current revision and opens the watches after it; then starts the threads.
  // InvalidArgument from the client's options; Unavailable when the seed or the
  // revision could not be had within 30 s.
  absl::Status Start();
  // Tells every client to finish its operation in flight (bounded by op_timeout) and
  // joins the threads. The watchers go on. Idempotent.
  void Stop();
  // After Stop, once the cluster is whole again: writes a fence (a put of a unique
  // value to r0, recorded) and waits until every watcher has delivered it, so that
  // their records cover every revision up to it. False if the fence could not be
  // written or some watcher had not delivered it by `timeout`. True without watchers.
  bool FinishWatches(absl::Duration timeout);
  // The history recorded so far (call after Stop), in completion order; closes the
  // watches.
  History TakeHistory();

 private:
  void RunClient(uint32_t index);
  void RunBankClient(uint32_t index);
  int64_t NowNs() const;
  void Record(RegisterOp op);

  const WorkloadOptions options_;
  // One per thread, made by Start: register clients, then bank clients.
  std::vector<std::unique_ptr<Client>> clients_;
  std::unique_ptr<Client> control_;  // the seed, the start revision, the fence
  std::unique_ptr<WatchSet> watch_set_;
  std::vector<std::thread> threads_;
  std::atomic<bool> stop_{false};
  Mutex mu_;
  History history_ ABSL_GUARDED_BY(mu_);
};

}  // namespace stead::fault

#endif  // STEAD_TESTS_FAULT_WORKLOAD_H_
