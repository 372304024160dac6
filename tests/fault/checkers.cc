#include "tests/fault/checkers.h"

#include <algorithm>
#include <cstddef>
#include <iterator>
#include <set>
#include <tuple>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "tests/sim/linearizability.h"

namespace stead::fault {
namespace {

using sim::KvOperation;

// At most this many problems are listed in a failed check's details.
constexpr size_t kMaxProblems = 20;

// 12345 -> "12,345": verdicts are read by people.
std::string WithCommas(int64_t n) {
  std::string digits = absl::StrCat(n < 0 ? -n : n);
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out.push_back(',');
    out.push_back(digits[i]);
  }
  return n < 0 ? "-" + out : out;
}

std::string Ms(int64_t ns) {
  if (ns == kNever) return "never";
  return absl::StrFormat("%.3fms", static_cast<double>(ns) / 1e6);
}

CheckResult Failure(std::string verdict, std::vector<std::string> problems) {
  CheckResult result;
  result.ok = false;
  result.verdict = std::move(verdict);
  const size_t shown = std::min(problems.size(), kMaxProblems);
  result.details =
      absl::StrJoin(problems.begin(), problems.begin() + static_cast<std::ptrdiff_t>(shown), "\n");
  if (problems.size() > shown) {
    absl::StrAppend(&result.details, "\n... ", problems.size() - shown, " more");
  }
  return result;
}

// The register history in the checker's terms: string keys and values become integers
// (values per key; every written value is unique, so a read names its write).
struct Translation {
  std::vector<KvOperation> ops;
  std::vector<std::string> key_names;  // by KvOperation::key
  size_t unknown = 0;                  // puts and CAS of unknown outcome kept
  size_t dropped = 0;                  // failed operations and unknown reads
  std::string malformed;               // non-empty: why the history cannot be checked
};

Translation Translate(const std::vector<RegisterOp>& history) {
  Translation t;
  std::map<std::string, uint64_t> key_ids;
  std::map<std::pair<uint64_t, std::string>, int64_t> value_ids;
  int64_t next_value = 0;
  auto key_id = [&](const std::string& key) {
    auto [it, inserted] = key_ids.try_emplace(key, t.key_names.size());
    if (inserted) t.key_names.push_back(key);
    return it->second;
  };
  auto value_id = [&](uint64_t key, const std::string& value) {
    auto [it, inserted] = value_ids.try_emplace({key, value}, next_value);
    if (inserted) ++next_value;
    return it->second;
  };
  // Written values first, so a duplicate write is caught however reads interleave.
  for (size_t i = 0; i < history.size(); ++i) {
    const RegisterOp& op = history[i];
    if (op.outcome == Outcome::kFailed || op.kind == RegisterOp::Kind::kGet) continue;
    const uint64_t key = key_id(op.key);
    if (!value_ids.try_emplace({key, op.value}, next_value).second) {
      t.malformed = absl::StrCat("value '", op.value, "' written twice to key ", op.key, " (op #",
                                 i, ": ", DescribeOp(op), ")");
      return t;
    }
    ++next_value;
  }
  for (size_t i = 0; i < history.size(); ++i) {
    const RegisterOp& op = history[i];
    const bool unknown = op.outcome == Outcome::kUnknown;
    if (op.outcome == Outcome::kFailed || (unknown && op.kind == RegisterOp::Kind::kGet)) {
      ++t.dropped;
      continue;
    }
    if (op.invoke_ns < 0 ||
        (!unknown && (op.complete_ns == kNever || op.complete_ns < op.invoke_ns))) {
      t.malformed = absl::StrCat("bad times in op #", i, ": ", DescribeOp(op));
      return t;
    }
    KvOperation kv;
    kv.key = key_id(op.key);
    kv.id = i;
    // Doubled so an operation may complete in the nanosecond it was invoked, and one
    // completing in the nanosecond another is invoked counts as concurrent with it.
    kv.call_time = 2 * static_cast<uint64_t>(op.invoke_ns);
    kv.return_time =
        unknown ? sim::kUnknownReturnTime : 2 * static_cast<uint64_t>(op.complete_ns) + 1;
    switch (op.kind) {
      case RegisterOp::Kind::kPut:
        kv.kind = KvOperation::Kind::kPut;
        kv.value = value_id(kv.key, op.value);
        break;
      case RegisterOp::Kind::kGet:
        kv.kind = KvOperation::Kind::kGet;
        kv.value = op.found ? value_id(kv.key, op.value) : sim::kAbsentValue;
        break;
      case RegisterOp::Kind::kCas:
        kv.kind = KvOperation::Kind::kCas;
        kv.value = value_id(kv.key, op.value);
        kv.expected = op.expected.has_value() ? value_id(kv.key, *op.expected) : sim::kAbsentValue;
        kv.swapped = op.swapped;
        break;
    }
    if (unknown) ++t.unknown;
    t.ops.push_back(kv);
  }
  return t;
}

}  // namespace

