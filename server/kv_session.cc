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

}  // namespace

absl::StatusOr<std::optional<pb::ClientSession>> ReadSession(const storage::StateSnapshot& snapshot,
                                                             uint64_t client_id) {
  STEAD_ASSIGN_OR_RETURN(std::optional<std::string> stored,
                         snapshot.Get(kSessionsKeyspace, RecordKey(client_id)));
  if (!stored) return std::nullopt;
  pb::ClientSession session;
  if (!session.ParseFromString(*stored)) {
    return absl::DataLossError(
        absl::StrCat("session record of client ", client_id, " does not decode"));
  }
  return session;
}

absl::StatusOr<std::vector<uint64_t>> ExpireIdleSessions(
    const storage::StateSnapshot& snapshot, int64_t log_time_unix_ms, absl::Duration ttl,
    size_t max_sessions, std::vector<storage::Mutation>* mutations) {
  std::vector<uint64_t> expired;
  const int64_t idle_before = log_time_unix_ms - absl::ToInt64Milliseconds(ttl);
  if (idle_before <= 0 || max_sessions == 0) return expired;
  storage::ScanOptions scan;
  scan.keyspace = kSessionsKeyspace;
  scan.start_key = std::string(1, kExpiryPrefix);
  // Every index key of a record last seen strictly before idle_before sorts below this.
  scan.end_key = std::string(1, kExpiryPrefix) + BigEndian(ExpiryOrder(idle_before));
  scan.limit = std::min(max_sessions, storage::kMaxScanLimit);
  STEAD_ASSIGN_OR_RETURN(storage::ScanResult result, snapshot.Scan(scan));
  for (const storage::KeyValue& pair : result.pairs) {
    if (pair.key.size() != 17) {
      return absl::DataLossError("sessions: malformed expiry index key");
    }
    const uint64_t client_id = LoadBigEndian(absl::string_view(pair.key).substr(9));
    mutations->push_back(storage::Mutation::Delete(kSessionsKeyspace, pair.key));
    mutations->push_back(storage::Mutation::Delete(kSessionsKeyspace, RecordKey(client_id)));
    expired.push_back(client_id);
  }
  return expired;
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
