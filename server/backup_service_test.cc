#include "server/backup_service.h"

#include <atomic>
#include <filesystem>
#include <future>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "base/mutex.h"
#include "server/kv_testing.h"
#include "storage/backup_file.h"
#include "tests/testing/process_cluster.h"
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
  service.Attach(&kv.mutable_state());
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
  service.Attach(&kv.mutable_state());
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
  service.Attach(&kv.mutable_state());
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

// A client connection as the service sees it: responses are queued, and count as
// unsent until the test "writes" them with Take().
class FakeStream : public WatchStream {
 public:
  void Send(pb::ClientResponse response) override {
    MutexLock lock(&mu_);
    unsent_ += response.ByteSizeLong();
    max_unsent_ = std::max(max_unsent_, unsent_.load());
    queue_.push_back(std::move(response));
    cv_.SignalAll();
  }
  size_t UnsentBytes() const override { return unsent_.load(); }

  // The next response, once there is one (nullopt after `timeout`); it no longer counts
  // as unsent.
  std::optional<pb::ClientResponse> Take(absl::Duration timeout = absl::Seconds(30)) {
    MutexLock lock(&mu_);
    const absl::Time deadline = absl::Now() + timeout;
    while (queue_.empty() && absl::Now() < deadline) cv_.WaitWithTimeout(&mu_, deadline - absl::Now());
    if (queue_.empty()) return std::nullopt;
    pb::ClientResponse response = std::move(queue_.front());
    queue_.erase(queue_.begin());
    unsent_ -= response.ByteSizeLong();
    return response;
  }
  size_t queued() {
    MutexLock lock(&mu_);
    return queue_.size();
  }
  size_t max_unsent() {
    MutexLock lock(&mu_);
    return max_unsent_;
  }

 private:
  Mutex mu_;
  CondVar cv_;
  std::vector<pb::ClientResponse> queue_;
  std::atomic<size_t> unsent_{0};
  size_t max_unsent_ = 0;
};

// 40 transactions of 50 keys with 1 KiB values of random bytes (which RocksDB cannot
// compress): about 2 MB of data.
void FillState(KvHarness& kv) {
  std::mt19937 random(42);
  for (int t = 0; t < 40; ++t) {
    pb::ClientRequest txn;
    for (int i = 0; i < 50; ++i) {
      pb::PutRequest* put = txn.mutable_txn()->add_success()->mutable_put();
      put->set_key(absl::StrCat("key-", t, "-", i));
      std::string value(1024, '\0');
      for (char& c : value) c = static_cast<char>(random());
      put->set_value(std::move(value));
    }
    kv.Write(txn);
  }
}

BackupServiceOptions SaveOptions(const std::string& dir) {
  BackupServiceOptions options;
  options.checkpoint_dir = dir;
  options.default_chunk_bytes = 16 << 10;
  options.max_unsent_bytes = 64 << 10;
  return options;
}

bool EmptyOrAbsent(const std::string& dir) {
  return !std::filesystem::exists(dir) || std::filesystem::is_empty(dir);
}

// Goal: a save streams the whole checkpoint, never holding more than the window (plus
// one chunk) unsent, and removes its checkpoint afterwards. Method: a reader that is
// slower than the service; its chunks feed a BackupStreamWriter, which must verify.
TEST(BackupServiceSave, StreamsTheCheckpointWithinTheWindow) {
  KvHarness kv(TestDir(), KvApplyOptions());
  FillState(kv);
  const std::string checkpoints = TestDir() + "-checkpoints";
  BackupService service(SaveOptions(checkpoints), Logger(LogLevel::kWarning));
  service.Attach(&kv.mutable_state());
  auto stream = std::make_shared<FakeStream>();
  service.OpenSnapshotSave(stream, 7, pb::SnapshotSaveRequest());

  const std::string path = TestDir() + ".stead";
  ASSERT_OK_AND_ASSIGN(auto writer, storage::BackupStreamWriter::Create(path, /*replace=*/true));
  int chunks = 0;
  for (;;) {
    std::optional<pb::ClientResponse> response = stream->Take();
    ASSERT_TRUE(response.has_value()) << "the stream stopped after " << chunks << " chunks";
    ASSERT_EQ(response->request_id(), 7u);
    ASSERT_FALSE(response->has_error()) << response->error().message();
    if (response->snapshot_save().done()) break;
    ASSERT_OK(writer->Write(response->snapshot_save().chunk()));
    ++chunks;
    if (chunks % 8 == 0) std::this_thread::yield();  // let the service fill the window
  }
  ASSERT_OK_AND_ASSIGN(const pb::SnapshotManifest manifest, writer->Finish());
  EXPECT_EQ(manifest.raft().index(), kv.state().applied_index());
  EXPECT_GT(manifest.total_bytes(), 1u << 20) << "too little data to test the window";
  EXPECT_GT(chunks, 64);
  ASSERT_OK(storage::VerifyBackupFile(path).status());
  // One chunk response may go out while the window is exactly full.
  EXPECT_LE(stream->max_unsent(), (64u << 10) + (16u << 10) + 1024);
  EXPECT_TRUE(testing::Eventually([&] { return EmptyOrAbsent(checkpoints); }));
  std::filesystem::remove(path);
}