bool CheckReport::ok() const {
  return std::all_of(results.begin(), results.end(), [](const CheckResult& r) { return r.ok; });
}

std::string CheckReport::Summary() const {
  std::vector<std::string> lines;
  for (const CheckResult& r : results) lines.push_back(r.verdict);
  return absl::StrJoin(lines, "; ");
}

std::string CheckReport::Details() const {
  std::string out;
  for (const CheckResult& r : results) {
    absl::StrAppend(&out, r.verdict, "\n");
    if (!r.details.empty()) absl::StrAppend(&out, r.details, "\n");
  }
  return out;
}

std::string DescribeOp(const RegisterOp& op) {
  std::string out = absl::StrCat("client=", op.client, " ");
  switch (op.kind) {
    case RegisterOp::Kind::kPut:
      absl::StrAppend(&out, "put key=", op.key, " value=", op.value);
      break;
    case RegisterOp::Kind::kGet:
      absl::StrAppend(&out, "get key=", op.key);
      if (op.outcome == Outcome::kOk) {
        absl::StrAppend(&out, op.found ? absl::StrCat(" value=", op.value) : " absent");
      }
      break;
    case RegisterOp::Kind::kCas:
      absl::StrAppend(&out, "cas key=", op.key, " expected=",
                      op.expected.has_value() ? *op.expected : std::string("(absent)"),
                      " value=", op.value);
      if (op.outcome == Outcome::kOk)
        absl::StrAppend(&out, op.swapped ? " swapped" : " not-swapped");
      break;
  }
  absl::StrAppend(&out, " invoke=", Ms(op.invoke_ns), " complete=", Ms(op.complete_ns), " ",
                  OutcomeName(op.outcome));
  return out;
}

CheckResult CheckRegisters(const std::vector<RegisterOp>& ops, uint64_t max_search_steps) {
  const Translation t = Translate(ops);
  if (!t.malformed.empty()) {
    return Failure(absl::StrCat("registers: INVALID HISTORY ", t.malformed), {});
  }
  const sim::LinearizabilityResult result = sim::CheckKvLinearizable(t.ops, max_search_steps);
  const std::string counts =
      absl::StrCat(WithCommas(static_cast<int64_t>(t.ops.size())), " ops, ", t.key_names.size(),
                   " keys, ", WithCommas(static_cast<int64_t>(t.unknown)), " unknown, ",
                   WithCommas(static_cast<int64_t>(t.dropped)), " dropped");
  if (result.linearizable) {
    CheckResult ok;
    ok.verdict = absl::StrCat("registers: ok (", counts, ")");
    return ok;
  }
  const std::string& key = t.key_names[result.key];
  if (result.search_exhausted) {
    return Failure(
        absl::StrCat("registers: UNDECIDED key=", key, ": the search ran out of ",
                     WithCommas(static_cast<int64_t>(max_search_steps)),
                     " steps, so the history is neither proven nor refuted (", counts, ")"),
        {});
  }
  if (result.window.empty()) {  // cannot happen: a refutation always names its window
    return Failure(absl::StrCat("registers: NOT LINEARIZABLE key=", key), {result.explanation});
  }
  const RegisterOp& blocked = ops[t.ops[result.blocked].id];
  std::vector<std::string> lines = {absl::StrCat(
      "key=", key, ": no order of these operations consistent with real time explains them; ",
      "the search got furthest with the marked one unplaced:")};
  for (const size_t i : result.window) {
    const size_t index = t.ops[i].id;
    lines.push_back(absl::StrCat(i == result.blocked ? "  * " : "    ", "#", index, " ",
                                 DescribeOp(ops[index])));
  }
  CheckResult failed = Failure(absl::StrCat("registers: NOT LINEARIZABLE key=", key, " at ",
                                            DescribeOp(blocked), " (", counts, ")"),
                               {});
  failed.details = absl::StrJoin(lines, "\n");
  return failed;
}

