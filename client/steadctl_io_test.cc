// steadctl's bytes in: reading a value from a file, bounded.
#include "client/steadctl_io.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace stead::ctl {
namespace {

using namespace std::string_literals;
using testing::IsOkAndHolds;
using testing::StatusIs;

// A file holding `bytes` in the test's temporary directory; its path.
std::string WriteTempFile(const std::string& name, const std::string& bytes) {
  const std::string path =
      absl::StrCat(::testing::TempDir(), "/steadctl_io_test_", ::getpid(), "_", name);
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
  return path;
}

TEST(ReadValueInput, ReadsEveryByteUpToTheBound) {
  const std::string bytes = "0123456789\0\xff"s;
  const std::string path = WriteTempFile("value", bytes);
  const std::string empty = WriteTempFile("empty", "");
  EXPECT_THAT(ReadValueInput(path, "--value-file=v", bytes.size()), IsOkAndHolds(bytes));
  EXPECT_THAT(ReadValueInput(empty, "--value-file=e", 0), IsOkAndHolds(""));
  EXPECT_THAT(ReadValueInput(path, "--value-file=v", bytes.size() - 1),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       absl::StrCat("--value-file=v: more than ", bytes.size() - 1, " bytes")));
  std::filesystem::remove(path);
  std::filesystem::remove(empty);
}

TEST(ReadValueInput, AFileThatCannotBeReadIsInvalidArgumentNamingIt) {
  EXPECT_THAT(
      ReadValueInput(::testing::TempDir() + "/steadctl_io_test_missing", "--value-file=m"),
      StatusIs(absl::StatusCode::kInvalidArgument, "--value-file=m: No such file or directory"));
  EXPECT_THAT(ReadValueInput(::testing::TempDir(), "--value-file=dir"),
              StatusIs(absl::StatusCode::kInvalidArgument, "--value-file=dir: Is a directory"));
}

}  // namespace
}  // namespace stead::ctl
