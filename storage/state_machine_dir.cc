#include "storage/state_machine_dir.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "base/status_macros.h"
#include "storage/checkpoint_files.h"

namespace stead::storage {
namespace {

constexpr char kDatabasePrefix[] = "db-";
// ACTIVE holds one short name; anything bigger is not ours.
constexpr uint64_t kMaxActiveFileBytes = 256;

}  // namespace

absl::StatusOr<std::unique_ptr<DataDirLock>> DataDirLock::Acquire(const std::string& data_dir) {
  STEAD_RETURN_IF_ERROR(files::CreateDirectories(data_dir));
  const std::string path = files::JoinPath(data_dir, kLockFileName);
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return files::ErrnoStatus(errno, "open", path);
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int error = errno;
    ::close(fd);
    if (error == EWOULDBLOCK) {
      return absl::FailedPreconditionError(absl::StrCat(
          "data dir ", data_dir,
          " is in use by another stead process or state machine (", path,
          " is locked): stop it first, or point --data-dir elsewhere"));
    }
    return files::ErrnoStatus(error, "flock", path);
  }
  return std::unique_ptr<DataDirLock>(new DataDirLock(fd));
}

DataDirLock::~DataDirLock() { ::close(fd_); }  // Closing releases the flock.

std::string DatabaseDirName(uint64_t sequence) {
  return absl::StrFormat("%s%06u", kDatabasePrefix, sequence);
}

std::optional<uint64_t> ParseDatabaseDirName(const std::string& name) {
  absl::string_view digits = name;
  if (!absl::ConsumePrefix(&digits, kDatabasePrefix) || digits.empty()) return std::nullopt;
  for (const char c : digits) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) return std::nullopt;
  }
  uint64_t sequence = 0;
  if (!absl::SimpleAtoi(digits, &sequence)) return std::nullopt;
  return sequence;
}

absl::StatusOr<std::optional<std::string>> ReadActive(const std::string& data_dir) {
  const std::string path = files::JoinPath(data_dir, kActiveFileName);
  if (!files::Exists(path)) return std::optional<std::string>();
  STEAD_ASSIGN_OR_RETURN(const std::string contents, files::ReadFile(path, kMaxActiveFileBytes));
  const std::string name(absl::StripAsciiWhitespace(contents));
  if (!ParseDatabaseDirName(name).has_value()) {
    return absl::DataLossError(absl::StrCat(path, " holds '", absl::CHexEscape(contents),
                                            "', not a database directory name"));
  }
  if (!files::IsDirectory(files::JoinPath(data_dir, name))) {
    return absl::DataLossError(absl::StrCat(path, " names ", name,
                                            ", which does not exist: the data volume lost "
                                            "files; wipe it to rejoin as a new member"));
  }
  return std::optional<std::string>(name);
}

absl::Status WriteActive(const std::string& data_dir, const std::string& database_dir_name) {
  return files::WriteFileAtomically(files::JoinPath(data_dir, kActiveFileName),
                                    absl::StrCat(database_dir_name, "\n"));
}

absl::StatusOr<std::string> NextDatabaseDirName(const std::string& data_dir) {
  STEAD_ASSIGN_OR_RETURN(const std::vector<std::string> names, files::ListDirectory(data_dir));
  uint64_t highest = 0;
  for (const std::string& name : names) {
    if (const std::optional<uint64_t> sequence = ParseDatabaseDirName(name)) {
      highest = std::max(highest, *sequence);
    }
  }
  return DatabaseDirName(highest + 1);
}

absl::Status RemoveStrayDatabases(const std::string& data_dir, const std::string& keep,
                                  const Logger& logger) {
  STEAD_ASSIGN_OR_RETURN(const std::vector<std::string> names, files::ListDirectory(data_dir));
  bool removed_any = false;
  for (const std::string& name : names) {
    const bool stray_database = ParseDatabaseDirName(name).has_value() && name != keep;
    const bool stray_active = name == absl::StrCat(kActiveFileName, ".tmp");
    if (!stray_database && !stray_active) continue;
    STEAD_LOG(logger, Info) << "data_dir=" << data_dir << " removing " << name
                            << ", left over from an interrupted start or install";
    STEAD_RETURN_IF_ERROR(files::RemoveAll(files::JoinPath(data_dir, name)));
    removed_any = true;
  }
  if (removed_any) STEAD_RETURN_IF_ERROR(files::SyncPath(data_dir));
  return absl::OkStatus();
}

absl::Status CheckNoForeignEntries(const std::string& data_dir) {
  STEAD_ASSIGN_OR_RETURN(const std::vector<std::string> names, files::ListDirectory(data_dir));
  for (const std::string& name : names) {
    if (name == kLockFileName || name == "lost+found" || name == kCheckpointsDirName ||
        name == kMemberFileName || name == absl::StrCat(kMemberFileName, ".tmp") ||
        name == kIdentityTokenFileName || name == absl::StrCat(kIdentityTokenFileName, ".tmp") ||
        name == absl::StrCat(kActiveFileName, ".tmp") || ParseDatabaseDirName(name).has_value()) {
      continue;
    }
    return absl::FailedPreconditionError(absl::StrCat(
        "data dir ", data_dir, " is not a stead data dir (it holds '", name,
        "' and no ACTIVE file): point --data-dir at an empty directory or a stead volume"));
  }
  return absl::OkStatus();
}

}  // namespace stead::storage
