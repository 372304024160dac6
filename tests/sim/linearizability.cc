#include "tests/sim/linearizability.h"

#include <algorithm>
#include <map>
#include <optional>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/hash/hash.h"
#include "absl/strings/str_cat.h"

namespace stead::sim {
namespace {

// The value written by every write of unknown outcome that nobody observed (see
// ResolveUnknownWrites): no get reads it and no CAS that swapped expected it, so these
// writes are interchangeable.
constexpr int64_t kUnobservedValue = -2;

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

std::string DescribeOne(const KvOperation& op) {
  const std::string ret =
      op.return_time == kUnknownReturnTime ? std::string("unknown") : absl::StrCat(op.return_time);
  switch (op.kind) {
    case KvOperation::Kind::kPut:
      return absl::StrCat("put id=", op.id, " value=", op.value, " call=", op.call_time,
                          " return=", ret);
    case KvOperation::Kind::kGet:
      return absl::StrCat("get id=", op.id, " value=", op.value, " call=", op.call_time,
                          " return=", ret);
    case KvOperation::Kind::kCas:
      return absl::StrCat("cas id=", op.id, " expected=", op.expected, " value=", op.value,
                          op.return_time == kUnknownReturnTime ? " outcome unknown"
                          : op.swapped                         ? " swapped"
                                                               : " not swapped",
                          " call=", op.call_time, " return=", ret);
  }
  return "?";
}

// The register's value after `op` takes effect at a point where it holds `value`, or
// nullopt if `op` cannot take effect there (a read or a known CAS outcome contradicts
// it).
std::optional<int64_t> Apply(const KvOperation& op, int64_t value) {
  switch (op.kind) {
    case KvOperation::Kind::kPut:
      return op.value;
    case KvOperation::Kind::kGet:
      if (op.value != value) return std::nullopt;
      return value;
    case KvOperation::Kind::kCas:
      // A CAS of unknown outcome swaps exactly when the value matches; its "did not take
      // effect" branch is the search never linearizing it.
      if (op.return_time == kUnknownReturnTime) return op.expected == value ? op.value : value;
      if ((op.expected == value) != op.swapped) return std::nullopt;
      return op.swapped ? op.value : value;
  }
  return std::nullopt;
}

struct KeyVerdict {
  bool linearizable = true;
  bool exhausted = false;
  // On a refutation: indices into the key's operations (see LinearizabilityResult).
  std::vector<size_t> window;
  size_t blocked = 0;      // the operation the deepest branch could not linearize
  int64_t blocked_at = 0;  // the register's value there
};

// The operations around the deepest point the search reached: `blocked` could not be
// linearized after the set `linearized`, where the register held `value`.
std::vector<size_t> Window(const std::vector<KvOperation>& ops, size_t blocked,
                           const std::vector<uint64_t>& linearized, int64_t value) {
  constexpr size_t kMaxShown = 24;
  auto is_linearized = [&](size_t i) { return (linearized[i / 64] >> (i % 64)) & 1; };
  const KvOperation& stuck = ops[blocked];
  // Everything still pending when `stuck` returned, and whatever overlaps that span.
  uint64_t low = stuck.call_time;
  for (size_t i = 0; i < ops.size(); ++i) {
    if (!is_linearized(i) && ops[i].call_time <= stuck.return_time) {
      low = std::min(low, ops[i].call_time);
    }
  }
  std::vector<size_t> required = {blocked};
  auto add_writer = [&](int64_t written) {
    if (written < 0) return;  // absent, or a value nobody observed
    for (size_t i = 0; i < ops.size(); ++i) {
      if (ops[i].kind != KvOperation::Kind::kGet && ops[i].value == written) {
        required.push_back(i);
      }
    }
  };
  add_writer(value);
  if (stuck.kind == KvOperation::Kind::kGet) add_writer(stuck.value);
  if (stuck.kind == KvOperation::Kind::kCas) add_writer(stuck.expected);
  std::vector<size_t> overlapping;
  for (size_t i = 0; i < ops.size(); ++i) {
    if (ops[i].call_time <= stuck.return_time && ops[i].return_time >= low) {
      overlapping.push_back(i);
    }
  }
  // Closest to the stuck operation first, so a long tail of old unknown writes does not
  // crowd out its neighbours.
  std::stable_sort(overlapping.begin(), overlapping.end(), [&](size_t a, size_t b) {
    const auto distance = [&](size_t i) {
      const uint64_t t = ops[i].call_time;
      return t > stuck.call_time ? t - stuck.call_time : stuck.call_time - t;
    };
    return distance(a) < distance(b);
  });
  std::vector<size_t> window = required;
  for (const size_t i : overlapping) {
    if (window.size() >= kMaxShown) break;
    window.push_back(i);
  }
  std::sort(window.begin(), window.end(), [&](size_t a, size_t b) {
    if (ops[a].call_time != ops[b].call_time) return ops[a].call_time < ops[b].call_time;
    return a < b;
  });
  window.erase(std::unique(window.begin(), window.end()), window.end());
  return window;
}

// Runs the WGL search on one key's operations.
KeyVerdict CheckKey(const std::vector<KvOperation>& ops, uint64_t max_search_steps) {
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

  // Unobserved unknown writes that act alike are interchangeable: all puts, and CAS
  // with the same expected value. Within such a group the search only ever places the
  // earliest-called one not yet placed, so the placed ones are always a prefix of the
  // group's call order: k + 1 states instead of 2^k subsets. (Any placement of some of
  // them can be redone with the earliest-called ones, each called no later than the
  // one it replaces.)
  struct Group {
    std::vector<size_t> order;  // ops, by call event
    size_t placed = 0;
  };
  std::map<std::pair<bool, int64_t>, Group> groups;  // (is a CAS, its expected value)
  std::vector<Group*> group_of(op_count, nullptr);
  for (size_t i = 1; i < events.size(); ++i) {
    const KvOperation& op = ops[events[i].op];
    if (!events[i].is_call || op.value != kUnobservedValue) continue;
    const bool cas = op.kind == KvOperation::Kind::kCas;
    Group& group = groups[{cas, cas ? op.expected : 0}];
    group.order.push_back(events[i].op);
    group_of[events[i].op] = &group;
  }

  std::vector<uint64_t> linearized((op_count + 63) / 64, 0);
  absl::flat_hash_set<CacheKey> cache;
  std::vector<std::pair<size_t, int64_t>> stack;  // (call event, value before it)
  int64_t value = kAbsentValue;
  size_t entry = events[0].next;
  uint64_t steps = 0;
  // The deepest dead end seen, for the report: which operation could not be linearized
  // after which set, with which value.
  KeyVerdict failed;
  failed.linearizable = false;
  size_t deepest = 0;
  std::vector<uint64_t> deepest_linearized;
  while (events[0].next != kNone) {
    if (++steps > max_search_steps) {
      failed.exhausted = true;
      return failed;
    }
    if (entry == kNone) return failed;  // cannot happen: a return ends the walk
    const Event& event = events[entry];
    if (event.is_call) {
      const KvOperation& op = ops[event.op];
      std::optional<int64_t> next_value = Apply(op, value);
      if (op.return_time == kUnknownReturnTime) {
        // Placing an unknown write where it changes nothing is never better than
        // leaving it unplaced: it stays free to take effect later, or never.
        if (next_value == value) next_value.reset();
        const Group* group = group_of[event.op];
        if (group != nullptr &&
            (group->placed == group->order.size() || group->order[group->placed] != event.op)) {
          next_value.reset();
        }
      }
      if (next_value.has_value()) {
        linearized[event.op / 64] |= uint64_t{1} << (event.op % 64);
        if (cache.insert(CacheKey{linearized, *next_value}).second) {
          stack.emplace_back(entry, value);
          if (group_of[event.op] != nullptr) ++group_of[event.op]->placed;
          value = *next_value;
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
      return KeyVerdict{};
    }
    if (deepest_linearized.empty() || stack.size() > deepest) {
      deepest = stack.size();
      deepest_linearized = linearized;
      failed.blocked = event.op;
      failed.blocked_at = value;
    }
    if (stack.empty()) {
      failed.window = Window(ops, failed.blocked, deepest_linearized, failed.blocked_at);
      return failed;
    }
    const auto [call, previous_value] = stack.back();
    stack.pop_back();
    if (group_of[events[call].op] != nullptr) --group_of[events[call].op]->placed;
    value = previous_value;
    linearized[events[call].op / 64] &= ~(uint64_t{1} << (events[call].op % 64));
    unlift(call);
    entry = events[call].next;
  }
  return KeyVerdict{};
}

// Settles what unique values say about one key's writes of unknown outcome before the
// search, which otherwise may place each of them anywhere after its call or nowhere,
// multiplying the states it must refute on a long history:
// - a write whose value a known operation observed (a get that read it, a CAS that
//   swapped from it) took effect, before the first such observer returned: it becomes a
//   known write returning then (a CAS, one that swapped);
// - a write nobody observed can be taken never to have happened, unless a known CAS
//   that did not swap might have needed the register to hold that value (it returned
//   after the write's call): anything else that could run while the register held a
//   value nobody reads is a write, which does not care, or an unknown CAS, which may
//   equally never have happened. Such a write keeps its place but writes
//   kUnobservedValue, the one value standing for all values nobody reads.
void ResolveUnknownWrites(std::vector<KvOperation>* ops, std::vector<size_t>* indices) {
  std::vector<bool> unknown(ops->size());
  uint64_t last_unswapped_return = 0;  // of a known CAS that did not swap
  for (size_t i = 0; i < ops->size(); ++i) {
    const KvOperation& op = (*ops)[i];
    unknown[i] = op.return_time == kUnknownReturnTime;
    if (!unknown[i] && op.kind == KvOperation::Kind::kCas && !op.swapped) {
      last_unswapped_return = std::max(last_unswapped_return, op.return_time);
    }
  }
  // A resolved CAS observes the value it swapped from in turn, so observation spreads
  // along chains of unknown CAS: iterate until nothing changes. Return times only
  // decrease, so this ends (within one pass per link of the longest chain).
  std::map<int64_t, uint64_t> first_observed;  // value -> earliest observer's return
  for (size_t pass = 0; pass <= ops->size(); ++pass) {
    first_observed.clear();
    for (const KvOperation& op : *ops) {
      if (op.return_time == kUnknownReturnTime) continue;
      int64_t observed = kAbsentValue;
      if (op.kind == KvOperation::Kind::kGet) observed = op.value;
      if (op.kind == KvOperation::Kind::kCas && op.swapped) observed = op.expected;
      if (observed == kAbsentValue) continue;
      auto [it, inserted] = first_observed.try_emplace(observed, op.return_time);
      if (!inserted) it->second = std::min(it->second, op.return_time);
    }
    bool changed = false;
    for (size_t i = 0; i < ops->size(); ++i) {
      KvOperation& op = (*ops)[i];
      if (!unknown[i]) continue;
      const auto it = first_observed.find(op.value);
      // Observed before its call: left unknown, for the search to refute.
      if (it == first_observed.end() || it->second <= op.call_time) continue;
      if (op.return_time != it->second) {
        op.return_time = it->second;
        op.swapped = true;
        changed = true;
      }
    }
    if (!changed) break;
  }
  size_t kept = 0;
  for (size_t i = 0; i < ops->size(); ++i) {
    KvOperation op = (*ops)[i];
    if (op.return_time == kUnknownReturnTime) {
      // Still unknown yet observed: observed before its call, left for the search to
      // refute.
      if (first_observed.count(op.value) == 0) {
        if (last_unswapped_return <= op.call_time) continue;  // nobody needs it: never happened
        op.value = kUnobservedValue;
      }
    }
    (*ops)[kept] = op;
    (*indices)[kept] = (*indices)[i];
    ++kept;
  }
  ops->resize(kept);
  indices->resize(kept);
}

}  // namespace

LinearizabilityResult CheckKvLinearizable(const std::vector<KvOperation>& history,
                                          uint64_t max_search_steps) {
  // std::map: keys are checked in a fixed order so the first failure reported is
  // always the same one. Each key keeps the operations' indices in `history`.
  std::map<uint64_t, std::pair<std::vector<KvOperation>, std::vector<size_t>>> by_key;
  for (size_t i = 0; i < history.size(); ++i) {
    const KvOperation& op = history[i];
    const bool unknown = op.return_time == kUnknownReturnTime;
    const bool writes = op.kind != KvOperation::Kind::kGet;
    if (op.call_time >= op.return_time || (unknown && !writes) || (writes && op.value < 0) ||
        (op.kind == KvOperation::Kind::kCas && op.expected < kAbsentValue)) {
      LinearizabilityResult result;
      result.linearizable = false;
      result.key = op.key;
      result.explanation = absl::StrCat("malformed operation ", DescribeOne(op));
      result.window = {i};
      result.blocked = i;
      return result;
    }
    auto& [ops, indices] = by_key[op.key];
    ops.push_back(op);
    indices.push_back(i);
  }
  for (auto& [key, entry] : by_key) {
    auto& [ops, indices] = entry;
    ResolveUnknownWrites(&ops, &indices);
    const KeyVerdict verdict = CheckKey(ops, max_search_steps);
    if (verdict.linearizable) continue;
    LinearizabilityResult result;
    result.linearizable = false;
    result.search_exhausted = verdict.exhausted;
    result.key = key;
    if (verdict.exhausted) {
      result.explanation = absl::StrCat("search exhausted after ", max_search_steps,
                                        " steps on key ", key, " (", ops.size(), " operations)");
      return result;
    }
    result.explanation =
        absl::StrCat("not linearizable on key ", key, ": ", DescribeOne(ops[verdict.blocked]),
                     " cannot be linearized (deepest order tried leaves value ", verdict.blocked_at,
                     "); operations around it:");
    result.blocked = indices[verdict.blocked];
    for (const size_t i : verdict.window) {
      result.window.push_back(indices[i]);
      absl::StrAppend(&result.explanation, "\n  ", DescribeOne(ops[i]));
    }
    return result;
  }
  return LinearizabilityResult{};
}

}  // namespace stead::sim
