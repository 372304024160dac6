#include "base/check.h"

#include <string>

#include "absl/status/status.h"
#include "gtest/gtest.h"

namespace stead {
namespace {

TEST(CheckDeathTest, FailedCheckPrintsFileLineConditionAndContextThenAborts) {
  const int index = 7;
  EXPECT_DEATH(STEAD_CHECK(index < 3) << "node=2 index=" << index,
               "check_test.cc:[0-9]+: check failed: index < 3 node=2 index=7");
}

TEST(CheckDeathTest, ComparisonCheckPrintsBothValues) {
  const int term = 4;
  const int want = 5;
  EXPECT_DEATH(STEAD_CHECK_EQ(term, want), "check failed: term == want \\(4 vs. 5\\)");
}

TEST(CheckDeathTest, CheckOkPrintsTheStatus) {
  EXPECT_DEATH(STEAD_CHECK_OK(absl::DataLossError("crc mismatch")), "DATA_LOSS: crc mismatch");
}

TEST(Check, PassingChecksDoNotEvaluateContext) {
  int context_evaluations = 0;
  auto count = [&context_evaluations] { return ++context_evaluations; };
  STEAD_CHECK(1 + 1 == 2) << count();
  STEAD_CHECK_LE(1, 2) << count();
  STEAD_CHECK_OK(absl::OkStatus()) << count();
  EXPECT_EQ(context_evaluations, 0);
}

TEST(Check, ConditionIsEvaluatedExactlyOnce) {
  int evaluations = 0;
  STEAD_CHECK(++evaluations > 0);
  EXPECT_EQ(evaluations, 1);
}

#ifdef NDEBUG
TEST(Check, DcheckIsCompiledOutInRelease) {
  int evaluations = 0;
  STEAD_DCHECK(++evaluations < 0);
  EXPECT_EQ(evaluations, 0);
}
#else
TEST(CheckDeathTest, DcheckAbortsInDebug) {
  EXPECT_DEATH(STEAD_DCHECK(false) << "debug only", "check failed: false debug only");
}
#endif

}  // namespace
}  // namespace stead
