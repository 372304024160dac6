// Authentication and permissions on real `stead` processes: a 3-member cluster with
// auth enabled runs a permission table (users x operations x keys -> allowed or
// denied), each request sent to the leader and to a follower (which forwards writes
// with the caller's identity, so the leader checks again), and every denied write
// changes nothing (read back as root). Also: a wrong password and an unknown user are
// refused alike, a watch on keys the user may not read is refused, a role revoked
// while a client's connection stays open takes effect on its next request and ends
// its watch at the next event, snapshot save and member remove need root; and with
// --client-cert-auth a certificate whose CN is `alice` gets alice's permissions.
#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "gtest/gtest.h"
#include "stead/client.h"
#include "tests/testing/kv_test_client.h"
#include "tests/testing/process_cluster.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_certificates.h"

namespace stead {
namespace {

using testing::ProcessCluster;
using testing::StatusIs;

constexpr absl::StatusCode kDenied = absl::StatusCode::kPermissionDenied;
constexpr absl::StatusCode kUnauthenticated = absl::StatusCode::kUnauthenticated;

std::unique_ptr<Client> Connect(std::vector<std::string> endpoints, const std::string& user = "",
                                const std::string& password = "", ClientTlsOptions tls = {}) {
  ClientOptions options;
  options.endpoints = std::move(endpoints);
  options.route_to_leader = false;  // a follower asked serves or forwards itself
  options.user = user;
  options.password = password;
  options.tls = std::move(tls);
  options.default_timeout = absl::Seconds(10);
  absl::StatusOr<std::unique_ptr<Client>> client = Client::Create(std::move(options));
  EXPECT_TRUE(client.ok()) << client.status();
  return client.ok() ? *std::move(client) : nullptr;
}

// One row of the permission table: an operation by a client, and whether it must pass.
struct Operation {
  std::string name;
  std::function<absl::Status(Client&)> run;
  // A write whose key must be unchanged when denied (empty: not a write of one key).
  std::string written_key;
};

std::vector<Operation> Operations() {
  auto txn = [](const std::string& compared, const std::string& written) {
    return [=](Client& c) {
      TxnRequest request;
      request.compare.push_back(Compare::Exists(compared));
      request.success.push_back(TxnOp::Put(written, "txn"));
      request.failure.push_back(TxnOp::Put(written, "txn"));
      return c.Txn(request).status();
    };
  };
  return {
      {"put app/1", [](Client& c) { return c.Put("app/1", "new"); }, "app/1"},
      {"get app/1", [](Client& c) { return c.Get("app/1").status(); }, ""},
      {"scan app/", [](Client& c) { return c.Scan("app/").status(); }, ""},
      {"get shared", [](Client& c) { return c.Get("shared").status(); }, ""},
      {"put shared", [](Client& c) { return c.Put("shared", "new"); }, "shared"},
      {"put other", [](Client& c) { return c.Put("other", "new"); }, "other"},
      {"get other", [](Client& c) { return c.Get("other").status(); }, ""},
      {"delete app/2", [](Client& c) { return c.Delete("app/2").status(); }, "app/2"},
      {"scan everything",
       [](Client& c) { return c.Range("a", {.range_end = std::string(1, '\0')}).status(); }, ""},
      {"txn shared -> app/3", txn("shared", "app/3"), "app/3"},
      {"txn shared -> other", txn("shared", "other"), "other"},
      {"txn other -> app/3", txn("other", "app/3"), "app/3"},
      {"member list", [](Client& c) { return c.MemberList().status(); }, ""},
      {"member remove", [](Client& c) { return c.MemberRemoveByName("no-such-member").status(); }, ""},
      {"user list", [](Client& c) { return c.UserList().status(); }, ""},
  };
}

// What each user may do: root everything; alice readwrite on app/ and read on shared;
// bob only read on shared; carol nothing.
bool Allowed(const std::string& user, const std::string& operation) {
  if (user == "root") return true;
  if (user == "bob") return operation == "get shared";
  if (user == "carol") return false;
  return operation == "put app/1" || operation == "get app/1" || operation == "scan app/" ||
         operation == "get shared" || operation == "delete app/2" ||
         operation == "txn shared -> app/3";
}

class AuthClusterTest : public ::testing::Test {
 protected:
  AuthClusterTest() : cluster_(3, testing::ClusterTestRoot("auth"), STEAD_BINARY) {}

