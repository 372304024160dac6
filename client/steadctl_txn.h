// The transaction syntax of `steadctl txn`: one condition per --if, one operation per
// --then / --else, each a short line of words (kTxnSyntaxHelp is the manual):
//
//   steadctl txn --if 'value(config) = v1' --if 'version(lock) = 0'
//       --then 'put config v2' --then 'put lock me' --else 'get config'
//
// Parsing is pure (no I/O), so every rule and error message has a unit test
// (steadctl_txn_test.cc).
//
// Thread-safety: pure functions of their arguments.
#ifndef STEAD_CLIENT_STEADCTL_TXN_H_
#define STEAD_CLIENT_STEADCTL_TXN_H_

#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "stead/client.h"

namespace stead::ctl {

// The syntax, as `steadctl txn --help` prints it after its usage line.
extern const char kTxnSyntaxHelp[];

// One condition, e.g. `value(k) = v`, `version(k) > 3`, `!exists(k)`. InvalidArgument
// saying what was expected and at which column (1-based).
absl::StatusOr<Compare> ParseCompare(absl::string_view text);
// Reads the value of `put KEY --value-file=PATH` from PATH: the value, or a status
// naming PATH (ReadValueInput in steadctl; a fake in tests, which keeps parsing pure).
using ValueFileReader = absl::FunctionRef<absl::StatusOr<std::string>(const std::string& path)>;

// One operation, e.g. `put k v`, `put k --value-file=/tmp/v` (the value read by
// `read_value_file`), `del k`, `get k`, `get a b` (the range [a, b)). InvalidArgument as
// ParseCompare; the status of `read_value_file` as it is.
absl::StatusOr<TxnOp> ParseTxnOp(absl::string_view text, ValueFileReader read_value_file);
// A whole transaction from the texts of the --if, --then and --else flags, in order.
// InvalidArgument naming the flag and its text, e.g. "--if #2 'value(k) ~ v': ...",
// or when there is nothing to do (no flag at all).
absl::StatusOr<TxnRequest> ParseTxn(const std::vector<std::string>& ifs,
                                    const std::vector<std::string>& thens,
                                    const std::vector<std::string>& elses,
                                    ValueFileReader read_value_file);

// `word` as a --then/--else word: bare when it is non-empty valid UTF-8 without spaces,
// quotes, backslashes or control characters and does not start with --value-file=,
// else double-quoted with escapes. ParseTxnOp reads it back as `word`.
std::string QuoteWord(absl::string_view word);
// `op` in the syntax ParseTxnOp reads, e.g. `put k v`, `del "a b"`, `get a b`.
std::string FormatTxnOp(const TxnOp& op);

}  // namespace stead::ctl

#endif  // STEAD_CLIENT_STEADCTL_TXN_H_
