// A Wing & Gong linearizability checker (with Lowe's memoization) for a key-value
// register: puts of unique values, gets and compare-and-swaps.
//
// The simulator records every client operation against the Raft cluster (writes
// proposed through the leader, ReadIndex reads) with its call and return times and
// asks this checker whether some total order of the operations, consistent with
// real time, explains every observed read. Keys are independent (linearizability is
// local, Herlihy & Wing), so each key's sub-history is searched separately. Before the
// search, unique values settle most writes of unknown outcome: one whose value a known
// operation observed took effect before that observer returned; one nobody observed
// is dropped, or, if a CAS that did not swap might have needed it, kept as one of a
// group of interchangeable writes. A long history with many unobserved unknown writes
// and failed CAS can still exhaust the search (reported, never passed). The fault
// suite (tests/fault/checkers.h) checks the histories of real clusters with it too.
//
// Thread-safety: pure functions; safe to call from any thread.
#ifndef STEAD_TESTS_SIM_LINEARIZABILITY_H_
#define STEAD_TESTS_SIM_LINEARIZABILITY_H_

#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

namespace stead::sim {

// The value a get observes for a key that was never written.
inline constexpr int64_t kAbsentValue = -1;
// Return time of a write whose outcome is unknown (the client never learned whether
// it took effect): it may take effect at any point after its call, or never.
inline constexpr uint64_t kUnknownReturnTime = std::numeric_limits<uint64_t>::max();

struct KvOperation {
  enum class Kind { kPut, kGet, kCas };
  Kind kind = Kind::kPut;
  uint64_t key = 0;
  // kPut: the value written (unique per history, >= 0). kGet: the value observed, or
  // kAbsentValue. kCas: the value written if the swap happens (unique, >= 0).
  int64_t value = kAbsentValue;
  // Logical times; call_time < return_time. Only kPut and kCas may use
  // kUnknownReturnTime (reads of unknown outcome carry no information and are left out
  // by the caller).
  uint64_t call_time = 0;
  uint64_t return_time = 0;
  // For messages only: which client / request this was.
  uint64_t id = 0;
  // kCas: the value the key must hold for the swap (kAbsentValue: the key must be
  // absent), and, when the outcome is known, whether it swapped. A CAS of unknown
  // outcome takes effect at some point after its call (swapping if the key then holds
  // `expected`) or never.
  int64_t expected = kAbsentValue;
  bool swapped = false;
};

struct LinearizabilityResult {
  bool linearizable = true;
  // The search gave up after `max_search_steps` on one key; the history is then
  // neither proven nor refuted and callers must treat it as a failure.
  bool search_exhausted = false;
  // On failure: the key and a short description of the operations around the
  // violation.
  uint64_t key = 0;
  std::string explanation;
  // On a refutation: indices into the checked history of the operations around the
  // point the search could not get past (the operation that could not be linearized,
  // those concurrent with it, the last write before it and the writes of the values it
  // read or expected), in call order. Empty when the search was exhausted.
  std::vector<size_t> window;
  // On a refutation: the index in the checked history of the operation the deepest
  // order tried could not linearize (also in `window`).
  size_t blocked = 0;
};

// Checks `history` against the register model. `max_search_steps` bounds the work per
// key (each step visits one call or return event). Precondition: operations satisfy
// the field contracts above; violations are reported as non-linearizable with an
// explanation rather than checked.
LinearizabilityResult CheckKvLinearizable(const std::vector<KvOperation>& history,
                                          uint64_t max_search_steps = 10'000'000);

}  // namespace stead::sim

#endif  // STEAD_TESTS_SIM_LINEARIZABILITY_H_
