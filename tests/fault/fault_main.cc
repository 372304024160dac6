// stead-fault: one fault run. Brings up a cluster of real members in network
// namespaces (fault_cluster.h), runs the workload (workload.h) and the nemesis
// (nemesis.h) together for --duration, heals everything, waits for the members to
// converge and prints one RESULT line. See tests/fault/README.md.
//
// Exit codes: 0 the run completed and nothing was found wrong; 1 a violation (members
// that diverged or never converged, a watcher that never caught up, a checker's
// verdict); 2 a setup error (bad flags, not root, the cluster did not come up).
#include <signal.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "stead/client.h"
#include "tests/fault/checkers.h"
#include "tests/fault/fault_cluster.h"
#include "tests/fault/history.h"
#include "tests/fault/history_io.h"
#include "tests/fault/nemesis.h"
#include "tests/fault/workload.h"

namespace stead::fault {
namespace {

constexpr int kExitOk = 0;
constexpr int kExitViolation = 1;
constexpr int kExitSetup = 2;

constexpr char kUsage[] = R"(usage: stead-fault --stead=PATH --netns-script=PATH --out=DIR [flags]
       stead-fault --check=DIR

Runs a stead cluster in network namespaces (needs root) under a client workload while
a nemesis injects faults chosen by the seed, then heals everything, waits for the
members to converge, checks the history (linearizability of every key, the bank's
conservation of money, the watchers' events) and prints:
  RESULT seed=N ops_ok=N ops_failed=N ops_unknown=N faults=KIND:N,...
         longest_unavailable_ms=N converged=0|1 registers=ok|FAILED [bank=..] [watches=..]
  CHECKS <each checker's verdict>
The run folder keeps the history (*.jsonl), the fault log (faults.log), the checkers'
verdicts with their evidence (check.txt) and each member's volumes and log.
--check=DIR runs the checkers again on the history saved in DIR.

  --seed=N             schedule and workload seed (default 1)
  --duration=D         how long the workload and nemesis run (default 30s)
  --members=N          members, 1..9 (default 3)
  --workloads=NAMES    comma-separated: registers (put, get, CAS on hot keys), bank
                       (transfers between accounts, reads of all of them), watches
                       (watchers of the registers' keys); default all three
  --clients=N          concurrent clients (default 16); with registers and bank, a
                       quarter of them do bank operations
  --watchers=N         watchers, each on its own client (default 3)
  --keys=N             hot keys (default 4)
  --faults=KINDS       comma-separated: partition-leader, partition-random, bridge, kill,
                       stop, delay, loss, transfer, membership, disk-full; or all
                       (default all; all leaves disk-full out without a tmpfs volume)
  --stead=PATH         the stead binary
  --netns-script=PATH  tests/tools/netns_cluster.sh
  --out=DIR            run folder: member volumes and logs, faults.log
  --prefix=P           namespace prefix (default frun)
  --subnet=S           a.b.c.0/24 (default 10.79.10.0/24)
  --nfq-delay=PATH     the delay helper (tests/tools/nfq_delay), needed by the delay fault
  --snapshot-entries=N members checkpoint every N entries, so that a member cut off for
                       a while catches up by a snapshot transfer (default 0: the
                       members' default)
  --failpoints=NAMES   plant bugs in every member (STEAD_FAILPOINTS, base/failpoint.h),
                       e.g. unsafe-local-reads: the run must then find a violation
  --wal-tmpfs-mb=N     each member's WAL volume is a tmpfs of N MiB (at least 130: two
                       preallocated 64 MiB segments), which the disk-full fault can fill
  --data-tmpfs-mb=N    each member's data volume (database, checkpoints) is a tmpfs of
                       N MiB (at least 16), which the disk-full fault can fill
Exit: 0 ok, 1 violation, 2 setup error.
)";

struct Flags {
  uint64_t seed = 1;
  absl::Duration duration = absl::Seconds(30);
  int members = 3;
  int clients = 16;
  int watchers = 3;
  WorkloadMix workloads = {.registers = true, .bank = true, .watches = true};
  int keys = 4;
  std::string faults = "all";
  std::string stead;
  std::string netns_script;
  std::string out;
  std::string prefix = "frun";
  std::string subnet = "10.79.10.0/24";
  std::string nfq_delay;
  int64_t snapshot_entries = 0;
  std::string failpoints;
  std::string check;
  int wal_tmpfs_mb = 0;
  int data_tmpfs_mb = 0;
  bool help = false;
};

absl::Status ParseFlags(int argc, char** argv, Flags* flags) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      flags->help = true;
      continue;
    }
    const size_t equals = arg.find('=');
    if (!absl::StartsWith(arg, "--") || equals == std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat("expected --name=value, got '", arg, "'"));
    }
    const std::string name = arg.substr(2, equals - 2);
    const std::string value = arg.substr(equals + 1);
    bool ok = true;
    if (name == "seed") {
      ok = absl::SimpleAtoi(value, &flags->seed);
    } else if (name == "duration") {
      ok = absl::ParseDuration(value, &flags->duration) && flags->duration > absl::ZeroDuration();
    } else if (name == "members") {
      ok = absl::SimpleAtoi(value, &flags->members) && flags->members >= 1 && flags->members <= 9;
    } else if (name == "clients") {
      ok = absl::SimpleAtoi(value, &flags->clients) && flags->clients >= 1 && flags->clients <= 256;
    } else if (name == "watchers") {
      ok = absl::SimpleAtoi(value, &flags->watchers) && flags->watchers >= 1 &&
           flags->watchers <= 64;
    } else if (name == "workloads") {
      absl::StatusOr<WorkloadMix> mix = ParseWorkloads(value);
      if (!mix.ok()) return mix.status();
      flags->workloads = *mix;
    } else if (name == "keys") {
      ok = absl::SimpleAtoi(value, &flags->keys) && flags->keys >= 1 && flags->keys <= 1000;
    } else if (name == "faults") {
      flags->faults = value;
    } else if (name == "stead") {
      flags->stead = value;
    } else if (name == "netns-script") {
      flags->netns_script = value;
    } else if (name == "out") {
      flags->out = value;
    } else if (name == "prefix") {
      flags->prefix = value;
    } else if (name == "subnet") {
      flags->subnet = value;
    } else if (name == "nfq-delay") {
      flags->nfq_delay = value;
    } else if (name == "snapshot-entries") {
      ok = absl::SimpleAtoi(value, &flags->snapshot_entries) && flags->snapshot_entries >= 0;
    } else if (name == "failpoints") {
      flags->failpoints = value;
    } else if (name == "check") {
      flags->check = value;
    } else if (name == "wal-tmpfs-mb") {
      ok = absl::SimpleAtoi(value, &flags->wal_tmpfs_mb) && flags->wal_tmpfs_mb >= kMinWalTmpfsMb &&
           flags->wal_tmpfs_mb <= 65536;
    } else if (name == "data-tmpfs-mb") {
      ok = absl::SimpleAtoi(value, &flags->data_tmpfs_mb) &&
           flags->data_tmpfs_mb >= kMinDataTmpfsMb && flags->data_tmpfs_mb <= 65536;
    } else {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag --", name));
    }
    if (!ok) return absl::InvalidArgumentError(absl::StrCat("bad value for --", name, ": ", value));
  }
  if (flags->help || !flags->check.empty()) return absl::OkStatus();
  for (const auto& [name, value] :
       {std::pair<const char*, const std::string*>{"stead", &flags->stead},
        {"netns-script", &flags->netns_script},
        {"out", &flags->out}}) {
    if (value->empty()) return absl::InvalidArgumentError(absl::StrCat("--", name, " is required"));
  }
  return absl::OkStatus();
}

