// The real steadctl binary: --help everywhere, exit codes and messages for bad input
// and unreachable members, and kv, txn and member commands against a real 3-member
// cluster.
#include <atomic>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "stead/client.h"
#include "tests/testing/process_cluster.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/subprocess.h"

namespace stead {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using testing::ProcessCluster;
using testing::Subprocess;
using namespace std::string_literals;

// The documented exit codes (steadctl --help).
constexpr int kExitInvalidArgument = 2;
constexpr int kExitNotFound = 3;
constexpr int kExitFailedCompare = 4;
constexpr int kExitUnavailable = 5;
constexpr int kExitFailedPrecondition = 6;
constexpr int kExitDataLoss = 7;

std::string TestRoot() {
  return absl::StrCat(::testing::TempDir(), "/steadctl_test_", ::getpid(), "_",
                      ::testing::UnitTest::GetInstance()->current_test_info()->name());
}

using CtlRun = testing::CompletedRun;

// Runs steadctl with `args` (and STEAD_ENDPOINTS unset unless given in `env`), reading
// the file `stdin_path` as its stdin (empty: none).
CtlRun Steadctl(const std::vector<std::string>& args, std::vector<std::string> env = {},
                const std::string& stdin_path = "") {
  const std::string dir = absl::StrCat(::testing::TempDir(), "/steadctl_test_", ::getpid());
  std::filesystem::create_directories(dir);
  std::vector<std::string> argv = {STEADCTL_BINARY};
  argv.insert(argv.end(), args.begin(), args.end());
  if (env.empty()) env.push_back("STEAD_ENDPOINTS=");
  return testing::RunToCompletion({.argv = argv, .env = env, .stdin_path = stdin_path}, dir);
}

// Starts members 0, 1 and 2 of `cluster` and waits until all are Ready and one of them
// leads: the leader's ordinal, or -1 when that did not happen in time.
int StartThreeMembers(ProcessCluster& cluster) {
  for (int i : {0, 1, 2}) cluster.Start(i);
  if (!cluster.WaitReady({0, 1, 2})) return -1;
  return cluster.WaitForLeader({0, 1, 2});
}

// The --endpoints flag naming the client addresses of members 0, 1 and 2.
std::string EndpointsOfThree(const ProcessCluster& cluster) {
  return "--endpoints=" + absl::StrJoin(cluster.ClientEndpoints(3), ",");
}

TEST(SteadctlTest, HelpOnEveryCommand) {
  const CtlRun main_help = Steadctl({"--help"});
  EXPECT_EQ(main_help.exit_code, 0);
  for (const char* word :
       {"get", "put", "del", "scan", "txn", "watch", "member promote", "member add",
        "leader transfer", "cluster", "exit codes", "6 failed precondition"}) {
    EXPECT_THAT(main_help.out, HasSubstr(word));
  }
  for (const char* command :
       {"get", "put", "del", "scan", "txn", "watch", "member", "leader", "cluster", "endpoint",
        "snapshot"}) {
    SCOPED_TRACE(command);
    const CtlRun help = Steadctl({command, "--help"});
    EXPECT_EQ(help.exit_code, 0);
    EXPECT_THAT(help.out, HasSubstr(absl::StrCat("usage: steadctl ", command)));
  }
  const std::vector<std::vector<std::string>> subcommands = {
      {"member", "promote"},   {"member", "add"},       {"leader", "transfer"},
      {"snapshot", "save"},    {"snapshot", "verify"},  {"snapshot", "inspect"},
      {"snapshot", "restore"}};
  for (const std::vector<std::string>& words : subcommands) {
    const std::string command = absl::StrJoin(words, " ");
    SCOPED_TRACE(command);
    const CtlRun help = Steadctl({words[0], words[1], "--help"});
    EXPECT_EQ(help.exit_code, 0);
    EXPECT_THAT(help.out, HasSubstr(absl::StrCat("usage: steadctl ", command)));
  }
  EXPECT_THAT(Steadctl({"member", "add", "--help"}).out, HasSubstr("a member adds itself"));
  EXPECT_THAT(Steadctl({"leader", "transfer", "--help"}).out,
              HasSubstr("leader transfer --from=\"$POD_NAME\""));
}

TEST(SteadctlTest, BadInputExitsWithInvalidArgument) {
  const struct {
    const char* name;
    std::vector<std::string> args;
    const char* message;
  } cases[] = {
      {"no command", {}, "usage"},
      {"unknown command", {"frobnicate"}, "unknown command 'frobnicate'"},
      {"unknown flag", {"get", "k", "--colour=red"}, "unknown flag --colour"},
      {"bad output", {"--output=yaml", "get", "k"}, "--output must be table or json"},
      {"missing key", {"get"}, "get needs KEY"},
      {"bad timeout", {"--timeout=soon", "get", "k"}, "--timeout"},
      {"snapshot without file", {"snapshot", "save"}, "snapshot needs"},
      {"restore without dirs", {"snapshot", "restore", "x.stead", "--name=stead-0"},
       "restore needs --data-dir"},
      {"bad endpoint", {"--endpoints=nohostport", "get", "k"}, "not host:port"},
      {"empty txn", {"txn"}, "txn needs --if, --then or --else"},
      {"txn with a positional word", {"txn", "put k v"}, "txn takes only --if, --then and --else"},
      {"txn bad condition",
       {"txn", "--if", "version(k) >= 3", "--then", "put k v"},
       "--if #1 'version(k) >= 3': '>=' is not an operator; use = != > < at column 12"},
      {"txn bad operation",
       {"txn", "--if=exists(k)", "--then", "put k"},
       "--then #1 'put k': put takes KEY VALUE"},
      {"txn flag without value", {"txn", "--else"}, "--else needs a value"},
      {"watch without key", {"watch"}, "watch needs KEY"},
      {"watch bad revision", {"watch", "k", "--rev=-1"}, "--rev: '-1' is not a count"},
      {"watch bad duration", {"watch", "k", "--duration=later"}, "--duration"},
      {"leader without transfer", {"leader"}, "leader needs 'transfer"},
      {"leader transfer --to without value", {"leader", "transfer", "--to"}, "--to needs a value"},
      {"leader transfer --from without value", {"leader", "transfer", "--from"},
       "--from needs a value"},
      {"leader transfer --from empty", {"leader", "transfer", "--from="},
       "--from needs NAME|ORDINAL|ID, not an empty value"},
      {"member add without name", {"member", "add"}, "member add needs NAME"},
      {"member promote without member", {"member", "promote"}, "member needs 'list'"},
      {"put without value", {"put", "k"},
       "put needs KEY and one of VALUE, - (standard input) or --value-file=PATH"},
      {"put with a value and a file", {"put", "k", "v", "--value-file=/dev/null"},
       "put needs KEY and one of VALUE, - (standard input) or --value-file=PATH"},
      {"put from a missing file", {"put", "k", "--value-file=/nonexistent/v"},
       "--value-file=/nonexistent/v: No such file or directory"},
      {"put from a directory", {"put", "k", "--value-file", "/"}, "--value-file=/: Is a directory"},
      {"value file without path", {"put", "k", "--value-file="}, "--value-file needs a PATH"},
      {"put of endless input", {"put", "k", "--value-file=/dev/zero"},
       "--value-file=/dev/zero: over 3145728 bytes, far over the server's value limit"},
      {"value file elsewhere", {"get", "k", "--value-file=/dev/null"},
       "--value-file is for put only (in txn: put KEY --value-file=PATH)"},
      {"txn put from a missing file", {"txn", "--then", "put k --value-file=/nonexistent/v"},
       "--then #1 'put k --value-file=/nonexistent/v': --value-file=/nonexistent/v: No such file"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    const CtlRun run = Steadctl(c.args);
    EXPECT_EQ(run.exit_code, kExitInvalidArgument);
    EXPECT_THAT(run.err, HasSubstr(c.message));
  }
}

// `member add` changes nothing whatever the cluster: it explains that members add
// themselves and exits with the failed-precondition code, without contacting anyone.
TEST(SteadctlTest, MemberAddExplainsThatMembersAddThemselves) {
  const std::string endpoint = absl::StrCat("127.0.0.1:", testing::FreeLoopbackPort().value());
  const CtlRun run = Steadctl({"--endpoints=" + endpoint, "member", "add", "stead-5",
                               "--peer-addr=10.0.0.5:2480", "--client-addr=10.0.0.5:2479"});
  EXPECT_EQ(run.exit_code, kExitFailedPrecondition);
  EXPECT_EQ(run.out, "");
  EXPECT_THAT(run.err, HasSubstr("members add themselves. Start stead-5 with empty volumes"));
}

TEST(SteadctlTest, EndpointHashOfAnUnreachableMemberIsUnavailable) {
  const uint16_t port = testing::FreeLoopbackPort().value();
  const CtlRun run = Steadctl({absl::StrCat("--endpoints=127.0.0.1:", port), "--timeout=1s",
                               "--output=json", "endpoint", "hash"});
  EXPECT_EQ(run.exit_code, kExitUnavailable);
  EXPECT_THAT(run.out, HasSubstr(R"("error":)"));
  EXPECT_THAT(run.err, HasSubstr(absl::StrCat("127.0.0.1:", port)));
}

TEST(SteadctlTest, UnreachableEndpointsAreUnavailable) {
  const std::string endpoint = absl::StrCat("127.0.0.1:", testing::FreeLoopbackPort().value());
  const CtlRun run = Steadctl({"--endpoints=" + endpoint, "--timeout=1s", "get", "k"});
  EXPECT_EQ(run.exit_code, kExitUnavailable);
  EXPECT_THAT(run.err, HasSubstr(endpoint));
}

// Goal: the kv and member commands against a real cluster, in both output formats,
// with endpoints from the flag and from STEAD_ENDPOINTS.
TEST(SteadctlTest, AgainstARealCluster) {
  ProcessCluster cluster(3, TestRoot(), STEAD_BINARY);
  ASSERT_GE(StartThreeMembers(cluster), 0);
  const std::string endpoints = EndpointsOfThree(cluster);

  CtlRun missing = Steadctl({endpoints, "get", "colour"});
  EXPECT_EQ(missing.exit_code, kExitNotFound);
  EXPECT_EQ(missing.out, "");
  EXPECT_THAT(missing.err, HasSubstr("not found"));

  CtlRun put = Steadctl({endpoints, "put", "colour", "blue"});
  EXPECT_EQ(put.exit_code, 0) << put.err;
  EXPECT_EQ(put.out, "OK\n");
  CtlRun get = Steadctl({"get", "colour"},
                     {"STEAD_ENDPOINTS=" + absl::StrJoin(cluster.ClientEndpoints(3), ",")});
  EXPECT_EQ(get.exit_code, 0) << get.err;
  EXPECT_EQ(get.out, "blue\n");
  CtlRun get_json = Steadctl({endpoints, "--output=json", "get", "colour", "--serializable"});
  EXPECT_EQ(get_json.exit_code, 0);
  EXPECT_THAT(get_json.out, HasSubstr(R"("value":"blue")"));

  ASSERT_EQ(Steadctl({endpoints, "put", "colour2", "red"}).exit_code, 0);
  CtlRun scan = Steadctl({endpoints, "scan", "colour"});
  EXPECT_EQ(scan.exit_code, 0);
  EXPECT_EQ(scan.out, "colour\tblue\ncolour2\tred\n");
  CtlRun del = Steadctl({endpoints, "del", "colour2"});
  EXPECT_EQ(del.exit_code, 0);
  EXPECT_EQ(del.out, "1\n");

  CtlRun members = Steadctl({endpoints, "--output=json", "member", "list"});
  EXPECT_EQ(members.exit_code, 0) << members.err;
  EXPECT_TRUE(absl::StartsWith(members.out, R"({"members":[{"id":)")) << members.out;
  for (int i : {0, 1, 2}) EXPECT_THAT(members.out, HasSubstr(absl::StrCat(R"("name":"stead-)", i, "\"")));
  EXPECT_THAT(members.out, HasSubstr(R"("role":"leader")"));

  // From revision 1: the puts and the delete above, in order, then stop at --count.
  CtlRun watch = Steadctl({endpoints, "watch", "colour", "--prefix", "--rev=1", "--count=3"});
  EXPECT_EQ(watch.exit_code, 0) << watch.err;
  EXPECT_EQ(watch.out, "PUT\tcolour\tblue\t1\nPUT\tcolour2\tred\t2\nDELETE\tcolour2\t3\n");
  CtlRun watch_json = Steadctl(
      {endpoints, "--output=json", "watch", "colour2", "--rev=2", "--count=1", "--duration=10s"});
  EXPECT_EQ(watch_json.exit_code, 0) << watch_json.err;
  EXPECT_THAT(watch_json.out, HasSubstr(R"({"type":"PUT","kv":{"key":"colour2","value":"red")"));
  CtlRun quiet = Steadctl({endpoints, "watch", "nothing-here", "--duration=300ms"});
  EXPECT_EQ(quiet.exit_code, 0) << quiet.err;
  EXPECT_EQ(quiet.out, "");

  CtlRun status = Steadctl({endpoints, "cluster", "status"});
  EXPECT_EQ(status.exit_code, 0) << status.err;
  EXPECT_THAT(status.out, HasSubstr("leader"));
  EXPECT_THAT(status.out, HasSubstr("stead-2"));

  CtlRun remove = Steadctl({endpoints, "member", "remove", "stead-7"});
  EXPECT_EQ(remove.exit_code, kExitNotFound) << remove.err;

  // One row per endpoint; once the applied indexes agree, so do the hashes.
  std::vector<std::string> rows;
  ASSERT_TRUE(testing::Eventually([&] {
    CtlRun hash = Steadctl({endpoints, "--output=json", "endpoint", "hash"});
    if (hash.exit_code != 0) return false;
    rows = absl::StrSplit(hash.out, "},{");
    if (rows.size() != 3) return false;
    auto field = [](const std::string& row, const std::string& name) {
      const size_t at = row.find(absl::StrCat("\"", name, "\":"));
      return at == std::string::npos ? std::string("?") : row.substr(at, row.find(',', at) - at);
    };
    for (const std::string& row : rows) {
      if (field(row, "applied_index") != field(rows[0], "applied_index") ||
          field(row, "hash") != field(rows[0], "hash")) {
        return false;
      }
    }
    return field(rows[0], "hash") != "?";
  })) << absl::StrJoin(rows, "\n");
  CtlRun table = Steadctl({endpoints, "endpoint", "hash"});
  EXPECT_EQ(table.exit_code, 0) << table.err;
  EXPECT_THAT(table.out, HasSubstr("HASH"));
  for (int i : {0, 1, 2}) EXPECT_THAT(table.out, HasSubstr(cluster.ClientAddress(i)));
  CtlRun whole = Steadctl({"--endpoints=" + cluster.ClientAddress(0), "endpoint", "hash",
                           "--cluster"});
  EXPECT_EQ(whole.exit_code, 0) << whole.err;
  for (int i : {0, 1, 2}) EXPECT_THAT(whole.out, HasSubstr(cluster.ClientAddress(i)));
}

void WriteBytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

// Writes `bytes` to a new file under the test's directory; its path.
std::string WriteTestFile(const std::string& name, const std::string& bytes) {
  const std::string dir = TestRoot() + "-files";
  std::filesystem::create_directories(dir);
  const std::string path = absl::StrCat(dir, "/", name);
  WriteBytes(path, bytes);
  return path;
}

// `size` pseudo-random bytes, every byte value likely, the same for every run.
std::string RandomBytes(size_t size) {
  std::mt19937 random(42);
  std::string bytes(size, '\0');
  for (char& byte : bytes) byte = static_cast<char>(random() & 0xff);
  return bytes;
}

// Goal: values reach the cluster byte for byte from stdin and from files, also those
// no argument can carry (NUL, over 128 KiB), and come back byte-exact from `get`.
// Method: `put KEY -` with a value holding NUL, newline, tab, CR and invalid UTF-8;
// `put KEY --value-file` with 1 MiB less 1 KiB of random bytes (the server's value limit
// is 1 MiB, and its state machine counts a record header of a few bytes against it) and
// with 1 MiB and one byte and with 5 MiB (both refused with exit 2, nothing written); a
// txn put from --value-file.
TEST(SteadctlTest, ValuesFromStdinAndFilesArriveByteExact) {
  ProcessCluster cluster(3, TestRoot(), STEAD_BINARY);
  ASSERT_GE(StartThreeMembers(cluster), 0);
  const std::string endpoints = EndpointsOfThree(cluster);

  const std::string binary = "nul\0 newline\n tab\t cr\r bad\xff\xfe\xc3 utf-8 \xc3\xa9\n"s;
  CtlRun from_stdin =
      Steadctl({endpoints, "put", "binary", "-"}, {}, WriteTestFile("binary", binary));
  EXPECT_EQ(from_stdin.exit_code, 0) << from_stdin.err;
  EXPECT_EQ(from_stdin.out, "OK\n");
  CtlRun got = Steadctl({endpoints, "get", "binary"});
  EXPECT_EQ(got.exit_code, 0) << got.err;
  EXPECT_EQ(got.out, binary + "\n") << "get prints the bare value and a newline";

  const std::string large = RandomBytes((1 << 20) - 1024);
  CtlRun from_file =
      Steadctl({endpoints, "put", "large", "--value-file=" + WriteTestFile("large", large)});
  EXPECT_EQ(from_file.exit_code, 0) << from_file.err;
  CtlRun got_large = Steadctl({endpoints, "get", "large"});
  EXPECT_EQ(got_large.exit_code, 0) << got_large.err;
  EXPECT_EQ(got_large.out.size(), large.size() + 1);
  EXPECT_TRUE(got_large.out == large + "\n") << "the large value came back with differences";

  CtlRun too_large = Steadctl({endpoints, "put", "too-large", "--value-file",
                               WriteTestFile("too-large", RandomBytes((1 << 20) + 1))});
  EXPECT_EQ(too_large.exit_code, kExitInvalidArgument) << too_large.err;
  EXPECT_THAT(too_large.err, HasSubstr("max_value_bytes"));
  EXPECT_EQ(Steadctl({endpoints, "get", "too-large"}).exit_code, kExitNotFound);
  // Over the server's largest request (4 MiB): refused by steadctl, not a lost connection.
  CtlRun huge = Steadctl({endpoints, "put", "too-large", "-"}, {},
                         WriteTestFile("huge", RandomBytes(5 << 20)));
  EXPECT_EQ(huge.exit_code, kExitInvalidArgument) << huge.err;
  EXPECT_THAT(huge.err, HasSubstr("standard input: over 3145728 bytes"));

  const std::string txn_value = RandomBytes(64 << 10);
  const std::string txn_path = WriteTestFile("txn", txn_value);
  CtlRun txn = Steadctl({endpoints, "txn", "--then", "put from-txn --value-file=" + txn_path});
  EXPECT_EQ(txn.exit_code, 0) << txn.err;
  EXPECT_TRUE(Steadctl({endpoints, "get", "from-txn"}).out == txn_value + "\n");
  std::filesystem::remove_all(TestRoot() + "-files");
}

// Goal: table output holds one pair per line whatever the bytes, and JSON output is
// valid UTF-8 that gives back every key and value exactly. Method: keys and values with
// NUL, tab, newline, backslash, invalid UTF-8 and UTF-8 (written with the client
// library: a key with NUL fits no argument) are read with scan, txn and watch in both
// formats, and with get and member list in JSON; the JSON is parsed back.
TEST(SteadctlTest, OutputEscapesTablesAndKeepsJsonExact) {
  ProcessCluster cluster(3, TestRoot(), STEAD_BINARY);
  ASSERT_GE(StartThreeMembers(cluster), 0);
  const std::string endpoints = EndpointsOfThree(cluster);
  ClientOptions options;
  options.endpoints = cluster.ClientEndpoints(3);
  options.default_timeout = absl::Seconds(20);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Client> client, Client::Create(options));
  const std::string binary_key = "b/nul\0key"s;
  const std::string binary_value = "a\tb\nc\\d\0e\xff"s;
  const std::string text = "h\xc3\xa9llo \xe2\x9c\x93";  // héllo ✓
  ASSERT_OK(client->Put(binary_key, binary_value));
  ASSERT_OK(client->Put("b/utf-8", text));

