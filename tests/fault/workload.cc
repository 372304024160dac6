#include "tests/fault/workload.h"

#include <algorithm>
#include <map>
#include <optional>
#include <random>
#include <utility>

#include "absl/strings/str_cat.h"

namespace stead::fault {

Outcome ClassifyWriteError(const absl::Status& status) {
  switch (status.code()) {
    // Refused by the client itself (a limit, too many calls in flight) or by the
    // cluster's auth check, which answers before anything is proposed.
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kResourceExhausted:
    case absl::StatusCode::kPermissionDenied:
    case absl::StatusCode::kUnauthenticated:
      return Outcome::kFailed;
    default:
      return Outcome::kUnknown;
  }
}

OpCounts CountOutcomes(const History& history) {
  OpCounts counts;
  for (const RegisterOp& op : history.registers) {
    switch (op.outcome) {
      case Outcome::kOk:
        ++counts.ok;
        break;
      case Outcome::kFailed:
        ++counts.failed;
        break;
      case Outcome::kUnknown:
        ++counts.unknown;
        break;
    }
  }
  return counts;
}

int64_t LongestUnavailableNs(const History& history, int64_t from_ns, int64_t to_ns) {
  std::vector<int64_t> completions;
  for (const RegisterOp& op : history.registers) {
    if (op.outcome == Outcome::kOk && op.complete_ns >= from_ns && op.complete_ns <= to_ns) {
      completions.push_back(op.complete_ns);
    }
  }
  std::sort(completions.begin(), completions.end());
  int64_t longest = 0;
  int64_t previous = from_ns;
  for (int64_t at : completions) {
    longest = std::max(longest, at - previous);
    previous = at;
  }
  return std::max(longest, to_ns - previous);
}

Workload::Workload(WorkloadOptions options) : options_(std::move(options)) {}

Workload::~Workload() { Stop(); }

int64_t Workload::NowNs() const {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() -
                                                              options_.start)
      .count();
}

absl::Status Workload::Start() {
  if (options_.clients < 1 || options_.keys < 1) {
    return absl::InvalidArgumentError("a workload needs at least one client and one key");
  }
  for (int i = 0; i < options_.clients; ++i) {
    absl::StatusOr<std::unique_ptr<Client>> client = Client::Create({
        .endpoints = options_.endpoints,
        .default_timeout = options_.op_timeout,
        .attempt_timeout = options_.attempt_timeout,
        .connect_timeout = options_.attempt_timeout,
        .route_to_leader = false,
    });
    if (!client.ok()) return client.status();
    clients_.push_back(std::move(client).value());
  }
  for (int i = 0; i < options_.clients; ++i) {
    threads_.emplace_back([this, i] { RunClient(static_cast<uint32_t>(i)); });
  }
  return absl::OkStatus();
}

void Workload::Stop() {
  stop_ = true;
  for (std::thread& thread : threads_) {
    if (thread.joinable()) thread.join();
  }
  threads_.clear();
  clients_.clear();
}

History Workload::TakeHistory() {
  MutexLock lock(&mu_);
  return std::move(history_);
}

void Workload::RunClient(uint32_t index) {
  Client& client = *clients_[index];
  // Each client's own stream, derived from the run's seed.
  std::mt19937_64 rng(options_.seed * 1000003 + index);
  std::uniform_int_distribution<int> pick_key(0, options_.keys - 1);
  std::uniform_int_distribution<int> pick_op(0, 99);
  // The value this client last read of each key (nullopt: read as absent); a CAS goes
  // from it, so a key never read is read first.
  std::map<std::string, std::optional<std::string>> last_read;
  for (int64_t n = 0; n < options_.max_ops_per_client && !stop_; ++n) {
    RegisterOp op;
    op.client = index;
    op.key = absl::StrCat("r", pick_key(rng));
    const int roll = pick_op(rng);
    const bool known = last_read.count(op.key) > 0;
    if (roll < options_.get_percent ||
        (roll >= options_.get_percent + options_.put_percent && !known)) {
      op.kind = RegisterOp::Kind::kGet;
    } else if (roll < options_.get_percent + options_.put_percent) {
      op.kind = RegisterOp::Kind::kPut;
    } else {
      op.kind = RegisterOp::Kind::kCas;
      op.expected = last_read[op.key];
    }
    // Unique in the run: the client and its operation number.
    if (op.kind != RegisterOp::Kind::kGet) op.value = absl::StrCat("c", index, "-", n);

    const CallOptions call{.timeout = options_.op_timeout};
    op.invoke_ns = NowNs();
    absl::Status status;
    switch (op.kind) {
      case RegisterOp::Kind::kGet: {
        absl::StatusOr<std::optional<std::string>> value =
            client.Get(op.key, {.timeout = options_.op_timeout});
        status = value.status();
        if (value.ok()) {
          op.found = value->has_value();
          if (op.found) op.value = **value;
          last_read[op.key] = *value;
        }
        break;
      }
      case RegisterOp::Kind::kPut:
        status = client.Put(op.key, op.value, call);
        break;
      case RegisterOp::Kind::kCas: {
        absl::StatusOr<bool> swapped = client.CompareAndSwap(op.key, op.expected, op.value, call);
        status = swapped.status();
        if (swapped.ok()) op.swapped = *swapped;
        break;
      }
    }
    const int64_t done_ns = NowNs();
    if (status.ok()) {
      op.outcome = Outcome::kOk;
      op.complete_ns = done_ns;
    } else if (op.kind == RegisterOp::Kind::kGet) {
      op.outcome = Outcome::kFailed;  // a failed read tells nothing
      op.complete_ns = done_ns;
    } else {
      op.outcome = ClassifyWriteError(status);
      op.complete_ns = op.outcome == Outcome::kFailed ? done_ns : kNever;
    }
    // What this client's next CAS expects: after its own successful write, that value.
    if (op.outcome == Outcome::kOk && op.kind == RegisterOp::Kind::kPut)
      last_read[op.key] = op.value;
    if (op.outcome == Outcome::kOk && op.kind == RegisterOp::Kind::kCas && op.swapped) {
      last_read[op.key] = op.value;
    }
    MutexLock lock(&mu_);
    history_.registers.push_back(std::move(op));
  }
}

}  // namespace stead::fault