  // Users, roles and the initial keys, made before auth is on (no user needed yet).
  void SetUpAuth(Client& admin) {
    ASSERT_OK(admin.Put("app/1", "old"));
    ASSERT_OK(admin.Put("app/2", "old"));
    ASSERT_OK(admin.Put("app/3", "old"));
    ASSERT_OK(admin.Put("shared", "old"));
    ASSERT_OK(admin.Put("other", "old"));
    ASSERT_OK(admin.UserAdd("root", "root-pw"));
    ASSERT_OK(admin.UserGrantRole("root", "root"));
    ASSERT_OK(admin.RoleAdd("app"));
    ASSERT_OK(admin.RoleGrantPermission(
        "app", {.type = Permission::Type::kReadWrite, .key = "app/", .range_end = PrefixEnd("app/")}));
    ASSERT_OK(admin.RoleAdd("reader"));
    ASSERT_OK(admin.RoleGrantPermission("reader", {.type = Permission::Type::kRead, .key = "shared"}));
    for (const char* user : {"alice", "bob", "carol"}) {
      ASSERT_OK(admin.UserAdd(user, absl::StrCat(user, "-pw")));
    }
    ASSERT_OK(admin.UserGrantRole("alice", "app"));
    ASSERT_OK(admin.UserGrantRole("alice", "reader"));
    ASSERT_OK(admin.UserGrantRole("bob", "reader"));
    ASSERT_OK(admin.AuthEnable());
  }

  std::string Value(Client& root, const std::string& key) {
    absl::StatusOr<std::optional<std::string>> value = root.Get(key);
    EXPECT_TRUE(value.ok()) << value.status();
    return value.ok() && value->has_value() ? **value : "<absent>";
  }

