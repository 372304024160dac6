// The real steadctl binary: --help everywhere, exit codes and messages for bad input
// and unreachable members, and kv, txn and member commands against a real 3-member
// cluster.
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/process_cluster.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/subprocess.h"

namespace stead {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using testing::ProcessCluster;
using testing::Subprocess;

// The documented exit codes (steadctl --help).
constexpr int kExitInvalidArgument = 2;
constexpr int kExitNotFound = 3;
constexpr int kExitFailedCompare = 4;
constexpr int kExitUnavailable = 5;
constexpr int kExitFailedPrecondition = 6;

std::string TestRoot() {
  return absl::StrCat(::testing::TempDir(), "/steadctl_test_", ::getpid(), "_",
                      ::testing::UnitTest::GetInstance()->current_test_info()->name());
}

struct CtlRun {
  int exit_code = -1;
  std::string out;  // stdout
  std::string err;  // stderr
};

// Runs steadctl with `args` (and STEAD_ENDPOINTS unset unless given in `env`).
CtlRun Steadctl(const std::vector<std::string>& args, std::vector<std::string> env = {}) {
  static int runs = 0;
  const std::string dir = absl::StrCat(::testing::TempDir(), "/steadctl_test_", ::getpid());
  std::filesystem::create_directories(dir);
  const std::string err_path = absl::StrCat(dir, "/run-", runs++, ".err");
  std::vector<std::string> argv = {STEADCTL_BINARY};
  argv.insert(argv.end(), args.begin(), args.end());
  if (env.empty()) env.push_back("STEAD_ENDPOINTS=");
  CtlRun run;
  absl::StatusOr<std::unique_ptr<Subprocess>> process = Subprocess::Start(
      {.argv = argv, .env = env, .log_path = err_path, .capture_stdout = true});
  if (!process.ok()) {
    ADD_FAILURE() << process.status();
    return run;
  }
  // Bounded: at most 10,000 lines within 30 s each.
  for (int line = 0; line < 10000; ++line) {
    absl::StatusOr<std::string> text = (*process)->ReadLine(absl::Seconds(30));
    if (!text.ok()) break;
    absl::StrAppend(&run.out, *text, "\n");
  }
  std::optional<testing::ExitStatus> status = (*process)->WaitFor(absl::Seconds(30));
  run.exit_code = status.has_value() && status->exited() ? status->exit_code : -1;
  run.err = testing::ReadFileToString(err_path).value_or("");
  return run;
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
       {"get", "put", "del", "scan", "txn", "watch", "member", "leader", "cluster", "endpoint"}) {
    SCOPED_TRACE(command);
    const CtlRun help = Steadctl({command, "--help"});
    EXPECT_EQ(help.exit_code, 0);
    EXPECT_THAT(help.out, HasSubstr(absl::StrCat("usage: steadctl ", command)));
  }
  const std::vector<std::vector<std::string>> subcommands = {
      {"member", "promote"}, {"member", "add"}, {"leader", "transfer"}};
  for (const std::vector<std::string>& words : subcommands) {
    const std::string command = absl::StrJoin(words, " ");
    SCOPED_TRACE(command);
    const CtlRun help = Steadctl({words[0], words[1], "--help"});
    EXPECT_EQ(help.exit_code, 0);
    EXPECT_THAT(help.out, HasSubstr(absl::StrCat("usage: steadctl ", command)));
  }
  EXPECT_THAT(Steadctl({"member", "add", "--help"}).out, HasSubstr("a member adds itself"));
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
      {"member add without name", {"member", "add"}, "member add needs NAME"},
      {"member promote without member", {"member", "promote"}, "member needs 'list'"},
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
  for (int i : {0, 1, 2}) cluster.Start(i);
  ASSERT_TRUE(cluster.WaitReady({0, 1, 2}));
  ASSERT_GE(cluster.WaitForLeader({0, 1, 2}), 0);
  const std::string endpoints = "--endpoints=" + absl::StrJoin(cluster.ClientEndpoints(3), ",");

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

// Goal: `steadctl txn` exits 0 and prints the --then answers when its conditions
// hold, exits 4 and prints the --else answers when one does not, in both output
// formats, with quoted words taken whole.
TEST(SteadctlTest, TxnExitsByWhetherItsConditionsHeld) {
  ProcessCluster cluster(3, TestRoot(), STEAD_BINARY);
  for (int i : {0, 1, 2}) cluster.Start(i);
  ASSERT_TRUE(cluster.WaitReady({0, 1, 2}));
  ASSERT_GE(cluster.WaitForLeader({0, 1, 2}), 0);
  const std::string endpoints = "--endpoints=" + absl::StrJoin(cluster.ClientEndpoints(3), ",");
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
  for (int i : {0, 1, 2}) cluster.Start(i);
  ASSERT_TRUE(cluster.WaitReady({0, 1, 2}));
  const int first = cluster.WaitForLeader({0, 1, 2});
  ASSERT_GE(first, 0);
  const std::string endpoints = "--endpoints=" + absl::StrJoin(cluster.ClientEndpoints(3), ",");

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

}  // namespace
}  // namespace stead
