// The bank workload's bookkeeping: accounts under a prefix whose balances only
// transfers change, so that every consistent read of all of them sums to the same
// total (checkers.h, CheckBank).
//
// A bank client (workload.h) reads every account in one linearizable Range of the
// prefix (recorded as a BankOp::kRead), then, for a transfer, sends one Txn that puts
// both new balances only if neither account was written since that read (ModRevision
// compares): a refused compare is an ok transfer with applied == false. These are the
// pure parts: the seed, reading a Range's answer, and building the transfer's Txn.
//
// Thread-safety: pure functions.
#ifndef STEAD_TESTS_FAULT_BANK_WORKLOAD_H_
#define STEAD_TESTS_FAULT_BANK_WORKLOAD_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "stead/client.h"

namespace stead::fault {

struct BankOptions {
  std::string prefix = "b/";  // accounts "b/a0".."b/a<accounts-1>"
  int accounts = 8;
  int64_t initial_balance = 100;  // each account's before the run
  int64_t max_amount = 10;        // a transfer moves 1..max_amount
  int read_percent = 30;          // operations that only read; the rest transfer
};

// The name of account `i`.
std::string AccountKey(const BankOptions& options, int i);

// Every account with its initial balance (History::bank_initial).
std::map<std::string, int64_t> InitialBalances(const BankOptions& options);

// One Txn that sets every account to its initial balance (before the run). Setting
// them again is harmless, so a seed whose outcome was unknown may simply be retried.
TxnRequest SeedTxn(const BankOptions& options);

// An account as one read saw it.
struct AccountView {
  int64_t balance = 0;
  int64_t mod_revision = 0;
};
using BankView = std::map<std::string, AccountView>;

// The accounts in the answer to a Range of the prefix. FailedPrecondition when the
// answer is only a first page (`more`): it is then no single read of every account.
// InvalidArgument naming the key when a value is not a decimal balance; `*partial`
// (if given) then still holds every account that parsed.
absl::StatusOr<BankView> ReadBankView(const RangeResult& range, BankView* partial = nullptr);

// Just the balances, as BankOp::balances records them.
std::map<std::string, int64_t> Balances(const BankView& view);

// The Txn that moves `amount` from `from` to `to` if both accounts still have the
// mod_revision `view` saw: std::nullopt when either account is not in the view, they
// are the same account, `amount` is not positive or `from` holds less than it.
std::optional<TxnRequest> TransferTxn(const BankView& view, const std::string& from,
                                      const std::string& to, int64_t amount);

}  // namespace stead::fault

#endif  // STEAD_TESTS_FAULT_BANK_WORKLOAD_H_
