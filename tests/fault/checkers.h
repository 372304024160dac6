// The checkers of a fault run: each decides whether one part of a recorded History
// (tests/fault/history.h) could come from a correct database, and says why not.
//
//   CheckResult r = CheckRegisters(history.registers);
//   // r.verdict: "registers: ok (12,345 ops, 4 keys)"
//   //         or "registers: NOT LINEARIZABLE key=k2 ..." with r.details listing the
//   //            operations around the violation, one per line.
//
// Registers are checked for linearizability per key with the simulator's WGL search
// (tests/sim/linearizability.h); the bank for conservation of money; watches for
// order, uniqueness, provenance of values and agreement between watchers.
//
// Thread-safety: pure functions; safe to call from any thread.
#ifndef STEAD_TESTS_FAULT_CHECKERS_H_
#define STEAD_TESTS_FAULT_CHECKERS_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "tests/fault/history.h"

namespace stead::fault {

struct CheckResult {
  bool ok = true;
  // One line for the run's summary, starting with the checker's name.
  std::string verdict;
  // On failure: the evidence, several lines (empty when ok).
  std::string details;
};

// All of a run's verdicts, in a fixed order.
struct CheckReport {
  std::vector<CheckResult> results;
  bool ok() const;
  // The verdict lines joined by "; ", for the run's one-line summary.
  std::string Summary() const;
  // Every verdict, each followed by its details, for the run's log.
  std::string Details() const;
};

// The search budget of CheckRegisters per key (each step visits one call or return).
inline constexpr uint64_t kDefaultRegisterSearchSteps = 20'000'000;

// Linearizability of puts, gets and compare-and-swaps per key. Every value written (put
// or CAS) must be unique within its key. kFailed operations are dropped; a get of
// unknown outcome carries no information and is dropped too; a put or CAS of unknown
// outcome may take effect at any time after its invocation, or never. A search that
// runs out of `max_search_steps` is a failure ("UNDECIDED"), never a pass.
CheckResult CheckRegisters(const std::vector<RegisterOp>& ops,
                           uint64_t max_search_steps = kDefaultRegisterSearchSteps);

// Every ok read names exactly the accounts of `initial`, has no negative balance and
// sums to the initial total. Reports the first bad read (in history order).
CheckResult CheckBank(const std::map<std::string, int64_t>& initial,
                      const std::vector<BankOp>& ops);

// Each watcher's events are within its prefix, at or after its start revision, in
// increasing mod_revision (several keys of one revision in any order), with no
// (key, revision) twice; every put event carries a value some put or CAS of `registers`
// wrote to that key (ok or unknown; a CAS only if it may have swapped). Watchers of the
// same prefix agree on every revision both must have seen (from the later start through
// the earlier progress_revision): an event one saw and the other did not is reported
// with both watchers, the key and the revision.
CheckResult CheckWatches(const std::vector<WatchRecord>& records,
                         const std::vector<RegisterOp>& registers);

// Runs every checker that has something to check (the bank when it has accounts or
// operations, watches when there are records; registers always).
CheckReport CheckHistory(const History& history);

// One operation, readably: "client=3 cas key=k2 expected=v1 value=v9 swapped
// invoke=12.345ms complete=13.002ms ok". Used in the checkers' details.
std::string DescribeOp(const RegisterOp& op);

}  // namespace stead::fault

#endif  // STEAD_TESTS_FAULT_CHECKERS_H_
