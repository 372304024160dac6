#include "storage/file.h"

#include <cerrno>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "storage/wal_test_util.h"
#include "tests/testing/status_matchers.h"

namespace stead::storage {
namespace {

using ::stead::storage::testing::TempDir;
using ::stead::storage::testing::TestFaultInjector;
using ::stead::testing::StatusIs;

TEST(ErrnoToStatus, MapsErrnoToStableCodesAndNamesOpAndPath) {
  const struct {
    const char* name;
    int error_number;
    absl::StatusCode want;
  } cases[] = {
      {"disk full", ENOSPC, absl::StatusCode::kResourceExhausted},
      {"quota", EDQUOT, absl::StatusCode::kResourceExhausted},
      {"missing", ENOENT, absl::StatusCode::kNotFound},
      {"exists", EEXIST, absl::StatusCode::kAlreadyExists},
      {"read-only", EROFS, absl::StatusCode::kPermissionDenied},
      {"denied", EACCES, absl::StatusCode::kPermissionDenied},
      {"io error", EIO, absl::StatusCode::kInternal},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    const absl::Status status = ErrnoToStatus(c.error_number, "fdatasync", "/wal/x.wal");
    EXPECT_EQ(status.code(), c.want);
    EXPECT_THAT(std::string(status.message()), ::testing::HasSubstr("fdatasync /wal/x.wal: "));
    EXPECT_THAT(std::string(status.message()),
                ::testing::HasSubstr(absl::StrCat("(errno ", c.error_number, ")")));
  }
  EXPECT_THAT(ErrnoToStatus(ENOSPC, "pwrite", "f"),
              StatusIs(absl::StatusCode::kResourceExhausted, "volume is full"));
}

TEST(File, WritesReadsTruncatesAndReportsShortReads) {
  TempDir dir;
  const std::string path = dir.path() + "/f";
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<File> file, File::CreateNew(path));
  EXPECT_THAT(File::CreateNew(path), StatusIs(absl::StatusCode::kAlreadyExists, path));
  ASSERT_OK(file->Preallocate(1 << 20));
  ASSERT_OK_AND_ASSIGN(uint64_t size, file->Size());
  EXPECT_EQ(size, 0u);  // preallocation keeps the size
  ASSERT_OK(file->WriteAt(0, "hello world"));
  ASSERT_OK(file->WriteAt(6, "there"));
  ASSERT_OK(file->DataSync());
  ASSERT_OK_AND_ASSIGN(std::string all, file->ReadAll());
  EXPECT_EQ(all, "hello there");
  std::string part;
  ASSERT_OK(file->ReadAt(6, 5, &part));
  EXPECT_EQ(part, "there");
  EXPECT_THAT(file->ReadAt(6, 10, &part), StatusIs(absl::StatusCode::kOutOfRange, "end of file"));
  ASSERT_OK(file->Truncate(5));
  ASSERT_OK_AND_ASSIGN(all, file->ReadAll());
  EXPECT_EQ(all, "hello");
  EXPECT_THAT(File::OpenExisting(dir.path() + "/missing"),
              StatusIs(absl::StatusCode::kNotFound, "missing"));
}

TEST(File, FaultInjectorFailsWritesAndSyncsWithoutTouchingTheFile) {
  TempDir dir;
  TestFaultInjector faults;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<File> file, File::CreateNew(dir.path() + "/f", &faults));
  faults.Arm(FileFaultInjector::Op::kWrite, ENOSPC);
  EXPECT_THAT(file->WriteAt(0, "x"), StatusIs(absl::StatusCode::kResourceExhausted));
  ASSERT_OK_AND_ASSIGN(uint64_t size, file->Size());
  EXPECT_EQ(size, 0u);
  faults.Arm(FileFaultInjector::Op::kSync, EIO);
  EXPECT_THAT(file->DataSync(), StatusIs(absl::StatusCode::kInternal, "Input/output error"));
  EXPECT_THAT(SyncDir(dir.path(), &faults), StatusIs(absl::StatusCode::kInternal));
  faults.Disarm();
  EXPECT_OK(SyncDir(dir.path(), &faults));
}

TEST(FileLock, IsExclusiveUntilReleased) {
  TempDir dir;
  const std::string path = dir.path() + "/LOCK";
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<FileLock> lock, FileLock::Acquire(path));
    EXPECT_THAT(FileLock::Acquire(path),
                StatusIs(absl::StatusCode::kFailedPrecondition, "another process"));
  }
  EXPECT_OK(FileLock::Acquire(path).status());
}

TEST(Dir, CreateListAndRemove) {
  TempDir dir;
  const std::string sub = dir.path() + "/sub";
  ASSERT_OK(CreateDirIfMissing(sub));
  ASSERT_OK(CreateDirIfMissing(sub));
  ASSERT_OK(File::CreateNew(sub + "/b").status());
  ASSERT_OK(File::CreateNew(sub + "/a").status());
  ASSERT_OK_AND_ASSIGN(std::vector<std::string> names, ListDir(sub));
  EXPECT_EQ(names, (std::vector<std::string>{"a", "b"}));
  ASSERT_OK(RemoveFile(sub + "/a"));
  EXPECT_THAT(RemoveFile(sub + "/a"), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(CreateDirIfMissing(sub + "/b"),
              StatusIs(absl::StatusCode::kFailedPrecondition, "not a directory"));
}

}  // namespace
}  // namespace stead::storage