  const std::string lines = "b/nul\\x00key\ta\\tb\\nc\\\\d\\x00e\\xff\n"
                            "b/utf-8\th\xc3\xa9llo \xe2\x9c\x93\n";
  CtlRun scan = Steadctl({endpoints, "scan", "b/"});
  EXPECT_EQ(scan.exit_code, 0) << scan.err;
  EXPECT_EQ(scan.out, lines);
  CtlRun txn = Steadctl({endpoints, "txn", "--then", "get b/ b0"});
  EXPECT_EQ(txn.exit_code, 0) << txn.err;
  EXPECT_THAT(txn.out, HasSubstr("\nget b/ b0: 2 keys\n" + lines));
  CtlRun watch = Steadctl({endpoints, "watch", "b/", "--prefix", "--rev=1", "--count=2"});
  EXPECT_EQ(watch.exit_code, 0) << watch.err;
  EXPECT_EQ(watch.out, "PUT\tb/nul\\x00key\ta\\tb\\nc\\\\d\\x00e\\xff\t1\n"
                       "PUT\tb/utf-8\th\xc3\xa9llo \xe2\x9c\x93\t2\n");

  // A string when the bytes are UTF-8, else FIELD_base64 in its place.
  auto expect_pair = [](const nlohmann::json& kv, const std::string& key,
                        const std::string& value) {
    std::string decoded;
    if (kv.contains("key")) {
      EXPECT_EQ(kv["key"], key);
    } else {
      ASSERT_TRUE(absl::Base64Unescape(kv.value("key_base64", ""), &decoded)) << kv;
      EXPECT_EQ(decoded, key);
    }
    if (kv.contains("value")) {
      EXPECT_EQ(kv["value"], value);
    } else {
      ASSERT_TRUE(absl::Base64Unescape(kv.value("value_base64", ""), &decoded)) << kv;
      EXPECT_EQ(decoded, value);
    }
  };
  auto parse = [](const CtlRun& run) {
    EXPECT_EQ(run.exit_code, 0) << run.err;
    nlohmann::json json = nlohmann::json::parse(run.out, nullptr, /*allow_exceptions=*/false);
    EXPECT_FALSE(json.is_discarded()) << run.out;
    return json;
  };
  const nlohmann::json got = parse(Steadctl({endpoints, "-o", "json", "get", "b/utf-8"}));
  EXPECT_EQ(got.value("value", "?"), text);
  EXPECT_EQ(got.value("key", "?"), "b/utf-8");
  const nlohmann::json scanned = parse(Steadctl({endpoints, "-o", "json", "scan", "b/"}));
  const nlohmann::json kvs = scanned.value("kvs", nlohmann::json::array());
  ASSERT_EQ(kvs.size(), 2u) << scanned;
  EXPECT_FALSE(kvs[0].contains("value")) << "invalid UTF-8 is in base64 only";
  expect_pair(kvs[0], binary_key, binary_value);
  expect_pair(kvs[1], "b/utf-8", text);
  const nlohmann::json answered =
      parse(Steadctl({endpoints, "-o", "json", "txn", "--then", "get b/ b0"}));
  const nlohmann::json txn_kvs = answered.value(
      nlohmann::json::json_pointer("/responses/0/kvs"), nlohmann::json::array());
  ASSERT_EQ(txn_kvs.size(), 2u) << answered;
  expect_pair(txn_kvs[0], binary_key, binary_value);
  expect_pair(txn_kvs[1], "b/utf-8", text);
  CtlRun watched = Steadctl(
      {endpoints, "-o", "json", "watch", "b/", "--prefix", "--rev=1", "--count=2"});
  const std::vector<std::string> events = absl::StrSplit(watched.out, '\n', absl::SkipEmpty());
  ASSERT_EQ(events.size(), 2u) << watched.out;
  expect_pair(parse({0, events[0], ""}).value("kv", nlohmann::json::object()), binary_key,
              binary_value);
  expect_pair(parse({0, events[1], ""}).value("kv", nlohmann::json::object()), "b/utf-8", text);
  const nlohmann::json members = parse(Steadctl({endpoints, "-o", "json", "member", "list"}));
  EXPECT_EQ(members.value("members", nlohmann::json::array()).size(), 3u) << members;
}