  ProcessCluster cluster_;
};

TEST_F(AuthClusterTest, PermissionTableOnLeaderAndFollowerAndRevocation) {
  const int leader = cluster_.StartAndWaitForLeader({0, 1, 2});
  ASSERT_GE(leader, 0);
  const int follower = (leader + 1) % 3;
  {
    std::unique_ptr<Client> admin = Connect(cluster_.ClientEndpoints(3));
    ASSERT_NO_FATAL_FAILURE(SetUpAuth(*admin));
    // Auth is on now: without a user, nothing is served.
    EXPECT_THAT(admin->Get("shared").status(), StatusIs(kUnauthenticated));
    EXPECT_THAT(admin->Put("shared", "x"), StatusIs(kUnauthenticated));
  }
  std::unique_ptr<Client> root = Connect(cluster_.ClientEndpoints(3), "root", "root-pw");
  ASSERT_OK_AND_ASSIGN(AuthStatus status, root->GetAuthStatus());
  EXPECT_TRUE(status.enabled);

  for (const std::string user : {"root", "alice", "bob", "carol"}) {
    for (const int member : {leader, follower}) {
      std::unique_ptr<Client> client =
          Connect({cluster_.ClientAddress(member)}, user, user + "-pw");
      for (const Operation& op : Operations()) {
        SCOPED_TRACE(absl::StrCat(user, " on ", member == leader ? "leader" : "follower", ": ", op.name));
        const std::string before = op.written_key.empty() ? "" : Value(*root, op.written_key);
        const absl::Status result = op.run(*client);
        if (Allowed(user, op.name)) {
          // member remove of an unknown member is NotFound once allowed.
          EXPECT_TRUE(result.ok() || absl::IsNotFound(result)) << result;
        } else {
          EXPECT_THAT(result, StatusIs(kDenied));
          if (!op.written_key.empty()) {
            EXPECT_EQ(Value(*root, op.written_key), before);
          }
        }
      }
    }
  }
  if (HasFailure()) return;

  // Wrong password and unknown user: the same refusal, which names neither.
  for (auto [user, password] : {std::pair<std::string, std::string>{"alice", "wrong"},
                                {"mallory", "whatever"}}) {
    std::unique_ptr<Client> client = Connect(cluster_.ClientEndpoints(3), user, password);
    const absl::Status refused = client->Get("shared").status();
    EXPECT_THAT(refused, StatusIs(kUnauthenticated));
    EXPECT_EQ(refused.message(), "authentication failed: unknown user, wrong password, or an "
                                 "invalid or expired token");
  }

  // Snapshot save needs root: a raw request with alice's token is refused at once.
  {
    testing::KvTestClient raw({cluster_.ClientAddress(follower)});
    pb::ClientRequest login;
    login.mutable_authenticate()->set_name("alice");
    login.mutable_authenticate()->set_password("alice-pw");
    ASSERT_OK_AND_ASSIGN(pb::ClientResponse token, raw.Call(login, absl::Seconds(5)));
    ASSERT_FALSE(token.has_error()) << token.error().message();
    pb::ClientRequest save;
    save.set_auth_token(token.authenticate().token());
    save.mutable_snapshot_save();
    ASSERT_OK_AND_ASSIGN(pb::ClientResponse answer, raw.Call(save, absl::Seconds(5)));
    EXPECT_EQ(answer.error().code(), static_cast<int>(kDenied));
    // A forged token (alice's with one byte changed) is not a login.
    pb::ClientRequest forged;
    std::string bad = token.authenticate().token();
    bad[bad.size() / 2] ^= 1;
    forged.set_auth_token(bad);
    forged.mutable_range()->set_key("app/1");
    ASSERT_OK_AND_ASSIGN(answer, raw.Call(forged, absl::Seconds(5)));
    EXPECT_EQ(answer.error().code(), static_cast<int>(kUnauthenticated));
  }

  // alice keeps one client (and its connection) open, and watches app/ and other.
  std::unique_ptr<Client> alice = Connect({cluster_.ClientAddress(follower)}, "alice", "alice-pw");
  ASSERT_OK(alice->Put("app/4", "before"));
  absl::Mutex mu;
  std::vector<std::string> seen;
  std::optional<absl::Status> app_end, other_end;
  std::unique_ptr<Watcher> app_watch = alice->Watch(
      "app/", {.range_end = PrefixEnd("app/")},
      [&](const std::vector<WatchEvent>& events, int64_t) {
        absl::MutexLock lock(&mu);
        for (const WatchEvent& event : events) seen.push_back(event.kv.key);
      },
      [&](absl::Status end) {
        absl::MutexLock lock(&mu);
        app_end = end;
      });
  std::unique_ptr<Watcher> other_watch = alice->Watch(
      "other", {}, [](const std::vector<WatchEvent>&, int64_t) {},
      [&](absl::Status end) {
        absl::MutexLock lock(&mu);
        other_end = end;
      });
  ASSERT_TRUE(testing::Eventually([&] {
    absl::MutexLock lock(&mu);
    return other_end.has_value();
  }));
  EXPECT_THAT(*other_end, StatusIs(kDenied));
  ASSERT_OK(root->Put("app/5", "seen"));
  ASSERT_TRUE(testing::Eventually([&] {
    absl::MutexLock lock(&mu);
    return !seen.empty();
  }));

  // The role goes: alice's next request on the same connection is refused, and her
  // watch ends at its next event instead of delivering it.
  ASSERT_OK(root->UserRevokeRole("alice", "app"));
  EXPECT_THAT(alice->Put("app/4", "after"), StatusIs(kDenied));
  EXPECT_THAT(alice->Get("app/4").status(), StatusIs(kDenied));
  EXPECT_EQ(Value(*root, "app/4"), "before");
  ASSERT_OK(root->Put("app/6", "not for alice"));
  ASSERT_TRUE(testing::Eventually([&] {
    absl::MutexLock lock(&mu);
    return app_end.has_value();
  }));
  {
    absl::MutexLock lock(&mu);
    EXPECT_THAT(*app_end, StatusIs(kDenied));
    EXPECT_EQ(std::count(seen.begin(), seen.end(), "app/6"), 0);
  }
  EXPECT_OK(alice->Get("shared").status());  // the reader role stays

  // A new password ends the old one's tokens: alice's client cannot re-authenticate.
  ASSERT_OK(root->UserChangePassword("alice", "new-pw"));
  std::unique_ptr<Client> renewed = Connect({cluster_.ClientAddress(leader)}, "alice", "new-pw");
  EXPECT_OK(renewed->Get("shared").status());
  EXPECT_THAT(Connect({cluster_.ClientAddress(leader)}, "alice", "alice-pw")->Get("shared").status(),
              StatusIs(kUnauthenticated));
}

TEST_F(AuthClusterTest, ClientCertificateCommonNameIsTheUser) {
  testing::TestCertificateAuthority ca("auth CA");
  const std::string dir = testing::MakeTempDir();
  std::vector<testing::TestPemFiles> members;
  for (int i = 0; i < 3; ++i) {
    members.push_back(testing::WritePemFiles(
        dir, cluster_.Name(i),
        ca.Issue({.common_name = cluster_.Name(i), .ip_addresses = {"127.0.0.1"}}), ca));
  }
  auto client_tls = [&](const std::string& cn) {
    const testing::TestPemFiles files =
        testing::WritePemFiles(dir, cn, ca.Issue({.common_name = cn}), ca);
    return ClientTlsOptions{.enabled = true,
                            .trusted_ca_file = files.ca_file,
                            .cert_file = files.cert_file,
                            .key_file = files.key_file};
  };
  for (int i = 0; i < 3; ++i) {
    const testing::TestPemFiles& files = members[i];
    cluster_.set_extra_flags({"--client-cert-file=" + files.cert_file,
                              "--client-key-file=" + files.key_file,
                              "--client-trusted-ca-file=" + files.ca_file, "--client-cert-auth"});
    cluster_.Start(i);
  }
  ASSERT_TRUE(cluster_.WaitReady({0, 1, 2}));
  const int leader = cluster_.WaitForLeader({0, 1, 2});
  ASSERT_GE(leader, 0);
  const int follower = (leader + 1) % 3;

  std::unique_ptr<Client> root = Connect(cluster_.ClientEndpoints(3), "", "", client_tls("root"));
  ASSERT_OK(root->Put("app/1", "old"));
  ASSERT_OK(root->Put("other", "old"));
  ASSERT_OK(root->UserAdd("root", ""));  // no password: a certificate is the only way in
  ASSERT_OK(root->UserGrantRole("root", "root"));
  ASSERT_OK(root->UserAdd("alice", ""));
  ASSERT_OK(root->RoleAdd("app"));
  ASSERT_OK(root->RoleGrantPermission(
      "app", {.type = Permission::Type::kReadWrite, .key = "app/", .range_end = PrefixEnd("app/")}));
  ASSERT_OK(root->UserGrantRole("alice", "app"));
  ASSERT_OK(root->AuthEnable());

  for (const int member : {leader, follower}) {
    SCOPED_TRACE(member == leader ? "leader" : "follower");
    std::unique_ptr<Client> alice =
        Connect({cluster_.ClientAddress(member)}, "", "", client_tls("alice"));
    EXPECT_OK(alice->Put("app/1", absl::StrCat("by alice via ", member)));
    EXPECT_OK(alice->Get("app/1").status());
    EXPECT_THAT(alice->Put("other", "new"), StatusIs(kDenied));
    EXPECT_THAT(alice->MemberList().status(), StatusIs(kDenied));
    // A certificate naming no user is not authenticated.
    std::unique_ptr<Client> stranger =
        Connect({cluster_.ClientAddress(member)}, "", "", client_tls("mallory"));
    EXPECT_THAT(stranger->Get("app/1").status(), StatusIs(kUnauthenticated));
  }
  EXPECT_EQ(Value(*root, "other"), "old");
  EXPECT_OK(root->MemberList().status());
}

}  // namespace
}  // namespace stead
