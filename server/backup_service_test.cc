#include "server/backup_service.h"

#include <future>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "server/kv_testing.h"
#include "tests/testing/status_matchers.h"

namespace stead::server {
namespace {

using ::stead::testing::StatusIs;

std::string TestDir() {
  return absl::StrCat(::testing::TempDir(), "/backup_service_test_", ::getpid(), "_",
                      ::testing::UnitTest::GetInstance()->current_test_info()->name());
}

pb::ClientRequest Put(const std::string& key, const std::string& value) {
  pb::ClientRequest request;
  request.mutable_put()->set_key(key);
  request.mutable_put()->set_value(value);
  return request;
}

// Asks `service` for a hash and waits for the answer.
absl::StatusOr<pb::ClientResponse> HashNow(BackupService& service,
                                           absl::Time deadline = absl::InfiniteFuture()) {
  std::promise<absl::StatusOr<pb::ClientResponse>> answer;
  service.Hash(deadline, [&](absl::StatusOr<pb::ClientResponse> r) { answer.set_value(std::move(r)); });
  return answer.get_future().get();
}

TEST(BackupService, HashDescribesTheStateAtItsAppliedIndex) {
  KvHarness kv(TestDir(), KvApplyOptions());
  kv.Write(Put("a", "1"));
  kv.Write(Put("b", "2"));
  BackupService service(BackupServiceOptions(), Logger(LogLevel::kWarning));
  service.Attach(&kv.state());
  ASSERT_OK_AND_ASSIGN(const pb::ClientResponse response, HashNow(service));
  ASSERT_TRUE(response.has_hash());
  ASSERT_OK_AND_ASSIGN(auto snapshot, kv.state().NewSnapshot());
  ASSERT_OK_AND_ASSIGN(const storage::ContentHash expected, snapshot->Hash());
  EXPECT_EQ(response.hash().hash(), expected.hash);
  EXPECT_EQ(response.hash().key_count(), expected.key_count);
  EXPECT_EQ(response.hash().applied_index(), 2u);
  EXPECT_EQ(response.hash().revision(), 2);

  kv.Write(Put("a", "changed"));
  ASSERT_OK_AND_ASSIGN(const pb::ClientResponse later, HashNow(service));
  EXPECT_NE(later.hash().hash(), response.hash().hash());
  EXPECT_EQ(later.hash().applied_index(), 3u);
}

TEST(BackupService, RefusesWhatItCannotServe) {
  BackupService service(BackupServiceOptions(), Logger(LogLevel::kWarning));
  EXPECT_THAT(HashNow(service), StatusIs(absl::StatusCode::kUnavailable, "not serving yet"));

  KvHarness kv(TestDir(), KvApplyOptions());
  kv.Write(Put("a", "1"));
  service.Attach(&kv.state());
  EXPECT_THAT(HashNow(service, absl::Now() - absl::Seconds(1)),
              StatusIs(absl::StatusCode::kDeadlineExceeded));
  service.Stop();
  EXPECT_THAT(HashNow(service), StatusIs(absl::StatusCode::kUnavailable, "stopping"));
}

// Requests beyond max_queued_hashes are refused at once rather than queued. Method:
// ten requests arrive within microseconds while each hash of 20,000 keys takes
// milliseconds, so at most one runs and two wait: the rest must be refused, and every
// request must get its one answer.
TEST(BackupService, QueueIsBounded) {
  KvHarness kv(TestDir(), KvApplyOptions());
  pb::ClientRequest txn;
  for (int i = 0; i < 20000; ++i) {
    pb::PutRequest* put = txn.mutable_txn()->add_success()->mutable_put();
    put->set_key(absl::StrCat("key-", i));
    put->set_value(std::string(100, 'v'));
    if (txn.txn().success_size() == 100) {
      kv.Write(txn);
      txn.Clear();
    }
  }
  BackupServiceOptions options;
  options.max_queued_hashes = 2;
  BackupService service(options, Logger(LogLevel::kWarning));
  service.Attach(&kv.state());
  std::vector<std::promise<absl::StatusOr<pb::ClientResponse>>> answers(10);
  for (auto& answer : answers) {
    service.Hash(absl::InfiniteFuture(),
                 [&answer](absl::StatusOr<pb::ClientResponse> r) { answer.set_value(std::move(r)); });
  }
  int served = 0, refused = 0;
  for (auto& answer : answers) {
    absl::StatusOr<pb::ClientResponse> result = answer.get_future().get();
    if (result.ok()) {
      ++served;
      // The keys, the kvmeta record and one history record per transaction.
      EXPECT_EQ(result->hash().key_count(), 20000u + 1 + 200);
    } else {
      EXPECT_THAT(result, StatusIs(absl::StatusCode::kResourceExhausted, "back off"));
      ++refused;
    }
  }
  EXPECT_GE(served, 2);
  EXPECT_LE(served, 3);
  EXPECT_EQ(served + refused, 10);
}

}  // namespace
}  // namespace stead::server
