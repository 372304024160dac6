#include "tests/fault/bank_workload.h"

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace stead::fault {

std::string AccountKey(const BankOptions& options, int i) {
  return absl::StrCat(options.prefix, "a", i);
}

std::map<std::string, int64_t> InitialBalances(const BankOptions& options) {
  std::map<std::string, int64_t> balances;
  for (int i = 0; i < options.accounts; ++i) {
    balances[AccountKey(options, i)] = options.initial_balance;
  }
  return balances;
}

TxnRequest SeedTxn(const BankOptions& options) {
  TxnRequest txn;
  for (const auto& [account, balance] : InitialBalances(options)) {
    txn.success.push_back(TxnOp::Put(account, absl::StrCat(balance)));
  }
  return txn;
}

absl::StatusOr<BankView> ReadBankView(const RangeResult& range, BankView* partial) {
  if (range.more) {
    return absl::FailedPreconditionError(
        absl::StrCat("the read of the accounts ended after ", range.kvs.size(), " keys"));
  }
  BankView view;
  absl::Status status;
  for (const KeyValue& kv : range.kvs) {
    int64_t balance = 0;
    if (!absl::SimpleAtoi(kv.value, &balance)) {
      if (status.ok()) {
        status = absl::InvalidArgumentError(
            absl::StrCat("account ", kv.key, " holds '", kv.value, "', not a balance"));
      }
      continue;
    }
    view[kv.key] = {.balance = balance, .mod_revision = kv.mod_revision};
  }
  if (partial != nullptr) *partial = view;
  if (!status.ok()) return status;
  return view;
}

std::map<std::string, int64_t> Balances(const BankView& view) {
  std::map<std::string, int64_t> balances;
  for (const auto& [account, state] : view) balances[account] = state.balance;
  return balances;
}

std::optional<TxnRequest> TransferTxn(const BankView& view, const std::string& from,
                                      const std::string& to, int64_t amount) {
  const auto source = view.find(from);
  const auto target = view.find(to);
  if (source == view.end() || target == view.end() || from == to || amount <= 0 ||
      source->second.balance < amount) {
    return std::nullopt;
  }
  // Both accounts unwritten since the read: then the new balances are exact.
  return TxnRequest{
      .compare = {Compare::ModRevision(from, Compare::Result::kEqual, source->second.mod_revision),
                  Compare::ModRevision(to, Compare::Result::kEqual, target->second.mod_revision)},
      .success = {TxnOp::Put(from, absl::StrCat(source->second.balance - amount)),
                  TxnOp::Put(to, absl::StrCat(target->second.balance + amount))},
  };
}

}  // namespace stead::fault
