// The `steadctl txn` syntax: every form of condition and operation, the errors of bad
// input (what was expected, where), and that formatted operations parse back.
#include "client/steadctl_txn.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace stead::ctl {
namespace {

using testing::IsOkAndHolds;
using testing::StatusIs;
using Result = Compare::Result;
using namespace std::string_literals;

// The reader of operations that name no --value-file: any call is a failure.
absl::StatusOr<std::string> NoValueFile(const std::string& path) {
  ADD_FAILURE() << "read --value-file=" << path;
  return absl::InternalError("no file expected");
}

TEST(SteadctlTxnSyntax, ParsesEveryFormOfCondition) {
  Compare with_range = Compare::Version("a", Result::kGreater, 0);
  with_range.range_end = "b";
  Compare missing_range = Compare::Missing("a");
  missing_range.range_end = std::string(1, '\0');
  const struct {
    const char* name;
    std::string text;
    Compare want;
  } cases[] = {
      {"value equal", "value(k) = v", Compare::Value("k", Result::kEqual, "v")},
      {"double equals", "value(k) == v", Compare::Value("k", Result::kEqual, "v")},
      {"not equal", "value(k) != v", Compare::Value("k", Result::kNotEqual, "v")},
      {"greater, no spaces", "value(k)>v", Compare::Value("k", Result::kGreater, "v")},
      {"less", "value(k) < v", Compare::Value("k", Result::kLess, "v")},
      {"quoted value with spaces", R"(value(k) = "a b")",
       Compare::Value("k", Result::kEqual, "a b")},
      {"empty value", R"(value(k) = "")", Compare::Value("k", Result::kEqual, "")},
      {"quoted key with punctuation", R"(value("f(x), y") = 1)",
       Compare::Value("f(x), y", Result::kEqual, "1")},
      {"escapes", R"(value(k) = "q\"b\\n\n\t\x41\x00")",
       Compare::Value("k", Result::kEqual, std::string("q\"b\\n\n\tA\0", 9))},
      {"version", "version(k) > 3", Compare::Version("k", Result::kGreater, 3)},
      {"version zero", "version( k ) = 0", Compare::Version("k", Result::kEqual, 0)},
      {"create", "create(k) < 10", Compare::CreateRevision("k", Result::kLess, 10)},
      {"create_revision", "create_revision(k) = 7",
       Compare::CreateRevision("k", Result::kEqual, 7)},
      {"mod", "mod(k) != 812", Compare::ModRevision("k", Result::kNotEqual, 812)},
      {"mod_revision", "mod_revision(k) > 1", Compare::ModRevision("k", Result::kGreater, 1)},
      {"exists", "exists(k)", Compare::Exists("k")},
      {"not exists", "!exists(k)", Compare::Missing("k")},
      {"not exists, spaced", "  ! exists ( k )  ", Compare::Missing("k")},
      {"range", "version(a, b) > 0", with_range},
      {"range to the end", R"(!exists(a, "\x00"))", missing_range},
      {"utf-8 key", "value(clé) = vé", Compare::Value("clé", Result::kEqual, "vé")},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    absl::StatusOr<Compare> got = ParseCompare(c.text);
    ASSERT_OK(got.status());
    EXPECT_EQ(*got, c.want);
  }
}

