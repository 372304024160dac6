#include "server/config.h"

#include <map>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_certificates.h"

namespace stead::server {
namespace {

using ::stead::testing::StatusIs;
using ::testing::HasSubstr;

EnvLookup Env(std::map<std::string, std::string> values) {
  return [values = std::move(values)](const std::string& name) -> std::optional<std::string> {
    auto it = values.find(name);
    if (it == values.end()) return std::nullopt;
    return it->second;
  };
}

const std::vector<std::string> kLocalFlags = {
    "--name=stead-1", "--data-dir=/d", "--wal-dir=/w",
    "--peers=stead-0=127.0.0.1:2480,stead-1=127.0.0.1:2490,stead-2=127.0.0.1:2500"};

TEST(ParseHostPort, AcceptsHostsAndRejectsBadPorts) {
  const struct {
    const char* name;
    const char* input;
    bool ok;
    HostPort want;
  } cases[] = {
      {"ipv4", "127.0.0.1:2479", true, {"127.0.0.1", 2479}},
      {"name", "stead-0.stead-peers:2480", true, {"stead-0.stead-peers", 2480}},
      {"default host", ":2481", true, {"0.0.0.0", 2481}},
      {"ipv6", "[::1]:2479", true, {"::1", 2479}},
      {"no port", "localhost", false, {}},
      {"port zero", "localhost:0", false, {}},
      {"port too big", "localhost:70000", false, {}},
      {"port not a number", "localhost:http", false, {}},
      {"unbalanced bracket", "[::1:2479", false, {}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    absl::StatusOr<HostPort> parsed = ParseHostPort(c.input, "--client-addr");
    if (!c.ok) {
      EXPECT_THAT(parsed, StatusIs(absl::StatusCode::kInvalidArgument, "--client-addr"));
      continue;
    }
    ASSERT_OK(parsed);
    EXPECT_EQ(*parsed, c.want);
  }
}

TEST(ParseMemberName, SplitsSetAndOrdinal) {
  ASSERT_OK_AND_ASSIGN(MemberName member, ParseMemberName("my-db-12"));
  EXPECT_EQ(member.set, "my-db");
  EXPECT_EQ(member.ordinal, 12);
  for (const char* bad : {"stead", "stead-", "-3", "stead-x", "stead--1", "stead-01", "Stead-0"}) {
    SCOPED_TRACE(bad);
    EXPECT_THAT(ParseMemberName(bad), StatusIs(absl::StatusCode::kInvalidArgument, "<statefulset>-<ordinal>"));
  }
}

TEST(ParsePeerList, ParsesEntriesAndRejectsDuplicatesAndGarbage) {
  ASSERT_OK_AND_ASSIGN(std::vector<PeerSpec> peers,
                       ParsePeerList("stead-0=127.0.0.1:2480, stead-1=localhost:2490"));
  ASSERT_EQ(peers.size(), 2u);
  EXPECT_EQ(peers[1], (PeerSpec{"stead-1", {"localhost", 2490}}));
  EXPECT_THAT(ParsePeerList("stead-0=a:1,stead-0=b:2"),
              StatusIs(absl::StatusCode::kInvalidArgument, "listed twice"));
  EXPECT_THAT(ParsePeerList("stead-0=a:1,stead-1=a:1"),
              StatusIs(absl::StatusCode::kInvalidArgument, "stead-0 and stead-1 have the same address a:1"));
  EXPECT_THAT(ParsePeerList("stead-0"), StatusIs(absl::StatusCode::kInvalidArgument, "name=host:port"));
  EXPECT_THAT(ParsePeerList("stead-0=:2480"), StatusIs(absl::StatusCode::kInvalidArgument, "no host"));
  EXPECT_THAT(ParsePeerList(""), StatusIs(absl::StatusCode::kInvalidArgument, "empty"));
}

TEST(ParseServerCommandLine, LocalClusterWithExplicitPeers) {
  ASSERT_OK_AND_ASSIGN(ParsedCommandLine parsed, ParseServerCommandLine(kLocalFlags, Env({})));
  const ServerConfig& config = parsed.config;
  EXPECT_EQ(config.name, "stead-1");
  EXPECT_EQ(config.client_addr, (HostPort{"0.0.0.0", 2479}));
  EXPECT_EQ(config.peers.size(), 3u);
  EXPECT_EQ(config.advertise_host, "127.0.0.1") << "defaults to the member's own peer host";
  EXPECT_EQ(config.PeerAddressOf({"stead", 2}), (HostPort{"127.0.0.1", 2500}));
}

TEST(ParseServerCommandLine, StatefulSetIdentityFromTheDownwardApi) {
  ASSERT_OK_AND_ASSIGN(
      ParsedCommandLine parsed,
      ParseServerCommandLine({"--peer-service=stead-peers", "--data-dir", "/var/lib/stead/data",
                              "--wal-dir", "/var/lib/stead/wal"},
                             Env({{"POD_NAME", "stead-2"}, {"POD_NAMESPACE", "prod"}})));
  const ServerConfig& config = parsed.config;
  EXPECT_EQ(config.name, "stead-2");
  EXPECT_EQ(config.namespace_name, "prod");
  EXPECT_EQ(config.advertise_host, "stead-2.stead-peers.prod.svc.cluster.local");
  EXPECT_EQ(config.PeerAddressOf({"stead", 0}).ToString(),
            "stead-0.stead-peers.prod.svc.cluster.local:2480");
}

TEST(ParseServerCommandLine, FlagsOverrideEnvironmentWhichOverridesDefaults) {
  std::vector<std::string> args = kLocalFlags;
  args.push_back("--log-level=debug");
  args.push_back("--watch-history-age=2h");
  args.push_back("--promote-learners=manual");
  args.push_back("--snapshot-send-rate=20");
  args.push_back("--memory-limit=256Mi");
  args.push_back("--max-response-bytes=3Mi");
  args.push_back("--max-client-connections=300");
  args.push_back("--client-read-timeout=2s");
  args.push_back("--io-threads=3");
  ASSERT_OK_AND_ASSIGN(
      ParsedCommandLine parsed,
      ParseServerCommandLine(args, Env({{"STEAD_LOG_LEVEL", "error"},
                                        {"STEAD_TICK_INTERVAL", "50ms"},
                                        {"STEAD_CLIENT_IDLE_TIMEOUT", "90s"},
                                        {"POD_NAME", "stead-0"}})));
  EXPECT_EQ(parsed.config.log_level, LogLevel::kDebug);
  EXPECT_EQ(parsed.config.tick_interval, absl::Milliseconds(50));
  EXPECT_EQ(parsed.config.name, "stead-1") << "--name beats POD_NAME";
  EXPECT_EQ(parsed.config.watch_history_age, absl::Hours(2));
  EXPECT_EQ(parsed.config.watch_history_revisions, 100000);
  EXPECT_FALSE(parsed.config.auto_promote_learners);
  EXPECT_EQ(parsed.config.snapshot_send_mb_per_second, 20);
  EXPECT_EQ(parsed.config.snapshot_entries, 50000);
  EXPECT_EQ(parsed.config.memory_limit_bytes, uint64_t{256} << 20);
  EXPECT_EQ(parsed.config.max_response_bytes, size_t{3} << 20);
  EXPECT_EQ(parsed.config.max_client_connections, 300u);
  EXPECT_EQ(parsed.config.client_idle_timeout, absl::Seconds(90));
  EXPECT_EQ(parsed.config.client_read_timeout, absl::Seconds(2));
  EXPECT_EQ(parsed.config.io_threads, 3);
  // In Kubernetes the limit arrives in bytes, from resourceFieldRef limits.memory.
  std::vector<std::string> plain = kLocalFlags;
  ASSERT_OK_AND_ASSIGN(parsed,
                       ParseServerCommandLine(plain, Env({{"STEAD_MEMORY_LIMIT", "536870912"},
                                                          {"STEAD_MAX_RESPONSE_BYTES", "65536"}})));
  EXPECT_EQ(parsed.config.memory_limit_bytes, uint64_t{512} << 20);
  EXPECT_EQ(parsed.config.max_response_bytes, 65536u);
  ASSERT_OK_AND_ASSIGN(parsed, ParseServerCommandLine(plain, Env({})));
  EXPECT_EQ(parsed.config.max_response_bytes, size_t{4} << 20) << "the default";
  EXPECT_EQ(parsed.config.io_threads, 0) << "the default: from the CPUs";
}

TEST(ParseServerCommandLine, EachMistakeGetsItsOwnMessage) {
  auto with = [](std::vector<std::string> extra) {
    std::vector<std::string> args = kLocalFlags;
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
  };
  const struct {
    const char* name;
    std::vector<std::string> args;
    std::map<std::string, std::string> env;
    const char* message;
  } cases[] = {
      {"unknown flag", with({"--data-dri=/x"}), {}, "unknown flag --data-dri"},
      {"positional", with({"extra"}), {}, "unexpected argument 'extra'"},
      {"missing value", with({"--log-level"}), {}, "--log-level needs a value"},
      {"given twice", with({"--name=stead-2"}), {}, "--name given twice"},
      {"bad number", with({"--initial-cluster-size=three"}), {}, "--initial-cluster-size"},
      {"bad env value", kLocalFlags, {{"STEAD_ELECTION_TICKS", "-4"}}, "STEAD_ELECTION_TICKS"},
      {"bad duration", with({"--shutdown-timeout=soon"}), {}, "such as 100ms or 30s"},
      {"bad level", with({"--log-level=loud"}), {}, "use debug, info, warning or error"},
      {"no history", with({"--watch-history-revisions=0"}), {}, "--watch-history-revisions"},
      {"bad history age", with({"--watch-history-age=-1s"}), {}, "--watch-history-age"},
      {"no compaction interval", with({"--snapshot-entries=0"}), {}, "--snapshot-entries"},
      {"bad send rate", with({"--snapshot-send-rate=fast"}), {}, "--snapshot-send-rate"},
      {"bad memory limit", with({"--memory-limit=2GB"}), {}, "such as 268435456 or 256Mi"},
      {"tiny memory limit", with({"--memory-limit=16Mi"}), {}, "below 64Mi"},
      {"bad response bytes", with({"--max-response-bytes=4MB"}), {}, "such as 268435456"},
      {"tiny response bytes", with({"--max-response-bytes=100"}), {}, "outside 1024"},
      {"huge response bytes", with({"--max-response-bytes=64Mi"}), {}, "(32Mi)"},
      {"no client connections", with({"--max-client-connections=0"}), {},
       "--max-client-connections: '0' is not a positive whole number"},
      {"bad idle timeout", with({"--client-idle-timeout=never"}), {}, "--client-idle-timeout"},
      {"bad read timeout", with({"--client-read-timeout=0s"}), {}, "--client-read-timeout"},
      {"no io threads", with({"--io-threads=0"}), {}, "--io-threads: '0' is not a positive"},
      {"too many io threads", with({"--io-threads=65"}), {}, "--io-threads: '65' is above 64"},
      {"bad promotion mode", with({"--promote-learners=never"}), {}, "is not auto or manual"},
      {"no name", {"--data-dir=/d", "--wal-dir=/w", "--peer-service=s"}, {}, "--name"},
      {"bad name", {"--name=db", "--data-dir=/d", "--wal-dir=/w", "--peer-service=s"}, {},
       "<statefulset>-<ordinal>"},
      {"no data dir", {"--name=stead-0", "--wal-dir=/w", "--peer-service=s"}, {}, "--data-dir"},
      {"same dirs", {"--name=stead-0", "--data-dir=/x", "--wal-dir=/x", "--peer-service=s"}, {},
       "separate directories"},
      {"no peers", {"--name=stead-0", "--data-dir=/d", "--wal-dir=/w"}, {}, "give --peers"},
      {"both peer modes", with({"--peer-service=s"}), {}, "exclude each other"},
      {"not in peers",
       {"--name=stead-5", "--data-dir=/d", "--wal-dir=/w", "--peers=stead-0=h:1",
        "--initial-cluster-size=6"},
       {},
       "--initial-cluster-size 6 but --peers lists only 1"},
      {"initial member missing", {"--name=stead-1", "--data-dir=/d", "--wal-dir=/w",
                                  "--peers=stead-0=h:1,stead-2=h:3", "--initial-cluster-size=2"},
       {}, "missing from --peers"},
      {"heartbeat too slow", with({"--heartbeat-ticks=10"}), {}, "must be below --election-ticks"},
      {"empty identity token", with({"--new-cluster-identity="}), {},
       "--new-cluster-identity is empty"},
      {"identity token with a slash", with({"--new-cluster-identity=clone/1"}), {},
       "holds '/'"},
      {"identity token with a space", kLocalFlags, {{"STEAD_NEW_CLUSTER_IDENTITY", "clone 1"}},
       "STEAD_NEW_CLUSTER_IDENTITY: 'clone 1' holds ' '"},
      {"identity token too long", with({"--new-cluster-identity=" + std::string(64, 'a')}), {},
       "64 characters, more than 63"},
      {"identity token and restore",
       with({"--new-cluster-identity=clone1", "--restore-from=/b.snap"}), {},
       "--new-cluster-identity excludes --restore-from"},
      {"identity token and forced cluster",
       with({"--new-cluster-identity=clone1", "--force-new-cluster=stead-1"}), {},
       "--new-cluster-identity excludes --force-new-cluster"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_THAT(ParseServerCommandLine(c.args, Env(c.env)),
                StatusIs(absl::StatusCode::kInvalidArgument, c.message));
  }
}

// Goal: a valid identity token is taken as given, from the flag or the environment,
// up to 63 characters of [A-Za-z0-9._-]; without one the feature is off.
TEST(ParseServerCommandLine, NewClusterIdentityToken) {
  const struct {
    const char* name;
    std::vector<std::string> extra;
    std::map<std::string, std::string> env;
    std::string want;
  } cases[] = {
      {"off by default", {}, {}, ""},
      {"flag", {"--new-cluster-identity=clone-2026.12_04"}, {}, "clone-2026.12_04"},
      {"environment", {}, {{"STEAD_NEW_CLUSTER_IDENTITY", "Clone1"}}, "Clone1"},
      {"flag beats environment", {"--new-cluster-identity", "a"},
       {{"STEAD_NEW_CLUSTER_IDENTITY", "b"}}, "a"},
      {"63 characters", {"--new-cluster-identity=" + std::string(63, 'x')}, {},
       std::string(63, 'x')},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    std::vector<std::string> args = kLocalFlags;
    args.insert(args.end(), c.extra.begin(), c.extra.end());
    ASSERT_OK_AND_ASSIGN(const ParsedCommandLine parsed, ParseServerCommandLine(args, Env(c.env)));
    EXPECT_EQ(parsed.config.new_cluster_identity, c.want);
  }
}

TEST(ParseServerCommandLine, HelpWinsOverEverythingElse) {
  ASSERT_OK_AND_ASSIGN(ParsedCommandLine parsed,
                       ParseServerCommandLine({"--bogus", "--help"}, Env({})));
  EXPECT_TRUE(parsed.help);
  ASSERT_OK_AND_ASSIGN(parsed, ParseServerCommandLine({"--version"}, Env({})));
  EXPECT_TRUE(parsed.version);
}

TEST(ServerUsage, DocumentsEveryFlagWithItsDefaultAndVariable) {
  const std::string usage = ServerUsage();
  for (const char* flag : {"--name", "--data-dir", "--wal-dir", "--client-addr", "--peer-addr",
                           "--http-addr", "--advertise-host", "--peers", "--peer-service",
                           "--namespace", "--cluster-domain", "--initial-cluster-size",
                           "--restore-from", "--log-level", "--shutdown-timeout",
                           "--watch-history-revisions", "--watch-history-age",
                           "--snapshot-entries", "--snapshot-send-rate",
                           "--promote-learners", "--new-cluster-identity", "--memory-limit",
                           "--max-response-bytes", "--max-client-connections",
                           "--client-idle-timeout", "--client-read-timeout",
                           "--io-threads",
                           "--client-cert-file", "--client-key-file", "--client-trusted-ca-file",
                           "--client-cert-auth", "--peer-cert-file", "--peer-key-file",
                           "--peer-trusted-ca-file", "--peer-cert-auth", "--http-cert-file",
                           "--http-key-file", "--http-trusted-ca-file", "--http-cert-auth"}) {
    EXPECT_THAT(usage, HasSubstr(flag));
  }
  EXPECT_THAT(usage, HasSubstr("default: 0.0.0.0:2479; env: STEAD_CLIENT_ADDR"));
  EXPECT_THAT(usage, HasSubstr("env: STEAD_INITIAL_CLUSTER_SIZE"));
  EXPECT_THAT(usage, HasSubstr("env: STEAD_PEER_TRUSTED_CA_FILE"));
}

// Certificate files for the TLS flags: a good pair, an expired one, and a key of
// another certificate.
struct TlsFiles {
  TlsFiles() : ca("config test CA") {
    const std::string dir = testing::MakeTempDir();
    good = testing::WritePemFiles(dir, "good", ca.Issue({.common_name = "stead-1",
                                                        .ip_addresses = {"127.0.0.1"}}),
                                  ca);
    expired = testing::WritePemFiles(
        dir, "expired",
        ca.Issue({.not_before = absl::Now() - absl::Hours(48),
                  .not_after = absl::Now() - absl::Hours(24)}),
        ca);
    other = testing::WritePemFiles(dir, "other", ca.Issue({}), ca);
  }
  testing::TestCertificateAuthority ca;
  testing::TestPemFiles good, expired, other;
};

TEST(ParseServerCommandLine, TlsFlagsOfEachPortFromFlagsAndEnvironment) {
  TlsFiles files;
  std::vector<std::string> args = kLocalFlags;
  for (const std::string& flag :
       {"--client-cert-file=" + files.good.cert_file, "--client-key-file=" + files.good.key_file,
        "--client-trusted-ca-file=" + files.good.ca_file, std::string("--client-cert-auth"),
        "--peer-cert-file=" + files.good.cert_file, "--peer-key-file=" + files.good.key_file,
        "--peer-trusted-ca-file=" + files.good.ca_file}) {
    args.push_back(flag);
  }
  ASSERT_OK_AND_ASSIGN(ParsedCommandLine parsed,
                       ParseServerCommandLine(args, Env({{"STEAD_HTTP_CERT_FILE", files.good.cert_file},
                                                         {"STEAD_HTTP_KEY_FILE", files.good.key_file}})));
  const ServerConfig& config = parsed.config;
  EXPECT_TRUE(TlsEnabled(config.client_tls));
  EXPECT_EQ(config.client_tls.cert_file, files.good.cert_file);
  EXPECT_EQ(config.client_tls.trusted_ca_file, files.good.ca_file);
  EXPECT_TRUE(config.client_tls.require_peer_certificate) << "--client-cert-auth alone is true";
  EXPECT_EQ(config.client_tls.names.cert_file, "--client-cert-file");
  EXPECT_TRUE(TlsEnabled(config.peer_tls));
  EXPECT_TRUE(config.peer_tls.require_peer_certificate) << "the peer port's TLS is mutual";
  EXPECT_EQ(config.peer_tls.names.key_file, "--peer-key-file");
  EXPECT_TRUE(TlsEnabled(config.http_tls));
  EXPECT_EQ(config.http_tls.key_file, files.good.key_file);
  EXPECT_FALSE(config.http_tls.require_peer_certificate);

  // A switch is also given a value, and from the environment.
  args = kLocalFlags;
  args.push_back("--client-cert-file=" + files.good.cert_file);
  args.push_back("--client-key-file=" + files.good.key_file);
  args.push_back("--client-cert-auth=false");
  ASSERT_OK_AND_ASSIGN(parsed, ParseServerCommandLine(args, Env({})));
  EXPECT_FALSE(parsed.config.client_tls.require_peer_certificate);
  args.pop_back();
  ASSERT_OK_AND_ASSIGN(parsed,
                       ParseServerCommandLine(args, Env({{"STEAD_CLIENT_CERT_AUTH", "true"},
                                                         {"STEAD_CLIENT_TRUSTED_CA_FILE",
                                                          files.good.ca_file}})));
  EXPECT_TRUE(parsed.config.client_tls.require_peer_certificate);

  // --tls-transition lets each port with TLS, and only those, take plain connections.
  EXPECT_FALSE(parsed.config.client_tls.allow_plain);
  args.push_back("--tls-transition");
  ASSERT_OK_AND_ASSIGN(parsed, ParseServerCommandLine(args, Env({})));
  EXPECT_TRUE(parsed.config.tls_transition);
  EXPECT_TRUE(parsed.config.client_tls.allow_plain);
  EXPECT_FALSE(parsed.config.peer_tls.allow_plain);
  EXPECT_FALSE(parsed.config.http_tls.allow_plain);

  // Without any of them every port is plain.
  ASSERT_OK_AND_ASSIGN(parsed, ParseServerCommandLine(kLocalFlags, Env({})));
  EXPECT_FALSE(TlsEnabled(parsed.config.client_tls));
  EXPECT_FALSE(TlsEnabled(parsed.config.peer_tls));
  EXPECT_FALSE(TlsEnabled(parsed.config.http_tls));
}

TEST(ParseServerCommandLine, BadTlsSettingsNameTheFlag) {
  TlsFiles files;
  const struct {
    const char* name;
    std::vector<std::string> flags;
    absl::StatusCode code;
    std::string message;
  } cases[] = {
      {"missing file",
       {"--client-cert-file=/nonexistent/tls.crt", "--client-key-file=" + files.good.key_file},
       absl::StatusCode::kInvalidArgument, "--client-cert-file /nonexistent/tls.crt"},
      {"key of another certificate",
       {"--peer-cert-file=" + files.good.cert_file, "--peer-key-file=" + files.other.key_file,
        "--peer-trusted-ca-file=" + files.good.ca_file},
       absl::StatusCode::kInvalidArgument, "--peer-key-file"},
      {"expired certificate",
       {"--http-cert-file=" + files.expired.cert_file, "--http-key-file=" + files.expired.key_file},
       absl::StatusCode::kFailedPrecondition, "--http-cert-file"},
      {"key without certificate", {"--client-key-file=" + files.good.key_file},
       absl::StatusCode::kInvalidArgument, "--client-cert-file and --client-key-file"},
      {"cert auth without CA",
       {"--client-cert-file=" + files.good.cert_file, "--client-key-file=" + files.good.key_file,
        "--client-cert-auth"},
       absl::StatusCode::kInvalidArgument, "--client-cert-auth needs --client-trusted-ca-file"},
      {"peer TLS without CA",
       {"--peer-cert-file=" + files.good.cert_file, "--peer-key-file=" + files.good.key_file},
       absl::StatusCode::kInvalidArgument, "--peer-trusted-ca-file is required"},
      {"peer TLS not mutual",
       {"--peer-cert-file=" + files.good.cert_file, "--peer-key-file=" + files.good.key_file,
        "--peer-trusted-ca-file=" + files.good.ca_file, "--peer-cert-auth=false"},
       absl::StatusCode::kInvalidArgument, "--peer-cert-auth=false"},
      {"transition without TLS", {"--tls-transition"}, absl::StatusCode::kInvalidArgument,
       "--tls-transition needs TLS on a port"},
      {"not a boolean", {"--client-cert-auth=maybe"}, absl::StatusCode::kInvalidArgument,
       "--client-cert-auth: 'maybe' is not true or false"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    std::vector<std::string> args = kLocalFlags;
    args.insert(args.end(), c.flags.begin(), c.flags.end());
    EXPECT_THAT(ParseServerCommandLine(args, Env({})), StatusIs(c.code, c.message));
  }
}

}  // namespace
}  // namespace stead::server
