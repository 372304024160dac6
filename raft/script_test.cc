// Data-driven scenario scripts (raft/testdata/*.txt), run over the in-test network.
//
// A script is a sequence of blocks:
//
//   # comments and blank lines between blocks are kept as they are
//   command arg arg
//   ----
//   expected output, one line per event (messages delivered or dropped, entries
//   applied, read states, snapshots installed) or as the command prints it
//
// The expected output ends at the first blank line. Each script runs in a fresh world.
// After a deliberate behaviour change, regenerate the files with
//   STEAD_RAFT_REWRITE=1 build/dev/raft/raft_script_test
// and commit the rewrite only when every changed line is explained.
//
// Commands:
//   add-nodes N [pre-vote=false] [check-quorum=false] [lease-reads=true]
//   add-empty-node ID
//   campaign ID | tick ID [COUNT] | tick-all COUNT
//   propose ID DATA | read-index ID CONTEXT | transfer-leadership FROM TO
//   conf-change ID add-learner|add-voter|remove NODE
//   deliver-msgs [ROUNDS] | stabilize
//   cut A B | cut-one-way FROM TO | isolate ID | heal
//   crash ID | restart ID | compact ID INDEX
//   status [ID...]
//
// Driving one node's Readys through a ReadyPipeline by hand (raft/ready_pipeline.h):
//   manual ID   from now on the network leaves ID's Readys to the commands below
//   ready ID    the pipeline takes one Ready: prints what it sends at once, the write it
//               submits, the entries it hands to the applier, the messages it holds
//   persist ID  the oldest write becomes durable: prints the held messages now sent
//               and the OnPersisted it reports
//   apply ID    applies the entries handed to the applier
// A crash loses the writes in flight and the messages held for them.
#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "raft/raft.h"
#include "raft/ready_pipeline.h"
#include "raft/test_network.h"

#ifndef STEAD_RAFT_TESTDATA_DIR
#error "STEAD_RAFT_TESTDATA_DIR must name raft/testdata"
#endif

namespace stead::raft {
namespace {

using testing::TestNetwork;

struct Block {
  std::vector<std::string> preamble;  // comments and blank lines before the command
  std::string command;
  std::vector<std::string> expected;
};

std::vector<Block> ParseScript(const std::string& text) {
  std::vector<Block> blocks;
  std::vector<std::string> lines = absl::StrSplit(text, '\n');
  if (!lines.empty() && lines.back().empty()) lines.pop_back();
  Block current;
  for (size_t i = 0; i < lines.size(); ++i) {
    const std::string& line = lines[i];
    if (line.empty() || line[0] == '#') {
      current.preamble.push_back(line);
      continue;
    }
    current.command = line;
    ++i;
    if (i < lines.size() && lines[i] == "----") {
      for (++i; i < lines.size() && !lines[i].empty(); ++i) current.expected.push_back(lines[i]);
    }
    blocks.push_back(std::move(current));
    current = Block();
    if (i < lines.size()) current.preamble.push_back("");  // the terminating blank line
  }
  if (!current.preamble.empty()) {
    current.command.clear();
    blocks.push_back(std::move(current));
  }
  return blocks;
}

uint64_t Number(const std::vector<std::string>& args, size_t i, uint64_t fallback = 0) {
  uint64_t value = fallback;
  if (i < args.size() && !absl::SimpleAtoi(args[i], &value)) {
    ADD_FAILURE() << "not a number: " << args[i];
  }
  return value;
}

std::string Describe(const absl::Status& status) {
  return status.ok() ? "ok" : absl::StrCat("error: ", status.ToString());
}

std::string DescribeWrite(const LogWrite& write) {
  std::vector<std::string> parts;
  if (write.snapshot) {
    parts.push_back(absl::StrCat("snapshot=", write.snapshot->term(), "/", write.snapshot->index()));
  }
  if (!write.entries.empty()) {
    std::vector<std::string> entries;
    for (const pb::Entry& entry : write.entries) entries.push_back(testing::DescribeEntry(entry));
    parts.push_back(absl::StrCat("entries=[", absl::StrJoin(entries, " "), "]"));
  }
  if (write.hard_state) {
    parts.push_back(absl::StrCat("hard_state=(term=", write.hard_state->term(),
                                 " vote=", write.hard_state->vote(),
                                 " commit=", write.hard_state->commit(), ")"));
  }
  parts.push_back(write.sync ? "sync" : "no-sync");
  return absl::StrJoin(parts, " ");
}

// The runtime under a manual node's pipeline: writes wait for `persist`, committed
// entries for `apply`, messages go to the network's queue.
class ManualNode final : public ReadyPipeline::Runtime {
 public:
  ManualNode(TestNetwork* net, NodeId id, std::vector<std::string>* out)
      : net_(net), id_(id), out_(out), pipeline_(&net->raft(id), this) {}

