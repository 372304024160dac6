// The layout of the data volume around the state machine's RocksDB directory: the LOCK
// file, the ACTIVE pointer and the numbered database directories (see the layout in
// storage/state_machine.h). Kept apart from the RocksDB code so each step of a first
// start or an install is small and testable.
//
// Thread-safety: functions are safe to call concurrently on different data dirs; the
// DataDirLock serialises users of one data dir across threads and processes.
#ifndef STEAD_STORAGE_STATE_MACHINE_DIR_H_
#define STEAD_STORAGE_STATE_MACHINE_DIR_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "base/log.h"

namespace stead::storage {

inline constexpr char kLockFileName[] = "LOCK";
inline constexpr char kActiveFileName[] = "ACTIVE";
// <data-dir>/checkpoints: where the runtime keeps checkpoints and incoming snapshot
// transfers. On the data volume, so checkpoints hard-link the live SST files.
inline constexpr char kCheckpointsDirName[] = "checkpoints";
// <data-dir>/MEMBER: the runtime's record of its pending identity before the state
// machine holds it (server/member_file.h); its temporary is MEMBER.tmp.
inline constexpr char kMemberFileName[] = "MEMBER";
// <data-dir>/IDENTITY_TOKEN: the --new-cluster-identity token the member was born or
// re-identified under (storage/reidentify.h); its temporary is IDENTITY_TOKEN.tmp.
inline constexpr char kIdentityTokenFileName[] = "IDENTITY_TOKEN";

// An exclusive flock(2) on <data-dir>/LOCK, released on destruction. flock locks belong
// to the open file description, so a second Acquire fails even within one process.
class DataDirLock {
 public:
  // Creates the data dir if needed and takes the lock. FailedPrecondition if another
  // holder has it (another stead process, or a StateMachine open in this one).
  static absl::StatusOr<std::unique_ptr<DataDirLock>> Acquire(const std::string& data_dir);
  ~DataDirLock();
  DataDirLock(const DataDirLock&) = delete;
  DataDirLock& operator=(const DataDirLock&) = delete;

 private:
  explicit DataDirLock(int fd) : fd_(fd) {}
  int fd_;
};

// "db-000007".
std::string DatabaseDirName(uint64_t sequence);
// The sequence number of a "db-<digits>" name; nullopt for any other name.
std::optional<uint64_t> ParseDatabaseDirName(const std::string& name);

// The database directory ACTIVE names; nullopt when there is no ACTIVE file (the dir is
// not initialised). DataLoss if ACTIVE holds anything but a database dir name, or
// names a directory that does not exist.
absl::StatusOr<std::optional<std::string>> ReadActive(const std::string& data_dir);

// Points ACTIVE at `database_dir_name` atomically and durably.
absl::Status WriteActive(const std::string& data_dir, const std::string& database_dir_name);

// A fresh database dir name: one past the highest "db-*" present.
absl::StatusOr<std::string> NextDatabaseDirName(const std::string& data_dir);

// Removes every "db-*" directory except `keep` (empty: all of them) and a leftover
// ACTIVE.tmp, logging each; they are remains of an interrupted first start or install.
absl::Status RemoveStrayDatabases(const std::string& data_dir, const std::string& keep,
                                  const Logger& logger);

// For an uninitialised data dir: FailedPrecondition naming the first entry that stead
// did not create ("lost+found" of a fresh ext4 volume, "checkpoints", the runtime's
// MEMBER and IDENTITY_TOKEN files are allowed), so a mistyped
// --data-dir pointing at someone else's files is never taken over.
absl::Status CheckNoForeignEntries(const std::string& data_dir);

}  // namespace stead::storage

#endif  // STEAD_STORAGE_STATE_MACHINE_DIR_H_
