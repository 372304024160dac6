#include "server/kv_apply.h"

#include <algorithm>
#include <memory>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "server/auth_store.h"
#include "server/kv_ops.h"
#include "server/kv_session.h"
#include "server/kv_store.h"

namespace stead::server {
namespace {

// History is compacted when at least this many revisions can go (by count), and read
// for its age every kHistoryAgeEvery revisions, at most kMaxHistoryAgeScan records.
constexpr int64_t kHistoryCompactionStep = 1000;
constexpr int64_t kHistoryAgeEvery = 64;
constexpr size_t kMaxHistoryAgeScan = 256;

// Whether a failed request is the request's own outcome (deterministic, answered and
// remembered like a success) rather than a failure to read the state.
bool IsRequestError(const absl::Status& status) {
  return absl::IsInvalidArgument(status) || absl::IsFailedPrecondition(status);
}

void SetError(const absl::Status& status, pb::ClientResponse* response) {
  response->clear_response();
  response->mutable_error()->set_code(static_cast<int32_t>(status.code()));
  response->mutable_error()->set_message(std::string(status.message()));
}

// Runs the write in `request` on `view` at `write_revision`, into `response`.
absl::Status ExecuteWrite(const pb::ClientRequest& request, int64_t write_revision,
                          const KvLimits& limits, KvView& view, pb::ClientResponse* response) {
  switch (request.request_case()) {
    case pb::ClientRequest::kPut: {
      STEAD_ASSIGN_OR_RETURN(*response->mutable_put(),
                             ExecutePut(request.put(), write_revision, view));
      return absl::OkStatus();
    }
    case pb::ClientRequest::kDeleteRange: {
      STEAD_ASSIGN_OR_RETURN(*response->mutable_delete_range(),
                             ExecuteDeleteRange(request.delete_range(), view));
      return absl::OkStatus();
    }
    case pb::ClientRequest::kTxn: {
      STEAD_ASSIGN_OR_RETURN(*response->mutable_txn(),
                             ExecuteTxn(request.txn(), write_revision, limits, view));
      return absl::OkStatus();
    }
    default:
      return absl::InvalidArgumentError("not a write request");
  }
}

// The response of a request applied for the first time: its own result, or its error.
// Appends the key changes and advances meta's revision when keys changed.
absl::StatusOr<pb::ClientResponse> ApplyNewRequest(const pb::ClientRequest& request,
                                                   const KvLimits& limits,
                                                   const storage::StateReader& state,
                                                   pb::KvMeta* meta,
                                                   std::vector<storage::Mutation>* mutations) {
  pb::ClientResponse response;
  response.set_request_id(request.request_id());
  if (request.has_auth()) {
    // Auth changes touch only the auth keyspace: the store revision stays.
    absl::StatusOr<pb::AuthResponse> changed = ApplyAuthChange(request.auth(), state, mutations);
    if (changed.ok()) {
      *response.mutable_auth() = *std::move(changed);
    } else {
      if (!IsRequestError(changed.status())) return changed.status();
      SetError(changed.status(), &response);
    }
    response.mutable_header()->set_revision(meta->revision());
    return response;
  }
  KvView view(&state);
  const int64_t write_revision = meta->revision() + 1;
  absl::Status status = ValidateWriteRequest(request, limits);
  if (status.ok()) status = ExecuteWrite(request, write_revision, limits, view, &response);
  // A response is kept for exactly-once retries and sent in one frame: a write whose
  // response would be too large (a delete_range with prev_kv over large values) is
  // refused rather than applied.
  if (status.ok()) status = CheckWriteResponseSize(WriteResponseBytes(response), limits);
  if (!status.ok()) {
    if (!IsRequestError(status)) return status;
    SetError(status, &response);
  } else if (view.changed()) {
    view.AppendMutations(mutations);
    pb::RevisionEvents events;
    events.set_log_time_unix_ms(meta->log_time_unix_ms());
    STEAD_RETURN_IF_ERROR(view.AppendEvents(write_revision, &events));
    mutations->push_back(storage::Mutation::Put(kHistoryKeyspace, HistoryKey(write_revision),
                                                events.SerializeAsString()));
    meta->set_revision(write_revision);
  }
  response.mutable_header()->set_revision(meta->revision());
  return response;
}

// The newest revision whose history may go: below the last `history_revisions`, and
// with history_age set, also any older than that in log time (found by reading at most
// kMaxHistoryAgeScan records from the oldest).
absl::StatusOr<int64_t> HistoryCompactionTarget(const KvApplyOptions& options,
                                                const storage::StateReader& state,
                                                const pb::KvMeta& meta) {
  int64_t target = std::max<int64_t>(meta.compacted_revision(),
                                     meta.revision() - options.history_revisions);
  if (options.history_age <= absl::ZeroDuration() || meta.revision() % kHistoryAgeEvery != 0) {
    return target;
  }
  const int64_t cutoff_ms = meta.log_time_unix_ms() - absl::ToInt64Milliseconds(options.history_age);
  storage::ScanOptions scan;
  scan.keyspace = kHistoryKeyspace;
  scan.start_key = HistoryKey(target + 1);
  scan.end_key = HistoryKey(meta.revision());  // the newest revision always stays
  scan.limit = kMaxHistoryAgeScan;
  STEAD_ASSIGN_OR_RETURN(storage::ScanResult stored, state.Scan(scan));
  for (const storage::KeyValue& pair : stored.pairs) {
    pb::RevisionEvents events;
    if (!events.ParseFromString(pair.value)) {
      return absl::DataLossError("a history record does not decode");
    }
    if (events.log_time_unix_ms() >= cutoff_ms) break;
    STEAD_ASSIGN_OR_RETURN(target, ParseHistoryKey(pair.key));
  }
  return target;
}

// Deletes the history of old revisions (HistoryCompactionTarget) in steps of at least
// kHistoryCompactionStep revisions, so that a range tombstone covers many records.
absl::Status CompactHistory(const KvApplyOptions& options, const storage::StateReader& state,
                            pb::KvMeta* meta, std::vector<storage::Mutation>* mutations) {
  STEAD_ASSIGN_OR_RETURN(const int64_t target, HistoryCompactionTarget(options, state, *meta));
  const bool by_age = options.history_age > absl::ZeroDuration() &&
                      meta->revision() % kHistoryAgeEvery == 0;
  if (target <= meta->compacted_revision() ||
      (!by_age && target - meta->compacted_revision() < kHistoryCompactionStep)) {
    return absl::OkStatus();
  }
  mutations->push_back(storage::Mutation::DeleteRange(
      kHistoryKeyspace, HistoryKey(meta->compacted_revision()), HistoryKey(target + 1)));
  meta->set_compacted_revision(target);
  return absl::OkStatus();
}

// What the applier remembers between commands to skip reads that cannot find
// anything; it only ever skips such reads, so members with and without it (one that
// restarted) apply identically.
struct ApplyMemo {
  raft::Index last_index = 0;  // the entry it describes the state after
  // No session can expire until the log time passes this (SessionExpiry).
  int64_t sessions_quiet_until_unix_ms = 0;
};

absl::StatusOr<std::string> ApplyKvCommandWith(const KvApplyOptions& options,
                                               absl::string_view command, const pb::Entry& entry,
                                               const storage::StateReader& state, ApplyMemo* memo,
                                               std::vector<storage::Mutation>* mutations) {
  pb::ClientRequest request;
  if (!request.ParseFromArray(command.data(), static_cast<int>(command.size()))) {
    return absl::InvalidArgumentError("malformed command in the log");
  }
  // A memo is of the state right before this entry, or of nothing (after a snapshot, or
  // entries that are not commands, applied in between).
  if (memo != nullptr && (entry.index() == 0 || entry.index() != memo->last_index + 1)) {
    *memo = ApplyMemo();
  }
  ApplyMemo unused;
  ApplyMemo& next_memo = memo != nullptr ? *memo : unused;
  next_memo.last_index = entry.index();

  STEAD_ASSIGN_OR_RETURN(pb::KvMeta meta, ReadKvMeta(state));
  meta.set_log_time_unix_ms(std::max(meta.log_time_unix_ms(), request.proposed_at_unix_ms()));
  std::vector<uint64_t> expired;
  if (meta.log_time_unix_ms() > next_memo.sessions_quiet_until_unix_ms) {
    STEAD_ASSIGN_OR_RETURN(SessionExpiry expiry,
                           ExpireIdleSessions(state, meta.log_time_unix_ms(), options.session_ttl,
                                              options.max_expired_sessions_per_command, mutations));
    expired = std::move(expiry.expired);
    next_memo.sessions_quiet_until_unix_ms = expiry.quiet_until_unix_ms;
  }

  const uint64_t client_id = request.client_id();
  std::optional<pb::ClientSession> session;
  if (client_id != 0 && std::find(expired.begin(), expired.end(), client_id) == expired.end()) {
    STEAD_ASSIGN_OR_RETURN(session, ReadSession(state, client_id));
  }
  pb::ClientResponse response;
  if (session && request.sequence() == session->sequence()) {
    // A retry of a write already applied: its first response, nothing applied again.
    if (!response.ParseFromString(session->response())) {
      return absl::DataLossError(
          absl::StrCat("stored response of client ", client_id, " does not decode"));
    }
    response.set_request_id(request.request_id());
  } else if (session && request.sequence() < session->sequence()) {
    response.set_request_id(request.request_id());
    SetError(absl::FailedPreconditionError(
                 absl::StrCat("sequence ", request.sequence(), " of client ", client_id,
                              " is older than its latest applied sequence ", session->sequence())),
             &response);
    response.mutable_header()->set_revision(meta.revision());
  } else {
    STEAD_ASSIGN_OR_RETURN(response,
                           ApplyNewRequest(request, options.limits, state, &meta, mutations));
    if (client_id != 0) {
      pb::ClientSession record;
      record.set_sequence(request.sequence());
      record.set_response(response.SerializeAsString());
      record.set_last_seen_unix_ms(meta.log_time_unix_ms());
      WriteSession(client_id, session, record, mutations);
    }
  }
  STEAD_RETURN_IF_ERROR(CompactHistory(options, state, &meta, mutations));
  mutations->push_back(WriteKvMeta(meta));
  return response.SerializeAsString();
}

}  // namespace

absl::Status ValidateWriteRequest(const pb::ClientRequest& request, const KvLimits& limits) {
  STEAD_RETURN_IF_ERROR(CheckRequestLimits(request, limits));
  if (request.client_id() != 0 && request.sequence() == 0) {
    return absl::InvalidArgumentError("a write with a client_id needs a sequence above 0");
  }
  switch (request.request_case()) {
    case pb::ClientRequest::kPut:
      return ValidatePut(request.put(), limits);
    case pb::ClientRequest::kDeleteRange:
      return ValidateDeleteRange(request.delete_range(), limits);
    case pb::ClientRequest::kTxn:
      return ValidateTxn(request.txn(), limits);
    case pb::ClientRequest::kAuth:
      return ValidateAuthChange(request.auth());
    default:
      return absl::InvalidArgumentError("not a write request (put, delete_range, txn or auth)");
  }
}

ApplyFunction MakeKvApplyFunction(KvApplyOptions options) {
  // Shared by the copies of the function; only the applier calls it.
  auto memo = std::make_shared<ApplyMemo>();
  return [options = std::move(options), memo](absl::string_view command, const pb::Entry& entry,
                                              const storage::StateReader& state,
                                              std::vector<storage::Mutation>* mutations) {
    return ApplyKvCommandWith(options, command, entry, state, memo.get(), mutations);
  };
}

absl::StatusOr<std::string> ApplyKvCommand(absl::string_view command, const pb::Entry& entry,
                                           const storage::StateReader& state,
                                           std::vector<storage::Mutation>* mutations) {
  return ApplyKvCommandWith(KvApplyOptions(), command, entry, state, nullptr, mutations);
}

absl::StatusOr<KvRead> ReadRange(const pb::RangeRequest& request, size_t max_response_bytes,
                                 const storage::StateMachine& state) {
  STEAD_RETURN_IF_ERROR(ValidateRange(request));
  STEAD_ASSIGN_OR_RETURN(std::unique_ptr<storage::StateSnapshot> snapshot, state.NewSnapshot());
  STEAD_ASSIGN_OR_RETURN(pb::KvMeta meta, ReadKvMeta(*snapshot));
  KvRead read;
  read.revision = meta.revision();
  STEAD_ASSIGN_OR_RETURN(
      read.range, ExecuteRange(request, read.revision, max_response_bytes, KvView(snapshot.get())));
  return read;
}

}  // namespace stead::server
