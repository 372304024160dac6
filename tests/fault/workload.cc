#include "tests/fault/workload.h"

#include <algorithm>
#include <iostream>
#include <map>
#include <optional>
#include <random>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "base/status_macros.h"

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

absl::StatusOr<WorkloadMix> ParseWorkloads(const std::string& names) {
  WorkloadMix mix;
  for (const std::string& name :
       std::vector<std::string>(absl::StrSplit(names, ',', absl::SkipEmpty()))) {
    if (name == "registers") {
      mix.registers = true;
    } else if (name == "bank") {
      mix.bank = true;
    } else if (name == "watches") {
      mix.watches = true;
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown workload '", name, "' (registers, bank, watches)"));
    }
  }
  if (!mix.registers && !mix.bank && !mix.watches) {
    return absl::InvalidArgumentError("no workload named (registers, bank, watches)");
  }
  return mix;
}

ClientSplit SplitClients(int clients, const WorkloadMix& mix) {
  if (mix.registers && mix.bank) {
    const int bank = std::max(1, clients / 4);
    return {.registers = std::max(1, clients - bank), .bank = bank};
  }
  if (mix.bank) return {.bank = clients};
  if (mix.registers) return {.registers = clients};
  return {};
}

namespace {

template <typename Op>
void Count(const std::vector<Op>& ops, OpCounts* counts) {
  for (const Op& op : ops) {
    switch (op.outcome) {
      case Outcome::kOk:
        ++counts->ok;
        break;
      case Outcome::kFailed:
        ++counts->failed;
        break;
      case Outcome::kUnknown:
        ++counts->unknown;
        break;
    }
  }
}

template <typename Op>
void OkCompletions(const std::vector<Op>& ops, int64_t from_ns, int64_t to_ns,
                   std::vector<int64_t>* out) {
  for (const Op& op : ops) {
    if (op.outcome == Outcome::kOk && op.complete_ns >= from_ns && op.complete_ns <= to_ns) {
      out->push_back(op.complete_ns);
    }
  }
}

// Retries `attempt` (one call bounded by its own timeout) until it succeeds or `timeout`
// passes; the last error otherwise.
template <typename T, typename F>
absl::StatusOr<T> RetryFor(absl::Duration timeout, F attempt) {
  const absl::Time deadline = absl::Now() + timeout;
  absl::StatusOr<T> result = absl::UnavailableError("not tried");
  for (int n = 0; n < 1000; ++n) {
    result = attempt();
    if (result.ok() || absl::Now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  return result;
}

}  // namespace

OpCounts CountOutcomes(const History& history) {
  OpCounts counts;
  Count(history.registers, &counts);
  Count(history.bank, &counts);
  return counts;
}

int64_t LongestUnavailableNs(const History& history, int64_t from_ns, int64_t to_ns) {
  std::vector<int64_t> completions;
  OkCompletions(history.registers, from_ns, to_ns, &completions);
  OkCompletions(history.bank, from_ns, to_ns, &completions);
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

Workload::~Workload() {
  Stop();
  watch_set_.reset();
}

int64_t Workload::NowNs() const {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() -
                                                              options_.start)
      .count();
}

absl::Status Workload::Start() {
  if (options_.clients < 0 || options_.bank_clients < 0 || options_.watchers < 0 ||
      options_.keys < 1 || options_.clients + options_.bank_clients + options_.watchers < 1) {
    return absl::InvalidArgumentError("a workload needs a client or a watcher, and a key");
  }
  if (options_.bank_clients > 0 && (options_.bank.accounts < 2 || options_.bank.max_amount < 1)) {
    return absl::InvalidArgumentError("the bank needs two accounts and a positive amount");
  }
  auto make_client = [&]() {
    return Client::Create({
        .endpoints = options_.endpoints,
        .default_timeout = options_.op_timeout,
        .attempt_timeout = options_.attempt_timeout,
        .connect_timeout = options_.attempt_timeout,
        .route_to_leader = false,
    });
  };
  for (int i = 0; i < options_.clients + options_.bank_clients + 1; ++i) {
    absl::StatusOr<std::unique_ptr<Client>> client = make_client();
    if (!client.ok()) return client.status();
    clients_.push_back(std::move(client).value());
  }
  control_ = std::move(clients_.back());
  clients_.pop_back();

  if (options_.bank_clients > 0) {
    absl::StatusOr<TxnResult> seeded = RetryFor<TxnResult>(
        absl::Seconds(30), [&] { return control_->Txn(SeedTxn(options_.bank)); });
    if (!seeded.ok()) {
      return absl::UnavailableError(
          absl::StrCat("seeding the bank's accounts: ", seeded.status().message()));
    }
    MutexLock lock(&mu_);
    history_.bank_initial = InitialBalances(options_.bank);
  }
  if (options_.watchers > 0) {
    // The watches start after everything written so far: the seed, earlier runs.
    absl::StatusOr<RangeResult> now = RetryFor<RangeResult>(absl::Seconds(30), [&] {
      return control_->Range("r", {.range_end = PrefixEnd("r"), .limit = 1, .keys_only = true});
    });
    if (!now.ok()) {
      return absl::UnavailableError(
          absl::StrCat("reading the revision to watch from: ", now.status().message()));
    }
    watch_set_ = std::make_unique<WatchSet>(WatchSetOptions{
        .endpoints = options_.endpoints, .watchers = options_.watchers, .prefix = "r"});
    STEAD_RETURN_IF_ERROR(watch_set_->Start(now->revision + 1));
  }
  for (int i = 0; i < options_.clients; ++i) {
    threads_.emplace_back([this, i] { RunClient(static_cast<uint32_t>(i)); });
  }
  for (int i = options_.clients; i < options_.clients + options_.bank_clients; ++i) {
    threads_.emplace_back([this, i] { RunBankClient(static_cast<uint32_t>(i)); });
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

bool Workload::FinishWatches(absl::Duration timeout) {
  if (watch_set_ == nullptr) return true;
  const absl::Time deadline = absl::Now() + timeout;
  const uint32_t client = static_cast<uint32_t>(options_.clients + options_.bank_clients);
  // Each attempt writes its own value: every value written to a key is unique.
  for (int attempt = 0; attempt < 100 && absl::Now() < deadline; ++attempt) {
    RegisterOp fence;
    fence.kind = RegisterOp::Kind::kPut;
    fence.key = "r0";
    fence.value = absl::StrCat("fence-", attempt);
    fence.client = client;
    fence.invoke_ns = NowNs();
    const absl::Status status = control_->Put(fence.key, fence.value);
    fence.outcome = status.ok() ? Outcome::kOk : ClassifyWriteError(status);
    fence.complete_ns = fence.outcome == Outcome::kUnknown ? kNever : NowNs();
    const std::string value = fence.value;
    Record(std::move(fence));
    if (status.ok()) return watch_set_->WaitSeen("r0", value, deadline - absl::Now());
  }
  return false;
}

History Workload::TakeHistory() {
  std::vector<WatchRecord> watches;
  if (watch_set_ != nullptr) watches = watch_set_->Stop();
  MutexLock lock(&mu_);
  for (WatchRecord& record : watches) history_.watches.push_back(std::move(record));
  return std::move(history_);
}

void Workload::Record(RegisterOp op) {
  MutexLock lock(&mu_);
  history_.registers.push_back(std::move(op));
}

void Workload::RunBankClient(uint32_t index) {
  Client& client = *clients_[index];
  const BankOptions& bank = options_.bank;
  std::mt19937_64 rng(options_.seed * 1000003 + index);
  std::uniform_int_distribution<int> pick_account(0, bank.accounts - 1);
  std::uniform_int_distribution<int> pick_op(0, 99);
  std::uniform_int_distribution<int64_t> pick_amount(1, bank.max_amount);
  for (int64_t n = 0; n < options_.max_ops_per_client && !stop_; ++n) {
    // Every operation starts with one linearizable read of all the accounts.
    BankOp read;
    read.kind = BankOp::Kind::kRead;
    read.client = index;
    read.invoke_ns = NowNs();
    absl::StatusOr<RangeResult> range =
        client.Range(bank.prefix, {.range_end = PrefixEnd(bank.prefix),
                                   .timeout = options_.op_timeout});
    read.complete_ns = NowNs();
    std::optional<BankView> view;
    if (!range.ok()) {
      read.outcome = Outcome::kFailed;  // a failed read tells nothing
    } else {
      BankView partial;
      absl::StatusOr<BankView> parsed = ReadBankView(*range, &partial);
      if (absl::IsFailedPrecondition(parsed.status())) {
        read.outcome = Outcome::kFailed;  // a first page only: no read of every account
      } else {
        // A value that is not a balance leaves its account out: the checker says so.
        if (!parsed.ok()) std::cerr << "stead-fault: bank: " << parsed.status().message() << "\n";
        read.balances = Balances(partial);
        if (parsed.ok()) view = *std::move(parsed);
      }
    }
    {
      MutexLock lock(&mu_);
      history_.bank.push_back(read);
    }
    if (!view.has_value() || pick_op(rng) < bank.read_percent) continue;

    BankOp transfer;
    transfer.kind = BankOp::Kind::kTransfer;
    transfer.client = index;
    transfer.from = AccountKey(bank, pick_account(rng));
    do {
      transfer.to = AccountKey(bank, pick_account(rng));
    } while (transfer.to == transfer.from);
    const auto source = view->find(transfer.from);
    const int64_t available = source == view->end() ? 0 : source->second.balance;
    transfer.amount = std::min(pick_amount(rng), available);
    const std::optional<TxnRequest> txn =
        TransferTxn(*view, transfer.from, transfer.to, transfer.amount);
    if (!txn.has_value()) continue;  // `from` is empty: nothing to move
    transfer.invoke_ns = NowNs();
    absl::StatusOr<TxnResult> result = client.Txn(*txn, {.timeout = options_.op_timeout});
    if (result.ok()) {
      transfer.outcome = Outcome::kOk;
      transfer.applied = result->succeeded;
      transfer.complete_ns = NowNs();
    } else {
      transfer.outcome = ClassifyWriteError(result.status());
      transfer.complete_ns = transfer.outcome == Outcome::kFailed ? NowNs() : kNever;
    }
    MutexLock lock(&mu_);
    history_.bank.push_back(std::move(transfer));
  }
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