// Goal: `steadctl txn` exits 0 and prints the --then answers when its conditions
// hold, exits 4 and prints the --else answers when one does not, in both output
// formats, with quoted words taken whole.
TEST(SteadctlTest, TxnExitsByWhetherItsConditionsHeld) {
  ProcessCluster cluster(3, TestRoot(), STEAD_BINARY);
  ASSERT_GE(StartThreeMembers(cluster), 0);
  const std::string endpoints = EndpointsOfThree(cluster);
  const std::vector<std::string> create = {endpoints,    "txn",
                                           "--if",       "!exists(colour)",
                                           "--then",     "put colour blue",
                                           "--then",     "get colour",
                                           "--else",     "get colour"};

  CtlRun created = Steadctl(create);
  EXPECT_EQ(created.exit_code, 0) << created.err;
  EXPECT_TRUE(absl::StartsWith(created.out, "SUCCEEDED revision=")) << created.out;
  EXPECT_THAT(created.out, HasSubstr("\nput colour blue: OK\nget colour: 1 key\ncolour\tblue\n"));

  CtlRun again = Steadctl(create);
  EXPECT_EQ(again.exit_code, kExitFailedCompare) << again.err;
  EXPECT_TRUE(absl::StartsWith(again.out, "FAILED revision=")) << again.out;
  EXPECT_THAT(again.out, HasSubstr("\nget colour: 1 key\ncolour\tblue\n"));
  EXPECT_THAT(again.out, Not(HasSubstr("put")));

  CtlRun swapped =
      Steadctl({endpoints, "--output=json", "txn", "--if", "value(colour) = blue", "--if",
                "version(colour) = 1", "--then", "put colour red", "--then", "del colour2",
                "--then", R"(put "my key" "a b")", "--then", "get colour"});
  EXPECT_EQ(swapped.exit_code, 0) << swapped.err;
  EXPECT_TRUE(absl::StartsWith(swapped.out, R"({"succeeded":true,"revision":)")) << swapped.out;
  EXPECT_THAT(swapped.out,
              HasSubstr(R"({"op":"put","key":"colour"},)"
                        R"({"op":"del","key":"colour2","deleted":0},)"
                        R"({"op":"put","key":"my key"},)"
                        R"({"op":"get","key":"colour","kvs":[{"key":"colour","value":"red",)"));
  EXPECT_EQ(Steadctl({endpoints, "get", "my key"}).out, "a b\n");

  CtlRun failed = Steadctl(
      {endpoints, "--output=json", "txn", "--if", "version(colour) > 100", "--then", "del colour"});
  EXPECT_EQ(failed.exit_code, kExitFailedCompare) << failed.err;
  EXPECT_TRUE(absl::StartsWith(failed.out, R"({"succeeded":false,"revision":)")) << failed.out;
  EXPECT_THAT(failed.out, HasSubstr(R"("responses":[]})"));
  EXPECT_EQ(Steadctl({endpoints, "get", "colour"}).out, "red\n");
}