  void TakeReady() {
    if (pipeline_.Drain(1) == 0) {
      out_->push_back(absl::StrCat(id_, " has no Ready"));
      return;
    }
    if (const size_t held = pipeline_.held_messages(); held > 0) {
      out_->push_back(absl::StrCat(id_, " holds ", held, " message(s) until write ",
                                   writes_.back().first, " is durable"));
    }
  }

  void Persist() {
    if (writes_.empty()) {
      out_->push_back(absl::StrCat(id_, " has no write in flight"));
      return;
    }
    auto [sequence, write] = std::move(writes_.front());
    writes_.pop_front();
    TestNetwork::Node& node = net_->node(id_);
    if (write.snapshot) {
      EXPECT_TRUE(node.storage->ApplySnapshot(*write.snapshot).ok());
    }
    EXPECT_TRUE(node.storage->Append(write.entries).ok());
    if (write.hard_state) node.storage->SetHardState(*write.hard_state);
    out_->push_back(absl::StrCat(id_, " persisted write ", sequence));
    if (const auto position = pipeline_.OnWritten(sequence, absl::OkStatus())) {
      out_->push_back(absl::StrCat(id_, " OnPersisted ", position->second, "/", position->first));
    }
  }

  void ApplyNow() {
    if (to_apply_.empty()) out_->push_back(absl::StrCat(id_, " has nothing to apply"));
    net_->ApplyCommitted(id_, to_apply_);
    to_apply_.clear();
  }

  // ReadyPipeline::Runtime.
  void Submit(LogWrite write, uint64_t sequence) override {
    out_->push_back(absl::StrCat(id_, " submits write ", sequence, ": ", DescribeWrite(write)));
    writes_.emplace_back(sequence, std::move(write));
  }
  void Send(std::vector<pb::Message> messages) override {
    for (pb::Message& message : messages) {
      out_->push_back(absl::StrCat(id_, " sends ", testing::DescribeMessage(message)));
      net_->Enqueue(std::move(message));
    }
  }
  void Apply(std::vector<pb::Entry> entries) override {
    for (pb::Entry& entry : entries) {
      out_->push_back(absl::StrCat(id_, " hands to the applier ", testing::DescribeEntry(entry)));
      to_apply_.push_back(std::move(entry));
    }
  }
  absl::Time Now() override { return absl::UnixEpoch(); }
  void InstallSnapshot(const pb::SnapshotMetadata& snapshot) override {
    out_->push_back(
        absl::StrCat(id_, " installs snapshot ", snapshot.term(), "/", snapshot.index()));
    net_->node(id_).applied_index = snapshot.index();
    pipeline_.OnSnapshotInstalled(absl::OkStatus());
  }
  void Fail(absl::Status status) override {
    out_->push_back(absl::StrCat(id_, " pipeline failed: ", status.ToString()));
  }
  void OnSoftState(const SoftState& soft_state) override {
    out_->push_back(absl::StrCat(id_, " is now ", RoleName(soft_state.role),
                                 " leader=", soft_state.leader));
  }
  void OnReadStates(std::vector<ReadState> read_states) override {
    for (const ReadState& state : read_states) {
      out_->push_back(
          absl::StrCat(id_, " read-state index=", state.index, " context=", state.context));
    }
  }