// Goal: a reader that stops reading pauses the save (the service keeps no more than
// the window queued), a second save meanwhile is refused, and closing the connection
// ends the save without another word and removes its checkpoint.
TEST(BackupServiceSave, PausesForASlowReaderOneSaveAtATimeCancelledByClose) {
  KvHarness kv(TestDir(), KvApplyOptions());
  FillState(kv);
  const std::string checkpoints = TestDir() + "-checkpoints";
  BackupService service(SaveOptions(checkpoints), Logger(LogLevel::kWarning));
  service.Attach(&kv.mutable_state());
  auto stuck = std::make_shared<FakeStream>();
  service.OpenSnapshotSave(stuck, 1, pb::SnapshotSaveRequest());
  ASSERT_TRUE(testing::Eventually([&] { return stuck->UnsentBytes() > (64u << 10); }));
  const size_t queued = stuck->queued();

  auto second = std::make_shared<FakeStream>();
  service.OpenSnapshotSave(second, 2, pb::SnapshotSaveRequest());
  std::optional<pb::ClientResponse> refused = second->Take();
  ASSERT_TRUE(refused.has_value());
  EXPECT_EQ(refused->error().code(), static_cast<int>(absl::StatusCode::kResourceExhausted));
  EXPECT_EQ(refused->request_id(), 2u);

  // Still paused: the refusal did not disturb it, and nothing more was queued.
  EXPECT_EQ(stuck->queued(), queued);
  EXPECT_FALSE(EmptyOrAbsent(checkpoints));
  service.CloseStream(stuck.get());
  EXPECT_TRUE(testing::Eventually([&] { return EmptyOrAbsent(checkpoints); }));
  EXPECT_EQ(stuck->queued(), queued) << "a cancelled save must not answer";

  // The next save runs.
  auto third = std::make_shared<FakeStream>();
  ASSERT_TRUE(testing::Eventually([&] {
    service.OpenSnapshotSave(third, 3, pb::SnapshotSaveRequest());
    std::optional<pb::ClientResponse> first = third->Take();
    if (first.has_value() && first->has_error()) return false;  // the old one was finishing
    return first.has_value();
  }));
  service.Stop();  // cancels the third, paused one
  EXPECT_TRUE(EmptyOrAbsent(checkpoints));
}

TEST(BackupServiceSave, AttachRemovesLeftoversAndBadChunkSizesAreRefused) {
  KvHarness kv(TestDir(), KvApplyOptions());
  kv.Write(Put("a", "1"));
  const std::string checkpoints = TestDir() + "-checkpoints";
  std::filesystem::create_directories(checkpoints + "/save-1-2.partial");
  BackupService service(SaveOptions(checkpoints), Logger(LogLevel::kWarning));
  service.Attach(&kv.mutable_state());
  EXPECT_TRUE(EmptyOrAbsent(checkpoints));

  auto stream = std::make_shared<FakeStream>();
  pb::SnapshotSaveRequest huge;
  huge.set_max_chunk_bytes(1u << 30);
  service.OpenSnapshotSave(stream, 9, huge);
  std::optional<pb::ClientResponse> refused = stream->Take();
  ASSERT_TRUE(refused.has_value());
  EXPECT_EQ(refused->error().code(), static_cast<int>(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace stead::server
