#include "server/kv_service.h"

#include <algorithm>
#include <utility>

#include "server/auth_store.h"
#include "server/kv_apply.h"
#include "server/kv_store.h"

namespace stead::server {

pb::Error ErrorFromStatus(const absl::Status& status, const std::optional<MemberAddress>& leader) {
  pb::Error error;
  error.set_code(static_cast<int32_t>(status.code()));
  error.set_message(std::string(status.message()));
  if (absl::IsUnavailable(status) && leader) {
    error.set_leader_name(leader->name);
    error.set_leader_address(leader->client_address);
  }
  return error;
}

namespace {

// How a read reaches a client when this member's state machine is damaged: UNAVAILABLE,
// so the client goes to another member (with the leader hint), with the damage's
// message, which tells the operator what to do with this one.
absl::Status RefusalForDamage(const absl::Status& damage) {
  return absl::UnavailableError(damage.message());
}

}  // namespace

KvService::KvService(KvServiceOptions options, Logger logger, RaftNode* node,
                     const storage::StateMachine* state, MemberDirectory members,
                     AdminHandler admin)
    : options_(std::move(options)),
      logger_(std::move(logger)),
      node_(node),
      state_(state),
      members_(std::move(members)),
      admin_(std::move(admin)) {}

absl::Time KvService::Deadline(const pb::ClientRequest& request) const {
  const absl::Duration timeout = request.timeout_ms() == 0
                                     ? options_.default_timeout
                                     : absl::Milliseconds(request.timeout_ms());
  return absl::Now() + std::min(timeout, options_.max_timeout);
}

void KvService::Handle(pb::ClientRequest request, ResponseCallback done) {
  const uint64_t id = request.request_id();
  switch (request.request_case()) {
    case pb::ClientRequest::kRange: {
      if (absl::Status damage = state_->damage(); !damage.ok()) {
        return Finish(ErrorResponse(id, RefusalForDamage(damage)), done);
      }
      if (!state_->checksums_verified()) {
        return Finish(ErrorResponse(id, absl::UnavailableError(
                                            "this member is still verifying its state machine's "
                                            "checksums after its start: read from another member, "
                                            "or retry")),
                      done);
      }
      if (request.range().consistency() == pb::READ_CONSISTENCY_SERIALIZABLE ||
          options_.unsafe_local_reads) {
        ServeRead(id, request.range(), done);
        return;
      }
      node_->ReadBarrier(Deadline(request), [this, id, range = request.range(),
                                             done = std::move(done)](absl::Status status) {
        if (!status.ok()) return Finish(ErrorResponse(id, status), done);
        ServeRead(id, range, done);
      });
      return;
    }
    case pb::ClientRequest::kPut:
    case pb::ClientRequest::kDeleteRange:
    case pb::ClientRequest::kTxn:
      return ProposeWrite(std::move(request), std::move(done));
    case pb::ClientRequest::kMemberList:
    case pb::ClientRequest::kMemberRemove:
    case pb::ClientRequest::kLeaderTransfer:
    case pb::ClientRequest::kMemberPromote:
    case pb::ClientRequest::kHash:
      if (!admin_) {
        return Finish(ErrorResponse(id, absl::UnimplementedError("membership calls are not "
                                                                 "served here")),
                      done);
      }
      admin_(request, Deadline(request),
             [this, id, done = std::move(done)](absl::StatusOr<pb::ClientResponse> result) {
               if (!result.ok()) return Finish(ErrorResponse(id, result.status()), done);
               result->set_request_id(id);
               Finish(std::move(*result), done);
             });
      return;
    case pb::ClientRequest::kWatch:
    case pb::ClientRequest::kWatchCancel:
      // Streams belong to a connection: the client port serves them (WatchHub).
      return Finish(ErrorResponse(id, absl::UnimplementedError(
                                          "watches are served on the client port only")),
                    done);
    case pb::ClientRequest::kSnapshotSave:
      return Finish(ErrorResponse(id, absl::UnimplementedError(
                                          "snapshot saves are served on the client port only")),
                    done);
    case pb::ClientRequest::kAuth: {
      if (IsAuthChange(request.auth())) {
        if (options_.authorizer == nullptr) {
          return Finish(ErrorResponse(id, absl::UnimplementedError("auth is not served here")),
                        done);
        }
        pb::AuthRequest change = std::move(*request.mutable_auth());
        options_.authorizer->PrepareChangeAsync(
            std::move(change), [this, request = std::move(request), done = std::move(done)](
                                   absl::StatusOr<pb::AuthRequest> ready) mutable {
              if (!ready.ok()) return Finish(ErrorResponse(request.request_id(), ready.status()), done);
              *request.mutable_auth() = *std::move(ready);
              ProposeWrite(std::move(request), std::move(done));
            });
        return;
      }
      absl::StatusOr<pb::AuthResponse> listed = ReadAuth(request.auth(), *state_);
      if (!listed.ok()) return Finish(ErrorResponse(id, listed.status()), done);
      pb::ClientResponse response;
      response.set_request_id(id);
      *response.mutable_auth() = *std::move(listed);
      return Finish(std::move(response), done);
    }
    case pb::ClientRequest::kAuthenticate: {
      if (options_.authorizer == nullptr) {
        return Finish(ErrorResponse(id, absl::UnimplementedError("auth is not served here")), done);
      }
      options_.authorizer->AuthenticateAsync(
          request.authenticate(),
          [this, id, done = std::move(done)](absl::StatusOr<pb::AuthenticateResponse> token) {
            if (!token.ok()) return Finish(ErrorResponse(id, token.status()), done);
            pb::ClientResponse response;
            response.set_request_id(id);
            *response.mutable_authenticate() = *std::move(token);
            Finish(std::move(response), done);
          });
      return;
    }
    case pb::ClientRequest::REQUEST_NOT_SET:
      return Finish(ErrorResponse(id, absl::InvalidArgumentError("request has no operation")),
                    done);
  }
}

void KvService::ProposeWrite(pb::ClientRequest request, ResponseCallback done) {
  const uint64_t id = request.request_id();
  request.set_proposed_at_unix_ms(absl::ToUnixMillis(options_.clock()));
  if (absl::Status valid = ValidateWriteRequest(request, options_.limits); !valid.ok()) {
    return Finish(ErrorResponse(id, valid), done);
  }
  const absl::Time deadline = Deadline(request);
  node_->Propose(request.SerializeAsString(), deadline,
                 [this, id, done = std::move(done)](absl::StatusOr<std::string> result) {
                   if (!result.ok()) return Finish(ErrorResponse(id, result.status()), done);
                   pb::ClientResponse response;
                   if (!response.ParseFromString(*result)) {
                     return Finish(
                         ErrorResponse(id, absl::InternalError("undecodable apply result")), done);
                   }
                   response.set_request_id(id);
                   Finish(std::move(response), done);
                 });
}

void KvService::ServeRead(uint64_t request_id, const pb::RangeRequest& range,
                          const ResponseCallback& done) {
  absl::StatusOr<KvRead> read = ReadRange(range, options_.max_response_bytes, *state_);
  if (!read.ok()) {
    // This read may be the one that found the damage.
    const absl::Status damage = state_->damage();
    return Finish(ErrorResponse(request_id, damage.ok() ? read.status() : RefusalForDamage(damage)),
                  done);
  }
  pb::ClientResponse response;
  response.set_request_id(request_id);
  response.mutable_header()->set_revision(read->revision);
  *response.mutable_range() = std::move(read->range);
  Finish(std::move(response), done);
}

pb::ClientResponse KvService::ErrorResponse(uint64_t request_id, const absl::Status& status) const {
  pb::ClientResponse response;
  response.set_request_id(request_id);
  std::optional<MemberAddress> leader;
  if (absl::IsUnavailable(status)) {
    const raft::NodeId leader_id = node_->Status().leader;
    if (leader_id != raft::kNoNode && members_) leader = members_(leader_id);
  }
  *response.mutable_error() = ErrorFromStatus(status, leader);
  return response;
}

void KvService::Finish(pb::ClientResponse response, const ResponseCallback& done) const {
  const RaftNodeStatus status = node_->Status();
  pb::ResponseHeader* header = response.mutable_header();
  header->set_cluster_id(options_.cluster_id);
  header->set_member_id(status.id);
  header->set_raft_term(status.term);
  if (header->revision() == 0) {
    // An answer that carries no revision of its own (an error, a membership call)
    // reports the local state's. Best effort: a read error leaves 0.
    absl::StatusOr<pb::KvMeta> meta = ReadKvMeta(*state_);
    if (meta.ok()) header->set_revision(meta->revision());
  }
  done(std::move(response));
}

}  // namespace stead::server