 private:
  TestNetwork* const net_;
  const NodeId id_;
  std::vector<std::string>* const out_;
  ReadyPipeline pipeline_;
  std::deque<std::pair<uint64_t, LogWrite>> writes_;
  std::vector<pb::Entry> to_apply_;
};

class ScriptRunner {
 public:
  std::vector<std::string> Run(const std::string& command) {
    std::vector<std::string> args = absl::StrSplit(command, ' ', absl::SkipEmpty());
    out_.clear();
    const std::string& verb = args[0];
    if (verb == "add-nodes") {
      AddNodes(args);
      return out_;
    }
    if (net_ == nullptr) return {"error: add-nodes first"};
    if (verb == "add-empty-node") {
      net_->AddEmptyNode(Number(args, 1));
    } else if (verb == "campaign") {
      Note(net_->raft(Number(args, 1)).Campaign());
      net_->ProcessReadys();
    } else if (verb == "tick") {
      net_->Tick(Number(args, 1), static_cast<int>(Number(args, 2, 1)));
    } else if (verb == "tick-all") {
      net_->TickAll(static_cast<int>(Number(args, 1, 1)));
    } else if (verb == "propose") {
      Note(net_->raft(Number(args, 1)).Propose(args.size() > 2 ? args[2] : ""));
      net_->ProcessReadys();
    } else if (verb == "read-index") {
      Note(net_->raft(Number(args, 1)).ReadIndex(args.size() > 2 ? args[2] : ""));
      net_->ProcessReadys();
    } else if (verb == "transfer-leadership") {
      Note(net_->raft(Number(args, 1)).TransferLeadership(Number(args, 2)));
      net_->ProcessReadys();
    } else if (verb == "conf-change") {
      ConfChange(args);
    } else if (verb == "deliver-msgs") {
      for (uint64_t round = 0; round < Number(args, 1, 1); ++round) net_->DeliverOnce();
    } else if (verb == "stabilize") {
      net_->Stabilize();
    } else if (verb == "cut") {
      net_->Cut(Number(args, 1), Number(args, 2));
    } else if (verb == "cut-one-way") {
      net_->CutOneWay(Number(args, 1), Number(args, 2));
    } else if (verb == "isolate") {
      net_->Isolate(Number(args, 1));
    } else if (verb == "heal") {
      net_->Heal();
    } else if (verb == "crash") {
      // The manual node's pipeline dies with the core: writes in flight and the
      // messages held for them are lost.
      manual_.erase(Number(args, 1));
      net_->Crash(Number(args, 1));
    } else if (verb == "restart") {
      const NodeId id = Number(args, 1);
      net_->Restart(id);
      if (net_->node(id).manual) {
        manual_[id] = std::make_unique<ManualNode>(net_.get(), id, &out_);
      }
    } else if (verb == "manual") {
      const NodeId id = Number(args, 1);
      net_->node(id).manual = true;
      manual_[id] = std::make_unique<ManualNode>(net_.get(), id, &out_);
    } else if (verb == "ready" || verb == "persist" || verb == "apply") {
      auto it = manual_.find(Number(args, 1));
      if (it == manual_.end()) {
        out_.push_back(absl::StrCat("error: node ", Number(args, 1), " is not manual"));
      } else if (verb == "ready") {
        it->second->TakeReady();
      } else if (verb == "persist") {
        it->second->Persist();
      } else {
        it->second->ApplyNow();
      }
    } else if (verb == "compact") {
      net_->Compact(Number(args, 1), Number(args, 2));
    } else if (verb == "status") {
      Status(args);
    } else {
      out_.push_back(absl::StrCat("error: unknown command ", verb));
    }
    for (const std::string& error : net_->step_errors()) out_.push_back("step error: " + error);
    return out_;
  }

 private:
  void AddNodes(const std::vector<std::string>& args) {
    std::vector<NodeId> ids;
    for (NodeId id = 1; id <= Number(args, 1); ++id) ids.push_back(id);
    bool pre_vote = true;
    bool check_quorum = true;
    bool lease_reads = false;
    for (size_t i = 2; i < args.size(); ++i) {
      if (args[i] == "pre-vote=false") pre_vote = false;
      if (args[i] == "check-quorum=false") check_quorum = false;
      if (args[i] == "lease-reads=true") lease_reads = true;
    }
    net_ = std::make_unique<TestNetwork>(ids, [=](Config& config) {
      config.pre_vote = pre_vote;
      config.check_quorum = check_quorum;
      if (lease_reads) config.read_only_mode = ReadOnlyMode::kLeaseBased;
    });
    net_->set_trace(&out_);
  }