TEST(SteadctlTxnSyntax, BadConditionsSayWhatAndWhere) {
  const struct {
    const char* name;
    std::string text;
    std::string message;
  } cases[] = {
      {"empty", "", "expected value, version, create, mod or exists, found the end at column 1"},
      {"unknown target", "size(k) > 3",
       "unknown target 'size' (value, version, create, mod, exists) at column 1"},
      {"no parenthesis", "value k = v", "expected '(', found 'k' at column 7"},
      {"no key", "value() = v", "expected KEY, found ')' at column 7"},
      {"unclosed", "value(k = v", "expected ')', found '=' at column 9"},
      {"no operator", "value(k) v", "expected an operator (= != > <), found 'v' at column 10"},
      {"no operand", "value(k) =", "expected a value, found the end at column 11"},
      {"greater or equal", "version(k) >= 3", "'>=' is not an operator; use = != > < at column 12"},
      {"less or equal", "version(k) <= 3", "'<=' is not an operator; use = != > <"},
      {"bang alone", "value(k) ! v", "'!' is not an operator"},
      {"version not a number", "version(k) = three", "'three' is not a number >= 0 at column 14"},
      {"negative version", "version(k) > -1", "'-1' is not a number >= 0"},
      {"trailing words", "value(k) = a b", "expected the end, found 'b' at column 14"},
      {"unquoted spaces in value", "value(k) = a b c", "expected the end, found 'b'"},
      {"value of exists", "exists(k) = true", "expected the end, found '='"},
      {"negated value", "!value(k) = v", "'!' negates only exists(KEY)"},
      {"empty key", R"(exists(""))", "the key is empty"},
      {"unterminated quote", R"(value(k) = "abc)", "unterminated quote at column 12"},
      {"unknown escape", R"(value(k) = "a\qb")", "unknown escape \\q at column 14"},
      {"short hex escape", R"(value(k) = "\x4")", "\\x needs two hex digits"},
      {"bad hex escape", R"(value(k) = "\xzz")", "\\x needs two hex digits"},
      {"quote inside a word", R"(value(k) = a"b")",
       "a quote inside a word (quote the whole word) at column 13"},
      {"word glued to a quote", R"(value(k) = "a"b)",
       "a quoted word must end before another word begins at column 15"},
      {"two keys", "value(a, b, c) = v", "expected ')', found ','"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_THAT(ParseCompare(c.text), StatusIs(absl::StatusCode::kInvalidArgument, c.message));
  }
}

TEST(SteadctlTxnSyntax, ParsesEveryOperation) {
  const struct {
    const char* name;
    std::string text;
    TxnOp want;
  } cases[] = {
      {"put", "put k v", TxnOp::Put("k", "v")},
      {"put with punctuation", "put k a=b(c),!", TxnOp::Put("k", "a=b(c),!")},
      {"put quoted", R"(put "a key" "a value")", TxnOp::Put("a key", "a value")},
      {"put empty value", R"(put k "")", TxnOp::Put("k", "")},
      {"del", "del k", TxnOp::Delete("k")},
      {"delete", "delete k", TxnOp::Delete("k")},
      {"del range", "del a b", TxnOp::Delete("a", "b")},
      {"get", "get k", TxnOp::Get("k")},
      {"get range", "  get   a   b  ", TxnOp::Get("a", "b")},
      {"get to the end", R"(get a "\x00")", TxnOp::Get("a", std::string(1, '\0'))},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    absl::StatusOr<TxnOp> got = ParseTxnOp(c.text, NoValueFile);
    ASSERT_OK(got.status());
    EXPECT_EQ(*got, c.want);
  }
}

TEST(SteadctlTxnSyntax, BadOperationsSayWhat) {
  const struct {
    const char* name;
    std::string text;
    std::string message;
  } cases[] = {
      {"empty", "   ", "empty operation (put, del or get)"},
      {"unknown", "incr k", "unknown operation 'incr' (put, del or get)"},
      {"put without value", "put k", "put takes KEY VALUE, not 1 words"},
      {"put with spaces unquoted", "put k a b", "put takes KEY VALUE, not 3 words (quote a value"},
      {"del without key", "del", "del takes KEY [RANGE_END], not 0 words"},
      {"get with too much", "get a b c", "get takes KEY [RANGE_END], not 3 words"},
      {"empty key", R"(get "")", "the key is empty"},
      {"unterminated quote", R"(put k "v)", "unterminated quote at column 7"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_THAT(ParseTxnOp(c.text, NoValueFile),
                StatusIs(absl::StatusCode::kInvalidArgument, c.message));
  }
}

// A put's bare VALUE word --value-file=PATH is the content of PATH, read through the
// reader; quoted, it is that text; the reader's error is the operation's.
TEST(SteadctlTxnSyntax, PutTakesItsValueFromAFile) {
  const std::string bytes = "a\0b\n\xff"s;
  std::vector<std::string> paths_read;
  auto read = [&](const std::string& path) -> absl::StatusOr<std::string> {
    paths_read.push_back(path);
    if (path == "/tmp/v") return bytes;
    return absl::InvalidArgumentError(absl::StrCat("--value-file=", path, ": No such file"));
  };
  EXPECT_THAT(ParseTxnOp(R"(put k "--value-file=/tmp/v")", read),
              IsOkAndHolds(TxnOp::Put("k", "--value-file=/tmp/v")));
  EXPECT_THAT(ParseTxnOp(R"(put --value-file=k v)", read),
              IsOkAndHolds(TxnOp::Put("--value-file=k", "v")));
  EXPECT_TRUE(paths_read.empty()) << "a quoted word or a key is never a file";
  ASSERT_OK_AND_ASSIGN(TxnRequest txn, ParseTxn({}, {"put k --value-file=/tmp/v"}, {}, read));
  EXPECT_EQ(txn.success, std::vector<TxnOp>{TxnOp::Put("k", bytes)});
  EXPECT_EQ(paths_read, std::vector<std::string>{"/tmp/v"});
  EXPECT_THAT(ParseTxn({}, {R"(put k --value-file=/missing)"}, {}, read),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "--then #1 'put k --value-file=/missing': --value-file=/missing: No such"));
  EXPECT_THAT(ParseTxnOp("put k --value-file=", read),
              StatusIs(absl::StatusCode::kInvalidArgument, "--value-file needs a PATH"));
}

