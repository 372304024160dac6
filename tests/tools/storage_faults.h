// Storage faults and power loss for crash tests with real processes.
//
// A child started with ChildEnv() in its environment runs with libstead_storage_faults.so
// preloaded (storage_faults.c): writes and syncs of the files under `dir` fail, tear or
// kill the child as SetFault() says, and every successful sync is logged. Once the child
// is dead, LosePower() leaves `dir` as a power loss would have: each file cut back to
// the size it had when it was last synced, files never synced gone.
//
//   StorageFaults faults(scratch + "/data", scratch);
//   SubprocessOptions options{.argv = {writer}, .env = faults.ChildEnv()};
//   ... start the child, let it work ...
//   ASSERT_OK(faults.SetFault("torn-write"));  // it dies at its next write
//   ... wait for it, or SIGKILL it ...
//   ASSERT_OK(faults.SetFault(""));
//   ASSERT_OK(faults.LosePower().status());
//   ... reopen `dir` and check that everything acknowledged survived ...
//
// The power loss model is that of append-only files (a WAL, SST files, a MANIFEST): it
// undoes appends past the last sync, not overwrites below it, and takes a rename as
// durable once it returned (directories are not tracked). Writes the test process
// itself makes, without the library, are not logged: a test that writes under `dir`
// between children calls MarkEverythingSynced() to make that state the new base.
#ifndef STEAD_TESTS_TOOLS_STORAGE_FAULTS_H_
#define STEAD_TESTS_TOOLS_STORAGE_FAULTS_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace stead::testing {

// What LosePower() did, path by path.
struct PowerLossReport {
  std::vector<std::string> truncated;  // "<path> <size> -> <synced size>"
  std::vector<std::string> deleted;    // never synced
};

class StorageFaults {
 public:
  // Faults for the files under `dir` (absolute, need not exist yet); the control file
  // and the sync log are kept in `scratch_dir`, which must exist and lie outside `dir`.
  StorageFaults(std::string dir, const std::string& scratch_dir);

  const std::string& dir() const { return dir_; }
  const std::string& sync_log() const { return sync_log_; }

  // Environment entries ("NAME=value", as SubprocessOptions::env takes them) that
  // preload the library in a child and point it at `dir`, the control file and the
  // sync log. In an AddressSanitizer build they also let the sanitizer runtime accept a
  // preloaded library ahead of it.
  std::vector<std::string> ChildEnv() const;

  // Puts `fault` in force for every child from its next write or sync on: one of
  // "write-eio", "write-enospc", "torn-write", "fsync-eio", "crash-before-fsync"
  // (storage_faults.c says what each does), or "" for none. InvalidArgument for any
  // other word; Internal when the control file cannot be written.
  absl::Status SetFault(absl::string_view fault) const;

  // Starts a new sync log in which every regular file now under `dir` is synced at its
  // current size: the state the test process left is the base a later power loss
  // falls back to. Internal on a file system error.
  absl::Status MarkEverythingSynced() const;

  // Emulates the power loss after the last child ended (call it only then): every
  // regular file under `dir` longer than its last logged sync is truncated to it
  // (renames followed), and every file never synced is deleted. InvalidArgument for a
  // sync log line it cannot read; Internal on a file system error.
  absl::StatusOr<PowerLossReport> LosePower() const;

  // The path of libstead_storage_faults.so.
  static std::string LibraryPath();

 private:
  std::string dir_;
  std::string control_file_;
  std::string sync_log_;
};

}  // namespace stead::testing

#endif  // STEAD_TESTS_TOOLS_STORAGE_FAULTS_H_
