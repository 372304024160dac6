// The storage fault library and the power loss that follows it, seen from a real child
// process (storage_faults_probe) the way the crash tests use them.
#include "tests/tools/storage_faults.h"

#include <signal.h>
#include <stdlib.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/subprocess.h"

namespace stead::testing {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::IsEmpty;

// What the probe printed and how it ended.
struct ProbeRun {
  std::vector<std::string> lines;
  ExitStatus status;
};

class StorageFaultsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = "/tmp/stead-storage-faults-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    root_ = pattern;
    fs::create_directory(Dir());
    // Shares the tracked directory's name as a prefix: must not be tracked.
    fs::create_directory(root_ + "/data2");
  }
  void TearDown() override {
    std::error_code ignored;
    if (!root_.empty()) fs::remove_all(root_, ignored);
  }

  std::string Dir() const { return root_ + "/data"; }
  StorageFaults Faults() const { return StorageFaults(Dir(), root_); }

  // Runs the probe on `file` under the library; bounded by 30 s.
  ProbeRun Probe(const std::string& file, const std::vector<std::string>& ops) {
    SubprocessOptions options;
    options.argv = {STEAD_STORAGE_FAULTS_PROBE, file};
    options.argv.insert(options.argv.end(), ops.begin(), ops.end());
    options.env = Faults().ChildEnv();
    options.capture_stdout = true;
    ProbeRun run;
    absl::StatusOr<std::unique_ptr<Subprocess>> probe = Subprocess::Start(std::move(options));
    EXPECT_OK(probe);
    if (!probe.ok()) return run;
    const absl::Time deadline = absl::Now() + absl::Seconds(30);
    for (int n = 0; n < 100; ++n) {
      absl::StatusOr<std::string> line = (*probe)->ReadLine(deadline - absl::Now());
      if (!line.ok()) break;
      run.lines.push_back(*line);
    }
    const std::optional<ExitStatus> status = (*probe)->WaitFor(deadline - absl::Now());
    EXPECT_TRUE(status.has_value()) << "the probe did not end";
    run.status = status.value_or((*probe)->Kill());
    return run;
  }

  std::vector<std::string> SyncLog() const {
    std::vector<std::string> lines;
    std::ifstream log(Faults().sync_log());
    for (std::string line; std::getline(log, line);) lines.push_back(line);
    return lines;
  }

  std::string root_;
};

std::string Errno(const std::string& op, int error) { return absl::StrCat(op, " errno ", error); }

// Goal: with no fault in force the library changes nothing and logs each sync of a
// file under the directory with the size it made durable, and only those.
TEST_F(StorageFaultsTest, WithoutAFaultEverythingPassesAndSyncsUnderTheDirectoryAreLogged) {
  const std::string file = Dir() + "/wal";
  const ProbeRun run =
      Probe(file, {"write:100", "fsync", "writev:7", "pwrite:50:107", "fdatasync"});
  EXPECT_TRUE(run.status.exited() && run.status.exit_code == 0) << run.status.ToString();
  EXPECT_THAT(run.lines, ElementsAre("write:100 ok", "fsync ok", "writev:7 ok", "pwrite:50:107 ok",
                                     "fdatasync ok"));
  EXPECT_EQ(fs::file_size(file), 157u);
  const ProbeRun outside = Probe(root_ + "/data2/wal", {"write:10", "fsync"});
  EXPECT_THAT(outside.lines, ElementsAre("write:10 ok", "fsync ok"));
  EXPECT_THAT(SyncLog(),
              ElementsAre(absl::StrCat("sync\t100\t", file), absl::StrCat("sync\t157\t", file)));
}

// Goal: write-eio and write-enospc fail every kind of write under the directory with
// their error, and no write elsewhere.
TEST_F(StorageFaultsTest, WriteFaultsFailWritesUnderTheDirectoryOnly) {
  for (const auto& [fault, error] :
       {std::pair{"write-eio", EIO}, std::pair{"write-enospc", ENOSPC}}) {
    SCOPED_TRACE(fault);
    ASSERT_OK(Faults().SetFault(fault));
    const ProbeRun run = Probe(Dir() + "/sst", {"write:10", "pwrite:10:0", "writev:10", "fsync"});
    EXPECT_THAT(run.lines, ElementsAre(Errno("write:10", error), Errno("pwrite:10:0", error),
                                       Errno("writev:10", error), "fsync ok"));
    const ProbeRun outside = Probe(root_ + "/data2/sst", {"write:10"});
    EXPECT_THAT(outside.lines, ElementsAre("write:10 ok"));
  }
  EXPECT_EQ(fs::file_size(Dir() + "/sst"), 0u);
}

// Goal: fsync-eio fails both syncs with EIO and logs nothing: the data is not durable.
TEST_F(StorageFaultsTest, FsyncEioFailsSyncsAndLogsNothing) {
  ASSERT_OK(Faults().SetFault("fsync-eio"));
  const ProbeRun run = Probe(Dir() + "/wal", {"write:10", "fsync", "fdatasync"});
  EXPECT_THAT(run.lines, ElementsAre("write:10 ok", Errno("fsync", EIO), Errno("fdatasync", EIO)));
  EXPECT_THAT(SyncLog(), IsEmpty());
}

