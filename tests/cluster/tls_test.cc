// TLS on real `stead` processes: three members with mutual TLS between them and TLS
// with client certificates on their client ports (HTTP stays plain for the harness's
// probes; the HTTPS port is tested in http_server_test and node_test). Writes and
// reads through stead::Client over TLS; a rotation of every member's certificate
// files under a write load loses no request and reaches new connections; bad clients
// are refused while the members go on serving. Refusals between members (a name that
// does not match, a certificate of the right CA in another cluster) are covered in
// server/peer_transport_test.cc.
#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gtest/gtest.h"
#include "stead/client.h"
#include "tests/testing/process_cluster.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/subprocess.h"
#include "tests/testing/test_certificates.h"
#include "tests/testing/tls_test_client.h"

namespace stead {
namespace {

using testing::ProcessCluster;
using testing::TestCertificateAuthority;
using testing::TestPemFiles;

// Runs steadctl with `args`, `env` added to this process's environment.
testing::CompletedRun Steadctl(const std::vector<std::string>& args,
                               const std::vector<std::string>& env) {
  std::vector<std::string> argv = {STEADCTL_BINARY};
  argv.insert(argv.end(), args.begin(), args.end());
  return testing::RunToCompletion({.argv = argv, .env = env}, testing::MakeTempDir());
}

class TlsClusterTest : public ::testing::Test {
 protected:
  TlsClusterTest()
      : cluster_(3, testing::ClusterTestRoot("tls"), STEAD_BINARY),
        ca_("cluster CA"),
        dir_(testing::MakeTempDir()) {
    for (int i = 0; i < 3; ++i) {
      member_files_.push_back(testing::WritePemFiles(dir_, cluster_.Name(i), Issue(i), ca_));
    }
    app_ = testing::WritePemFiles(dir_, "app", ca_.Issue({.common_name = "app"}), ca_);
  }

  testing::TestCertificate Issue(int ordinal) {
    return ca_.Issue({.common_name = cluster_.Name(ordinal), .ip_addresses = {"127.0.0.1"}});
  }

  void StartMember(int ordinal, bool transition = false) {
    const TestPemFiles& files = member_files_[ordinal];
    std::vector<std::string> flags = {"--client-cert-file=" + files.cert_file,
                                      "--client-key-file=" + files.key_file,
                                      "--client-trusted-ca-file=" + files.ca_file,
                                      "--client-cert-auth",
                                      "--peer-cert-file=" + files.cert_file,
                                      "--peer-key-file=" + files.key_file,
                                      "--peer-trusted-ca-file=" + files.ca_file};
    if (transition) flags.push_back("--tls-transition");
    cluster_.set_extra_flags(std::move(flags));
    cluster_.Start(ordinal);
  }

  ClientOptions TlsClientOptions() const {
    ClientOptions options;
    options.endpoints = cluster_.ClientEndpoints(3);
    options.tls = {.enabled = true,
                   .trusted_ca_file = app_.ca_file,
                   .cert_file = app_.cert_file,
                   .key_file = app_.key_file};
    return options;
  }

  ProcessCluster cluster_;
  TestCertificateAuthority ca_;
  std::string dir_;
  std::vector<TestPemFiles> member_files_;
  TestPemFiles app_;
};

TEST_F(TlsClusterTest, ServesOverTlsRotatesUnderLoadAndRefusesBadClients) {
  for (int i = 0; i < 3; ++i) StartMember(i);
  ASSERT_TRUE(cluster_.WaitReady({0, 1, 2}));
  ASSERT_GE(cluster_.WaitForLeader({0, 1, 2}), 0);

  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Client> client, Client::Create(TlsClientOptions()));
  ASSERT_OK(client->Put("greeting", "hello"));
  ASSERT_OK_AND_ASSIGN(std::optional<std::string> value, client->Get("greeting"));
  EXPECT_EQ(value, "hello");