// Goal: `leader transfer` and `member promote` against a real cluster whose members
// leave promotion to the operator (--promote-learners=manual): leadership moves to a
// member named by ordinal and then to the most caught-up voter, in both output
// formats; a learner cannot lead (exit 6) until it is promoted; a second promotion is
// a no-op that says so; unknown members exit 3.
TEST(SteadctlTest, LeaderTransferAndMemberPromote) {
  ProcessCluster cluster(3, TestRoot(), STEAD_BINARY);
  cluster.set_extra_flags({"--promote-learners=manual"});
  const int first = StartThreeMembers(cluster);
  ASSERT_GE(first, 0);
  const std::string endpoints = EndpointsOfThree(cluster);

  const int target = (first + 1) % 3;
  CtlRun named = Steadctl({endpoints, "leader", "transfer", "--to", absl::StrCat(target)});
  EXPECT_EQ(named.exit_code, 0) << named.err;
  EXPECT_EQ(named.out, absl::StrCat("stead-", target, " is the leader (was stead-", first, ")\n"));
  EXPECT_TRUE(testing::Eventually([&] { return cluster.Leader({0, 1, 2}) == target; }));

  CtlRun already = Steadctl({endpoints, "leader", "transfer", "--to", cluster.Name(target)});
  EXPECT_EQ(already.exit_code, 0) << already.err;
  EXPECT_EQ(already.out, absl::StrCat("stead-", target, " is the leader already\n"));

  CtlRun anyone = Steadctl({endpoints, "--output=json", "leader", "transfer"});
  EXPECT_EQ(anyone.exit_code, 0) << anyone.err;
  EXPECT_TRUE(absl::StartsWith(anyone.out, R"({"previous_leader":{"id":)")) << anyone.out;
  EXPECT_THAT(anyone.out, HasSubstr(absl::StrCat(R"("name":"stead-)", target, R"(",)")));
  EXPECT_THAT(anyone.out, HasSubstr(R"("moved":true})"));

  EXPECT_EQ(Steadctl({endpoints, "leader", "transfer", "--to", "stead-7"}).exit_code,
            kExitNotFound);
  EXPECT_EQ(Steadctl({endpoints, "member", "promote", "7"}).exit_code, kExitNotFound);

  cluster.Start(3);
  ASSERT_TRUE(testing::Eventually([&] {
    return absl::StrContains(Steadctl({endpoints, "member", "list"}).out, "learner");
  }));
  CtlRun to_learner = Steadctl({endpoints, "leader", "transfer", "--to", "stead-3"});
  EXPECT_EQ(to_learner.exit_code, kExitFailedPrecondition) << to_learner.err;
  EXPECT_THAT(to_learner.err, HasSubstr("stead-3 is a learner"));

  // Until it has caught up the answer is exit 6 with its lag; bounded by the wait.
  CtlRun promoted;
  EXPECT_TRUE(testing::Eventually([&] {
    promoted = Steadctl({endpoints, "member", "promote", "stead-3"});
    return promoted.exit_code != kExitFailedPrecondition;
  })) << promoted.err;
  EXPECT_EQ(promoted.exit_code, 0) << promoted.err;
  EXPECT_TRUE(absl::StartsWith(promoted.out, "stead-3 is now a voter\nID ")) << promoted.out;
  // Any member answers a list: each shows the promotion once it has applied it.
  EXPECT_TRUE(testing::Eventually([&] {
    return !absl::StrContains(Steadctl({endpoints, "member", "list"}).out, "learner");
  }));

  CtlRun again = Steadctl({endpoints, "--output=json", "member", "promote", "3"});
  EXPECT_EQ(again.exit_code, 0) << again.err;
  EXPECT_THAT(again.out, HasSubstr(R"("already_voter":true})"));
}

