#include "tests/tools/storage_faults.h"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <system_error>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace stead::testing {
namespace {

namespace fs = std::filesystem;

constexpr absl::string_view kFaults[] = {"write-eio", "write-enospc", "torn-write", "fsync-eio",
                                         "crash-before-fsync"};

absl::Status FileError(const std::error_code& error, absl::string_view what,
                       const std::string& path) {
  return absl::InternalError(absl::StrCat(what, " ", path, ": ", error.message()));
}

bool BuiltWithAddressSanitizer() {
#if defined(__SANITIZE_ADDRESS__)
  return true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
  return true;
#endif
#endif
  return false;
}

// The synced size of every file the sync log names, renames followed.
absl::StatusOr<std::map<std::string, uintmax_t>> ReadSyncLog(const std::string& path) {
  std::map<std::string, uintmax_t> synced;
  std::ifstream log(path);
  if (!log) return synced;  // no child synced anything
  std::string line;
  for (int number = 1; std::getline(log, line); ++number) {
    const std::vector<std::string> fields = absl::StrSplit(line, '\t');
    uintmax_t size = 0;
    if (fields.size() == 3 && fields[0] == "sync" && absl::SimpleAtoi(fields[1], &size)) {
      synced[fields[2]] = size;
    } else if (fields.size() == 3 && fields[0] == "rename") {
      // What was synced under the old name is durable under the new one; a file never
      // synced that replaces a synced one leaves nothing durable there.
      const auto from = synced.find(fields[1]);
      if (from == synced.end()) {
        synced.erase(fields[2]);
      } else {
        const uintmax_t from_size = from->second;
        synced.erase(from);
        synced[fields[2]] = from_size;
      }
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ":", number, ": not a sync log line: ", line));
    }
  }
  return synced;
}

}  // namespace

StorageFaults::StorageFaults(std::string dir, const std::string& scratch_dir)
    : dir_(std::move(dir)),
      control_file_(scratch_dir + "/storage_faults.control"),
      sync_log_(scratch_dir + "/storage_faults.sync_log") {}

std::string StorageFaults::LibraryPath() { return STEAD_STORAGE_FAULTS_LIBRARY; }

std::vector<std::string> StorageFaults::ChildEnv() const {
  std::vector<std::string> env = {absl::StrCat("LD_PRELOAD=", LibraryPath()),
                                  absl::StrCat("STEAD_FAULTS_DIR=", dir_),
                                  absl::StrCat("STEAD_FAULTS_CONTROL=", control_file_),
                                  absl::StrCat("STEAD_FAULTS_SYNC_LOG=", sync_log_)};
  if (BuiltWithAddressSanitizer()) {
    // The sanitizer runtime insists on coming first among the libraries; this one
    // forwards every call to the next definition, the sanitizer's wrappers included.
    const char* options = std::getenv("ASAN_OPTIONS");
    env.push_back(absl::StrCat("ASAN_OPTIONS=", options == nullptr ? "" : options,
                               options == nullptr || *options == '\0' ? "" : ":",
                               "verify_asan_link_order=0"));
  }
  return env;
}

absl::Status StorageFaults::SetFault(absl::string_view fault) const {
  if (!fault.empty() &&
      std::find(std::begin(kFaults), std::end(kFaults), fault) == std::end(kFaults)) {
    return absl::InvalidArgumentError(absl::StrCat("no storage fault named '", fault, "'"));
  }
  // Written whole under a temporary name and renamed: a child reading the control file
  // meanwhile sees the old word or the new one.
  const std::string temporary = control_file_ + ".new";
  {
    std::ofstream out(temporary, std::ios::trunc);
    out << fault << "\n";
    if (!out.flush()) return absl::InternalError(absl::StrCat("cannot write ", temporary));
  }
  std::error_code error;
  fs::rename(temporary, control_file_, error);
  if (error) return FileError(error, "rename to", control_file_);
  return absl::OkStatus();
}

absl::Status StorageFaults::MarkEverythingSynced() const {
  std::ofstream log(sync_log_, std::ios::trunc);
  std::error_code error;
  for (auto it = fs::recursive_directory_iterator(dir_, error);
       !error && it != fs::recursive_directory_iterator(); it.increment(error)) {
    if (!it->is_regular_file()) continue;
    const uintmax_t size = it->file_size(error);
    if (error) return FileError(error, "size of", it->path().string());
    log << "sync\t" << size << "\t" << it->path().string() << "\n";
  }
  if (error && error != std::errc::no_such_file_or_directory) {
    return FileError(error, "listing", dir_);
  }
  if (!log.flush()) return absl::InternalError(absl::StrCat("cannot write ", sync_log_));
  return absl::OkStatus();
}

absl::StatusOr<PowerLossReport> StorageFaults::LosePower() const {
  absl::StatusOr<std::map<std::string, uintmax_t>> synced = ReadSyncLog(sync_log_);
  if (!synced.ok()) return synced.status();
  // Listed first, changed after: the iterator is not disturbed by the deletions.
  std::vector<fs::path> files;
  std::error_code error;
  for (auto it = fs::recursive_directory_iterator(dir_, error);
       !error && it != fs::recursive_directory_iterator(); it.increment(error)) {
    if (it->is_regular_file()) files.push_back(it->path());
  }
  if (error && error != std::errc::no_such_file_or_directory) {
    return FileError(error, "listing", dir_);
  }
  PowerLossReport report;
  for (const fs::path& file : files) {
    const auto entry = synced->find(file.string());
    if (entry == synced->end()) {
      if (!fs::remove(file, error) || error) return FileError(error, "deleting", file.string());
      report.deleted.push_back(file.string());
      continue;
    }
    const uintmax_t size = fs::file_size(file, error);
    if (error) return FileError(error, "size of", file.string());
    if (size <= entry->second) continue;
    fs::resize_file(file, entry->second, error);
    if (error) return FileError(error, "truncating", file.string());
    report.truncated.push_back(absl::StrCat(file.string(), " ", size, " -> ", entry->second));
  }
  return report;
}

}  // namespace stead::testing