// Goal: crash-before-fsync kills the process as it enters the sync: what it wrote is
// in the file (the page cache), nothing is logged as synced.
TEST_F(StorageFaultsTest, CrashBeforeFsyncKillsTheProcessAtTheSync) {
  ASSERT_OK(Faults().SetFault("crash-before-fsync"));
  const ProbeRun run = Probe(Dir() + "/wal", {"write:10", "fdatasync", "write:5"});
  EXPECT_TRUE(run.status.signaled() && run.status.signal == SIGKILL) << run.status.ToString();
  EXPECT_THAT(run.lines, ElementsAre("write:10 ok"));
  EXPECT_EQ(fs::file_size(Dir() + "/wal"), 10u);
  EXPECT_THAT(SyncLog(), IsEmpty());
}

// Goal: torn-write stores the first half of the next write of each kind and kills the
// process.
TEST_F(StorageFaultsTest, TornWriteStoresHalfTheWriteAndKillsTheProcess) {
  ASSERT_OK(Faults().SetFault("torn-write"));
  for (const std::string op : {"write:100", "pwrite:100:0", "writev:100"}) {
    SCOPED_TRACE(op);
    const std::string file = absl::StrCat(Dir(), "/", op.substr(0, op.find(':')));
    const ProbeRun run = Probe(file, {op, "write:1"});
    EXPECT_TRUE(run.status.signaled() && run.status.signal == SIGKILL) << run.status.ToString();
    EXPECT_THAT(run.lines, IsEmpty());
    EXPECT_EQ(fs::file_size(file), 50u);
  }
}

// Goal: after a crash, LosePower cuts each file back to its last sync, follows renames
// (a synced file renamed keeps its synced size under the new name, a never-synced file
// renamed over a synced one leaves nothing durable) and deletes files never synced.
TEST_F(StorageFaultsTest, PowerLossKeepsWhatWasSyncedUnderTheNamesItEndedWith) {
  const std::string d = Dir();
  Probe(d + "/a", {"write:100", "fsync", "write:20", "rename:" + d + "/b"});
  Probe(d + "/c", {"write:30", "fdatasync"});
  Probe(d + "/c.tmp", {"write:40", "rename:" + d + "/c"});  // replaces the synced c
  Probe(d + "/never", {"write:10"});
  Probe(root_ + "/data2/outside", {"write:10"});
  EXPECT_THAT(SyncLog(), ElementsAre(absl::StrCat("sync\t100\t", d, "/a"),
                                     absl::StrCat("rename\t", d, "/a\t", d, "/b"),
                                     absl::StrCat("sync\t30\t", d, "/c"),
                                     absl::StrCat("rename\t", d, "/c.tmp\t", d, "/c")));
  ASSERT_OK_AND_ASSIGN(const PowerLossReport report, Faults().LosePower());
  EXPECT_THAT(report.truncated, ElementsAre(absl::StrCat(d, "/b 120 -> 100")));
  EXPECT_THAT(report.deleted, ::testing::UnorderedElementsAre(d + "/c", d + "/never"));
  EXPECT_EQ(fs::file_size(d + "/b"), 100u);
  EXPECT_FALSE(fs::exists(d + "/a"));
  EXPECT_FALSE(fs::exists(d + "/c"));
  EXPECT_FALSE(fs::exists(d + "/never"));
  EXPECT_EQ(fs::file_size(root_ + "/data2/outside"), 10u);
}

// Goal: MarkEverythingSynced makes what the test process wrote the durable base; only
// what a child added after it is lost.
TEST_F(StorageFaultsTest, MarkEverythingSyncedMakesTheCurrentStateTheBase) {
  fs::create_directory(Dir() + "/sub");
  std::ofstream(Dir() + "/sub/old") << std::string(64, 'o');
  ASSERT_OK(Faults().MarkEverythingSynced());
  Probe(Dir() + "/sub/old", {"pwrite:16:64"});
  Probe(Dir() + "/new", {"write:8"});
  ASSERT_OK_AND_ASSIGN(const PowerLossReport report, Faults().LosePower());
  EXPECT_EQ(fs::file_size(Dir() + "/sub/old"), 64u);
  EXPECT_THAT(report.deleted, ElementsAre(Dir() + "/new"));
}

TEST_F(StorageFaultsTest, UnknownFaultsAndUnreadableSyncLogsAreErrors) {
  EXPECT_THAT(Faults().SetFault("fsync-later"),
              StatusIs(absl::StatusCode::kInvalidArgument, "no storage fault named"));
  std::ofstream(Faults().sync_log()) << "S 10 " << Dir() << "/wal\n";
  EXPECT_THAT(Faults().LosePower(),
              StatusIs(absl::StatusCode::kInvalidArgument, "not a sync log line"));
}

}  // namespace
}  // namespace stead::testing