// Goal: `leader transfer --from`, the command of the pod's preStop hook, moves
// leadership only away from the member it names. Method: name a follower (by name and
// by ordinal): exit 0, "nothing done", and the leader's term is unchanged (any handover
// raises it); then name the leader, asking only the leader as the hook does: leadership
// leaves it; then with --to as well: leadership goes there. Unknown members exit 3, and
// --to naming the --from member exits 2.
TEST(SteadctlTest, LeaderTransferFromMovesLeadershipOnlyAwayFromThatMember) {
  ProcessCluster cluster(3, TestRoot(), STEAD_BINARY);
  const int first = StartThreeMembers(cluster);
  ASSERT_GE(first, 0);
  const std::string endpoints = EndpointsOfThree(cluster);
  const int follower = (first + 1) % 3;
  const std::optional<double> term = cluster.Metric(first, "stead_raft_term");
  ASSERT_TRUE(term.has_value());

  CtlRun by_name = Steadctl({endpoints, "leader", "transfer", "--from", cluster.Name(follower)});
  EXPECT_EQ(by_name.exit_code, 0) << by_name.err;
  EXPECT_EQ(by_name.out, absl::StrCat("stead-", follower, " is not the leader (stead-", first,
                                      " is): nothing done\n"));
  CtlRun by_ordinal = Steadctl(
      {endpoints, "--output=json", "leader", "transfer", absl::StrCat("--from=", follower)});
  EXPECT_EQ(by_ordinal.exit_code, 0) << by_ordinal.err;
  EXPECT_THAT(by_ordinal.out, HasSubstr(R"("leader":{"id":)"));
  EXPECT_THAT(by_ordinal.out, HasSubstr(absl::StrCat(R"("name":"stead-)", first, R"(",)")));
  EXPECT_THAT(by_ordinal.out, HasSubstr(R"("moved":false})"));
  EXPECT_EQ(cluster.Leader({0, 1, 2}), first);
  EXPECT_EQ(cluster.Metric(first, "stead_raft_term"), term);

  CtlRun away = Steadctl({"--endpoints=" + cluster.ClientAddress(first), "leader", "transfer",
                          "--from=" + cluster.Name(first)});
  EXPECT_EQ(away.exit_code, 0) << away.err;
  EXPECT_THAT(away.out, HasSubstr(absl::StrCat(" is the leader (was stead-", first, ")\n")));
  EXPECT_THAT(away.out, Not(HasSubstr(absl::StrCat("stead-", first, " is the leader"))));
  int second = -1;
  EXPECT_TRUE(testing::Eventually([&] {
    second = cluster.Leader({0, 1, 2});
    return second >= 0 && second != first;
  }));
  ASSERT_GE(second, 0);

  CtlRun back = Steadctl({endpoints, "leader", "transfer", "--from", cluster.Name(second), "--to",
                          cluster.Name(first)});
  EXPECT_EQ(back.exit_code, 0) << back.err;
  EXPECT_EQ(back.out, absl::StrCat("stead-", first, " is the leader (was stead-", second, ")\n"));

  const std::optional<double> back_term = cluster.Metric(first, "stead_raft_term");
  CtlRun unknown = Steadctl({endpoints, "leader", "transfer", "--from=stead-7"});
  EXPECT_EQ(unknown.exit_code, kExitNotFound) << unknown.err;
  EXPECT_THAT(unknown.err, HasSubstr("no member stead-7"));
  CtlRun same = Steadctl({endpoints, "leader", "transfer", "--from", cluster.Name(first), "--to",
                          absl::StrCat(first)});
  EXPECT_EQ(same.exit_code, kExitInvalidArgument) << same.err;
  EXPECT_THAT(same.err, HasSubstr(absl::StrCat("--to and --from both name stead-", first)));
  EXPECT_EQ(cluster.Metric(first, "stead_raft_term"), back_term);
}

}  // namespace
}  // namespace stead

