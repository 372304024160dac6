// The exactly-once table: per client id, the latest sequence applied and its response.
//
// A write that carries a client id (non-zero) and a sequence is applied once: a retry
// with the same pair receives the stored response, an older sequence is refused (see
// kv_apply.h). Records live in the `sessions` keyspace, so they survive restarts and
// travel in snapshots:
//   "c" + client id (8 bytes, big-endian)                  -> pb::ClientSession
//   "x" + last seen (8 bytes, big-endian ms) + client id   -> "" (the expiry index)
// A record idle for longer than the TTL, measured in log time (the highest proposer
// stamp applied so far, see pb::KvMeta), is deleted by a later command. Log time moves
// only through the log, so every member expires the same records at the same index.
//
// Thread-safety: pure functions of their arguments.
#ifndef STEAD_SERVER_KV_SESSION_H_
#define STEAD_SERVER_KV_SESSION_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "proto/kv.pb.h"
#include "storage/state_machine.h"

namespace stead::server {

// The record of `client_id`; nullopt if there is none. DataLoss if it does not decode.
absl::StatusOr<std::optional<pb::ClientSession>> ReadSession(const storage::StateReader& state,
                                                             uint64_t client_id);

struct SessionExpiry {
  std::vector<uint64_t> expired;  // client ids, oldest first
  // Until the log time passes this, no record of the state read can expire and no
  // command need look (0: unknown, look next time).
  int64_t quiet_until_unix_ms = 0;
};

// Appends the deletes of at most `max_sessions` records whose last_seen_unix_ms is
// more than `ttl` before `log_time_unix_ms`, oldest first, and returns their client
// ids. Bounded so that one command never turns into a huge batch; the rest expire with
// the next commands.
absl::StatusOr<SessionExpiry> ExpireIdleSessions(const storage::StateReader& state,
                                                 int64_t log_time_unix_ms, absl::Duration ttl,
                                                 size_t max_sessions,
                                                 std::vector<storage::Mutation>* mutations);

// Appends the mutations that store `session` for `client_id`; `previous` is the record
// it replaces (nullopt if none, or if it was expired by this same command).
void WriteSession(uint64_t client_id, const std::optional<pb::ClientSession>& previous,
                  const pb::ClientSession& session, std::vector<storage::Mutation>* mutations);

}  // namespace stead::server

#endif  // STEAD_SERVER_KV_SESSION_H_
