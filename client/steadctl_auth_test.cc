// The real steadctl binary's auth commands against a real 3-member cluster: --help of
// user, role and auth; users, roles and permissions made with steadctl; auth enabled;
// then --user with --password-file, exit 8 for a denied request or a wrong password,
// a snapshot save refused to a user without root, and no password on the command line.
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/process_cluster.h"
#include "tests/testing/subprocess.h"

namespace stead {
namespace {

using ::testing::HasSubstr;
using testing::ProcessCluster;
using testing::Subprocess;

constexpr int kExitInvalidArgument = 2;
constexpr int kExitFailedPrecondition = 6;
constexpr int kExitDenied = 8;

struct CtlRun {
  int exit_code = -1;
  std::string out;
  std::string err;
};

std::string Dir() {
  const std::string dir = absl::StrCat(::testing::TempDir(), "/steadctl_auth_test_", ::getpid());
  std::filesystem::create_directories(dir);
  return dir;
}

CtlRun Steadctl(const std::vector<std::string>& args) {
  static int runs = 0;
  const std::string err_path = absl::StrCat(Dir(), "/run-", runs++, ".err");
  std::vector<std::string> argv = {STEADCTL_BINARY};
  argv.insert(argv.end(), args.begin(), args.end());
  CtlRun run;
  absl::StatusOr<std::unique_ptr<Subprocess>> process = Subprocess::Start(
      {.argv = argv, .env = {"STEAD_ENDPOINTS="}, .log_path = err_path, .capture_stdout = true, .stdin_path = ""});
  if (!process.ok()) {
    ADD_FAILURE() << process.status();
    return run;
  }
  for (int line = 0; line < 1000; ++line) {
    absl::StatusOr<std::string> text = (*process)->ReadLine(absl::Seconds(30));
    if (!text.ok()) break;
    absl::StrAppend(&run.out, *text, "\n");
  }
  std::optional<testing::ExitStatus> status = (*process)->WaitFor(absl::Seconds(30));
  run.exit_code = status.has_value() && status->exited() ? status->exit_code : -1;
  run.err = testing::ReadFileToString(err_path).value_or("");
  return run;
}

std::string PasswordFile(const std::string& name, const std::string& password) {
  const std::string path = absl::StrCat(Dir(), "/", name, ".pw");
  std::ofstream(path) << password << "\n";
  return path;
}

TEST(SteadctlAuthTest, HelpOfEachAuthCommand) {
  EXPECT_THAT(Steadctl({"--help"}).out, HasSubstr("--user=NAME"));
  for (const char* command : {"user", "role", "auth"}) {
    const CtlRun help = Steadctl({command, "--help"});
    EXPECT_EQ(help.exit_code, 0);
    EXPECT_THAT(help.out, HasSubstr(absl::StrCat("usage: steadctl ", command)));
  }
  const CtlRun on_command_line = Steadctl({"--user=root", "--password=secret", "get", "k"});
  EXPECT_EQ(on_command_line.exit_code, kExitInvalidArgument);
  EXPECT_THAT(on_command_line.err, HasSubstr("no password on the command line"));
}

TEST(SteadctlAuthTest, UsersRolesAndEnableThenDeniedRequestsExit8) {
  ProcessCluster cluster(3, testing::ClusterTestRoot("steadctl_auth"), STEAD_BINARY);
  ASSERT_GE(cluster.StartAndWaitForLeader({0, 1, 2}), 0);
  const std::string endpoints = "--endpoints=" + absl::StrJoin(cluster.ClientEndpoints(3), ",");
  const std::string root_pw = PasswordFile("root", "root-secret");
  const std::string alice_pw = PasswordFile("alice", "alice-secret");
  auto ok = [&](std::vector<std::string> args) {
    args.insert(args.begin(), endpoints);
    const CtlRun run = Steadctl(args);
    EXPECT_EQ(run.exit_code, 0) << absl::StrJoin(args, " ") << ": " << run.err;
    return run;
  };
  // Enabling without a root user is refused.
  const CtlRun early = Steadctl({endpoints, "auth", "enable"});
  EXPECT_EQ(early.exit_code, kExitFailedPrecondition) << early.err;
  ok({"user", "add", "root", "--new-password-file=" + root_pw});
  ok({"user", "grant-role", "root", "root"});
  ok({"user", "add", "alice", "--new-password-file=" + alice_pw});
  ok({"role", "add", "app"});
  ok({"role", "grant-permission", "app", "readwrite", "app/", "--prefix"});
  ok({"role", "grant-permission", "app", "read", "x", "--range-end=y"});
  ok({"user", "grant-role", "alice", "app"});
  const CtlRun roles = ok({"role", "list"});
  EXPECT_THAT(roles.out, HasSubstr("app\n\treadwrite\tapp/\tapp0\n\tread\tx\ty\n"));
  EXPECT_THAT(ok({"user", "list"}).out, HasSubstr("alice\tapp\n"));
  ok({"auth", "enable"});

  const std::string as_root = "--user=root", root_file = "--password-file=" + root_pw;
  const std::string as_alice = "--user=alice", alice_file = "--password-file=" + alice_pw;
  EXPECT_THAT(ok({as_root, root_file, "auth", "status"}).out, HasSubstr("enabled\ttrue"));
  ok({as_alice, alice_file, "put", "app/1", "v"});
  EXPECT_EQ(ok({as_alice, alice_file, "get", "app/1"}).out, "v\n");
  const CtlRun denied = Steadctl({endpoints, as_alice, alice_file, "put", "other", "v"});
  EXPECT_EQ(denied.exit_code, kExitDenied);
  EXPECT_THAT(denied.err, HasSubstr("PERMISSION_DENIED"));
  const CtlRun anonymous = Steadctl({endpoints, "get", "app/1"});
  EXPECT_EQ(anonymous.exit_code, kExitDenied);
  EXPECT_THAT(anonymous.err, HasSubstr("UNAUTHENTICATED"));
  const CtlRun wrong = Steadctl({endpoints, as_alice, "--password-file=" + root_pw, "get", "app/1"});
  EXPECT_EQ(wrong.exit_code, kExitDenied);
  const CtlRun save = Steadctl({endpoints, as_alice, alice_file, "snapshot", "save",
                                absl::StrCat(Dir(), "/alice.backup")});
  EXPECT_EQ(save.exit_code, kExitDenied) << save.err;
  const CtlRun admin = Steadctl({endpoints, as_alice, alice_file, "user", "list"});
  EXPECT_EQ(admin.exit_code, kExitDenied);
  ok({as_root, root_file, "role", "revoke-permission", "app", "app/", "--prefix"});
  EXPECT_EQ(Steadctl({endpoints, as_alice, alice_file, "get", "app/1"}).exit_code, kExitDenied);
  ok({as_root, root_file, "snapshot", "save", absl::StrCat(Dir(), "/root.backup"), "--force"});
  ok({as_root, root_file, "auth", "disable"});
  EXPECT_EQ(ok({"get", "app/1"}).out, "v\n");
}

}  // namespace
}  // namespace stead