namespace stead {
namespace {

// The value of "name" in a one-line JSON object: the text up to the next ',' or '}'
// (quotes included for strings); "" when absent.
std::string JsonField(const std::string& json, const std::string& name) {
  const std::string key = absl::StrCat("\"", name, "\":");
  const size_t at = json.find(key);
  if (at == std::string::npos) return "";
  const size_t begin = at + key.size();
  size_t end = begin;
  int depth = 0;
  for (; end < json.size(); ++end) {
    const char c = json[end];
    if (c == '[' || c == '{') ++depth;
    if ((c == ']' || c == '}') && depth-- == 0) break;
    if (c == ',' && depth == 0) break;
  }
  return json.substr(begin, end - begin);
}

// How many members a JSON list of {"id":...} objects names.
size_t IdCount(const std::string& list) {
  size_t count = 0;
  for (size_t at = list.find("\"id\":"); at != std::string::npos; at = list.find("\"id\":", at + 1)) {
    ++count;
  }
  return count;
}

std::string ReadBytes(const std::string& path) { return testing::ReadFileToString(path).value_or(""); }

// The hashes of every member of `endpoints` once their applied indexes agree.
std::vector<ContentHash> ConvergedHashes(Client& client, const std::vector<std::string>& endpoints) {
  std::vector<ContentHash> hashes;
  testing::Eventually([&] {
    hashes.clear();
    for (const std::string& endpoint : endpoints) {
      absl::StatusOr<ContentHash> hash = client.Hash(endpoint);
      if (!hash.ok()) return false;
      hashes.push_back(*hash);
    }
    for (const ContentHash& hash : hashes) {
      if (hash.applied_index != hashes[0].applied_index) return false;
    }
    return true;
  });
  return hashes;
}

// Goal: the backup cycle end to end with real processes. Method: save from a 3-member
// cluster under write load, verify and inspect the file (JSON fields); refuse an
// existing FILE; then with writes stopped save from a follower and restore that file
// twice — with `steadctl snapshot restore` and with `stead --restore-from` — into new
// one-member clusters: each must serve the source's content (equal content hash), under
// a new cluster id, and take writes. Damaged files are refused by verify and restore,
// and a refused restore leaves its target dirs as they were.
TEST(SteadctlSnapshotTest, SaveVerifyInspectAndRestoreIntoNewClusters) {
  ProcessCluster source(3, TestRoot(), STEAD_BINARY);
  const int leader = StartThreeMembers(source);
  ASSERT_GE(leader, 0);
  const std::string endpoints = EndpointsOfThree(source);
  ClientOptions options;
  options.endpoints = source.ClientEndpoints(3);
  options.default_timeout = absl::Seconds(20);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Client> client, Client::Create(options));
  const std::string files = TestRoot() + "-files";
  std::filesystem::remove_all(files);
  std::filesystem::create_directories(files);

