#include "tests/fault/history_io.h"

#include <filesystem>
#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace stead::fault {
namespace {

using ::stead::testing::StatusIs;

// A fresh, empty folder per test.
std::filesystem::path RunFolder() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  const std::filesystem::path dir =
      std::filesystem::path(::testing::TempDir()) / "history_io_test" / info->name();
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

void Overwrite(const std::filesystem::path& path, const std::string& text) {
  std::ofstream(path, std::ios::trunc) << text;
}

History Sample() {
  History h;
  RegisterOp put;
  put.kind = RegisterOp::Kind::kPut;
  put.key = "k1";
  put.value = "v \"quoted\" \xc3\xa9";  // escapes and UTF-8 survive
  put.invoke_ns = 1;
  put.complete_ns = 2;
  put.client = 4'000'000'000u;
  RegisterOp cas;
  cas.kind = RegisterOp::Kind::kCas;
  cas.key = "k2";
  cas.value = "v2";
  cas.expected = std::nullopt;
  cas.outcome = Outcome::kUnknown;
  cas.invoke_ns = 3;
  cas.complete_ns = kNever;
  RegisterOp get;
  get.kind = RegisterOp::Kind::kGet;
  get.key = "k2";
  get.value = "v2";
  get.found = true;
  get.invoke_ns = 5;
  get.complete_ns = 6;
  RegisterOp cas_ok = cas;
  cas_ok.expected = "v2";
  cas_ok.value = "v3";
  cas_ok.swapped = true;
  cas_ok.outcome = Outcome::kOk;
  cas_ok.complete_ns = 9;
  RegisterOp failed = get;
  failed.outcome = Outcome::kFailed;
  h.registers = {put, cas, get, cas_ok, failed};

  BankOp transfer;
  transfer.kind = BankOp::Kind::kTransfer;
  transfer.from = "a";
  transfer.to = "b";
  transfer.amount = 7;
  transfer.applied = true;
  transfer.invoke_ns = 10;
  transfer.complete_ns = 11;
  transfer.client = 2;
  BankOp read;
  read.balances = {{"a", -3}, {"b", 103}};
  read.outcome = Outcome::kUnknown;
  read.invoke_ns = 12;
  h.bank = {transfer, read};
  h.bank_initial = {{"a", 50}, {"b", 50}};

  WatchRecord watch;
  watch.watcher = 3;
  watch.prefix = "w/";
  watch.start_revision = 17;
  watch.events = {{"w/a", "x", false, 17}, {"w/b", "", true, 18}};
  watch.progress_revision = 20;
  h.watches = {watch, WatchRecord{}};
  return h;
}

TEST(HistoryIo, RoundTrips) {
  const std::filesystem::path dir = RunFolder();
  const History written = Sample();
  ASSERT_OK(WriteHistory(written, dir));
  for (const char* name : {"registers.jsonl", "bank.jsonl", "watches.jsonl", "bank_initial.json"}) {
    EXPECT_TRUE(std::filesystem::exists(dir / name)) << name;
  }
  ASSERT_OK_AND_ASSIGN(const History read, ReadHistory(dir));
  EXPECT_EQ(written, read);

  // An empty history round-trips too (every file exists, empty).
  ASSERT_OK(WriteHistory(History{}, dir));
  ASSERT_OK_AND_ASSIGN(const History empty, ReadHistory(dir));
  EXPECT_TRUE(empty.registers.empty());
  EXPECT_TRUE(empty.bank.empty());
  EXPECT_TRUE(empty.watches.empty());
  EXPECT_TRUE(empty.bank_initial.empty());
}

TEST(HistoryIo, LinesAreReadable) {
  const std::filesystem::path dir = RunFolder();
  ASSERT_OK(WriteHistory(Sample(), dir));
  std::ifstream in(dir / "registers.jsonl");
  std::string first, second;
  std::getline(in, first);
  std::getline(in, second);
  EXPECT_THAT(first, ::testing::HasSubstr("\"kind\":\"put\""));
  EXPECT_THAT(second, ::testing::AllOf(::testing::HasSubstr("\"complete_ns\":null"),
                                       ::testing::HasSubstr("\"expected\":null"),
                                       ::testing::HasSubstr("\"outcome\":\"unknown\"")));
}

TEST(HistoryIo, MalformedFilesAreNamed) {
  const std::filesystem::path dir = RunFolder();
  ASSERT_OK(WriteHistory(Sample(), dir));
  const std::string good_line =
      R"({"kind":"get","key":"k","value":"","expected":null,"found":false,"swapped":false,)"
      R"("outcome":"ok","invoke_ns":1,"complete_ns":2,"client":0})";
  const struct {
    std::string text;
    std::string error;
  } cases[] = {
      {good_line + "\n{not json\n", "registers.jsonl:2: not valid JSON"},
      {good_line + "\n\n" + R"({"kind":"get"})" + "\n", "registers.jsonl:3: missing field 'key'"},
      {R"([1,2])", "registers.jsonl:1: not a JSON object"},
      {R"({"kind":"delete","key":"k","value":"","expected":null,"found":false,"swapped":false,)"
       R"("outcome":"ok","invoke_ns":1,"complete_ns":2,"client":0})",
       "field 'kind' has unknown value 'delete'"},
      {R"({"kind":"get","key":"k","value":"","expected":null,"found":false,"swapped":false,)"
       R"("outcome":"ok","invoke_ns":"soon","complete_ns":2,"client":0})",
       "field 'invoke_ns' must be an integer, not \"soon\""},
      {R"({"kind":"get","key":"k","value":"","expected":null,"found":false,"swapped":false,)"
       R"("outcome":"ok","invoke_ns":1,"complete_ns":2,"client":-1})",
       "field 'client' is out of range: -1"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.text);
    Overwrite(dir / "registers.jsonl", c.text);
    EXPECT_THAT(ReadHistory(dir), StatusIs(absl::StatusCode::kInvalidArgument, c.error));
  }
  ASSERT_OK(WriteHistory(Sample(), dir));
  Overwrite(dir / "watches.jsonl",
            R"({"watcher":1,"prefix":"w/","start_revision":1,"events":[{"key":"a"}],)"
            R"("progress_revision":2})");
  EXPECT_THAT(ReadHistory(dir), StatusIs(absl::StatusCode::kInvalidArgument,
                                         "watches.jsonl:1: event 0: missing field 'value'"));
  ASSERT_OK(WriteHistory(Sample(), dir));
  Overwrite(dir / "bank_initial.json", R"({"a": 1.5})");
  EXPECT_THAT(ReadHistory(dir), StatusIs(absl::StatusCode::kInvalidArgument,
                                         "bank_initial.json: balance of 'a' must be an integer"));
  std::filesystem::remove(dir / "bank.jsonl");
  EXPECT_THAT(ReadHistory(dir), StatusIs(absl::StatusCode::kNotFound, "bank.jsonl"));
}

TEST(HistoryIo, InvalidUtf8IsAnErrorNotACrash) {
  const std::filesystem::path dir = RunFolder();
  History h;
  RegisterOp op;
  op.value = "\xff\xfe";
  h.registers = {op};
  EXPECT_THAT(WriteHistory(h, dir), StatusIs(absl::StatusCode::kInvalidArgument, "UTF-8"));
}

}  // namespace
}  // namespace stead::fault
