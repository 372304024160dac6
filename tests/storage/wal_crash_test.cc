// Real-process crash test of the WAL.
//
// Goal: every write the WAL acknowledged survives a crash followed by the loss of the
// page cache (power loss), and recovery never finds a corrupt entry.
// Method: each round starts wal_crash_writer (which appends, truncates and compacts with
// pipelined, group-committed writes and prints each acknowledgement) with the storage
// fault library (tests/tools/storage_faults.h) and a sync log; kills it with SIGKILL at
// a random moment, or lets the library kill it mid-write (torn-write) or at an fsync
// (crash-before-fsync), or makes its fsyncs fail with EIO (fsync-eio: the WAL must fail
// and acknowledge nothing more, and what it acknowledged before must survive); then
// emulates power loss (every file cut back to its last synced size, never-synced files
// deleted); then reopens the WAL in this process and checks it against the
// acknowledgements. The seed fixes the kill moments and modes.
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "storage/wal.h"
#include "tests/storage/crash_entries.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/subprocess.h"
#include "tests/tools/storage_faults.h"

namespace stead::storage {
namespace {

using raft::Index;
using raft::Term;

constexpr uint64_t kSeed = 20261122;
constexpr int kRounds = 20;

// What the writer's output lets us expect from the recovered log.
struct Expectations {
  std::map<Index, Term> acked;  // index -> term of acknowledged entries still expected
  Term hard_state_term = 0;     // highest acknowledged hard state term
  Index max_compacting = 0;     // highest compaction ever submitted
  int ack_lines = 0;
  std::vector<std::string> failures;
  int acks_after_failure = 0;  // must stay 0: a failed WAL acknowledges nothing more

  void Apply(absl::string_view line) {
    std::vector<std::string> words = absl::StrSplit(line, ' ');
    std::vector<uint64_t> numbers;
    for (size_t i = 1; i < words.size(); ++i) {
      uint64_t value = 0;
      if (absl::SimpleAtoi(words[i], &value)) numbers.push_back(value);
    }
    if (words[0] == "ACK" && numbers.size() == 3) {
      if (!failures.empty()) ++acks_after_failure;
      // An acknowledged write replaces everything from its first index on.
      acked.erase(acked.lower_bound(numbers[0]), acked.end());
      for (Index index = numbers[0]; index <= numbers[1]; ++index) acked[index] = numbers[2];
      ++ack_lines;
    } else if (words[0] == "TRUNCATING" && numbers.size() == 1) {
      // From now on these may be replaced by entries we may never hear about.
      acked.erase(acked.lower_bound(numbers[0]), acked.end());
    } else if (words[0] == "COMPACTING" && numbers.size() == 1) {
      max_compacting = std::max(max_compacting, numbers[0]);
    } else if (words[0] == "HS" && numbers.size() == 2) {
      hard_state_term = std::max(hard_state_term, numbers[0]);
    } else if (words[0] == "FAIL" || words[0] == "OPENFAIL") {
      failures.emplace_back(line);
    }
  }
};

// The writer process and its stdout.
class Writer {
 public:
  // Starts `argv` with `env` added to this process's environment; its stderr stays
  // this process's.
  Writer(const std::vector<std::string>& argv, const std::vector<std::string>& env) {
    stead::testing::SubprocessOptions options;
    options.argv = argv;
    options.env = env;
    options.capture_stdout = true;
    absl::StatusOr<std::unique_ptr<stead::testing::Subprocess>> process =
        stead::testing::Subprocess::Start(std::move(options));
    EXPECT_OK(process);
    if (process.ok()) process_ = std::move(process).value();
  }
  bool started() const { return process_ != nullptr; }

  // Reads whole lines until `deadline` or end of output; false at end of output.
  bool ReadUntil(std::chrono::steady_clock::time_point deadline, Expectations& expect) {
    const absl::Time until =
        absl::Now() + absl::FromChrono(deadline - std::chrono::steady_clock::now());
    while (true) {
      // A partial last line (the writer killed mid-write) is never returned.
      absl::StatusOr<std::string> line = process_->ReadLine(until - absl::Now());
      if (absl::IsOutOfRange(line.status())) return false;
      if (!line.ok()) return true;  // the deadline
      expect.Apply(*line);
    }
  }

  // SIGKILLs the writer unless it already ended, and reaps it.
  void Kill() { process_->Kill(); }

 private:
  std::unique_ptr<stead::testing::Subprocess> process_;  // its destructor kills and reaps
};

class WalCrashTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = "/tmp/stead_wal_crash.XXXXXX";
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    root_ = pattern;
  }
  void TearDown() override {
    if (root_.empty()) return;
    std::error_code ignored;
    std::filesystem::remove_all(root_, ignored);
  }