  std::atomic<bool> stop{false};
  std::atomic<int> written{0};
  std::thread load([&] {
    for (int n = 0; !stop; ++n) {
      if (client->Put(absl::StrCat("load/", n), std::string(200, 'x')).ok()) ++written;
    }
  });
  ASSERT_TRUE(testing::Eventually([&] { return written >= 300; }));
  const std::string live = files + "/live.stead";
  const int written_before_save = written;
  CtlRun saved = Steadctl({endpoints, "--output=json", "snapshot", "save", live});
  EXPECT_EQ(saved.exit_code, 0) << saved.err;
  EXPECT_GT(written.load(), written_before_save) << "the writes went on during the save";
  const std::string index = JsonField(saved.out, "index");
  EXPECT_FALSE(index.empty()) << saved.out;
  EXPECT_EQ(JsonField(saved.out, "member"), absl::StrCat("\"", source.Name(leader), "\""));

  CtlRun verified = Steadctl({"snapshot", "verify", live});
  EXPECT_EQ(verified.exit_code, 0) << verified.err;
  EXPECT_THAT(verified.out, HasSubstr(absl::StrCat(live, ": ok")));
  CtlRun inspected = Steadctl({"--output=json", "snapshot", "inspect", live});
  EXPECT_EQ(inspected.exit_code, 0) << inspected.err;
  const std::string source_cluster = JsonField(inspected.out, "cluster_id");
  EXPECT_FALSE(source_cluster.empty());
  EXPECT_EQ(JsonField(inspected.out, "index"), index);
  EXPECT_EQ(IdCount(JsonField(inspected.out, "voters")), 3u) << inspected.out;
  EXPECT_EQ(JsonField(inspected.out, "learners"), "[]");
  EXPECT_EQ(JsonField(inspected.out, "size_bytes"),
            absl::StrCat(std::filesystem::file_size(live)));
  int64_t keys = 0;
  ASSERT_TRUE(absl::SimpleAtoi(JsonField(inspected.out, "key_count"), &keys));
  EXPECT_GE(keys, 300) << "the writes acknowledged before the save started";
  EXPECT_THAT(JsonField(inspected.out, "created"), HasSubstr("T"));

  stop = true;
  load.join();

  // An existing FILE stays as it is unless --force.
  const std::string before = ReadBytes(live);
  CtlRun again = Steadctl({endpoints, "snapshot", "save", live});
  EXPECT_EQ(again.exit_code, kExitInvalidArgument);
  EXPECT_THAT(again.err, HasSubstr("--force"));
  EXPECT_EQ(ReadBytes(live), before);

  // With writes stopped, every member holds the same content; save from a follower.
  const std::vector<ContentHash> source_hashes = ConvergedHashes(*client, source.ClientEndpoints(3));
  ASSERT_EQ(source_hashes.size(), 3u);
  const int follower = (leader + 1) % 3;
  const std::string quiet = files + "/quiet.stead";
  CtlRun quiet_save = Steadctl({endpoints, "--output=json", "snapshot", "save", quiet,
                                "--endpoint", source.ClientAddress(follower), "--force"});
  ASSERT_EQ(quiet_save.exit_code, 0) << quiet_save.err;
  EXPECT_EQ(JsonField(quiet_save.out, "member"), absl::StrCat("\"", source.Name(follower), "\""));

  // Damaged copies: refused by verify and by restore, which writes nothing.
  const std::string bytes = ReadBytes(quiet);
  std::string flipped = bytes;
  flipped[bytes.size() / 2] = static_cast<char>(flipped[bytes.size() / 2] ^ 0x01);
  WriteBytes(files + "/flipped.stead", flipped);
  WriteBytes(files + "/truncated.stead", bytes.substr(0, bytes.size() - 1000));
  std::filesystem::create_directories(files + "/empty-data");
  for (const std::string name : {"flipped", "truncated"}) {
    SCOPED_TRACE(name);
    const std::string path = absl::StrCat(files, "/", name, ".stead");
    CtlRun bad = Steadctl({"snapshot", "verify", path});
    EXPECT_EQ(bad.exit_code, kExitDataLoss) << bad.err;
    EXPECT_THAT(bad.err, HasSubstr(name == "flipped" ? "crc32c" : "truncated"));
    CtlRun refused = Steadctl({"snapshot", "restore", path, "--data-dir", files + "/empty-data",
                               "--wal-dir", files + "/no-wal", "--name", "stead-0", "--peer-addr",
                               "127.0.0.1:1", "--client-addr", "127.0.0.1:2"});
    EXPECT_EQ(refused.exit_code, kExitDataLoss) << refused.err;
    EXPECT_TRUE(std::filesystem::is_empty(files + "/empty-data"));
    EXPECT_FALSE(std::filesystem::exists(files + "/no-wal"));
  }
  CtlRun in_use = Steadctl({"snapshot", "restore", quiet, "--data-dir",
                            TestRoot() + "/stead-0/data", "--wal-dir", files + "/no-wal", "--name",
                            "stead-0", "--peer-addr", "127.0.0.1:1", "--client-addr", "127.0.0.1:2"});
  EXPECT_EQ(in_use.exit_code, kExitFailedPrecondition) << in_use.err;
  EXPECT_FALSE(std::filesystem::exists(files + "/no-wal"));

