// The history of a fault run: what every client invoked, when, and what it learned.
//
// The workload driver (tests/fault/workload.h) appends one record per operation; the
// checkers (tests/fault/checkers.h) decide whether the records can be explained by a
// correct database. Times are nanoseconds on the driver's steady clock since the run
// started; an operation whose outcome the client never learned (a deadline passed, the
// connection broke after sending) is kUnknown and may have taken effect at any time
// after its invocation, or never.
//
// Thread-safety: plain values; History is filled by one thread at a time (the driver
// serialises appends).
#ifndef STEAD_TESTS_FAULT_HISTORY_H_
#define STEAD_TESTS_FAULT_HISTORY_H_

#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace stead::fault {

enum class Outcome {
  kOk,       // the server answered: the operation took effect exactly as recorded
  kFailed,   // definitely did not take effect (refused before it was proposed)
  kUnknown,  // may or may not have taken effect
};

// "ok", "failed" or "unknown": how the history's files and the checkers' reports name
// an outcome.
inline const char* OutcomeName(Outcome outcome) {
  switch (outcome) {
    case Outcome::kOk:
      return "ok";
    case Outcome::kFailed:
      return "failed";
    case Outcome::kUnknown:
      return "unknown";
  }
  return "?";
}

// The completion time of an operation whose outcome is unknown.
inline constexpr int64_t kNever = std::numeric_limits<int64_t>::max();

// Registers: a few hot keys under put, get and compare-and-swap. Every value written
// (by a put or a CAS) is unique in the run, so a read names the write it saw.
struct RegisterOp {
  enum class Kind { kPut, kGet, kCas };
  Kind kind = Kind::kGet;
  std::string key;
  // kPut: the value written. kCas: the value written if `expected` matched. kGet: the
  // value read (meaningful only when `found`).
  std::string value;
  // kCas: the value the key must hold for the swap (std::nullopt: the key must be absent).
  std::optional<std::string> expected;
  // kGet (kOk): whether the key existed. kCas (kOk): whether the swap happened.
  bool found = false;
  bool swapped = false;
  Outcome outcome = Outcome::kOk;
  int64_t invoke_ns = 0;
  int64_t complete_ns = kNever;
  uint32_t client = 0;  // which of the driver's clients
  bool operator==(const RegisterOp&) const = default;
};

// Bank: accounts whose balances only transfers change; every read of all accounts
// (one transaction) must sum to the initial total with no negative balance.
struct BankOp {
  enum class Kind { kTransfer, kRead };
  Kind kind = Kind::kRead;
  // kTransfer: moves `amount` from `from` to `to` if `from` holds enough.
  std::string from;
  std::string to;
  int64_t amount = 0;
  bool applied = false;  // kTransfer (kOk): whether the balance allowed it
  // kRead (kOk): every account's balance as the transaction saw it.
  std::map<std::string, int64_t> balances;
  Outcome outcome = Outcome::kOk;
  int64_t invoke_ns = 0;
  int64_t complete_ns = kNever;
  uint32_t client = 0;
  bool operator==(const BankOp&) const = default;
};

// Watches: each watcher's events for its prefix, in the order delivered. Every watcher
// must see every revision of its prefix after its start exactly once, in order, with the
// values the writes put there.
struct WatchRecord {
  uint32_t watcher = 0;
  std::string prefix;
  int64_t start_revision = 0;  // the first revision the watcher asked for
  struct Event {
    std::string key;
    std::string value;  // empty for a delete
    bool deleted = false;
    int64_t mod_revision = 0;
    bool operator==(const Event&) const = default;
  };
  std::vector<Event> events;
  // The revision through which the watcher had received every change when it stopped.
  int64_t progress_revision = 0;
  bool operator==(const WatchRecord&) const = default;
};

struct History {
  std::vector<RegisterOp> registers;
  std::vector<BankOp> bank;
  std::map<std::string, int64_t> bank_initial;  // the accounts' balances before the run
  std::vector<WatchRecord> watches;
  bool operator==(const History&) const = default;
};

}  // namespace stead::fault

#endif  // STEAD_TESTS_FAULT_HISTORY_H_
