// The Ready pipeline's ordering rules on one follower core with a recording runtime.
#include "raft/ready_pipeline.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "raft/memory_log_storage.h"
#include "raft/raft.h"

namespace stead::raft {
namespace {

class RecordingRuntime : public ReadyPipeline::Runtime {
 public:
  void Submit(LogWrite write, uint64_t sequence) override {
    writes.push_back(std::move(write));
    sequences.push_back(sequence);
  }
  void Send(std::vector<pb::Message> messages) override {
    for (const pb::Message& message : messages) {
      sent.push_back(absl::StrCat(pb::MessageType_Name(message.type()), "->", message.to()));
    }
  }
  void Apply(std::vector<pb::Entry> entries) override {
    for (const pb::Entry& entry : entries) applied.push_back(entry.index());
  }
  absl::Time Now() override { return now; }
  void InstallSnapshot(const pb::SnapshotMetadata& snapshot) override {
    installs.push_back(snapshot.index());
  }
  void Fail(absl::Status status) override { failures.push_back(std::move(status)); }
  void ObserveWriteLatency(absl::Duration latency) override { latencies.push_back(latency); }

  std::vector<LogWrite> writes;
  std::vector<uint64_t> sequences;
  std::vector<std::string> sent;
  std::vector<Index> applied;
  std::vector<Index> installs;
  std::vector<absl::Status> failures;
  std::vector<absl::Duration> latencies;
  absl::Time now = absl::UnixEpoch();
};

// Node 2 of a bootstrapped three-voter cluster (term 1, indexes 1-3 committed).
class PipelineTest : public ::testing::Test {
 protected:
  void SetUp() override { Create({}); }

  void Create(PipelineOptions options) {
    storage_ = std::make_unique<MemoryLogStorage>();
    ASSERT_TRUE(storage_->Append(Raft::BootstrapEntries({1, 2, 3})).ok());
    pb::HardState hard_state;
    hard_state.set_term(1);
    hard_state.set_commit(3);
    storage_->SetHardState(hard_state);
    Config config;
    config.id = 2;
    config.applied = 3;
    config.logger = Logger(LogLevel::kWarning);
    absl::StatusOr<std::unique_ptr<Raft>> raft = Raft::Create(config, storage_.get());
    ASSERT_TRUE(raft.ok()) << raft.status();
    raft_ = *std::move(raft);
    runtime_ = RecordingRuntime();
    pipeline_ = std::make_unique<ReadyPipeline>(raft_.get(), &runtime_, options);
    pipeline_->Drain(10);
  }

  // Writes the oldest submitted write into storage and reports it durable.
  void Persist(size_t i) {
    const LogWrite& write = runtime_.writes.at(i);
    ASSERT_TRUE(storage_->Append(write.entries).ok());
    if (write.hard_state) storage_->SetHardState(*write.hard_state);
    pipeline_->OnWritten(runtime_.sequences.at(i), absl::OkStatus());
  }

  void Step(pb::Message message) {
    message.set_to(2);
    const absl::Status status = raft_->Step(message);
    ASSERT_TRUE(status.ok()) << status;
  }

  static pb::Message Append(Term term, Index index, Term log_term, Index commit,
                            std::vector<Index> new_entries) {
    pb::Message message;
    message.set_type(pb::MESSAGE_TYPE_APPEND);
    message.set_from(1);
    message.set_term(term);
    message.set_index(index);
    message.set_log_term(log_term);
    message.set_commit(commit);
    for (Index entry_index : new_entries) {
      pb::Entry* entry = message.add_entries();
      entry->set_index(entry_index);
      entry->set_term(term);
      entry->set_type(pb::ENTRY_TYPE_NORMAL);
    }
    return message;
  }

