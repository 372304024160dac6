// Tests of watch history (what kv_apply records and compacts) and of WatchHub on a real
// state machine (through KvHarness), with a stream that records what it is sent.
#include "server/watch_hub.h"

#include <atomic>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/mutex.h"
#include "gtest/gtest.h"
#include "server/kv_testing.h"
#include "tests/testing/status_matchers.h"

namespace stead::server {
namespace {

using ::stead::testing::StatusIs;

pb::ClientRequest Put(const std::string& key, const std::string& value) {
  pb::ClientRequest request;
  request.mutable_put()->set_key(key);
  request.mutable_put()->set_value(value);
  return request;
}

pb::ClientRequest DeleteRange(const std::string& key, const std::string& range_end) {
  pb::ClientRequest request;
  request.mutable_delete_range()->set_key(key);
  request.mutable_delete_range()->set_range_end(range_end);
  return request;
}

pb::WatchRequest WatchPrefix(const std::string& prefix, int64_t start_revision) {
  pb::WatchRequest watch;
  watch.set_key(prefix);
  std::string end = prefix;
  end.back() = static_cast<char>(end.back() + 1);
  watch.set_range_end(end);
  watch.set_start_revision(start_revision);
  return watch;
}

// "PUT key=value@rev" / "DELETE key@rev".
std::string Describe(const pb::Event& event) {
  if (event.type() == pb::Event::TYPE_DELETE) {
    return absl::StrCat("DELETE ", event.kv().key(), "@", event.kv().mod_revision());
  }
  return absl::StrCat("PUT ", event.kv().key(), "=", event.kv().value(), "@",
                      event.kv().mod_revision());
}

std::vector<std::string> Describe(const std::vector<pb::Event>& events) {
  std::vector<std::string> out;
  for (const pb::Event& event : events) out.push_back(Describe(event));
  return out;
}

pb::KvMeta Meta(const KvHarness& harness) {
  absl::StatusOr<pb::KvMeta> meta = ReadKvMeta(harness.state());
  STEAD_CHECK_OK(meta.status());
  return *meta;
}

absl::StatusOr<HistoryPage> History(const KvHarness& harness, const std::string& key,
                                    const std::string& range_end, int64_t from, int64_t to,
                                    size_t max_bytes = 1 << 20) {
  STEAD_ASSIGN_OR_RETURN(std::unique_ptr<storage::StateSnapshot> snapshot,
                         harness.state().NewSnapshot());
  return ReadHistory(*snapshot, key, range_end, from, to, max_bytes);
}

size_t CountEvents(const std::vector<pb::ClientResponse>& responses) {
  size_t count = 0;
  for (const pb::ClientResponse& response : responses) count += response.watch().events_size();
  return count;
}

class RecordingStream : public WatchStream {
 public:
  void Send(pb::ClientResponse response) override {
    MutexLock lock(&mu_);
    responses_.push_back(std::move(response));
    arrived_.SignalAll();
  }
  size_t UnsentBytes() const override { return unsent.load(); }

  // Waits up to `timeout` until `done` holds for the responses so far; returns them.
  std::vector<pb::ClientResponse> WaitFor(
      const std::function<bool(const std::vector<pb::ClientResponse>&)>& done,
      absl::Duration timeout = absl::Seconds(10)) {
    MutexLock lock(&mu_);
    const absl::Time deadline = absl::Now() + timeout;
    while (!done(responses_) && absl::Now() < deadline) {
      arrived_.WaitWithTimeout(&mu_, deadline - absl::Now());
    }
    return responses_;
  }
  std::vector<pb::ClientResponse> WaitForCount(size_t count) {
    return WaitFor([count](const auto& responses) { return responses.size() >= count; });
  }
  // Lets the hub run for a while (to see that nothing more arrives); the responses.
  std::vector<pb::ClientResponse> Settle() {
    return WaitFor([](const auto&) { return false; }, absl::Milliseconds(300));
  }
  // The events of every response so far, in order.
  std::vector<std::string> EventsSoFar() {
    MutexLock lock(&mu_);
    std::vector<std::string> events;
    for (const pb::ClientResponse& response : responses_) {
      for (const pb::Event& event : response.watch().events()) events.push_back(Describe(event));
    }
    return events;
  }

  std::atomic<size_t> unsent{0};