  // A few writers for a few seconds; every member's files are rewritten meanwhile.
  std::atomic<bool> stop{false};
  std::atomic<int> failures{0};
  std::atomic<int> successes{0};
  std::vector<std::thread> writers;
  for (int w = 0; w < 3; ++w) {
    writers.emplace_back([&, w] {
      for (int i = 0; i < 100000 && !stop; ++i) {
        const absl::Status put = client->Put(absl::StrCat("w", w, "-", i), "v");
        (put.ok() ? successes : failures).fetch_add(1);
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::seconds(1));
  std::vector<uint64_t> renewed_serials;
  for (int i = 0; i < 3; ++i) {
    const testing::TestCertificate renewed = Issue(i);
    testing::ReplaceFile(member_files_[i].cert_file, renewed.certificate_pem);
    testing::ReplaceFile(member_files_[i].key_file, renewed.private_key_pem);
    renewed_serials.push_back(renewed.serial);
  }
  std::this_thread::sleep_for(std::chrono::seconds(3));
  stop = true;
  for (std::thread& writer : writers) writer.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_GT(successes.load(), 0);

  // New connections see each member's new certificate (the providers look at most
  // once a second).
  const wire::TlsOptions app_tls = {
      .cert_file = app_.cert_file, .key_file = app_.key_file, .trusted_ca_file = app_.ca_file};
  for (int i = 0; i < 3; ++i) {
    SCOPED_TRACE(cluster_.Name(i));
    EXPECT_TRUE(testing::Eventually([&] {
      absl::StatusOr<std::unique_ptr<testing::TlsTestClient>> probe =
          testing::TlsTestClient::Connect(cluster_.client_port(i), app_tls);
      return probe.ok() && (*probe)->served_serial() == renewed_serials[i];
    }, absl::Seconds(10)));
  }
  // The members talk to each other with the new certificates too: a write commits.
  ASSERT_OK(client->Put("after-rotation", "yes"));

  // Bad clients, each refused; the members serve on.
  {
    TestCertificateAuthority stranger_ca("another CA");
    const TestPemFiles stranger = testing::WritePemFiles(
        dir_, "stranger", stranger_ca.Issue({.common_name = "app"}), stranger_ca);
    const TestPemFiles expired = testing::WritePemFiles(
        dir_, "expired",
        ca_.Issue({.common_name = "app", .not_before = absl::Now() - absl::Hours(48),
                   .not_after = absl::Now() - absl::Hours(24)}),
        ca_);
    for (const TestPemFiles& bad : {stranger, expired}) {
      SCOPED_TRACE(bad.cert_file);
      absl::StatusOr<std::unique_ptr<testing::TlsTestClient>> probe =
          testing::TlsTestClient::Connect(cluster_.client_port(0),
                                          {.cert_file = bad.cert_file,
                                           .key_file = bad.key_file,
                                           .trusted_ca_file = app_.ca_file});
      if (probe.ok()) {
        ASSERT_OK((*probe)->Write("x"));
        EXPECT_FALSE((*probe)->Read().ok()) << "refused on the first read under TLS 1.3";
      }
    }
    // Plain bytes on a TLS client port: closed.
    ClientOptions plain = TlsClientOptions();
    plain.tls = {};
    plain.endpoints = {cluster_.ClientAddress(0)};
    plain.default_timeout = absl::Seconds(2);
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Client> plain_client, Client::Create(plain));
    EXPECT_FALSE(plain_client->Put("plain", "no").ok());
  }
  ASSERT_OK(client->Put("still", "serving"));
  ASSERT_OK_AND_ASSIGN(value, client->Get("still"));
  EXPECT_EQ(value, "serving");
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(cluster_.Running(i));

  // steadctl speaks TLS with its flags, or with the environment alone (as a preStop
  // hook or a backup job in a pod does), and fails without them.
  const std::string endpoints =
      "STEAD_ENDPOINTS=" + absl::StrJoin(cluster_.ClientEndpoints(3), ",");
  const testing::CompletedRun put = Steadctl({"--cacert=" + app_.ca_file, "--cert=" + app_.cert_file,
                               "--key=" + app_.key_file, "put", "ctl", "over-tls"},
                              {endpoints});
  EXPECT_EQ(put.exit_code, 0) << put.err;
  const testing::CompletedRun get = Steadctl({"get", "ctl"}, {endpoints, "STEAD_CACERT=" + app_.ca_file,
                                               "STEAD_CERT=" + app_.cert_file,
                                               "STEAD_KEY=" + app_.key_file});
  EXPECT_EQ(get.exit_code, 0) << get.err;
  EXPECT_NE(get.out.find("over-tls"), std::string::npos) << get.out;
  const testing::CompletedRun plain_get = Steadctl({"--timeout=2s", "get", "ctl"}, {endpoints});
  EXPECT_NE(plain_get.exit_code, 0) << plain_get.out;
  const testing::CompletedRun missing = Steadctl({"get", "ctl"}, {endpoints, "STEAD_CACERT=/nonexistent/ca.crt"});
  EXPECT_NE(missing.exit_code, 0);
  EXPECT_NE(missing.err.find("/nonexistent/ca.crt"), std::string::npos) << missing.err;
}

// Writers that put until stopped, each keeping the keys the cluster acknowledged.
class Writers {
 public:
  Writers(Client& client, const std::string& prefix, int count) {
    acknowledged_.resize(count);
    for (int w = 0; w < count; ++w) {
      threads_.emplace_back([this, &client, prefix, w] {
        for (int i = 0; i < 1000000 && !stop_; ++i) {
          const std::string key = absl::StrCat(prefix, w, "-", i);
          const absl::Status put = client.Put(key, "v");
          if (put.ok()) {
            acknowledged_[w].push_back(key);
            ++acknowledged_count_;
          } else if (++failures_ <= 5) {
            ADD_FAILURE() << key << ": " << put;
          }
        }
      });
    }
  }
  ~Writers() { Stop(); }

  // Joins the writers; the keys they got acknowledged.
  std::vector<std::string> Stop() {
    stop_ = true;
    for (std::thread& thread : threads_) {
      if (thread.joinable()) thread.join();
    }
    std::vector<std::string> keys;
    for (const std::vector<std::string>& own : acknowledged_) {
      keys.insert(keys.end(), own.begin(), own.end());
    }
    return keys;
  }
  int acknowledged() const { return acknowledged_count_; }
  int failures() const { return failures_; }

 private:
  std::atomic<bool> stop_{false};
  std::atomic<int> acknowledged_count_{0};
  std::atomic<int> failures_{0};
  std::vector<std::vector<std::string>> acknowledged_;
  std::vector<std::thread> threads_;
};

// Switching a running cluster from plain to TLS by two rolling restarts, as
// docs/security.md describes: every member restarted with its certificates and
// --tls-transition; the clients moved to TLS; every member restarted without it.
// Writes go on throughout (plain, then over TLS), grow during every restart, none
// fails, and every acknowledged one is read back from every member at the end.
TEST_F(TlsClusterTest, RollingSwitchFromPlainToTlsKeepsServing) {
  for (int i = 0; i < 3; ++i) cluster_.Start(i);
  ASSERT_TRUE(cluster_.WaitReady({0, 1, 2}));
  ASSERT_GE(cluster_.WaitForLeader({0, 1, 2}), 0);
  ClientOptions plain_options;
  plain_options.endpoints = cluster_.ClientEndpoints(3);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Client> plain_client, Client::Create(plain_options));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Client> tls_client, Client::Create(TlsClientOptions()));

