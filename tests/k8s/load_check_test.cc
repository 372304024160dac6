// The real stead-load-check binary against a real 3-member cluster: `write` under a
// follower restart, stopped by SIGTERM, then `verify` finding every acknowledged key,
// and finding the one key deleted behind its back; both over TLS with a client
// certificate to members that require one; flags, help and an unreachable cluster
// give their documented exit codes.
#include <signal.h>

#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "stead/client.h"
#include "tests/testing/process_cluster.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/subprocess.h"
#include "tests/testing/test_certificates.h"

namespace stead {
namespace {

using ::testing::HasSubstr;
using testing::ProcessCluster;
using ::testing::StartsWith;
using testing::Subprocess;

// The documented exit codes (stead-load-check --help).
constexpr int kExitOk = 0;
constexpr int kExitFailed = 1;
constexpr int kExitBadFlags = 2;
constexpr int kExitUnavailable = 5;

std::string TestRoot() {
  return absl::StrCat(::testing::TempDir(), "/load_check_test_", ::getpid(), "_",
                      ::testing::UnitTest::GetInstance()->current_test_info()->name());
}

// Starts stead-load-check with `args`, its stdout captured and its stderr in `err_path`.
std::unique_ptr<Subprocess> StartLoadCheck(const std::vector<std::string>& args,
                                           const std::string& err_path) {
  std::vector<std::string> argv = {LOAD_CHECK_BINARY};
  argv.insert(argv.end(), args.begin(), args.end());
  absl::StatusOr<std::unique_ptr<Subprocess>> process =
      Subprocess::Start({.argv = argv, .env = {}, .log_path = err_path, .capture_stdout = true, .stdin_path = ""});
  EXPECT_OK(process.status());
  return process.ok() ? std::move(*process) : nullptr;
}

struct Outcome {
  int exit_code = -1;
  std::string out;  // stdout
  std::string err;  // stderr
};

// Reads the rest of `process`'s stdout and waits for it to exit, each within `timeout`.
Outcome Finish(Subprocess& process, const std::string& err_path, absl::Duration timeout) {
  Outcome run;
  // Bounded: at most 1,000 lines, each within `timeout`.
  for (int line = 0; line < 1000; ++line) {
    absl::StatusOr<std::string> text = process.ReadLine(timeout);
    if (!text.ok()) break;
    absl::StrAppend(&run.out, *text, "\n");
  }
  const std::optional<testing::ExitStatus> status = process.WaitFor(timeout);
  run.exit_code = status.has_value() && status->exited() ? status->exit_code : -1;
  run.err = testing::ReadFileToString(err_path).value_or("");
  return run;
}

// Runs stead-load-check to its end (within 60 s).
Outcome LoadCheck(const std::vector<std::string>& args) {
  static int runs = 0;
  const std::string dir = absl::StrCat(::testing::TempDir(), "/load_check_test_", ::getpid());
  std::filesystem::create_directories(dir);
  const std::string err_path = absl::StrCat(dir, "/run-", runs++, ".err");
  std::unique_ptr<Subprocess> process = StartLoadCheck(args, err_path);
  if (process == nullptr) return Outcome{};
  return Finish(*process, err_path, absl::Seconds(60));
}

// The fields of the "RESULT a=1 b=2" line of `out`; empty without one.
std::map<std::string, std::string> ResultFields(const std::string& out) {
  std::map<std::string, std::string> fields;
  for (absl::string_view line : absl::StrSplit(out, '\n')) {
    if (!absl::StartsWith(line, "RESULT ")) continue;
    for (absl::string_view field : absl::StrSplit(line.substr(7), ' ', absl::SkipEmpty())) {
      const std::vector<std::string> parts = absl::StrSplit(field, absl::MaxSplits('=', 1));
      if (parts.size() == 2) fields[parts[0]] = parts[1];
    }
  }
  return fields;
}

int64_t Field(const std::map<std::string, std::string>& fields, const std::string& name) {
  int64_t value = -1;
  const auto it = fields.find(name);
  if (it == fields.end() || !absl::SimpleAtoi(it->second, &value)) {
    ADD_FAILURE() << "no whole number " << name << " in the RESULT line";
  }
  return value;
}

std::vector<std::string> Lines(const std::string& path) {
  return absl::StrSplit(testing::ReadFileToString(path).value_or(""), '\n', absl::SkipEmpty());
}

// Goal: the check the Kubernetes tests rely on. `write` runs for about 3 s while a
// follower is restarted, and SIGTERM stops it with a RESULT line whose count matches
// the acknowledged-keys file; `verify` then finds every one of those keys, and after
// one of them is deleted and another overwritten through the client it reports
// exactly those two.
TEST(LoadCheckTest, VerifyFindsEveryAcknowledgedWriteAcrossARestartAndALostOne) {
  const std::string root = TestRoot();
  ProcessCluster cluster(3, root, STEAD_BINARY);
  for (int i : {0, 1, 2}) cluster.Start(i);
  ASSERT_TRUE(cluster.WaitReady({0, 1, 2}));
  const int leader = cluster.WaitForLeader({0, 1, 2});
  ASSERT_GE(leader, 0);
  const int follower = (leader + 1) % 3;
  const std::string endpoints = absl::StrJoin(cluster.ClientEndpoints(3), ",");
  const std::string acked_file = root + "/acked";
  const std::string write_err = root + "/write.err";

  std::unique_ptr<Subprocess> writer =
      StartLoadCheck({"write", "--endpoints=" + endpoints, "--prefix=load",
                      "--acked-file=" + acked_file, "--writers=4", "--request-timeout=5s"},
                     write_err);
  ASSERT_NE(writer, nullptr);
  ASSERT_TRUE(testing::Eventually([&] { return Lines(acked_file).size() >= 20; }))
      << testing::ReadFileToString(write_err).value_or("");
  const std::optional<testing::ExitStatus> stopped = cluster.Terminate(follower);
  ASSERT_TRUE(stopped.has_value());
  std::this_thread::sleep_for(std::chrono::seconds(1));  // load on two members
  cluster.Start(follower);
  ASSERT_TRUE(cluster.WaitReady({follower}));
  std::this_thread::sleep_for(std::chrono::seconds(1));  // load on all three again
  ASSERT_OK(writer->Signal(SIGTERM));
  const Outcome load = Finish(*writer, write_err, absl::Seconds(30));
  ASSERT_EQ(load.exit_code, kExitOk) << load.out << load.err;
  std::cout << "write under a follower restart: " << load.out;
  const std::map<std::string, std::string> written = ResultFields(load.out);
  const int64_t acked = Field(written, "acked");
  for (const char* field :
       {"failed_attempts", "retried_keys", "max_latency_ms", "p99_latency_ms", "duration_s"}) {
    EXPECT_TRUE(written.contains(field)) << field << " in " << load.out;
  }
  const std::vector<std::string> keys = Lines(acked_file);
  EXPECT_EQ(static_cast<int64_t>(keys.size()), acked);
  ASSERT_GT(keys.size(), 20u);
  EXPECT_THAT(keys.front(), StartsWith("load/"));

  const Outcome verify = LoadCheck({"verify", "--endpoints=" + endpoints, "--prefix=load",
                                    "--acked-file=" + acked_file, "--timeout=10s"});
  EXPECT_EQ(verify.exit_code, kExitOk) << verify.out << verify.err;
  const std::map<std::string, std::string> verified = ResultFields(verify.out);
  EXPECT_EQ(Field(verified, "checked"), acked);
  EXPECT_EQ(Field(verified, "missing"), 0);
  EXPECT_EQ(Field(verified, "wrong"), 0);

  // A lost write and a corrupt one: one acknowledged key deleted and another
  // overwritten behind the check's back.
  const std::string lost = keys[keys.size() / 2];
  const std::string corrupt = keys[keys.size() / 3];
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Client> client,
                       Client::Create({.endpoints = cluster.ClientEndpoints(3)}));
  ASSERT_THAT(client->Delete(lost), testing::IsOkAndHolds(true));
  ASSERT_OK(client->Put(corrupt, "not the value written"));
  // Without --prefix: the keys' common prefix is scanned.
  const Outcome after = LoadCheck(
      {"verify", "--endpoints=" + endpoints, "--acked-file=" + acked_file, "--timeout=10s"});
  EXPECT_EQ(after.exit_code, kExitFailed) << after.out << after.err;
  const std::map<std::string, std::string> found = ResultFields(after.out);
  EXPECT_EQ(Field(found, "checked"), acked);
  EXPECT_EQ(Field(found, "missing"), 1);
  EXPECT_EQ(Field(found, "wrong"), 1);
  EXPECT_THAT(after.err, HasSubstr("missing " + lost + "\n"));
  EXPECT_THAT(after.err, HasSubstr("wrong value " + corrupt + "\n"));
}

// Goal: the load check against members that speak only TLS and require client
// certificates (the tls component of k8s/): with --cacert, --cert and --key `write`
// is acknowledged and `verify` finds every key; without them the members refuse the
// connection, so `verify` cannot read and says the cluster did not answer.
TEST(LoadCheckTest, WritesAndVerifiesOverTlsWithAClientCertificate) {
  const std::string root = TestRoot();
  ProcessCluster cluster(3, root, STEAD_BINARY);
  testing::TestCertificateAuthority ca("load check CA");
  const std::string dir = testing::MakeTempDir();
  for (int i : {0, 1, 2}) {
    const testing::TestPemFiles member = testing::WritePemFiles(
        dir, cluster.Name(i),
        ca.Issue({.common_name = cluster.Name(i), .ip_addresses = {"127.0.0.1"}}), ca);
    cluster.set_extra_flags(
        {"--client-cert-file=" + member.cert_file, "--client-key-file=" + member.key_file,
         "--client-trusted-ca-file=" + member.ca_file, "--client-cert-auth",
         "--peer-cert-file=" + member.cert_file, "--peer-key-file=" + member.key_file,
         "--peer-trusted-ca-file=" + member.ca_file});
    cluster.Start(i);
  }
  ASSERT_TRUE(cluster.WaitReady({0, 1, 2}));
  ASSERT_GE(cluster.WaitForLeader({0, 1, 2}), 0);
  const testing::TestPemFiles client =
      testing::WritePemFiles(dir, "load", ca.Issue({.common_name = "load"}), ca);
  const std::vector<std::string> tls = {"--cacert=" + client.ca_file, "--cert=" + client.cert_file,
                                        "--key=" + client.key_file};
  const std::string endpoints = "--endpoints=" + absl::StrJoin(cluster.ClientEndpoints(3), ",");
  const std::string acked_file = root + "/acked";

  std::vector<std::string> write = {"write",        endpoints,
                                    "--prefix=tls", "--acked-file=" + acked_file,
                                    "--writers=2",  "--max-seconds=1"};
  write.insert(write.end(), tls.begin(), tls.end());
  const Outcome load = LoadCheck(write);
  ASSERT_EQ(load.exit_code, kExitOk) << load.out << load.err;
  const int64_t acked = Field(ResultFields(load.out), "acked");
  EXPECT_GT(acked, 0);
  EXPECT_EQ(Field(ResultFields(load.out), "failed_attempts"), 0) << load.err;

  std::vector<std::string> verify = {"verify", endpoints, "--acked-file=" + acked_file,
                                     "--timeout=10s"};
  verify.insert(verify.end(), tls.begin(), tls.end());
  const Outcome verified = LoadCheck(verify);
  EXPECT_EQ(verified.exit_code, kExitOk) << verified.out << verified.err;
  EXPECT_EQ(Field(ResultFields(verified.out), "checked"), acked);
  EXPECT_EQ(Field(ResultFields(verified.out), "missing"), 0);

  const Outcome plain =
      LoadCheck({"verify", endpoints, "--acked-file=" + acked_file, "--timeout=2s"});
  EXPECT_EQ(plain.exit_code, kExitUnavailable) << plain.out << plain.err;
}

// Goal: help, bad flags, a reused acknowledged-keys file and an unreachable cluster
// each give their documented exit code and a message naming the cause, without a
// cluster.
TEST(LoadCheckTest, HelpBadFlagsAndUnreachableClusterExitCodes) {
  const std::string root = TestRoot();
  std::filesystem::create_directories(root);
  for (const char* command : {"write", "verify"}) {
    const Outcome help = LoadCheck({command, "--help"});
    EXPECT_EQ(help.exit_code, kExitOk) << command;
    EXPECT_THAT(help.out, HasSubstr(absl::StrCat("usage: stead-load-check ", command)));
  }
  EXPECT_EQ(LoadCheck({"--help"}).exit_code, kExitOk);

  const std::string acked_file = root + "/acked";
  ASSERT_TRUE(std::filesystem::exists(root));
  {
    std::FILE* file = std::fopen(acked_file.c_str(), "w");
    ASSERT_NE(file, nullptr);
    std::fputs("old/0/0000000000\n", file);
    std::fclose(file);
  }
  const std::string endpoints = "--endpoints=127.0.0.1:1";
  const struct {
    const char* name;
    std::vector<std::string> args;
    const char* message;
  } bad[] = {
      {"no command", {}, "no command"},
      {"unknown command", {"read"}, "unknown command read"},
      {"unknown flag", {"write", "--writer=2"}, "unknown flag --writer"},
      {"missing prefix",
       {"write", endpoints, "--acked-file=" + acked_file},
       "--prefix is required"},
      {"bad writers",
       {"write", endpoints, "--prefix=p", "--acked-file=x", "--writers=0"},
       "--writers"},
      {"bad timeout",
       {"write", endpoints, "--prefix=p", "--acked-file=x", "--request-timeout=soon"},
       "--request-timeout"},
      {"bad endpoint",
       {"write", "--endpoints=nohost", "--prefix=p", "--acked-file=" + root + "/new"},
       "not host:port"},
      {"keys of an earlier run",
       {"write", endpoints, "--prefix=old", "--acked-file=" + acked_file},
       "lists old/0/0000000000 already"},
      {"certificate without its key",
       {"write", endpoints, "--prefix=p", "--acked-file=" + root + "/new", "--cert=c.pem"},
       "--key"},
      {"no acked file", {"verify", endpoints, "--acked-file=" + root + "/none"}, "none"},
      {"key outside the prefix",
       {"verify", endpoints, "--prefix=new", "--acked-file=" + acked_file},
       "not under --prefix new/"},
  };
  for (const auto& c : bad) {
    SCOPED_TRACE(c.name);
    const Outcome run = LoadCheck(c.args);
    EXPECT_EQ(run.exit_code, kExitBadFlags) << run.err;
    EXPECT_THAT(run.err, HasSubstr(c.message));
  }

  // Nothing listens on the port: verify gives up after --timeout.
  ASSERT_OK_AND_ASSIGN(const uint16_t port, testing::FreeLoopbackPort());
  const Outcome unreachable = LoadCheck({"verify", absl::StrCat("--endpoints=127.0.0.1:", port),
                                         "--acked-file=" + acked_file, "--timeout=1s"});
  EXPECT_EQ(unreachable.exit_code, kExitUnavailable) << unreachable.err;
  // write acknowledges nothing by --max-seconds: exit 1, after its RESULT line.
  const Outcome nothing = LoadCheck({"write", absl::StrCat("--endpoints=127.0.0.1:", port),
                                     "--prefix=p", "--acked-file=" + root + "/nothing",
                                     "--writers=1", "--request-timeout=300ms", "--max-seconds=1"});
  EXPECT_EQ(nothing.exit_code, kExitFailed) << nothing.err;
  EXPECT_EQ(Field(ResultFields(nothing.out), "acked"), 0) << nothing.out;
  EXPECT_THAT(nothing.err, HasSubstr("not a single write was acknowledged"));
  EXPECT_THAT(nothing.err, HasSubstr("put failed key=p/0/0000000000 attempt=1"));
}

}  // namespace
}  // namespace stead