  std::unique_ptr<MemoryLogStorage> storage_;
  std::unique_ptr<Raft> raft_;
  RecordingRuntime runtime_;
  std::unique_ptr<ReadyPipeline> pipeline_;
};

TEST_F(PipelineTest, VoteIsSentOnlyOnceTheVoteIsDurable) {
  pb::Message vote;
  vote.set_type(pb::MESSAGE_TYPE_VOTE);
  vote.set_from(3);
  vote.set_term(2);
  vote.set_index(3);
  vote.set_log_term(1);
  Step(vote);
  EXPECT_EQ(pipeline_->Drain(10), 1);
  ASSERT_EQ(runtime_.writes.size(), 1u);
  ASSERT_TRUE(runtime_.writes[0].hard_state.has_value());
  EXPECT_EQ(runtime_.writes[0].hard_state->vote(), 3u);
  EXPECT_TRUE(runtime_.writes[0].sync);
  EXPECT_TRUE(runtime_.sent.empty());
  EXPECT_EQ(pipeline_->held_messages(), 1u);
  runtime_.now += absl::Milliseconds(3);
  Persist(0);
  EXPECT_EQ(runtime_.sent, std::vector<std::string>{"MESSAGE_TYPE_VOTE_RESPONSE->3"});
  EXPECT_EQ(pipeline_->writes_in_flight(), 0u);
  EXPECT_EQ(runtime_.latencies, std::vector<absl::Duration>{absl::Milliseconds(3)});
}

TEST_F(PipelineTest, UnsafeSwitchSendsTheVoteBeforeItIsDurable) {
  Create(PipelineOptions{.unsafe_send_before_persist_for_testing = true});
  pb::Message vote;
  vote.set_type(pb::MESSAGE_TYPE_VOTE);
  vote.set_from(3);
  vote.set_term(2);
  vote.set_index(3);
  vote.set_log_term(1);
  Step(vote);
  pipeline_->Drain(10);
  EXPECT_EQ(runtime_.writes.size(), 1u);
  EXPECT_EQ(runtime_.sent, std::vector<std::string>{"MESSAGE_TYPE_VOTE_RESPONSE->3"});
}

TEST_F(PipelineTest, AcknowledgementWithNothingToPersistWaitsForTheWriteInFlight) {
  Step(Append(2, 3, 1, 3, {4}));
  pipeline_->Drain(10);
  ASSERT_EQ(runtime_.writes.size(), 1u);
  EXPECT_TRUE(runtime_.writes[0].sync);
  // The same append again: nothing new to persist, but its acknowledgement vouches for
  // entry 4, which write 1 is still writing.
  Step(Append(2, 3, 1, 3, {4}));
  pipeline_->Drain(10);
  EXPECT_EQ(runtime_.writes.size(), 1u);
  EXPECT_TRUE(runtime_.sent.empty());
  EXPECT_EQ(pipeline_->held_messages(), 2u);
  Persist(0);
  EXPECT_EQ(runtime_.sent, (std::vector<std::string>{"MESSAGE_TYPE_APPEND_RESPONSE->1",
                                                     "MESSAGE_TYPE_APPEND_RESPONSE->1"}));
}

TEST_F(PipelineTest, CommitOnlyHardStateNeedsNoSyncAndEntriesApplyAtOnce) {
  Step(Append(2, 3, 1, 3, {4}));
  pipeline_->Drain(10);
  Persist(0);
  // The leader's commit index moves to 4: only the commit changes.
  Step(Append(2, 4, 2, 4, {}));
  pipeline_->Drain(10);
  ASSERT_EQ(runtime_.writes.size(), 2u);
  ASSERT_TRUE(runtime_.writes[1].hard_state.has_value());
  EXPECT_EQ(runtime_.writes[1].hard_state->commit(), 4u);
  EXPECT_FALSE(runtime_.writes[1].sync);
  // Entry 4 was reported durable by write 1: it is applied without waiting for write 2.
  EXPECT_EQ(runtime_.applied, std::vector<Index>{4});
}

TEST_F(PipelineTest, NoReadyIsTakenWhileASnapshotIsInstalled) {
  pb::Message message;
  message.set_type(pb::MESSAGE_TYPE_SNAPSHOT);
  message.set_from(1);
  message.set_term(2);
  pb::SnapshotMetadata* snapshot = message.mutable_snapshot();
  snapshot->set_index(10);
  snapshot->set_term(2);
  for (NodeId voter : {1, 2, 3}) snapshot->mutable_conf_state()->add_voters(voter);
  Step(message);
  EXPECT_EQ(pipeline_->Drain(10), 1);
  EXPECT_EQ(runtime_.installs, std::vector<Index>{10});
  // The state machine is not yet the snapshot: nothing is written or acknowledged.
  EXPECT_TRUE(pipeline_->installing_snapshot());
  EXPECT_TRUE(runtime_.writes.empty());
  EXPECT_TRUE(runtime_.sent.empty());
  Step(Append(2, 10, 2, 10, {11}));
  EXPECT_EQ(pipeline_->Drain(10), 0);
  pipeline_->OnSnapshotInstalled(absl::OkStatus());
  ASSERT_EQ(runtime_.writes.size(), 1u);
  ASSERT_TRUE(runtime_.writes[0].snapshot.has_value());
  EXPECT_EQ(runtime_.writes[0].snapshot->index(), 10u);
  EXPECT_TRUE(runtime_.writes[0].sync);
  EXPECT_EQ(pipeline_->Drain(10), 1);
  ASSERT_EQ(runtime_.writes.size(), 2u);
  ASSERT_EQ(runtime_.writes[1].entries.size(), 1u);
  EXPECT_EQ(runtime_.writes[1].entries[0].index(), 11u);
}

TEST_F(PipelineTest, FailedSnapshotInstallStopsThePipeline) {
  pb::Message message;
  message.set_type(pb::MESSAGE_TYPE_SNAPSHOT);
  message.set_from(1);
  message.set_term(2);
  pb::SnapshotMetadata* snapshot = message.mutable_snapshot();
  snapshot->set_index(10);
  snapshot->set_term(2);
  for (NodeId voter : {1, 2, 3}) snapshot->mutable_conf_state()->add_voters(voter);
  Step(message);
  pipeline_->Drain(10);
  pipeline_->OnSnapshotInstalled(absl::DataLossError("bad checkpoint"));
  ASSERT_EQ(runtime_.failures.size(), 1u);
  EXPECT_TRUE(absl::IsDataLoss(runtime_.failures[0]));
  EXPECT_TRUE(runtime_.writes.empty());
  EXPECT_TRUE(pipeline_->failed());
}

TEST_F(PipelineTest, FailedWriteStopsThePipeline) {
  Step(Append(2, 3, 1, 3, {4}));
  pipeline_->Drain(10);
  pipeline_->OnWritten(runtime_.sequences[0], absl::ResourceExhaustedError("disk full"));
  ASSERT_EQ(runtime_.failures.size(), 1u);
  EXPECT_TRUE(absl::IsResourceExhausted(runtime_.failures[0]));
  EXPECT_TRUE(pipeline_->failed());
  EXPECT_TRUE(runtime_.sent.empty());  // the acknowledgement never leaves
  Step(Append(2, 4, 2, 3, {5}));
  EXPECT_EQ(pipeline_->Drain(10), 0);
  EXPECT_EQ(runtime_.writes.size(), 1u);
}

}  // namespace
}  // namespace stead::raft