  // Two restores of the quiet backup: by steadctl and by the member itself.
  ProcessCluster by_steadctl(1, TestRoot() + "-restored", STEAD_BINARY);
  const std::string target = TestRoot() + "-restored/stead-0";
  CtlRun restored = Steadctl(
      {"--output=json", "snapshot", "restore", quiet, "--data-dir", target + "/data", "--wal-dir",
       target + "/wal", "--name", "stead-0", "--peer-addr",
       absl::StrCat("127.0.0.1:", by_steadctl.peer_port(0)), "--client-addr",
       by_steadctl.ClientAddress(0)});
  ASSERT_EQ(restored.exit_code, 0) << restored.err;
  EXPECT_NE(JsonField(restored.out, "cluster_id"), source_cluster);
  EXPECT_EQ(JsonField(restored.out, "from_cluster_id"), source_cluster);
  by_steadctl.Start(0);
  ProcessCluster by_flag(1, TestRoot() + "-restore-from", STEAD_BINARY);
  by_flag.set_extra_flags({"--restore-from=" + quiet});
  by_flag.Start(0);
  for (ProcessCluster* cluster : {&by_steadctl, &by_flag}) {
    ASSERT_TRUE(cluster->WaitReady({0}));
    ASSERT_OK_AND_ASSIGN(const ContentHash hash, client->Hash(cluster->ClientAddress(0)));
    EXPECT_EQ(hash.hash, source_hashes[0].hash);
    EXPECT_EQ(hash.key_count, source_hashes[0].key_count);
    EXPECT_EQ(hash.revision, source_hashes[0].revision);
    const std::string restored_endpoint = "--endpoints=" + cluster->ClientAddress(0);
    EXPECT_EQ(Steadctl({restored_endpoint, "get", "load/0"}).out, std::string(200, 'x') + "\n");
    EXPECT_EQ(Steadctl({restored_endpoint, "put", "after", "restore"}).exit_code, 0);
    const std::string copy = absl::StrCat(files, "/copy-", cluster->client_port(0), ".stead");
    ASSERT_EQ(Steadctl({restored_endpoint, "snapshot", "save", copy}).exit_code, 0);
    CtlRun copy_inspected = Steadctl({"--output=json", "snapshot", "inspect", copy});
    EXPECT_NE(JsonField(copy_inspected.out, "cluster_id"), source_cluster) << "a new cluster id";
    EXPECT_EQ(IdCount(JsonField(copy_inspected.out, "voters")), 1u)
        << "the restored member alone: " << copy_inspected.out;
  }
  std::filesystem::remove_all(files);
}

// Goal: the Kubernetes restore path. Method: a backup of a one-member cluster seeds
// stead-0 of a new 3-member set with --restore-from; stead-1 and stead-2 start with empty
// volumes and without the flag, join the seed, receive its state as a Raft snapshot
// (its log starts after the backup's index) and become voters: all three then hold the
// source's content under the new cluster id.
TEST(SteadctlSnapshotTest, RestoredSeedIsJoinedByTwoEmptyMembers) {
  ProcessCluster source(1, TestRoot() + "-source", STEAD_BINARY);
  source.Start(0);
  ASSERT_TRUE(source.WaitReady({0}));
  ClientOptions options;
  options.endpoints = {source.ClientAddress(0)};
  options.default_timeout = absl::Seconds(20);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Client> client, Client::Create(options));
  for (int n = 0; n < 200; ++n) ASSERT_OK(client->Put(absl::StrCat("k", n), absl::StrCat("v", n)));
  ASSERT_OK_AND_ASSIGN(const ContentHash source_hash, client->Hash(source.ClientAddress(0)));
  const std::string file = TestRoot() + "-seed.stead";
  std::filesystem::remove(file);
  CtlRun saved = Steadctl({"--endpoints=" + source.ClientAddress(0), "snapshot", "save", file});
  ASSERT_EQ(saved.exit_code, 0) << saved.err;

  ProcessCluster restored(3, TestRoot() + "-restored", STEAD_BINARY);
  restored.set_extra_flags({"--restore-from=" + file});
  restored.Start(0);
  ASSERT_TRUE(restored.WaitReady({0}));
  restored.set_extra_flags({});
  restored.Start(1);
  restored.Start(2);
  ASSERT_TRUE(restored.WaitReady({0, 1, 2}));
  const std::vector<ContentHash> hashes = ConvergedHashes(*client, restored.ClientEndpoints(3));
  ASSERT_EQ(hashes.size(), 3u);
  for (const ContentHash& hash : hashes) {
    SCOPED_TRACE(hash.endpoint);
    EXPECT_EQ(hash.hash, source_hash.hash);
    EXPECT_EQ(hash.key_count, source_hash.key_count);
  }
  ClientOptions restored_options;
  restored_options.endpoints = restored.ClientEndpoints(3);
  restored_options.default_timeout = absl::Seconds(20);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Client> restored_client, Client::Create(restored_options));
  ASSERT_TRUE(testing::Eventually([&] {
    absl::StatusOr<std::vector<Member>> members = restored_client->MemberList();
    if (!members.ok() || members->size() != 3) return false;
    for (const Member& member : *members) {
      if (member.is_learner) return false;
    }
    return true;
  })) << "the joined members did not become voters";
  EXPECT_OK(restored_client->Put("after", "restore"));
  std::filesystem::remove(file);
}

}  // namespace
}  // namespace stead