TEST(SteadctlTxnSyntax, ParsesAWholeTransactionInOrder) {
  ASSERT_OK_AND_ASSIGN(TxnRequest txn, ParseTxn({"value(k) = v", "version(n) > 3"},
                                                {"put k w", "del n", "get k"}, {"get k"},
                                                NoValueFile));
  EXPECT_EQ(txn.compare, (std::vector<Compare>{Compare::Value("k", Result::kEqual, "v"),
                                               Compare::Version("n", Result::kGreater, 3)}));
  EXPECT_EQ(txn.success,
            (std::vector<TxnOp>{TxnOp::Put("k", "w"), TxnOp::Delete("n"), TxnOp::Get("k")}));
  EXPECT_EQ(txn.failure, std::vector<TxnOp>{TxnOp::Get("k")});
}

TEST(SteadctlTxnSyntax, ErrorsOfAWholeTransactionNameTheFlag) {
  EXPECT_THAT(ParseTxn({}, {}, {}, NoValueFile),
              StatusIs(absl::StatusCode::kInvalidArgument, "txn needs --if, --then or --else"));
  EXPECT_THAT(ParseTxn({"exists(k)", "value(k) ~ v"}, {}, {}, NoValueFile),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "--if #2 'value(k) ~ v': expected an operator (= != > <), found '~'"));
  EXPECT_THAT(
      ParseTxn({}, {"put k v", "put k"}, {}, NoValueFile),
      StatusIs(absl::StatusCode::kInvalidArgument, "--then #2 'put k': put takes KEY VALUE"));
  EXPECT_THAT(ParseTxn({}, {}, {"frob"}, NoValueFile),
              StatusIs(absl::StatusCode::kInvalidArgument, "--else #1 'frob': unknown operation"));
}

TEST(SteadctlTxnSyntax, FormattedOperationsParseBack) {
  const std::string all_bytes = [] {
    std::string bytes;
    for (int i = 0; i < 256; ++i) bytes += static_cast<char>(i);
    return bytes;
  }();
  const TxnOp ops[] = {
      TxnOp::Put("k", "v"),
      TxnOp::Put("a key", ""),
      TxnOp::Put("\"quoted\"", "back\\slash"),
      TxnOp::Put("k", all_bytes),
      TxnOp::Delete("a", "b"),
      TxnOp::Get("a", std::string(1, '\0')),
      TxnOp::Get("tab\tnewline\n"),
      TxnOp::Put("cr\r", "--value-file=/etc/passwd"),
      TxnOp::Put("cl\xc3\xa9", "h\xc3\xa9llo \xe2\x9c\x93 \xc2\x9b\xc3"),
  };
  for (const TxnOp& op : ops) {
    const std::string text = FormatTxnOp(op);
    SCOPED_TRACE(text);
    absl::StatusOr<TxnOp> parsed = ParseTxnOp(text, NoValueFile);
    ASSERT_OK(parsed.status());
    EXPECT_EQ(*parsed, op);
  }
  EXPECT_EQ(FormatTxnOp(TxnOp::Put("k", "a b")), R"(put k "a b")");
  EXPECT_EQ(FormatTxnOp(TxnOp::Delete("a", "b")), "del a b");
  EXPECT_EQ(QuoteWord(std::string(1, '\0')), R"("\x00")");
  // Valid UTF-8 stays as it is, bare or quoted; other bytes are escaped.
  EXPECT_EQ(FormatTxnOp(TxnOp::Put("cl\xc3\xa9", "v\xc3\xa9\xff")),
            "put cl\xc3\xa9 \"v\xc3\xa9\\xff\"");
  EXPECT_EQ(QuoteWord("--value-file=/v"), R"("--value-file=/v")");
}

}  // namespace
}  // namespace stead::ctl