 private:
  Mutex mu_;
  CondVar arrived_;
  std::vector<pb::ClientResponse> responses_ ABSL_GUARDED_BY(mu_);
};

class WatchTest : public ::testing::Test {
 protected:
  static KvApplyOptions Options() {
    KvApplyOptions options;
    options.history_revisions = 10;
    return options;
  }
  WatchHubOptions HubOptions() {
    WatchHubOptions options;
    options.progress_interval = absl::Milliseconds(50);
    options.max_unsent_bytes = 1000;
    return options;
  }

  KvHarness harness_{absl::StrCat(::testing::TempDir(), "/watch-", getpid()), Options()};
};

TEST_F(WatchTest, HistoryRecordsEveryRevisionsChangesInKeyOrder) {
  harness_.Write(Put("a/1", "x"));                  // 1
  harness_.Write(Put("b/1", "y"));                  // 2
  harness_.Write(Put("a/2", "z"));                  // 3
  harness_.Write(DeleteRange("a/", "a0"));          // 4: both a/ keys
  harness_.Write(DeleteRange("a/", "a0"));          // nothing left: no revision
  pb::ClientRequest txn;                            // 5: put then delete a new key
  *txn.mutable_txn()->add_success()->mutable_put() = Put("c", "1").put();
  *txn.mutable_txn()->add_success()->mutable_delete_range() = DeleteRange("c", "").delete_range();
  *txn.mutable_txn()->add_success()->mutable_put() = Put("b/1", "y2").put();
  harness_.Write(txn);
  ASSERT_EQ(Meta(harness_).revision(), 5);

  ASSERT_OK_AND_ASSIGN(HistoryPage all, History(harness_, "\x01", std::string(1, '\0'), 1, 5));
  EXPECT_EQ(Describe(all.events),
            (std::vector<std::string>{"PUT a/1=x@1", "PUT b/1=y@2", "PUT a/2=z@3", "DELETE a/1@4",
                                      "DELETE a/2@4", "PUT b/1=y2@5"}))
      << "a key created and deleted by one transaction leaves no event";
  EXPECT_EQ(all.through, 5);
  ASSERT_OK_AND_ASSIGN(HistoryPage b, History(harness_, "b/", "b0", 2, 4));
  EXPECT_EQ(Describe(b.events), (std::vector<std::string>{"PUT b/1=y@2"}));
  EXPECT_EQ(b.through, 4);
  ASSERT_OK_AND_ASSIGN(HistoryPage one_key, History(harness_, "a/2", "", 1, 5));
  EXPECT_EQ(Describe(one_key.events), (std::vector<std::string>{"PUT a/2=z@3", "DELETE a/2@4"}));
  ASSERT_OK_AND_ASSIGN(HistoryPage small, History(harness_, "a", std::string(1, '\0'), 1, 5, 1));
  EXPECT_EQ(small.through, 1) << "whole revisions up to the byte budget, at least one";
  EXPECT_EQ(small.events.size(), 1u);
  ASSERT_OK_AND_ASSIGN(HistoryPage counters, History(harness_, "b/1", "", 5, 5));
  ASSERT_EQ(counters.events.size(), 1u);
  EXPECT_EQ(counters.events[0].kv().create_revision(), 2);
  EXPECT_EQ(counters.events[0].kv().version(), 2);
  EXPECT_THAT(History(harness_, "a", "", 6, 6), StatusIs(absl::StatusCode::kDataLoss, "missing"));
}

TEST_F(WatchTest, HistoryIsCompactedInStepsKeepingTheLastRevisions) {
  for (int i = 1; i <= 1005; ++i) harness_.Write(Put("k", absl::StrCat(i)));
  // 10 revisions retained, compacted once 1,000 can go: at revision 1010.
  EXPECT_EQ(Meta(harness_).compacted_revision(), 0);
  for (int i = 1006; i <= 1010; ++i) harness_.Write(Put("k", absl::StrCat(i)));
  EXPECT_EQ(Meta(harness_).compacted_revision(), 1000);
  EXPECT_THAT(History(harness_, "k", "", 1000, 1010),
              StatusIs(absl::StatusCode::kDataLoss, "revision 1000 is missing"));
  ASSERT_OK_AND_ASSIGN(HistoryPage kept, History(harness_, "k", "", 1001, 1010));
  EXPECT_EQ(kept.events.size(), 10u);
  harness_.Restart(/*crash=*/true);
  EXPECT_EQ(Meta(harness_).compacted_revision(), 1000) << "replayed identically";
}

TEST(WatchHistory, AgeLimitCompactsByLogTime) {
  KvApplyOptions options;
  options.history_revisions = 1'000'000;
  options.history_age = absl::Seconds(10);
  KvHarness harness(absl::StrCat(::testing::TempDir(), "/watch-age-", getpid()), options);
  // 128 revisions a second apart in log time; the age check runs every 64 revisions.
  for (int i = 1; i <= 128; ++i) {
    pb::ClientRequest put = Put("k", absl::StrCat(i));
    put.set_proposed_at_unix_ms(1'000'000 + i * 1000);
    harness.Write(put);
  }
  // At revision 128 (log time 1,128,000) everything before 1,118,000 goes: revisions 1..117.
  EXPECT_EQ(Meta(harness).compacted_revision(), 117);
}

TEST_F(WatchTest, DeliversEveryChangeOnceInOrderFromTheStartRevision) {
  harness_.Write(Put("w/a", "1"));  // 1
  harness_.Write(Put("x", "1"));    // 2
  WatchHub hub(HubOptions(), Logger(LogLevel::kWarning));
  hub.Attach(&harness_.state());
  auto stream = std::make_shared<RecordingStream>();
  hub.Open(stream, 7, WatchPrefix("w/", 1));
  std::vector<pb::ClientResponse> first = stream->WaitForCount(2);
  ASSERT_GE(first.size(), 2u);
  EXPECT_TRUE(first[0].watch().created());
  EXPECT_EQ(first[0].request_id(), 7u);
  EXPECT_EQ(first[0].watch().progress_revision(), 0);
  EXPECT_EQ(Describe(first[1].watch().events()[0]), "PUT w/a=1@1");

  harness_.Write(Put("w/b", "2"));          // 3
  harness_.Write(DeleteRange("w/a", ""));   // 4
  harness_.Write(Put("y", "2"));            // 5
  hub.Notify();
  stream->Settle();
  EXPECT_EQ(stream->EventsSoFar(),
            (std::vector<std::string>{"PUT w/a=1@1", "PUT w/b=2@3", "DELETE w/a@4"}));
  std::vector<pb::ClientResponse> all = stream->Settle();
  EXPECT_EQ(all.back().watch().progress_revision(), 5)
      << "a progress response covers revisions that touched no watched key";
  for (const pb::ClientResponse& response : all) {
    EXPECT_EQ(response.request_id(), 7u);
    EXPECT_FALSE(response.has_error());
  }

  ASSERT_OK(hub.Cancel(stream.get(), 7));
  EXPECT_THAT(hub.Cancel(stream.get(), 7), StatusIs(absl::StatusCode::kNotFound));
  std::vector<pb::ClientResponse> ended = stream->Settle();
  EXPECT_TRUE(ended.back().watch().canceled());
  EXPECT_FALSE(ended.back().has_error()) << "cancelled by the client";
  EXPECT_EQ(hub.watch_count(), 0u);
}

TEST_F(WatchTest, StartRevisionZeroMeansChangesFromNowOn) {
  harness_.Write(Put("w/a", "1"));
  WatchHub hub(HubOptions(), Logger(LogLevel::kWarning));
  hub.Attach(&harness_.state());
  auto stream = std::make_shared<RecordingStream>();
  hub.Open(stream, 1, WatchPrefix("w/", 0));
  ASSERT_EQ(stream->WaitForCount(1).size(), 1u);
  harness_.Write(Put("w/a", "2"));
  hub.Notify();
  stream->WaitFor([](const auto& responses) { return CountEvents(responses) == 1; });
  EXPECT_EQ(stream->EventsSoFar(), (std::vector<std::string>{"PUT w/a=2@2"}));
}

TEST_F(WatchTest, CompactedStartIsRefusedWithTheOldestRevision) {
  for (int i = 1; i <= 1010; ++i) harness_.Write(Put("k", absl::StrCat(i)));
  WatchHub hub(HubOptions(), Logger(LogLevel::kWarning));
  hub.Attach(&harness_.state());
  auto stream = std::make_shared<RecordingStream>();
  hub.Open(stream, 3, WatchPrefix("k", 5));
  std::vector<pb::ClientResponse> responses = stream->WaitForCount(1);
  ASSERT_EQ(responses.size(), 1u);
  EXPECT_TRUE(responses[0].watch().canceled());
  EXPECT_EQ(responses[0].error().code(), static_cast<int>(absl::StatusCode::kOutOfRange));
  EXPECT_EQ(responses[0].watch().oldest_revision(), 1001);
  EXPECT_NE(responses[0].error().message().find("oldest revision available is 1001"),
            std::string::npos)
      << responses[0].error().message();

  auto from_oldest = std::make_shared<RecordingStream>();
  hub.Open(from_oldest, 4, WatchPrefix("k", 1001));
  from_oldest->WaitFor([](const auto& seen) { return CountEvents(seen) == 10; });
  EXPECT_EQ(from_oldest->EventsSoFar().size(), 10u);
}

TEST_F(WatchTest, SlowWatcherIsCancelledWithTheRevisionToResumeFrom) {
  WatchHub hub(HubOptions(), Logger(LogLevel::kWarning));
  hub.Attach(&harness_.state());
  auto stream = std::make_shared<RecordingStream>();
  hub.Open(stream, 9, WatchPrefix("w/", 1));
  ASSERT_EQ(stream->WaitForCount(1).size(), 1u);
  stream->unsent = 5000;  // the client stopped reading
  harness_.Write(Put("w/a", "1"));
  hub.Notify();
  std::vector<pb::ClientResponse> responses =
      stream->WaitFor([](const auto& r) { return r.back().watch().canceled(); });
  ASSERT_TRUE(responses.back().watch().canceled());
  EXPECT_EQ(responses.back().error().code(),
            static_cast<int>(absl::StatusCode::kResourceExhausted));
  EXPECT_NE(responses.back().error().message().find("watch again from revision 1"),
            std::string::npos)
      << responses.back().error().message();
  // Writes were never held up: the state machine applied on regardless.
  harness_.Write(Put("w/b", "2"));
  EXPECT_EQ(Meta(harness_).revision(), 2);
}

TEST_F(WatchTest, BadRequestsDuplicatesAndDetachEndTheStream) {
  WatchHub hub(HubOptions(), Logger(LogLevel::kWarning));
  auto stream = std::make_shared<RecordingStream>();
  pb::WatchRequest backwards = WatchPrefix("b", 0);
  backwards.set_range_end("a");
  hub.Open(stream, 1, backwards);
  hub.Open(stream, 2, WatchPrefix("w/", 0));
  hub.Open(stream, 2, WatchPrefix("w/", 0));
  std::vector<pb::ClientResponse> responses = stream->WaitForCount(2);
  ASSERT_EQ(responses.size(), 2u) << "not attached: the good watch waits";
  EXPECT_EQ(responses[0].error().code(), static_cast<int>(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(responses[1].error().code(), static_cast<int>(absl::StatusCode::kAlreadyExists));
  hub.Attach(&harness_.state());
  ASSERT_EQ(stream->WaitForCount(3).size(), 3u);
  hub.Detach();
  responses = stream->WaitForCount(4);
  ASSERT_EQ(responses.size(), 4u);
  EXPECT_TRUE(responses[3].watch().canceled());
  EXPECT_EQ(responses[3].error().code(), static_cast<int>(absl::StatusCode::kUnavailable));
  EXPECT_EQ(hub.watch_count(), 0u);
}

TEST_F(WatchTest, ClosedStreamIsForgotten) {
  WatchHub hub(HubOptions(), Logger(LogLevel::kWarning));
  hub.Attach(&harness_.state());
  auto stream = std::make_shared<RecordingStream>();
  hub.Open(stream, 1, WatchPrefix("w/", 0));
  hub.Open(stream, 2, WatchPrefix("v/", 0));
  ASSERT_EQ(stream->WaitForCount(2).size(), 2u);
  EXPECT_EQ(hub.watch_count(), 2u);
  hub.CloseStream(stream.get());
  EXPECT_EQ(hub.watch_count(), 0u);
  harness_.Write(Put("w/a", "1"));
  hub.Notify();
  stream->Settle();
  EXPECT_EQ(stream->EventsSoFar().size(), 0u);
}

}  // namespace
}  // namespace stead::server