CheckResult CheckBank(const std::map<std::string, int64_t>& initial,
                      const std::vector<BankOp>& ops) {
  int64_t total = 0;
  for (const auto& [account, balance] : initial) total += balance;
  size_t reads = 0;
  size_t transfers = 0;
  for (size_t i = 0; i < ops.size(); ++i) {
    const BankOp& op = ops[i];
    if (op.kind == BankOp::Kind::kTransfer) {
      if (op.outcome == Outcome::kOk) ++transfers;
      continue;
    }
    if (op.outcome != Outcome::kOk) continue;
    ++reads;
    std::vector<std::string> problems;
    int64_t sum = 0;
    for (const auto& [account, balance] : op.balances) {
      sum += balance;
      if (balance < 0) problems.push_back(absl::StrCat("negative balance ", account, "=", balance));
      if (initial.count(account) == 0)
        problems.push_back(absl::StrCat("unknown account ", account));
    }
    for (const auto& [account, balance] : initial) {
      if (op.balances.count(account) == 0)
        problems.push_back(absl::StrCat("missing account ", account));
    }
    if (sum != total) problems.push_back(absl::StrCat("sum ", sum, " != initial total ", total));
    if (problems.empty()) continue;
    std::vector<std::string> balances;
    for (const auto& [account, balance] : op.balances) {
      balances.push_back(absl::StrCat(account, "=", balance));
    }
    return Failure(
        absl::StrCat("bank: BAD READ #", i, " client=", op.client, " invoke=", Ms(op.invoke_ns),
                     " complete=", Ms(op.complete_ns), ": ", absl::StrJoin(problems, ", ")),
        {absl::StrCat("balances read: ", absl::StrJoin(balances, " ")),
         absl::StrCat("initial total ", total, " over ", initial.size(), " accounts")});
  }
  CheckResult ok;
  ok.verdict = absl::StrCat("bank: ok (", WithCommas(static_cast<int64_t>(reads)), " reads, ",
                            WithCommas(static_cast<int64_t>(transfers)), " transfers, total ",
                            WithCommas(total), ")");
  return ok;
}