  std::string root_;
};

void CheckRecoveredLog(const std::string& dir, const Expectations& expect) {
  WalOptions options;
  options.dir = dir;
  options.identity = "wal-crash-test";
  options.logger = Logger(LogLevel::kError);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Wal> wal, Wal::Open(options));
  const Index first = wal->FirstIndex();
  const Index last = wal->LastIndex();
  // Every entry in the log is intact (CRC, index, term, bytes).
  for (Index low = first; low <= last;) {
    ASSERT_OK_AND_ASSIGN(std::vector<pb::Entry> entries, wal->Entries(low, last + 1, 1 << 20));
    for (const pb::Entry& entry : entries) {
      ASSERT_EQ(entry.index(), low);
      ASSERT_EQ(entry.data(), crash_test::EntryData(entry.index(), entry.term()))
          << "entry " << entry.index();
      ++low;
    }
  }
  // Every acknowledged entry is there, unless a compaction (acknowledged or not) may
  // have removed it.
  if (first > 1) {
    EXPECT_LE(first - 1, expect.max_compacting) << "the log lost a prefix nobody compacted";
  }
  if (!expect.acked.empty()) {
    EXPECT_GE(last, expect.acked.rbegin()->first);
  }
  for (const auto& [index, term] : expect.acked) {
    if (index < first) continue;
    ASSERT_LE(index, last) << "acknowledged entry " << index << " is missing";
    absl::StatusOr<Term> got = wal->TermAt(index);
    ASSERT_OK(got.status());
    ASSERT_EQ(*got, term) << "acknowledged entry " << index << " was replaced";
  }
  EXPECT_GE(wal->InitialState().hard_state.term(), expect.hard_state_term);
}

TEST_F(WalCrashTest, AcknowledgedEntriesSurviveKillAndPowerLoss) {
  const std::string dir = root_ + "/wal";
  const stead::testing::StorageFaults faults(dir, root_);
  std::mt19937_64 rng(kSeed);
  Expectations expect;
  for (int round = 1; round <= kRounds; ++round) {
    // 0: SIGKILL, 1: torn write, 2: crash at fsync, 3: fsync EIO then SIGKILL.
    const int mode = round % 4;
    const char* const kFaults[] = {"", "torn-write", "crash-before-fsync", "fsync-eio"};
    expect.failures.clear();
    SCOPED_TRACE(absl::StrCat("seed=", kSeed, " round=", round, " mode=", mode));
    ASSERT_OK(faults.SetFault(""));
    {
      Writer writer({STEAD_WAL_CRASH_WRITER, dir, std::to_string(round), std::to_string(rng())},
                    faults.ChildEnv());
      ASSERT_TRUE(writer.started());
      const auto start = std::chrono::steady_clock::now();
      const auto fault_at = start + std::chrono::milliseconds(150 + rng() % 700);
      if (writer.ReadUntil(fault_at, expect)) {
        if (mode == 0) {
          writer.Kill();
        } else {
          ASSERT_OK(faults.SetFault(kFaults[mode]));
        }
        // The library kills the writer at its next write or sync, or (fsync-eio) the writer
        // stops at its first failed write; bound the wait anyway.
        writer.ReadUntil(std::chrono::steady_clock::now() + std::chrono::seconds(20), expect);
      }
      writer.Kill();
    }
    ASSERT_OK(faults.SetFault(""));
    if (mode == 3) {
      // The failed fdatasync's error, which the WAL reports and then refuses writes.
      EXPECT_FALSE(expect.failures.empty()) << "fsync-eio was never reported";
      for (const std::string& failure : expect.failures) {
        EXPECT_NE(failure.find("INTERNAL"), std::string::npos) << failure;
      }
    } else {
      ASSERT_TRUE(expect.failures.empty()) << expect.failures.front();
    }
    ASSERT_EQ(expect.acks_after_failure, 0);
    ASSERT_OK(faults.LosePower().status());
    ASSERT_NO_FATAL_FAILURE(CheckRecoveredLog(dir, expect));
  }
  // The test only means something if the writer got acknowledgements.
  EXPECT_GT(expect.ack_lines, kRounds * 5);
  EXPECT_GT(expect.acked.size(), 100u);
  std::printf("acknowledged writes: %d, entries expected at the end: %zu\n", expect.ack_lines,
              expect.acked.size());
}

}  // namespace
}  // namespace stead::storage