  // Restarts every member with `start`; writes must be acknowledged while each is down
  // and back.
  auto roll = [&](const Writers& writers, const std::function<void(int)>& start) {
    for (int i = 2; i >= 0; --i) {
      SCOPED_TRACE(absl::StrCat("restarting ", cluster_.Name(i)));
      const std::optional<testing::ExitStatus> exit = cluster_.Terminate(i);
      ASSERT_TRUE(exit.has_value());
      EXPECT_EQ(exit->exit_code, 0);
      start(i);
      ASSERT_TRUE(cluster_.WaitReady({i}));
      const int before = writers.acknowledged();
      EXPECT_TRUE(testing::Eventually([&] { return writers.acknowledged() > before + 20; },
                                      absl::Seconds(10)));
    }
  };

  // Step 1: plain clients write while the members move to TLS with --tls-transition.
  Writers plain_writers(*plain_client, "plain", 3);
  roll(plain_writers, [&](int i) { StartMember(i, /*transition=*/true); });
  ASSERT_GE(cluster_.WaitForLeader({0, 1, 2}), 0);
  // In transition a member serves TLS clients and plain ones alike.
  Writers tls_writers(*tls_client, "tls", 3);
  EXPECT_TRUE(testing::Eventually([&] { return tls_writers.acknowledged() > 20; },
                                  absl::Seconds(10)));
  std::vector<std::string> acknowledged = plain_writers.Stop();
  EXPECT_EQ(plain_writers.failures(), 0);

