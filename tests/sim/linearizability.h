// A Wing & Gong linearizability checker (with Lowe's memoization) for a key-value
// register: puts of unique values and gets.
//
// The simulator records every client operation against the Raft cluster (writes
// proposed through the leader, ReadIndex reads) with its call and return times and
// asks this checker whether some total order of the operations, consistent with
// real time, explains every observed read. Keys are independent (linearizability is
// local, Herlihy & Wing), so each key's sub-history is searched separately.
//
// Thread-safety: pure functions; safe to call from any thread.
#ifndef STEAD_TESTS_SIM_LINEARIZABILITY_H_
#define STEAD_TESTS_SIM_LINEARIZABILITY_H_

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
  enum class Kind { kPut, kGet };
  Kind kind = Kind::kPut;
  uint64_t key = 0;
  // kPut: the value written (unique per history, >= 0). kGet: the value observed, or
  // kAbsentValue.
  int64_t value = kAbsentValue;
  // Logical times; call_time < return_time. Only kPut may use kUnknownReturnTime
  // (reads of unknown outcome carry no information and are left out by the caller).
  uint64_t call_time = 0;
  uint64_t return_time = 0;
  // For messages only: which client / request this was.
  uint64_t id = 0;
};

struct LinearizabilityResult {
  bool linearizable = true;
  // The search gave up after `max_search_steps` on one key; the history is then
  // neither proven nor refuted and callers must treat it as a failure.
  bool search_exhausted = false;
  // On failure: the key and a short description of its sub-history.
  uint64_t key = 0;
  std::string explanation;
};

// Checks `history` against the register model. `max_search_steps` bounds the work per
// key (each step visits one call or return event). Precondition: operations satisfy
// the field contracts above; violations are reported as non-linearizable with an
// explanation rather than checked.
LinearizabilityResult CheckKvLinearizable(const std::vector<KvOperation>& history,
                                          uint64_t max_search_steps = 10'000'000);

}  // namespace stead::sim

#endif  // STEAD_TESTS_SIM_LINEARIZABILITY_H_
