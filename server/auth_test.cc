// Unit tests of auth: the state machine's auth changes (through KvHarness), the
// permission check, tokens and password hashes.
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/auth_check.h"
#include "server/auth_store.h"
#include "server/auth_throttle.h"
#include "server/auth_token.h"
#include "server/kv_testing.h"
#include "tests/testing/status_matchers.h"

namespace stead::server {
namespace {

using ::stead::testing::StatusIs;

pb::ClientRequest Auth(pb::AuthRequest auth) {
  pb::ClientRequest request;
  *request.mutable_auth() = std::move(auth);
  return request;
}
pb::ClientRequest UserAdd(const std::string& name, uint32_t iterations = 1) {
  pb::AuthRequest auth;
  auth.mutable_user_add()->set_name(name);
  *auth.mutable_user_add()->mutable_hash() = *HashPassword("pw-" + name, iterations);
  return Auth(auth);
}
pb::ClientRequest GrantRole(const std::string& user, const std::string& role) {
  pb::AuthRequest auth;
  auth.mutable_user_grant_role()->set_user(user);
  auth.mutable_user_grant_role()->set_role(role);
  return Auth(auth);
}
pb::ClientRequest RevokeRole(const std::string& user, const std::string& role) {
  pb::AuthRequest auth;
  auth.mutable_user_revoke_role()->set_user(user);
  auth.mutable_user_revoke_role()->set_role(role);
  return Auth(auth);
}
pb::ClientRequest RoleAdd(const std::string& name) {
  pb::AuthRequest auth;
  auth.mutable_role_add()->set_name(name);
  return Auth(auth);
}
pb::ClientRequest Grant(const std::string& role, pb::Permission::Type type, const std::string& key,
                        const std::string& range_end = "") {
  pb::AuthRequest auth;
  auth.mutable_role_grant_permission()->set_role(role);
  pb::Permission* permission = auth.mutable_role_grant_permission()->mutable_permission();
  permission->set_type(type);
  permission->set_key(key);
  permission->set_range_end(range_end);
  return Auth(auth);
}
pb::ClientRequest Enable() {
  pb::AuthRequest auth;
  auth.mutable_enable()->set_token_secret(std::string(32, 's'));
  return Auth(auth);
}

int32_t Code(const pb::ClientResponse& response) { return response.error().code(); }
constexpr int32_t kFailedPrecondition = static_cast<int32_t>(absl::StatusCode::kFailedPrecondition);

Grants GrantsWith(std::vector<std::tuple<pb::Permission::Type, std::string, std::string>> list) {
  Grants grants;
  for (auto& [type, key, end] : list) {
    pb::Permission& permission = grants.permissions.emplace_back();
    permission.set_type(type);
    permission.set_key(key);
    permission.set_range_end(end);
  }
  return grants;
}
pb::ClientRequest Range(const std::string& key, const std::string& end = "") {
  pb::ClientRequest request;
  request.mutable_range()->set_key(key);
  request.mutable_range()->set_range_end(end);
  return request;
}
pb::ClientRequest Put(const std::string& key) {
  pb::ClientRequest request;
  request.mutable_put()->set_key(key);
  return request;
}

constexpr auto kRead = pb::Permission::TYPE_READ;
constexpr auto kWrite = pb::Permission::TYPE_READWRITE;
const std::string kAll(1, '\0');

class AuthApplyTest : public ::testing::Test {
 protected:
  AuthApplyTest()
      : harness_(absl::StrCat(::testing::TempDir(), "/auth-apply-",
                              ::testing::UnitTest::GetInstance()->current_test_info()->name()),
                 KvApplyOptions()) {}
  KvHarness harness_;
};

TEST_F(AuthApplyTest, EnableNeedsARootUserWithTheRootRole) {
  EXPECT_EQ(Code(harness_.Write(Enable())), kFailedPrecondition);
  EXPECT_FALSE(harness_.Write(UserAdd("root")).has_error());
  EXPECT_EQ(Code(harness_.Write(Enable())), kFailedPrecondition);
  EXPECT_FALSE(harness_.Write(GrantRole("root", "root")).has_error());
  const pb::ClientResponse enabled = harness_.Write(Enable());
  ASSERT_FALSE(enabled.has_error()) << enabled.error().message();
  EXPECT_TRUE(enabled.auth().status().enabled());
  ASSERT_OK_AND_ASSIGN(pb::AuthMeta meta, ReadAuthMeta(harness_.state()));
  EXPECT_TRUE(meta.enabled());
  EXPECT_EQ(meta.revision(), 3);  // two changes and the enable; refusals change nothing
  EXPECT_EQ(meta.token_secret(), std::string(32, 's'));
  // While enabled the root user keeps its role and cannot go.
  EXPECT_EQ(Code(harness_.Write(RevokeRole("root", "root"))), kFailedPrecondition);
  pb::AuthRequest remove;
  remove.mutable_user_delete()->set_name("root");
  EXPECT_EQ(Code(harness_.Write(Auth(remove))), kFailedPrecondition);
}

TEST_F(AuthApplyTest, EachChangeIsAppliedAndBumpsTheRevisionButNotTheStoreRevision) {
  ASSERT_FALSE(harness_.Write(UserAdd("alice")).has_error());
  EXPECT_EQ(Code(harness_.Write(UserAdd("alice"))), kFailedPrecondition);
  ASSERT_FALSE(harness_.Write(RoleAdd("app")).has_error());
  EXPECT_EQ(Code(harness_.Write(GrantRole("alice", "nosuch"))), kFailedPrecondition);
  ASSERT_FALSE(harness_.Write(GrantRole("alice", "app")).has_error());
  ASSERT_FALSE(harness_.Write(Grant("app", pb::Permission::TYPE_READ, "a/", "a0")).has_error());
  ASSERT_FALSE(harness_.Write(Grant("app", pb::Permission::TYPE_READWRITE, "k")).has_error());
  EXPECT_EQ(Code(harness_.Write(Grant("root", pb::Permission::TYPE_READ, "k"))), kFailedPrecondition);

  ASSERT_OK_AND_ASSIGN(std::optional<pb::AuthUser> alice, ReadAuthUser(harness_.state(), "alice"));
  ASSERT_TRUE(alice.has_value());
  EXPECT_EQ(std::vector<std::string>(alice->roles().begin(), alice->roles().end()),
            std::vector<std::string>{"app"});
  EXPECT_TRUE(VerifyPassword("pw-alice", alice->password()));
  ASSERT_OK_AND_ASSIGN(std::optional<pb::AuthRole> app, ReadAuthRole(harness_.state(), "app"));
  ASSERT_EQ(app->permissions_size(), 2);

  pb::AuthRequest revoke;
  revoke.mutable_role_revoke_permission()->set_role("app");
  revoke.mutable_role_revoke_permission()->set_key("k");
  ASSERT_FALSE(harness_.Write(Auth(revoke)).has_error());
  ASSERT_OK_AND_ASSIGN(app, ReadAuthRole(harness_.state(), "app"));
  EXPECT_EQ(app->permissions_size(), 1);

  // A changed password gives the user a new generation (its old tokens stop working).
  pb::AuthRequest password;
  password.mutable_user_change_password()->set_name("alice");
  *password.mutable_user_change_password()->mutable_hash() = *HashPassword("new", 1);
  ASSERT_FALSE(harness_.Write(Auth(password)).has_error());
  ASSERT_OK_AND_ASSIGN(std::optional<pb::AuthUser> changed, ReadAuthUser(harness_.state(), "alice"));
  EXPECT_GT(changed->generation(), alice->generation());
  EXPECT_TRUE(VerifyPassword("new", changed->password()));

  // Deleting a role removes it from its users.
  pb::AuthRequest drop;
  drop.mutable_role_delete()->set_name("app");
  ASSERT_FALSE(harness_.Write(Auth(drop)).has_error());
  ASSERT_OK_AND_ASSIGN(changed, ReadAuthUser(harness_.state(), "alice"));
  EXPECT_EQ(changed->roles_size(), 0);

  pb::AuthRequest list;
  list.mutable_user_list();
  ASSERT_OK_AND_ASSIGN(pb::AuthResponse users, ReadAuth(list, harness_.state()));
  ASSERT_EQ(users.users_size(), 1);
  EXPECT_FALSE(users.users(0).has_password());  // listings never carry hashes
  EXPECT_EQ(users.status().revision(), 8);  // the eight changes that were not refused
  ASSERT_OK_AND_ASSIGN(pb::KvMeta kv, ReadKvMeta(harness_.state()));
  EXPECT_EQ(kv.revision(), 0);
}

TEST_F(AuthApplyTest, APasswordNeverReachesTheLog) {
  pb::AuthRequest add;
  add.mutable_user_add()->set_name("bob");
  add.mutable_user_add()->set_password("secret");
  EXPECT_EQ(Code(harness_.Write(Auth(add))), static_cast<int32_t>(absl::StatusCode::kInvalidArgument));
  ASSERT_OK_AND_ASSIGN(std::optional<pb::AuthUser> bob, ReadAuthUser(harness_.state(), "bob"));
  EXPECT_FALSE(bob.has_value());
}

TEST_F(AuthApplyTest, ApplyIsDeterministicAcrossReplayAndRestart) {
  std::vector<pb::ClientRequest> log = {UserAdd("root"), GrantRole("root", "root"), RoleAdd("r"),
                                        Grant("r", pb::Permission::TYPE_READ, "x"), Enable()};
  for (const pb::ClientRequest& request : log) ASSERT_FALSE(harness_.Write(request).has_error());
  ASSERT_OK_AND_ASSIGN(pb::AuthResponse before, ReadAuth(Auth([] {
                                                           pb::AuthRequest r;
                                                           r.mutable_role_list();
                                                           return r;
                                                         }()).auth(),
                                                         harness_.state()));
  harness_.Restart(/*crash=*/true);
  KvHarness other(absl::StrCat(::testing::TempDir(), "/auth-apply-other"), KvApplyOptions());
  for (const pb::ClientRequest& request : log) other.Write(request);
  for (const KvHarness* h : {&harness_, &other}) {
    ASSERT_OK_AND_ASSIGN(pb::AuthMeta meta, ReadAuthMeta(h->state()));
    EXPECT_EQ(meta.revision(), 5);
    EXPECT_TRUE(meta.enabled());
    pb::AuthRequest list;
    list.mutable_role_list();
    ASSERT_OK_AND_ASSIGN(pb::AuthResponse roles, ReadAuth(list, h->state()));
    EXPECT_EQ(roles.SerializeAsString(), before.SerializeAsString());
  }
}

// ---- the Authorizer: identity and checks against the current state ----

TEST_F(AuthApplyTest, AuthorizerIdentifiesByTokenOrCertificateAgainstTheCurrentState) {
  absl::Time now = absl::FromUnixSeconds(2000000000);
  AuthorizerOptions options;
  options.password_iterations = 1;
  options.clock = [&now] { return now; };
  Authorizer authorizer(options, &harness_.state());
  pb::ClientRequest get = Range("app/x");
  // Auth off: everything passes, and authenticate says no token is needed.
  EXPECT_OK(authorizer.Check(&get, ""));
  pb::AuthenticateRequest login;
  login.set_name("alice");
  login.set_password("pw-alice");
  EXPECT_THAT(authorizer.Authenticate(login), StatusIs(absl::StatusCode::kFailedPrecondition));

  for (const pb::ClientRequest& request :
       {UserAdd("root"), GrantRole("root", "root"), UserAdd("alice"), RoleAdd("app"),
        Grant("app", kWrite, "app/", "app0"), GrantRole("alice", "app"), Enable()}) {
    ASSERT_FALSE(harness_.Write(request).has_error());
  }
  pb::ClientRequest anonymous = get;
  EXPECT_THAT(authorizer.Check(&anonymous, ""), StatusIs(absl::StatusCode::kUnauthenticated));

  login.set_password("wrong");
  absl::StatusOr<pb::AuthenticateResponse> refused = authorizer.Authenticate(login);
  login.set_name("nobody");
  absl::StatusOr<pb::AuthenticateResponse> unknown = authorizer.Authenticate(login);
  EXPECT_THAT(refused, StatusIs(absl::StatusCode::kUnauthenticated));
  EXPECT_EQ(refused.status(), unknown.status());  // the same words for both
  login.set_name("alice");
  login.set_password("pw-alice");
  ASSERT_OK_AND_ASSIGN(pb::AuthenticateResponse token, authorizer.Authenticate(login));
  pb::ClientRequest with_token = get;
  with_token.set_auth_token(token.token());
  EXPECT_OK(authorizer.Check(&with_token, ""));
  pb::ClientRequest other = Put("other");
  other.set_auth_token(token.token());
  EXPECT_THAT(authorizer.Check(&other, ""), StatusIs(absl::StatusCode::kPermissionDenied));

  // The embedded API's requests go as root once auth is on.
  pb::ClientRequest embedded;
  embedded.mutable_member_remove()->set_name("stead-2");
  ASSERT_OK(authorizer.AttachRootToken(&embedded));
  EXPECT_OK(authorizer.Check(&embedded, "stead-1"));

  // A certificate's user gets a token minted for forwarding, which checks as alice.
  pb::ClientRequest by_certificate = Put("app/y");
  EXPECT_OK(authorizer.Check(&by_certificate, "alice"));
  ASSERT_FALSE(by_certificate.auth_token().empty());
  pb::ClientRequest forwarded = Put("app/z");
  forwarded.set_auth_token(by_certificate.auth_token());
  EXPECT_OK(authorizer.Check(&forwarded, "root"));  // the token wins over the connection
  pb::ClientRequest stranger = get;
  EXPECT_THAT(authorizer.Check(&stranger, "mallory"), StatusIs(absl::StatusCode::kUnauthenticated));

  // The role goes: the same token is denied at once.
  ASSERT_FALSE(harness_.Write(RevokeRole("alice", "app")).has_error());
  with_token.clear_auth_token();
  with_token.set_auth_token(token.token());
  EXPECT_THAT(authorizer.Check(&with_token, ""), StatusIs(absl::StatusCode::kPermissionDenied));
  // A new password ends the token; so does its expiry.
  pb::AuthRequest password;
  password.mutable_user_change_password()->set_name("alice");
  *password.mutable_user_change_password()->mutable_hash() = *HashPassword("new", 1);
  ASSERT_FALSE(harness_.Write(Auth(password)).has_error());
  EXPECT_THAT(authorizer.Check(&with_token, ""), StatusIs(absl::StatusCode::kUnauthenticated));
  login.set_password("new");
  ASSERT_OK_AND_ASSIGN(token, authorizer.Authenticate(login));
  pb::ClientRequest shared = Range("app/x");
  shared.set_auth_token(token.token());
  EXPECT_THAT(authorizer.Check(&shared, ""), StatusIs(absl::StatusCode::kPermissionDenied));
  pb::ClientRequest watch;
  watch.set_auth_token(token.token());
  watch.mutable_watch()->set_key("app/x");
  now += options.token_ttl;
  EXPECT_THAT(authorizer.Check(&shared, ""), StatusIs(absl::StatusCode::kUnauthenticated));
  // An open watch is checked again for its permission, not for its token's expiry.
  EXPECT_THAT(authorizer.Check(&watch, "", /*ongoing=*/true),
              StatusIs(absl::StatusCode::kPermissionDenied));
  ASSERT_FALSE(harness_.Write(GrantRole("alice", "app")).has_error());
  EXPECT_OK(authorizer.Check(&watch, "", /*ongoing=*/true));
  EXPECT_THAT(authorizer.Check(&watch, ""), StatusIs(absl::StatusCode::kUnauthenticated));
}

// Password guessing: a name that failed too often waits, longer with each failure, even
// with the right password; other names are not held up; a success clears the name.
TEST_F(AuthApplyTest, RepeatedFailedLoginsForANameAreRefusedForAWhile) {
  absl::Time now = absl::FromUnixSeconds(2000000000);
  AuthorizerOptions options;
  options.password_iterations = 1;
  options.clock = [&now] { return now; };
  options.guess_throttle = {.free_failures = 3, .first_wait = absl::Seconds(2)};
  Authorizer authorizer(options, &harness_.state());
  for (const pb::ClientRequest& request :
       {UserAdd("root"), GrantRole("root", "root"), UserAdd("alice"), UserAdd("bob"),
        Enable()}) {
    ASSERT_FALSE(harness_.Write(request).has_error());
  }
  auto login = [&](const std::string& name, const std::string& password) {
    pb::AuthenticateRequest request;
    request.set_name(name);
    request.set_password(password);
    return authorizer.Authenticate(request).status();
  };
  const std::string generic = "authentication failed";
  for (int i = 0; i < 3; ++i) {
    EXPECT_THAT(login("alice", "guess"), StatusIs(absl::StatusCode::kUnauthenticated, generic));
  }
  // The fourth failure starts the wait: even the right password is refused, unhashed.
  EXPECT_THAT(login("alice", "guess"), StatusIs(absl::StatusCode::kUnauthenticated, generic));
  EXPECT_THAT(login("alice", "pw-alice"),
              StatusIs(absl::StatusCode::kUnauthenticated, "too many failed attempts"));
  EXPECT_OK(login("bob", "pw-bob"));
  // An unknown name is throttled the same way, so the refusal reveals no user.
  for (int i = 0; i < 4; ++i) EXPECT_FALSE(login("nobody", "guess").ok());
  EXPECT_THAT(login("nobody", "guess"),
              StatusIs(absl::StatusCode::kUnauthenticated, "too many failed attempts"));

  now += absl::Seconds(2);
  EXPECT_THAT(login("alice", "guess"), StatusIs(absl::StatusCode::kUnauthenticated, generic));
  // The fifth failure doubles the wait.
  now += absl::Seconds(3);
  EXPECT_THAT(login("alice", "pw-alice"),
              StatusIs(absl::StatusCode::kUnauthenticated, "retry in 1s"));
  now += absl::Seconds(1);
  EXPECT_OK(login("alice", "pw-alice"));
  // A success clears the count.
  EXPECT_THAT(login("alice", "guess"), StatusIs(absl::StatusCode::kUnauthenticated, generic));
  EXPECT_OK(login("alice", "pw-alice"));
}

TEST(GuessThrottle, WaitsDoubleUpToTheCapAndTheIdlestNameIsForgotten) {
  const absl::Time start = absl::FromUnixSeconds(1000);
  GuessThrottle throttle({.free_failures = 1,
                          .first_wait = absl::Seconds(1),
                          .max_wait = absl::Seconds(4),
                          .max_names = 2});
  absl::Time now = start;
  std::vector<absl::Duration> waits;
  for (int i = 0; i < 6; ++i) {
    ASSERT_OK(throttle.Admit("a", now));
    throttle.Record("a", false, now);
    absl::Duration waited = absl::ZeroDuration();
    while (!throttle.Admit("a", now + waited).ok()) waited += absl::Seconds(1);
    waits.push_back(waited);
    now += waited;
  }
  EXPECT_THAT(waits, ::testing::ElementsAre(absl::ZeroDuration(), absl::Seconds(1),
                                            absl::Seconds(2), absl::Seconds(4), absl::Seconds(4),
                                            absl::Seconds(4)));
  // Two names fit; a third evicts the one idle longest ("a").
  throttle.Record("b", false, now + absl::Seconds(1));
  throttle.Record("b", false, now + absl::Seconds(1));
  throttle.Record("c", false, now + absl::Seconds(2));
  EXPECT_OK(throttle.Admit("a", now));
  EXPECT_FALSE(throttle.Admit("b", now + absl::Seconds(1)).ok());
}

TEST(AuthorizerPrepare, PasswordsAreHashedAndEnableGetsASecret) {
  AuthorizerOptions options;
  options.password_iterations = 10;
  Authorizer authorizer(options, nullptr);
  pb::AuthRequest add;
  add.mutable_user_add()->set_name("alice");
  add.mutable_user_add()->set_password("secret");
  ASSERT_OK(authorizer.PrepareChange(&add));
  EXPECT_TRUE(add.user_add().password().empty());
  EXPECT_TRUE(VerifyPassword("secret", add.user_add().hash()));
  EXPECT_OK(ValidateAuthChange(add));
  pb::AuthRequest enable_a, enable_b;
  enable_a.mutable_enable();
  enable_b.mutable_enable();
  ASSERT_OK(authorizer.PrepareChange(&enable_a));
  ASSERT_OK(authorizer.PrepareChange(&enable_b));
  EXPECT_EQ(enable_a.enable().token_secret().size(), 32u);
  EXPECT_NE(enable_a.enable().token_secret(), enable_b.enable().token_secret());
}

TEST(AuthorizerAsync, HashingRunsOnItsOwnThreadAndStopRefusesTheRest) {
  AuthorizerOptions options;
  options.password_iterations = 1000;
  Authorizer authorizer(options, nullptr);
  Mutex mu;
  CondVar done_cv;
  std::vector<absl::Status> results;
  std::thread::id ran_on;
  for (int i = 0; i < 3; ++i) {
    pb::AuthRequest add;
    add.mutable_user_add()->set_name("u");
    add.mutable_user_add()->set_password("pw");
    authorizer.PrepareChangeAsync(add, [&](absl::StatusOr<pb::AuthRequest> ready) {
      MutexLock lock(&mu);
      ran_on = std::this_thread::get_id();
      results.push_back(ready.status());
      if (ready.ok()) {
        EXPECT_TRUE(VerifyPassword("pw", ready->user_add().hash()));
      }
      done_cv.SignalAll();
    });
  }
  {
    MutexLock lock(&mu);
    for (int round = 0; round < 100 && results.size() < 3; ++round) {
      done_cv.WaitWithTimeout(&mu, absl::Milliseconds(100));
    }
    ASSERT_EQ(results.size(), 3u);
    for (const absl::Status& status : results) EXPECT_OK(status);
    EXPECT_NE(ran_on, std::this_thread::get_id());
  }
  authorizer.Stop();
  absl::Status after_stop;
  authorizer.AuthenticateAsync(pb::AuthenticateRequest(),
                               [&](absl::StatusOr<pb::AuthenticateResponse> r) {
                                 after_stop = r.status();
                               });
  EXPECT_THAT(after_stop, StatusIs(absl::StatusCode::kUnavailable));
}

// ---- the permission check ----

TEST(CheckPermission, RangesPrefixesAndKeys) {
  const Grants grants = GrantsWith({{kRead, "a/", "a0"},       // prefix a/
                                    {kWrite, "b", "c"},         // [b, c)
                                    {kWrite, "c", "d"},         // adjacent: [b, d) together
                                    {kRead, "k", ""},           // one key
                                    {kRead, "z", kAll}});       // every key >= z
  EXPECT_OK(CheckPermission(grants, Range("a/x")));
  EXPECT_OK(CheckPermission(grants, Range("a/", "a0")));
  EXPECT_THAT(CheckPermission(grants, Range("a", "a0")), StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_THAT(CheckPermission(grants, Range("a/", "a1")), StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_THAT(CheckPermission(grants, Put("a/x")), StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_OK(CheckPermission(grants, Range("b", "d")));  // readwrite implies read, spans join
  EXPECT_OK(CheckPermission(grants, Put("cz")));
  EXPECT_THAT(CheckPermission(grants, Put("d")), StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_OK(CheckPermission(grants, Range("k")));
  EXPECT_THAT(CheckPermission(grants, Range("k", "l")), StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_OK(CheckPermission(grants, Range("zz", kAll)));
  EXPECT_THAT(CheckPermission(grants, Range("y", kAll)), StatusIs(absl::StatusCode::kPermissionDenied));
  pb::ClientRequest remove;
  remove.mutable_delete_range()->set_key("b");
  remove.mutable_delete_range()->set_range_end("e");
  EXPECT_THAT(CheckPermission(grants, remove), StatusIs(absl::StatusCode::kPermissionDenied));
  remove.mutable_delete_range()->set_range_end("d");
  EXPECT_OK(CheckPermission(grants, remove));
}

TEST(CheckPermission, ATxnWithOneForbiddenKeyIsDenied) {
  const Grants grants = GrantsWith({{kWrite, "w", ""}, {kRead, "r", ""}});
  pb::ClientRequest txn;
  txn.mutable_txn()->add_compare()->set_key("r");
  txn.mutable_txn()->add_success()->mutable_put()->set_key("w");
  txn.mutable_txn()->add_failure()->mutable_range()->set_key("r");
  EXPECT_OK(CheckPermission(grants, txn));
  for (int which = 0; which < 3; ++which) {
    pb::ClientRequest bad = txn;
    if (which == 0) bad.mutable_txn()->add_compare()->set_key("x");
    if (which == 1) bad.mutable_txn()->add_failure()->mutable_put()->set_key("r");  // read only
    if (which == 2) bad.mutable_txn()->add_success()->mutable_delete_range()->set_key("x");
    EXPECT_THAT(CheckPermission(grants, bad), StatusIs(absl::StatusCode::kPermissionDenied)) << which;
  }
}

TEST(CheckPermission, WatchesNeedReadAndAdminCallsNeedRoot) {
  const Grants grants = GrantsWith({{kRead, "a", "b"}});
  pb::ClientRequest watch;
  watch.mutable_watch()->set_key("a");
  watch.mutable_watch()->set_range_end("b");
  EXPECT_OK(CheckPermission(grants, watch));
  watch.mutable_watch()->set_range_end("c");
  EXPECT_THAT(CheckPermission(grants, watch), StatusIs(absl::StatusCode::kPermissionDenied));
  std::vector<pb::ClientRequest> admin(6);
  admin[0].mutable_member_list();
  admin[1].mutable_member_remove();
  admin[2].mutable_snapshot_save();
  admin[3].mutable_leader_transfer();
  admin[4].mutable_hash();
  admin[5].mutable_auth()->mutable_user_list();
  Grants root;
  root.root = true;
  for (const pb::ClientRequest& request : admin) {
    EXPECT_THAT(CheckPermission(grants, request), StatusIs(absl::StatusCode::kPermissionDenied));
    EXPECT_OK(CheckPermission(root, request));
  }
}

// ---- tokens and passwords ----

TEST(AuthToken, SignedTokensVerifyUntilTheyExpire) {
  pb::AuthTokenBody body;
  body.set_user("alice");
  body.set_generation(3);
  const absl::Time now = absl::FromUnixSeconds(1000000);
  body.set_expires_unix_ms(absl::ToUnixMillis(now + absl::Minutes(5)));
  const std::string secret(32, 'k');
  const std::string token = SignToken(body, secret);
  ASSERT_OK_AND_ASSIGN(pb::AuthTokenBody verified, VerifyToken(token, secret, now));
  EXPECT_EQ(verified.user(), "alice");
  EXPECT_EQ(verified.generation(), 3);
  EXPECT_THAT(VerifyToken(token, secret, now + absl::Minutes(5)),
              StatusIs(absl::StatusCode::kUnauthenticated));
  EXPECT_THAT(VerifyToken(token, std::string(32, 'x'), now),
              StatusIs(absl::StatusCode::kUnauthenticated));
  // Forgeries: another user under the old signature, a flipped bit, a truncation.
  pb::AuthTokenBody forged = body;
  forged.set_user("root");
  std::string swapped = forged.SerializeAsString() + token.substr(token.size() - 32);
  EXPECT_THAT(VerifyToken(swapped, secret, now), StatusIs(absl::StatusCode::kUnauthenticated));
  std::string flipped = token;
  flipped[2] ^= 1;
  EXPECT_THAT(VerifyToken(flipped, secret, now), StatusIs(absl::StatusCode::kUnauthenticated));
  EXPECT_THAT(VerifyToken(token.substr(0, 20), secret, now),
              StatusIs(absl::StatusCode::kUnauthenticated));
  EXPECT_THAT(VerifyToken(token, "", now), StatusIs(absl::StatusCode::kUnauthenticated));
}

TEST(PasswordHash, SaltsDifferAndOnlyTheRightPasswordVerifies) {
  ASSERT_OK_AND_ASSIGN(pb::PasswordHash first, HashPassword("hunter2", 1000));
  ASSERT_OK_AND_ASSIGN(pb::PasswordHash second, HashPassword("hunter2", 1000));
  EXPECT_NE(first.salt(), second.salt());
  EXPECT_NE(first.hash(), second.hash());
  EXPECT_EQ(first.iterations(), 1000u);
  EXPECT_TRUE(VerifyPassword("hunter2", first));
  EXPECT_TRUE(VerifyPassword("hunter2", second));
  EXPECT_FALSE(VerifyPassword("hunter3", first));
  EXPECT_FALSE(VerifyPassword("", first));
  EXPECT_FALSE(VerifyPassword("hunter2", pb::PasswordHash()));
}

}  // namespace
}  // namespace stead::server