  // Step 2: with every client on TLS, the members drop --tls-transition one by one.
  roll(tls_writers, [&](int i) { StartMember(i); });
  const std::vector<std::string> tls_acknowledged = tls_writers.Stop();
  EXPECT_EQ(tls_writers.failures(), 0);
  acknowledged.insert(acknowledged.end(), tls_acknowledged.begin(), tls_acknowledged.end());

  // TLS only now: a plain client is refused, and the members talk TLS among themselves.
  plain_options.endpoints = {cluster_.ClientAddress(0)};
  plain_options.default_timeout = absl::Seconds(2);
  ASSERT_OK_AND_ASSIGN(plain_client, Client::Create(plain_options));
  EXPECT_FALSE(plain_client->Put("plain-after", "no").ok());
  ASSERT_OK(tls_client->Put("tls-after", "yes"));

  // Every member at the same content hash, with every acknowledged write.
  EXPECT_TRUE(testing::Eventually([&] {
    std::optional<ContentHash> first;
    for (const std::string& endpoint : cluster_.ClientEndpoints(3)) {
      absl::StatusOr<ContentHash> hash = tls_client->Hash(endpoint);
      if (!hash.ok()) return false;
      if (!first) first = *hash;
      if (hash->applied_index != first->applied_index || hash->hash != first->hash) return false;
    }
    return true;
  }, absl::Seconds(20)));
  for (int i = 0; i < 3; ++i) {
    SCOPED_TRACE(cluster_.Name(i));
    ClientOptions one = TlsClientOptions();
    one.endpoints = {cluster_.ClientAddress(i)};
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Client> member, Client::Create(one));
    absl::flat_hash_set<std::string> keys;
    std::string begin = "\x01";
    for (int page = 0; page < 10000; ++page) {
      ASSERT_OK_AND_ASSIGN(RangeResult result,
                           member->Range(begin, {.range_end = std::string(1, '\0'),
                                                 .keys_only = true,
                                                 .serializable = true}));
      for (const KeyValue& kv : result.kvs) keys.insert(kv.key);
      if (!result.more) break;
      begin = result.next_key;
    }
    int missing = 0;
    for (const std::string& key : acknowledged) missing += keys.contains(key) ? 0 : 1;
    EXPECT_EQ(missing, 0) << "of " << acknowledged.size() << " acknowledged writes";
  }
}

// A member refuses to start on a bad certificate, naming the flag, with the exit
// code of a configuration error.
TEST_F(TlsClusterTest, ABadCertificateStopsTheStartNamingTheFlag) {
  cluster_.set_extra_flags({"--peer-cert-file=" + member_files_[0].cert_file,
                            "--peer-key-file=" + app_.key_file,
                            "--peer-trusted-ca-file=" + member_files_[0].ca_file});
  cluster_.Start(0);
  ASSERT_TRUE(testing::Eventually([&] { return cluster_.ExitStatusOf(0).has_value(); },
                                  absl::Seconds(10)));
  EXPECT_EQ(cluster_.ExitStatusOf(0)->exit_code, 2);
  EXPECT_NE(cluster_.Log(0).find("--peer-key-file"), std::string::npos) << cluster_.Log(0);
}

}  // namespace
}  // namespace stead
