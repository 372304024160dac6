#include "server/kv_session.h"

#include <algorithm>
#include <string>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "server/kv_store.h"

namespace stead::server {
namespace {

constexpr char kRecordPrefix = 'c';
constexpr char kExpiryPrefix = 'x';

// Big-endian, so that byte order is numeric order.
std::string BigEndian(uint64_t value) {
  std::string bytes(8, '\0');
  for (int i = 7; i >= 0; --i, value >>= 8)
    bytes[static_cast<size_t>(i)] = static_cast<char>(value & 0xff);
  return bytes;
}

uint64_t LoadBigEndian(absl::string_view bytes) {
  uint64_t value = 0;
  for (const char byte : bytes.substr(0, 8))
    value = (value << 8) | static_cast<unsigned char>(byte);
  return value;
}

// Log times before the epoch (no stamp yet) sort first.
uint64_t ExpiryOrder(int64_t unix_ms) { return unix_ms < 0 ? 0 : static_cast<uint64_t>(unix_ms); }

std::string RecordKey(uint64_t client_id) {
  return std::string(1, kRecordPrefix) + BigEndian(client_id);
}

std::string ExpiryKey(int64_t last_seen_unix_ms, uint64_t client_id) {
  return std::string(1, kExpiryPrefix) + BigEndian(ExpiryOrder(last_seen_unix_ms)) +
         BigEndian(client_id);
}

// What an expiry index key names.
struct IndexEntry {
  int64_t last_seen_unix_ms = 0;
  uint64_t client_id = 0;
};

absl::StatusOr<IndexEntry> ParseExpiryKey(absl::string_view key) {
  if (key.size() != 17) return absl::DataLossError("sessions: malformed expiry index key");
  return IndexEntry{static_cast<int64_t>(LoadBigEndian(key.substr(1, 8))),
                    LoadBigEndian(key.substr(9))};
}

}  // namespace

absl::StatusOr<std::optional<pb::ClientSession>> ReadSession(const storage::StateReader& state,
                                                             uint64_t client_id) {
  STEAD_ASSIGN_OR_RETURN(std::optional<std::string> stored,
                         state.Get(kSessionsKeyspace, RecordKey(client_id)));
  if (!stored) return std::nullopt;
  pb::ClientSession session;
  if (!session.ParseFromString(*stored)) {
    return absl::DataLossError(
        absl::StrCat("session record of client ", client_id, " does not decode"));
  }
  return session;
}

absl::StatusOr<SessionExpiry> ExpireIdleSessions(const storage::StateReader& state,
                                                 int64_t log_time_unix_ms, absl::Duration ttl,
                                                 size_t max_sessions,
                                                 std::vector<storage::Mutation>* mutations) {
  SessionExpiry expiry;
  const int64_t ttl_ms = absl::ToInt64Milliseconds(ttl);
  const int64_t idle_before = log_time_unix_ms - ttl_ms;
  if (idle_before <= 0 || max_sessions == 0) return expiry;
  // The oldest record first: if it is not idle, none is, and none will be until it is.
  storage::ScanOptions scan;
  scan.keyspace = kSessionsKeyspace;
  scan.start_key = std::string(1, kExpiryPrefix);
  scan.end_key = std::string(1, kExpiryPrefix + 1);
  scan.limit = 1;
  STEAD_ASSIGN_OR_RETURN(const storage::ScanResult oldest, state.Scan(scan));
  std::optional<IndexEntry> oldest_entry;
  if (!oldest.pairs.empty()) {
    STEAD_ASSIGN_OR_RETURN(oldest_entry, ParseExpiryKey(oldest.pairs[0].key));
  }
  if (!oldest_entry || oldest_entry->last_seen_unix_ms >= idle_before) {
    // Records only ever get newer (a write moves its record to the log time, which
    // never goes back, and a new one starts there).
    expiry.quiet_until_unix_ms =
        std::min(oldest_entry ? oldest_entry->last_seen_unix_ms : log_time_unix_ms,
                 log_time_unix_ms) + ttl_ms;
    return expiry;
  }
  // Every index key of a record last seen strictly before idle_before sorts below this.
  scan.end_key = std::string(1, kExpiryPrefix) + BigEndian(ExpiryOrder(idle_before));
  scan.limit = std::min(max_sessions, storage::kMaxScanLimit);
  STEAD_ASSIGN_OR_RETURN(const storage::ScanResult idle, state.Scan(scan));
  for (const storage::KeyValue& pair : idle.pairs) {
    STEAD_ASSIGN_OR_RETURN(const IndexEntry entry, ParseExpiryKey(pair.key));
    mutations->push_back(storage::Mutation::Delete(kSessionsKeyspace, pair.key));
    mutations->push_back(storage::Mutation::Delete(kSessionsKeyspace, RecordKey(entry.client_id)));
    expiry.expired.push_back(entry.client_id);
  }
  return expiry;
}

void WriteSession(uint64_t client_id, const std::optional<pb::ClientSession>& previous,
                  const pb::ClientSession& session, std::vector<storage::Mutation>* mutations) {
  if (previous) {
    mutations->push_back(storage::Mutation::Delete(
        kSessionsKeyspace, ExpiryKey(previous->last_seen_unix_ms(), client_id)));
  }
  mutations->push_back(storage::Mutation::Put(
      kSessionsKeyspace, ExpiryKey(session.last_seen_unix_ms(), client_id), ""));
  mutations->push_back(
      storage::Mutation::Put(kSessionsKeyspace, RecordKey(client_id), session.SerializeAsString()));
}

}  // namespace stead::server