  void ConfChange(const std::vector<std::string>& args) {
    pb::ConfChange change;
    const std::string kind = args.size() > 2 ? args[2] : "";
    if (kind == "add-learner") change.set_type(pb::CONF_CHANGE_TYPE_ADD_LEARNER);
    if (kind == "add-voter") change.set_type(pb::CONF_CHANGE_TYPE_ADD_VOTER);
    if (kind == "remove") change.set_type(pb::CONF_CHANGE_TYPE_REMOVE_NODE);
    change.set_node_id(Number(args, 3));
    Note(net_->raft(Number(args, 1)).ProposeConfChange(change));
    net_->ProcessReadys();
  }

  void Status(const std::vector<std::string>& args) {
    std::vector<NodeId> ids;
    for (size_t i = 1; i < args.size(); ++i) ids.push_back(Number(args, i));
    if (ids.empty()) ids = net_->ids();
    for (NodeId id : ids) {
      if (net_->node(id).raft == nullptr) {
        out_.push_back(absl::StrCat(id, ": down"));
        continue;
      }
      const RaftStatus status = net_->raft(id).Status();
      out_.push_back(absl::StrCat(id, ": ", RoleName(status.role), " term=", status.term,
                                  " leader=", status.leader, " commit=", status.commit,
                                  " last=", status.last_index,
                                  " applied=", net_->node(id).applied_index, " voters=(",
                                  absl::StrJoin(status.conf_state.voters(), " "), ") learners=(",
                                  absl::StrJoin(status.conf_state.learners(), " "), ")"));
    }
  }

  void Note(const absl::Status& status) { out_.push_back(Describe(status)); }

  std::unique_ptr<TestNetwork> net_;
  std::vector<std::string> out_;
  std::map<NodeId, std::unique_ptr<ManualNode>> manual_;
};

std::string Render(const std::vector<Block>& blocks) {
  std::ostringstream out;
  for (const Block& block : blocks) {
    for (const std::string& line : block.preamble) out << line << "\n";
    if (block.command.empty()) continue;
    out << block.command << "\n----\n";
    for (const std::string& line : block.expected) out << line << "\n";
  }
  return out.str();
}

class ScriptTest : public ::testing::TestWithParam<std::string> {};

TEST_P(ScriptTest, MatchesExpectedOutput) {
  const std::filesystem::path path = std::filesystem::path(STEAD_RAFT_TESTDATA_DIR) / GetParam();
  std::ifstream in(path);
  ASSERT_TRUE(in.good()) << path;
  std::stringstream text;
  text << in.rdbuf();
  std::vector<Block> blocks = ParseScript(text.str());
  const bool rewrite = std::getenv("STEAD_RAFT_REWRITE") != nullptr;
  ScriptRunner runner;
  for (Block& block : blocks) {
    if (block.command.empty()) continue;
    std::vector<std::string> got = runner.Run(block.command);
    if (rewrite) {
      block.expected = std::move(got);
      continue;
    }
    EXPECT_EQ(absl::StrJoin(got, "\n"), absl::StrJoin(block.expected, "\n"))
        << GetParam() << ": command '" << block.command << "'";
  }
  if (rewrite) {
    std::ofstream(path) << Render(blocks);
  } else {
    EXPECT_EQ(Render(blocks), text.str()) << "the script does not round-trip";
  }
}

std::vector<std::string> Scripts() {
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(STEAD_RAFT_TESTDATA_DIR)) {
    if (entry.path().extension() == ".txt") names.push_back(entry.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

INSTANTIATE_TEST_SUITE_P(Raft, ScriptTest, ::testing::ValuesIn(Scripts()),
                         [](const ::testing::TestParamInfo<std::string>& param_info) {
                           std::string name =
                               param_info.param.substr(0, param_info.param.size() - 4);
                           for (char& c : name) {
                             if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
                           }
                           return name;
                         });

}  // namespace
}  // namespace stead::raft
