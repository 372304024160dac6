#include "tests/sim/linearizability.h"

#include <algorithm>
#include <map>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/hash/hash.h"
#include "absl/strings/str_cat.h"

namespace stead::sim {
namespace {

// One call or return event in the doubly linked list the search walks. The list is
// ordered by time; linearizing an operation unlinks ("lifts") its two events, and
// backtracking links them back in place.
struct Event {
  bool is_call = false;
  size_t op = 0;     // index into the key's operations
  size_t match = 0;  // the other event of the same operation
  size_t prev = 0;
  size_t next = 0;
};

// (set of linearized operations, register value) pairs already explored; seeing one
// again means the sub-search from there already failed (Lowe 2017).
struct CacheKey {
  std::vector<uint64_t> linearized;
  int64_t value;
  bool operator==(const CacheKey& other) const {
    return value == other.value && linearized == other.linearized;
  }
  template <typename H>
  friend H AbslHashValue(H state, const CacheKey& key) {
    return H::combine(std::move(state), key.linearized, key.value);
  }
};

std::string Describe(const std::vector<KvOperation>& ops) {
  std::string out;
  constexpr size_t kMaxShown = 40;
  for (size_t i = 0; i < ops.size() && i < kMaxShown; ++i) {
    const KvOperation& op = ops[i];
    absl::StrAppend(&out, "\n  ", op.kind == KvOperation::Kind::kPut ? "put" : "get", " id=", op.id,
                    " value=", op.value, " call=", op.call_time, " return=",
                    op.return_time == kUnknownReturnTime ? std::string("unknown")
                                                         : absl::StrCat(op.return_time));
  }
  if (ops.size() > kMaxShown) absl::StrAppend(&out, "\n  ... ", ops.size() - kMaxShown, " more");
  return out;
}

// Runs the WGL search on one key's operations. Returns {linearizable, exhausted}.
std::pair<bool, bool> CheckKey(const std::vector<KvOperation>& ops, uint64_t max_search_steps) {
  const size_t op_count = ops.size();
  // Event 0 is the list head (a sentinel); events 1..2n are calls and returns.
  struct Timed {
    uint64_t time;
    int order;  // calls before returns at equal times: ties count as concurrent
    size_t op;
    bool is_call;
  };
  std::vector<Timed> timed;
  timed.reserve(2 * op_count);
  for (size_t i = 0; i < op_count; ++i) {
    timed.push_back({ops[i].call_time, 0, i, true});
    timed.push_back({ops[i].return_time, 1, i, false});
  }
  std::sort(timed.begin(), timed.end(), [](const Timed& a, const Timed& b) {
    if (a.time != b.time) return a.time < b.time;
    if (a.order != b.order) return a.order < b.order;
    return a.op < b.op;
  });
  std::vector<Event> events(2 * op_count + 1);
  std::vector<size_t> call_event(op_count);
  std::vector<size_t> return_event(op_count);
  for (size_t i = 0; i < timed.size(); ++i) {
    Event& event = events[i + 1];
    event.is_call = timed[i].is_call;
    event.op = timed[i].op;
    (event.is_call ? call_event : return_event)[event.op] = i + 1;
  }
  const size_t kNone = events.size();  // "no next event"
  for (size_t i = 0; i < events.size(); ++i) {
    events[i].prev = i == 0 ? kNone : i - 1;
    events[i].next = i + 1 < events.size() ? i + 1 : kNone;
  }
  for (size_t i = 0; i < op_count; ++i) {
    events[call_event[i]].match = return_event[i];
    events[return_event[i]].match = call_event[i];
  }
  auto unlink = [&](size_t e) {
    events[events[e].prev].next = events[e].next;
    if (events[e].next != kNone) events[events[e].next].prev = events[e].prev;
  };
  auto relink = [&](size_t e) {
    events[events[e].prev].next = e;
    if (events[e].next != kNone) events[events[e].next].prev = e;
  };
  auto lift = [&](size_t call) {
    unlink(call);
    unlink(events[call].match);
  };
  // Undo in reverse order of lift so the neighbours are restored exactly.
  auto unlift = [&](size_t call) {
    relink(events[call].match);
    relink(call);
  };

  std::vector<uint64_t> linearized((op_count + 63) / 64, 0);
  absl::flat_hash_set<CacheKey> cache;
  std::vector<std::pair<size_t, int64_t>> stack;  // (call event, value before it)
  int64_t value = kAbsentValue;
  size_t entry = events[0].next;
  uint64_t steps = 0;
  while (events[0].next != kNone) {
    if (++steps > max_search_steps) return {false, true};
    if (entry == kNone) return {false, false};  // cannot happen: a return ends the walk
    const Event& event = events[entry];
    if (event.is_call) {
      const KvOperation& op = ops[event.op];
      bool legal = true;
      int64_t next_value = value;
      if (op.kind == KvOperation::Kind::kPut) {
        next_value = op.value;
      } else {
        legal = op.value == value;
      }
      if (legal) {
        linearized[event.op / 64] |= uint64_t{1} << (event.op % 64);
        if (cache.insert(CacheKey{linearized, next_value}).second) {
          stack.emplace_back(entry, value);
          value = next_value;
          lift(entry);
          entry = events[0].next;
          continue;
        }
        linearized[event.op / 64] &= ~(uint64_t{1} << (event.op % 64));
      }
      entry = event.next;
      continue;
    }
    // A return event of an operation not yet linearized: it must come before
    // everything after it, so this branch of the search is dead.
    if (ops[event.op].return_time == kUnknownReturnTime) {
      // Every known operation returns before any unknown one, so reaching an unknown
      // return means every known operation is linearized; the remaining writes of
      // unknown outcome simply never took effect.
      return {true, false};
    }
    if (stack.empty()) return {false, false};
    const auto [call, previous_value] = stack.back();
    stack.pop_back();
    value = previous_value;
    linearized[events[call].op / 64] &= ~(uint64_t{1} << (events[call].op % 64));
    unlift(call);
    entry = events[call].next;
  }
  return {true, false};
}

}  // namespace

LinearizabilityResult CheckKvLinearizable(const std::vector<KvOperation>& history,
                                          uint64_t max_search_steps) {
  // std::map: keys are checked in a fixed order so the first failure reported is
  // always the same one.
  std::map<uint64_t, std::vector<KvOperation>> by_key;
  for (const KvOperation& op : history) {
    const bool unknown = op.return_time == kUnknownReturnTime;
    if (op.call_time >= op.return_time || (unknown && op.kind != KvOperation::Kind::kPut) ||
        (op.kind == KvOperation::Kind::kPut && op.value < 0)) {
      LinearizabilityResult result;
      result.linearizable = false;
      result.key = op.key;
      result.explanation = absl::StrCat("malformed operation id=", op.id);
      return result;
    }
    by_key[op.key].push_back(op);
  }
  for (const auto& [key, ops] : by_key) {
    const auto [ok, exhausted] = CheckKey(ops, max_search_steps);
    if (ok) continue;
    LinearizabilityResult result;
    result.linearizable = false;
    result.search_exhausted = exhausted;
    result.key = key;
    result.explanation = absl::StrCat(exhausted ? "search exhausted" : "not linearizable",
                                      " on key ", key, ":", Describe(ops));
    return result;
  }
  return LinearizabilityResult{};
}

}  // namespace stead::sim
