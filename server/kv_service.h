// KvService: executes client requests against this member — writes through Raft,
// reads linearizably (ReadIndex) or serializably — and answers each with exactly one
// pb::ClientResponse. The client port (ClientService) and the embedded stead::Node
// both go through it, so a request means the same thing whichever way it arrives.
//
// On a member that is not the leader, writes fail with UNAVAILABLE and a leader hint;
// linearizable reads are served on every member (RaftNode::ReadBarrier asks the leader
// for the read index) and fail with UNAVAILABLE only when no leader is known. On a member whose state machine is damaged
// (StateMachine::damage()) every read, serializable too, fails with UNAVAILABLE (clients
// go to another member) carrying the damage's message, which says what to do; so does
// every read until the state machine's checksums were verified after the start. Membership requests and the content hash go to the
// AdminHandler. Auth changes are proposed like writes (their passwords hashed first),
// auth listings are served from the local state, `authenticate` by the Authorizer.
//
// Writes (put, delete_range, txn) are checked (ValidateWriteRequest), stamped with this
// member's clock (ClientRequest.proposed_at_unix_ms, the log time of session expiry)
// and proposed; the answer is the response the state machine produced (kv_apply.h).
// Every response header carries the store revision: the one the write produced, the
// one the read saw, or for other answers the local state's current revision.
//
// Thread-safety: Handle may be called from any thread; `done` runs on the raft strand,
// the applier thread or the caller's thread and must not block.
#ifndef STEAD_SERVER_KV_SERVICE_H_
#define STEAD_SERVER_KV_SERVICE_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "base/log.h"
#include "proto/kv.pb.h"
#include "server/auth_check.h"
#include "server/kv_limits.h"
#include "server/raft_node.h"
#include "storage/state_machine.h"

namespace stead::server {

struct KvServiceOptions {
  uint64_t cluster_id = 0;
  // Deadline of a request that sets no timeout_ms; also the cap on timeout_ms.
  // Default: 5 s (cap 60 s).
  absl::Duration default_timeout = absl::Seconds(5);
  absl::Duration max_timeout = absl::Seconds(60);
  // Limits checked before proposing; at most those the state machine applies with.
  // Default: KvLimits().
  KvLimits limits;
  // Most bytes of keys and values in one page of a range read (ReadRange); a page
  // holds at least one pair. Default: kDefaultMaxResponseBytes.
  size_t max_response_bytes = kDefaultMaxResponseBytes;
  // Wall clock for the proposer's stamp on writes. Default: absl::Now.
  std::function<absl::Time()> clock = [] { return absl::Now(); };
  // Serves `authenticate` and readies auth changes (hashes passwords) before they are
  // proposed, both on its own thread; borrowed, must outlive the service and be
  // stopped before it goes. Null: both are refused. The checks of who may do what
  // happen before a request reaches the service (auth_check.h). Default: null.
  const Authorizer* authorizer = nullptr;
  // A planted bug, for the fault suite only (failpoint unsafe-local-reads,
  // base/failpoint.h): linearizable reads served from this member's own state with no
  // read barrier. Default: false.
  bool unsafe_local_reads = false;
};

// Who a node id is, for leader hints: member name and client address ("host:port").
struct MemberAddress {
  std::string name;
  std::string client_address;
};
using MemberDirectory = std::function<std::optional<MemberAddress>(raft::NodeId id)>;

using ResponseCallback = std::function<void(pb::ClientResponse response)>;
// Serves membership requests (member_list, member_remove, member_promote,
// leader_transfer) and the content hash (hash): `done` gets the response body or the
// error, exactly once.
using AdminHandler =
    std::function<void(const pb::ClientRequest& request, absl::Time deadline,
                       std::function<void(absl::StatusOr<pb::ClientResponse>)> done)>;

class KvService {
 public:
  // Borrows `node` and `state`; both must outlive the service.
  KvService(KvServiceOptions options, Logger logger, RaftNode* node,
            const storage::StateMachine* state, MemberDirectory members,
            AdminHandler admin = nullptr);
  KvService(const KvService&) = delete;
  KvService& operator=(const KvService&) = delete;

  // Executes `request`; `done` receives its response (same request_id, a header, and a
  // result or an error) exactly once.
  void Handle(pb::ClientRequest request, ResponseCallback done);

  // The response carrying `status` for request `request_id`, with a leader hint when
  // UNAVAILABLE.
  pb::ClientResponse ErrorResponse(uint64_t request_id, const absl::Status& status) const;

 private:
  absl::Time Deadline(const pb::ClientRequest& request) const;
  void ServeRead(uint64_t request_id, const pb::RangeRequest& range, const ResponseCallback& done);
  void ProposeWrite(pb::ClientRequest request, ResponseCallback done);
  void Finish(pb::ClientResponse response, const ResponseCallback& done) const;

  const KvServiceOptions options_;
  const Logger logger_;
  RaftNode* const node_;
  const storage::StateMachine* const state_;
  const MemberDirectory members_;
  const AdminHandler admin_;
};

// The wire form of a failed request: the status code and message, and the leader hint
// for UNAVAILABLE.
pb::Error ErrorFromStatus(const absl::Status& status, const std::optional<MemberAddress>& leader);

}  // namespace stead::server

#endif  // STEAD_SERVER_KV_SERVICE_H_