volatile std::sig_atomic_t interrupted = 0;
void OnSignal(int) { interrupted = 1; }

// Sleeps up to `duration`, in short steps so that SIGINT or SIGTERM ends the run early
// (and still cleanly: members killed, namespaces down).
void SleepUnlessInterrupted(absl::Duration duration) {
  const absl::Time deadline = absl::Now() + duration;
  for (int step = 0; step < 1'000'000 && !interrupted && absl::Now() < deadline; ++step) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

// Whether every member answers the same content hash at the same applied index within
// `timeout` (writes have stopped). Sets *diverged when two members hashed the same
// index differently: a safety violation, not a slow member.
bool WaitConverged(const FaultCluster& cluster, absl::Duration timeout, bool* diverged,
                   std::string* last) {
  absl::StatusOr<std::unique_ptr<Client>> client =
      Client::Create({.endpoints = cluster.ClientEndpoints()});
  if (!client.ok()) {
    *last = std::string(client.status().message());
    return false;
  }
  const absl::Time deadline = absl::Now() + timeout;
  for (int round = 0; round < 10000 && absl::Now() < deadline && !interrupted; ++round) {
    std::vector<ContentHash> hashes;
    std::vector<std::string> answers;
    for (const std::string& endpoint : cluster.ClientEndpoints()) {
      absl::StatusOr<ContentHash> hash = (*client)->Hash(endpoint, {.timeout = absl::Seconds(2)});
      if (!hash.ok()) {
        answers.push_back(absl::StrCat(endpoint, ": ", hash.status().message()));
        continue;
      }
      answers.push_back(
          absl::StrCat(endpoint, ": index ", hash->applied_index, " hash ", absl::Hex(hash->hash)));
      hashes.push_back(*hash);
    }
    *last = absl::StrJoin(answers, "; ");
    if (hashes.size() == static_cast<size_t>(cluster.size())) {
      bool equal = true;
      for (const ContentHash& hash : hashes) {
        if (hash.applied_index != hashes[0].applied_index) {
          equal = false;
        } else if (hash.hash != hashes[0].hash) {
          *diverged = true;
          return false;
        }
      }
      if (equal) return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  return false;
}

// "registers=ok bank=ok": each checker's name and ok or FAILED, for the RESULT line.
std::string CompactVerdicts(const CheckReport& report) {
  std::vector<std::string> parts;
  for (const CheckResult& result : report.results) {
    const std::string name = result.verdict.substr(0, result.verdict.find(':'));
    parts.push_back(absl::StrCat(name, "=", result.ok ? "ok" : "FAILED"));
  }
  return absl::StrJoin(parts, " ");
}

// Runs the checkers, keeps every verdict with its evidence in <dir>/check.txt, and
// prints the evidence of a failed one.
CheckReport ReportChecks(const History& history, const std::string& dir) {
  CheckReport report = CheckHistory(history);
  std::ofstream(dir + "/check.txt") << report.Details();
  if (!report.ok()) std::cerr << report.Details() << "\n";
  return report;
}

int Run(const Flags& flags) {
  FaultClusterOptions cluster_options{
      .members = flags.members,
      .stead_binary = flags.stead,
      .netns_script = flags.netns_script,
      .run_dir = flags.out,
      .prefix = flags.prefix,
      .subnet = flags.subnet,
      .wal_tmpfs_mb = flags.wal_tmpfs_mb,
      .data_tmpfs_mb = flags.data_tmpfs_mb,
  };
  absl::StatusOr<std::vector<FaultKind>> kinds = FaultKindsFor(flags.faults, cluster_options);
  if (!kinds.ok()) {
    std::cerr << "stead-fault: " << kinds.status().message() << "\n";
    return kExitSetup;
  }
  std::filesystem::create_directories(flags.out);
  const auto start = std::chrono::steady_clock::now();
  auto now_ns = [&] {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() -
                                                                start)
        .count();
  };

  if (flags.snapshot_entries > 0) {
    cluster_options.extra_flags.push_back(
        absl::StrCat("--snapshot-entries=", flags.snapshot_entries));
  }
  if (!flags.nfq_delay.empty()) cluster_options.env.push_back("NETNS_NFQ_DELAY=" + flags.nfq_delay);
  if (!flags.failpoints.empty()) {
    cluster_options.env.push_back("STEAD_FAILPOINTS=" + flags.failpoints);
  }
  absl::StatusOr<std::unique_ptr<FaultCluster>> cluster =
      FaultCluster::Up(std::move(cluster_options));
  if (!cluster.ok()) {
    std::cerr << "stead-fault: cluster: " << cluster.status().message() << "\n";
    return kExitSetup;
  }
  if (absl::Status started = (*cluster)->StartAll(); !started.ok()) {
    std::cerr << "stead-fault: starting the members: " << started.message() << "\n";
    return kExitSetup;
  }
  if (!(*cluster)->WaitReady(absl::Seconds(60)) ||
      (*cluster)->WaitForLeader(absl::Seconds(30)) < 0) {
    std::cerr << "stead-fault: the members were not ready with a leader within 90 s (logs in "
              << flags.out << ")\n";
    return kExitSetup;
  }

  const ClientSplit split = SplitClients(flags.clients, flags.workloads);
  Workload workload({.endpoints = (*cluster)->ClientEndpoints(),
                     .clients = split.registers,
                     .bank_clients = split.bank,
                     .watchers = flags.workloads.watches ? flags.watchers : 0,
                     .keys = flags.keys,
                     .seed = flags.seed,
                     .start = start});
  Nemesis nemesis(
      cluster->get(),
      {.seed = flags.seed, .kinds = *kinds, .start = start, .log_path = flags.out + "/faults.log"});
  const int64_t workload_start_ns = now_ns();
  if (absl::Status status = workload.Start(); !status.ok()) {
    std::cerr << "stead-fault: workload: " << status.message() << "\n";
    return kExitSetup;
  }
  nemesis.Start();
  SleepUnlessInterrupted(flags.duration);
  nemesis.StopAndHeal();
  workload.Stop();
  const int64_t workload_end_ns = now_ns();

  // Whatever the episodes left: every network fault healed, every member running.
  (*cluster)->HealAll().IgnoreError();  // fails only when the script lacks `heal`
  for (int i = 0; i < (*cluster)->size(); ++i) {
    if ((*cluster)->Running(i)) {
      (*cluster)->Continue(i).IgnoreError();
    } else {
      (*cluster)->Start(i).IgnoreError();
    }
  }
  bool diverged = false;
  std::string hashes;
  const bool converged = WaitConverged(**cluster, absl::Seconds(60), &diverged, &hashes);
  if (!converged) {
    std::cerr << "stead-fault: members "
              << (diverged ? "DIVERGED (same applied index, different content)"
                           : "did not converge")
              << ": " << hashes << "\n";
  }

  // The watchers' records must cover the same revisions to be compared: up to a fence
  // written now that the cluster is whole.
  // A watcher that does not get there on a whole cluster is stuck: a violation too.
  const bool watches_caught_up = workload.FinishWatches(absl::Seconds(30));
  if (!watches_caught_up) {
    std::cerr << "stead-fault: some watcher had not delivered the fence write 30 s after the "
                 "heal (checked as far as it got)\n";
  }
  const History history = workload.TakeHistory();
  if (absl::Status saved = WriteHistory(history, flags.out); !saved.ok()) {
    std::cerr << "stead-fault: saving the history: " << saved.message() << "\n";
  }
  const CheckReport report = ReportChecks(history, flags.out);

  const OpCounts counts = CountOutcomes(history);
  const int64_t longest_ns = LongestUnavailableNs(history, workload_start_ns, workload_end_ns);
  std::cout << "RESULT seed=" << flags.seed << " ops_ok=" << counts.ok
            << " ops_failed=" << counts.failed << " ops_unknown=" << counts.unknown
            << " faults=" << nemesis.Summary()
            << " longest_unavailable_ms=" << longest_ns / 1'000'000
            << " converged=" << (converged ? 1 : 0) << " " << CompactVerdicts(report)
            << std::endl;
  std::cout << "CHECKS " << report.Summary() << std::endl;
  if (interrupted) {
    std::cerr << "stead-fault: interrupted\n";
    return kExitSetup;
  }
  return converged && watches_caught_up && report.ok() ? kExitOk : kExitViolation;
}

// --check=DIR: the checkers again on a run's saved history.
int CheckSaved(const std::string& dir) {
  absl::StatusOr<History> history = ReadHistory(dir);
  if (!history.ok()) {
    std::cerr << "stead-fault: " << history.status().message() << "\n";
    return kExitSetup;
  }
  const CheckReport report = ReportChecks(*history, dir);
  std::cout << "CHECKS " << report.Summary() << std::endl;
  return report.ok() ? kExitOk : kExitViolation;
}

}  // namespace
}  // namespace stead::fault

int main(int argc, char** argv) {
  stead::fault::Flags flags;
  if (absl::Status status = stead::fault::ParseFlags(argc, argv, &flags); !status.ok()) {
    std::cerr << "stead-fault: " << status.message() << "\n" << stead::fault::kUsage;
    return stead::fault::kExitSetup;
  }
  if (flags.help) {
    std::cout << stead::fault::kUsage;
    return 0;
  }
  if (!flags.check.empty()) return stead::fault::CheckSaved(flags.check);
  struct sigaction action = {};
  action.sa_handler = stead::fault::OnSignal;
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
  return stead::fault::Run(flags);
}
