// STEAD_CHECK and friends: always-on assertions for our own invariants.
//
// A failed check prints "file:line: check failed: <condition> <context>" to stderr and
// aborts the process. Use checks for bugs in stead itself, never for input: peer
// messages, client frames, files on disk and flags are validated and answered with an
// absl::Status instead (see STYLE.md §4).
//
//   STEAD_CHECK(index <= last_index) << "node=" << id << " index=" << index;
//   STEAD_CHECK_EQ(entry.term(), term);            // prints both values on failure
//   STEAD_DCHECK(IsSorted(voters));                // compiled out under NDEBUG
#ifndef STEAD_BASE_CHECK_H_
#define STEAD_BASE_CHECK_H_

#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>

namespace stead::internal {

// Collects the context streamed after a failed check and aborts when destroyed, at the
// end of the full expression that created it.
class CheckFailure {
 public:
  CheckFailure(const char* file, int line, const char* condition) {
    stream_ << file << ":" << line << ": check failed: " << condition;
  }
  CheckFailure(const CheckFailure&) = delete;
  CheckFailure& operator=(const CheckFailure&) = delete;

  [[noreturn]] ~CheckFailure() {
    stream_ << "\n";
    const std::string message = stream_.str();
    std::fwrite(message.data(), 1, message.size(), stderr);
    std::fflush(stderr);
    std::abort();
  }

  std::ostream& stream() {
    stream_ << " ";
    return stream_;
  }

 private:
  std::ostringstream stream_;
};

// Renders "a op b (lhs vs. rhs)" for the binary comparison checks.
template <typename A, typename B>
std::string DescribeComparison(const char* text, const A& a, const B& b) {
  std::ostringstream out;
  out << text << " (" << a << " vs. " << b << ")";
  return out.str();
}

}  // namespace stead::internal

// The `while` form lets callers stream context after the macro; the loop body never
// finishes because CheckFailure's destructor aborts.
#define STEAD_CHECK(condition)                                                  \
  while (!(condition)) /* NOLINT(bugprone-infinite-loop) */                     \
  ::stead::internal::CheckFailure(__FILE__, __LINE__, #condition).stream()

#define STEAD_CHECK_OP_(a, op, b)                                                      \
  while (!((a)op(b)))                                                                  \
  ::stead::internal::CheckFailure(                                                     \
      __FILE__, __LINE__,                                                              \
      ::stead::internal::DescribeComparison(#a " " #op " " #b, (a), (b)).c_str())      \
      .stream()

#define STEAD_CHECK_EQ(a, b) STEAD_CHECK_OP_(a, ==, b)
#define STEAD_CHECK_NE(a, b) STEAD_CHECK_OP_(a, !=, b)
#define STEAD_CHECK_LT(a, b) STEAD_CHECK_OP_(a, <, b)
#define STEAD_CHECK_LE(a, b) STEAD_CHECK_OP_(a, <=, b)
#define STEAD_CHECK_GT(a, b) STEAD_CHECK_OP_(a, >, b)
#define STEAD_CHECK_GE(a, b) STEAD_CHECK_OP_(a, >=, b)

// STEAD_CHECK_OK(status_expr): the expression must be OK; prints the status otherwise.
#define STEAD_CHECK_OK(expr)                                                        \
  for (const auto& stead_check_ok_status_ = (expr); !stead_check_ok_status_.ok();) \
  ::stead::internal::CheckFailure(__FILE__, __LINE__, #expr " is OK").stream()      \
      << stead_check_ok_status_.ToString()

// Debug-only checks for conditions too expensive to test in release builds. Under
// NDEBUG the condition is not evaluated but still compiled, so it cannot rot.
#ifdef NDEBUG
#define STEAD_DCHECK(condition) \
  while (false) STEAD_CHECK(condition)
#else
#define STEAD_DCHECK(condition) STEAD_CHECK(condition)
#endif

#endif  // STEAD_BASE_CHECK_H_
