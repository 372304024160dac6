// `steadctl snapshot save|verify|inspect|restore`: backup files (storage/backup_file.h)
// of a member's state, and restoring one into the volumes of a new cluster's first
// member (storage/restore.h).
//
// These are the only steadctl commands that touch files, so steadctl (not the client
// library) links stead::storage. `save` speaks the snapshot stream of the client port
// (pb::SnapshotSaveRequest) over a client_internal::Connection, writing the backup file
// as the chunks arrive.
//
// Thread-safety: one command per process.
#ifndef STEAD_CLIENT_STEADCTL_SNAPSHOT_H_
#define STEAD_CLIENT_STEADCTL_SNAPSHOT_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "stead/client.h"

namespace stead::ctl {

// `steadctl snapshot --help` and the pages of its subcommands.
extern const char kSnapshotHelp[];
extern const char kSnapshotSaveHelp[];
extern const char kSnapshotVerifyHelp[];
extern const char kSnapshotInspectHelp[];
extern const char kSnapshotRestoreHelp[];

struct SnapshotFlags {
  std::vector<std::string> args;  // "snapshot", the subcommand, its arguments
  bool json = false;              // --output=json
  // save: the member to save from (--endpoint); empty: the leader, found through
  // `client`.
  std::string endpoint;
  stead::Client* client = nullptr;
  stead::ClientTlsOptions tls;  // --cacert, --cert, --key: for the save connection
  bool force = false;  // save: replace an existing FILE
  // restore: the new member's volumes, name and advertised addresses.
  std::string data_dir, wal_dir, name, peer_addr, client_addr;
};

// Runs the subcommand: results on stdout (a table line or JSON), progress on stderr
// when it is a terminal. The status decides the exit code: InvalidArgument (bad
// arguments, FILE exists), NotFound (no FILE), DataLoss (a corrupt, truncated or
// foreign file), FailedPrecondition (restore into volumes in use), Unavailable (no
// member or leader), Cancelled (SIGINT/SIGTERM during save).
absl::Status RunSnapshot(const SnapshotFlags& flags);

}  // namespace stead::ctl

#endif  // STEAD_CLIENT_STEADCTL_SNAPSHOT_H_
