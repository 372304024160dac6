// GoogleTest helpers for absl::Status and absl::StatusOr.
//
//   EXPECT_OK(log.Append(entries));
//   ASSERT_OK_AND_ASSIGN(auto segment, Segment::Open(path));
//   EXPECT_THAT(log.Read(7), StatusIs(absl::StatusCode::kDataLoss, "offset 8192"));
#ifndef STEAD_TESTS_TESTING_STATUS_MATCHERS_H_
#define STEAD_TESTS_TESTING_STATUS_MATCHERS_H_

#include <ostream>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "base/status_macros.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace stead::testing {

// Matches an absl::Status or absl::StatusOr<T> whose code is `code` and whose message
// contains `substring` (any message when empty).
class StatusIsMatcher {
 public:
  using is_gtest_matcher = void;

  StatusIsMatcher(absl::StatusCode code, std::string substring)
      : code_(code), substring_(std::move(substring)) {}

  template <typename T>
  bool MatchAndExplain(const T& value, std::ostream* listener) const {
    const absl::Status& status = ::stead::internal::AsStatus(value);
    if (status.code() != code_) {
      if (listener != nullptr) *listener << "whose status is " << status;
      return false;
    }
    if (!absl::StrContains(status.message(), substring_)) {
      if (listener != nullptr) *listener << "whose message is \"" << status.message() << "\"";
      return false;
    }
    return true;
  }

  void DescribeTo(std::ostream* os) const {
    *os << "has status code " << absl::StatusCodeToString(code_);
    if (!substring_.empty()) *os << " and a message containing \"" << substring_ << "\"";
  }
  void DescribeNegationTo(std::ostream* os) const {
    *os << "does not have status code " << absl::StatusCodeToString(code_);
    if (!substring_.empty()) *os << " with a message containing \"" << substring_ << "\"";
  }

 private:
  absl::StatusCode code_;
  std::string substring_;
};

inline StatusIsMatcher StatusIs(absl::StatusCode code, std::string substring = "") {
  return StatusIsMatcher(code, std::move(substring));
}

// Matches an OK absl::Status or absl::StatusOr.
inline StatusIsMatcher IsOk() { return StatusIsMatcher(absl::StatusCode::kOk, ""); }

// Matches an OK absl::StatusOr<T> whose value matches `inner` (a matcher or a value).
MATCHER_P(IsOkAndHolds, inner, "is OK and holds a matching value") {
  if (!arg.ok()) {
    *result_listener << "whose status is " << arg.status();
    return false;
  }
  return ::testing::ExplainMatchResult(inner, arg.value(), result_listener);
}

}  // namespace stead::testing

#define EXPECT_OK(expr) EXPECT_THAT((expr), ::stead::testing::IsOk())
#define ASSERT_OK(expr) ASSERT_THAT((expr), ::stead::testing::IsOk())

// ASSERT_OK_AND_ASSIGN(lhs, rexpr): asserts `rexpr` (a StatusOr) is OK and moves its
// value into `lhs` (a declaration or an existing lvalue).
#define ASSERT_OK_AND_ASSIGN(lhs, rexpr) \
  ASSERT_OK_AND_ASSIGN_IMPL_(STEAD_STATUS_CONCAT_(stead_test_statusor_, __LINE__), lhs, rexpr)
#define ASSERT_OK_AND_ASSIGN_IMPL_(statusor, lhs, rexpr) \
  auto statusor = (rexpr);                               \
  ASSERT_OK(statusor);                                   \
  lhs = std::move(statusor).value()

#endif  // STEAD_TESTS_TESTING_STATUS_MATCHERS_H_
