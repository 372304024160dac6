// steadctl's bytes in and out: UTF-8 validity, the table escapes, the JSON field rule
// and reading a value from a file, bounded.
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

TEST(SteadctlIo, IsValidUtf8FollowsTheUnicodeTable) {
  const struct {
    const char* name;
    std::string bytes;
    bool want;
  } cases[] = {
      {"empty", "", true},
      {"ascii with NUL and controls", "a\0\t\n\x7f"s, true},
      {"two bytes", "\xc3\xa9", true},
      {"three bytes", "\xe2\x9c\x93", true},
      {"four bytes", "\xf0\x9f\x98\x80", true},
      {"largest code point", "\xf4\x8f\xbf\xbf", true},
      {"lone continuation byte", "\x80", false},
      {"ff", "\xff", false},
      {"truncated", "\xe2\x9c", false},
      {"truncated at the end", "ok\xc3", false},
      {"overlong two bytes", "\xc0\xaf", false},
      {"overlong three bytes", "\xe0\x80\xaf", false},
      {"overlong four bytes", "\xf0\x80\x80\xaf", false},
      {"surrogate", "\xed\xa0\x80", false},
      {"above U+10FFFF", "\xf4\x90\x80\x80", false},
      {"lead F5", "\xf5\x80\x80\x80", false},
      {"bad continuation", "\xc3\x41", false},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_EQ(IsValidUtf8(c.bytes), c.want);
  }
}

TEST(SteadctlIo, EscapeBytesKeepsUtf8AndEscapesTheRest) {
  const struct {
    const char* name;
    std::string bytes;
    std::string want;
  } cases[] = {
      {"plain", "key-1", "key-1"},
      {"utf-8", "h\xc3\xa9llo \xe2\x9c\x93", "h\xc3\xa9llo \xe2\x9c\x93"},
      {"backslash", "a\\b", R"(a\\b)"},
      {"tab, newline, CR", "\t\n\r", R"(\t\n\r)"},
      {"NUL", "a\0b"s, R"(a\x00b)"},
      {"other controls and DEL", "\x01\x1b\x7f", R"(\x01\x1b\x7f)"},
      {"C1 control", "\xc2\x9b", R"(\xc2\x9b)"},
      {"no-break space, not a control", "\xc2\xa0", "\xc2\xa0"},
      {"invalid bytes", "\xff\xfe", R"(\xff\xfe)"},
      {"truncated sequence then text", "\xe2\x9cok", R"(\xe2\x9cok)"},
      {"escape looks", R"(\x00)", R"(\\x00)"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_EQ(EscapeBytes(c.bytes), c.want);
  }
}

// Valid UTF-8 under the name, anything else as base64 under name_base64, never both.
TEST(SteadctlIo, SetBytesIsAStringOrBase64) {
  Json object;
  SetBytes(object, "key", "h\xc3\xa9llo \xe2\x9c\x93");
  SetBytes(object, "value", "a\0\xff"s);
  SetBytes(object, "empty", "");
  EXPECT_EQ(object.dump(),
            "{\"key\":\"h\xc3\xa9llo \xe2\x9c\x93\",\"value_base64\":\"YQD/\","
            "\"empty\":\"\"}");
}

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
                       absl::StrCat("--value-file=v: over ", bytes.size() - 1, " bytes")));
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