namespace {

// What two watchers must agree on: one event of a revision.
using EventId = std::tuple<int64_t, std::string, bool, std::string>;  // rev, key, deleted, value

std::string DescribeEvent(const WatchRecord::Event& e) {
  return absl::StrCat("key=", e.key, " revision=", e.mod_revision,
                      e.deleted ? std::string(" delete") : absl::StrCat(" value=", e.value));
}

std::string DescribeEvent(const EventId& e) {
  const auto& [revision, key, deleted, value] = e;
  return absl::StrCat("key=", key, " revision=", revision,
                      deleted ? std::string(" delete") : absl::StrCat(" value=", value));
}

// The problems of one watcher on its own.
void CheckOneWatcher(const WatchRecord& record,
                     const std::map<std::string, std::set<std::string>>& written,
                     std::vector<std::string>* problems) {
  const std::string who =
      absl::StrCat("watcher ", record.watcher, " (prefix '", record.prefix, "')");
  std::set<std::pair<int64_t, std::string>> seen;
  int64_t last_revision = 0;
  for (size_t i = 0; i < record.events.size(); ++i) {
    const WatchRecord::Event& e = record.events[i];
    const std::string where = absl::StrCat(who, " event #", i, " ", DescribeEvent(e));
    if (!seen.emplace(e.mod_revision, e.key).second) {
      problems->push_back(absl::StrCat(where, ": delivered twice"));
      continue;
    }
    if (i > 0 && e.mod_revision < last_revision) {
      problems->push_back(absl::StrCat(where, ": out of order after revision ", last_revision));
    }
    last_revision = std::max(last_revision, e.mod_revision);
    if (!absl::StartsWith(e.key, record.prefix)) {
      problems->push_back(absl::StrCat(where, ": outside the prefix"));
    }
    if (e.mod_revision < record.start_revision) {
      problems->push_back(
          absl::StrCat(where, ": before the start revision ", record.start_revision));
    }
    if (!e.deleted) {
      const auto it = written.find(e.key);
      if (it == written.end() || it->second.count(e.value) == 0) {
        problems->push_back(absl::StrCat(where, ": a value no client wrote to that key"));
      }
    }
  }
}

// The events `record` must share with any other watcher of its prefix in [low, high].
std::set<EventId> EventsIn(const WatchRecord& record, int64_t low, int64_t high) {
  std::set<EventId> out;
  for (const WatchRecord::Event& e : record.events) {
    if (e.mod_revision >= low && e.mod_revision <= high) {
      out.emplace(e.mod_revision, e.key, e.deleted, e.deleted ? std::string() : e.value);
    }
  }
  return out;
}

void CompareWatchers(const WatchRecord& a, const WatchRecord& b,
                     std::vector<std::string>* problems) {
  const int64_t low = std::max(a.start_revision, b.start_revision);
  const int64_t high = std::min(a.progress_revision, b.progress_revision);
  if (low > high) return;
  const std::set<EventId> in_a = EventsIn(a, low, high);
  const std::set<EventId> in_b = EventsIn(b, low, high);
  std::vector<EventId> only_a;
  std::vector<EventId> only_b;
  std::set_difference(in_a.begin(), in_a.end(), in_b.begin(), in_b.end(),
                      std::back_inserter(only_a));
  std::set_difference(in_b.begin(), in_b.end(), in_a.begin(), in_a.end(),
                      std::back_inserter(only_b));
  const std::string range = absl::StrCat(" (both cover revisions ", low, "..", high, ")");
  for (const EventId& e : only_a) {
    problems->push_back(absl::StrCat("watcher ", b.watcher, " missed ", DescribeEvent(e),
                                     " that watcher ", a.watcher, " saw", range));
  }
  for (const EventId& e : only_b) {
    problems->push_back(absl::StrCat("watcher ", a.watcher, " missed ", DescribeEvent(e),
                                     " that watcher ", b.watcher, " saw", range));
  }
}

}  // namespace

CheckResult CheckWatches(const std::vector<WatchRecord>& records,
                         const std::vector<RegisterOp>& registers) {
  // Values that may be in the store: any put or CAS that may have taken effect.
  std::map<std::string, std::set<std::string>> written;
  for (const RegisterOp& op : registers) {
    if (op.outcome == Outcome::kFailed || op.kind == RegisterOp::Kind::kGet) continue;
    if (op.kind == RegisterOp::Kind::kCas && op.outcome == Outcome::kOk && !op.swapped) continue;
    written[op.key].insert(op.value);
  }
  std::vector<std::string> problems;
  size_t events = 0;
  for (const WatchRecord& record : records) {
    events += record.events.size();
    CheckOneWatcher(record, written, &problems);
  }
  for (size_t i = 0; i < records.size(); ++i) {
    for (size_t j = i + 1; j < records.size(); ++j) {
      if (records[i].prefix == records[j].prefix)
        CompareWatchers(records[i], records[j], &problems);
    }
  }
  if (!problems.empty()) {
    const std::string first = problems.front();
    return Failure(
        absl::StrCat("watches: BAD ", first,
                     problems.size() > 1 ? absl::StrCat(" (and ", problems.size() - 1, " more)")
                                         : std::string()),
        std::move(problems));
  }
  CheckResult ok;
  ok.verdict = absl::StrCat("watches: ok (", records.size(), " watchers, ",
                            WithCommas(static_cast<int64_t>(events)), " events)");
  return ok;
}

CheckReport CheckHistory(const History& history) {
  CheckReport report;
  report.results.push_back(CheckRegisters(history.registers));
  if (!history.bank_initial.empty() || !history.bank.empty()) {
    report.results.push_back(CheckBank(history.bank_initial, history.bank));
  }
  if (!history.watches.empty()) {
    report.results.push_back(CheckWatches(history.watches, history.registers));
  }
  return report;
}

}  // namespace stead::fault
