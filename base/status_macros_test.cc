#include "base/status_macros.h"

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace stead {
namespace {

using ::stead::testing::IsOk;
using ::stead::testing::StatusIs;
using ::testing::Not;

absl::Status FailIf(bool fail) {
  return fail ? absl::DataLossError("crc mismatch at offset 8192") : absl::OkStatus();
}

absl::StatusOr<int> ValueOrError(bool fail, int value) {
  if (fail) return absl::UnavailableError("no leader");
  return value;
}

TEST(ReturnIfError, PropagatesTheFirstErrorAndStops) {
  int steps = 0;
  auto run = [&steps](bool fail_second) -> absl::Status {
    STEAD_RETURN_IF_ERROR(FailIf(false));
    ++steps;
    STEAD_RETURN_IF_ERROR(FailIf(fail_second));
    ++steps;
    return absl::OkStatus();
  };
  EXPECT_OK(run(false));
  EXPECT_EQ(steps, 2);
  steps = 0;
  EXPECT_THAT(run(true), StatusIs(absl::StatusCode::kDataLoss, "offset 8192"));
  EXPECT_EQ(steps, 1);
}

TEST(ReturnIfError, AcceptsStatusOr) {
  auto run = [](bool fail) -> absl::Status {
    STEAD_RETURN_IF_ERROR(ValueOrError(fail, 1));
    return absl::OkStatus();
  };
  EXPECT_OK(run(false));
  EXPECT_THAT(run(true), StatusIs(absl::StatusCode::kUnavailable));
}

TEST(AssignOrReturn, AssignsDeclarationsAndExistingVariables) {
  auto run = [](bool fail) -> absl::StatusOr<int> {
    STEAD_ASSIGN_OR_RETURN(int first, ValueOrError(false, 40));
    int second = 0;
    STEAD_ASSIGN_OR_RETURN(second, ValueOrError(fail, 2));
    return first + second;
  };
  absl::StatusOr<int> ok = run(false);
  ASSERT_OK(ok);
  EXPECT_EQ(*ok, 42);
  EXPECT_THAT(run(true), StatusIs(absl::StatusCode::kUnavailable, "no leader"));
}

TEST(AssignOrReturn, MovesMoveOnlyValues) {
  auto make = []() -> absl::StatusOr<std::unique_ptr<int>> { return std::make_unique<int>(7); };
  auto run = [&make]() -> absl::StatusOr<int> {
    STEAD_ASSIGN_OR_RETURN(std::unique_ptr<int> value, make());
    return *value;
  };
  ASSERT_OK_AND_ASSIGN(int value, run());
  EXPECT_EQ(value, 7);
}

TEST(Annotate, PrependsContextAndKeepsTheCode) {
  EXPECT_THAT(Annotate(FailIf(true), "wal segment 000042.log"),
              StatusIs(absl::StatusCode::kDataLoss,
                       "wal segment 000042.log: crc mismatch at offset 8192"));
  EXPECT_OK(Annotate(absl::OkStatus(), "ignored"));
  EXPECT_THAT(Annotate(ValueOrError(true, 0), "member stead-1"),
              StatusIs(absl::StatusCode::kUnavailable, "member stead-1: no leader"));
}

TEST(StatusIsMatcher, RejectsAWrongCodeOrMessage) {
  const absl::Status status = absl::NotFoundError("member stead-4 not found");
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kNotFound, "stead-4"));
  EXPECT_THAT(status, Not(StatusIs(absl::StatusCode::kAlreadyExists)));
  EXPECT_THAT(status, Not(StatusIs(absl::StatusCode::kNotFound, "stead-5")));
  EXPECT_THAT(status, Not(IsOk()));
  EXPECT_THAT(absl::StatusOr<int>(3), IsOk());

  ::testing::StringMatchResultListener listener;
  EXPECT_FALSE(::testing::ExplainMatchResult(StatusIs(absl::StatusCode::kInternal), status,
                                             &listener));
  EXPECT_THAT(listener.str(), ::testing::HasSubstr("NOT_FOUND"));
}

}  // namespace
}  // namespace stead
