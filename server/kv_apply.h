// The key-value commands as the state machine applies them, and reads of the applied
// state. A committed entry's command is a serialized pb::ClientRequest (put,
// delete_range or txn); its result is a serialized pb::ClientResponse for the proposer.
//
// The data model (stored form in server/kv_store.h):
//   - The store revision starts at 0 and increases by one with every applied write
//     request that puts a key or deletes at least one (even when a transaction's later
//     operation undoes an earlier one); a transaction is one revision however many keys
//     it writes. A delete that finds nothing, a transaction whose branch only reads, or
//     a refused request leave it unchanged.
//   - Each key carries create_revision (the revision that created it, since its last
//     delete), mod_revision (its last write) and version (writes since creation; 1 after
//     the first put). A delete removes all three.
//   - Every response header carries the revision of the state it reflects: after the
//     write for a write, the state read for a read.
//   - Exactly-once writes (server/kv_session.h): a write with client_id != 0 must carry
//     sequence > 0. The first apply of (client_id, sequence) stores its response; a
//     later entry with the same pair gets that response (with its own request_id) and
//     changes nothing; an older sequence gets FailedPrecondition. client_id 0 means no
//     session. A request refused at apply (InvalidArgument, FailedPrecondition) is a
//     result too: it is stored and answered the same way.
//   - Every revision's changes are kept in the history keyspace for watches (an event
//     per key: PUT with the new pair, DELETE for a key that existed), in the same batch
//     as the changes. Old history is compacted deterministically by the commands that
//     write (KvApplyOptions::history_*); KvMeta.compacted_revision says how far.
//   - Reads cannot ask for a past revision (no history is kept): `revision` must be 0 or
//     the current one; min_revision above the current revision is refused with
//     FailedPrecondition ("not caught up") at once rather than waited for, so a client
//     can try another member or retry; min_mod_revision is not supported.
//
// Thread-safety: pure functions of their arguments; ReadRange may run on any thread
// while the applier applies (it reads one consistent snapshot).
#ifndef STEAD_SERVER_KV_APPLY_H_
#define STEAD_SERVER_KV_APPLY_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "proto/kv.pb.h"
#include "server/kv_limits.h"
#include "server/kv_store.h"
#include "server/raft_node.h"
#include "storage/state_machine.h"

namespace stead::server {

// Most keys one range read returns (limit 0 means this); a larger range is paged.
inline constexpr int64_t kMaxRangeLimit = 10000;
// Most keys one delete_range may delete, and one compare over a range may examine;
// beyond it the request is refused with InvalidArgument (delete in parts).
inline constexpr size_t kMaxKeysPerRangeWrite = 5000;

struct KvApplyOptions {
  // Checked again when a command is applied; they also bound the responses of writes
  // (max_write_response_bytes). Must be at least the limits the service checks before
  // proposing, and the same on every member. Default: KvLimits().
  KvLimits limits;
  // A client session idle for longer than this, in log time, is deleted. Must be the
  // same on every member. Default: 1 h.
  absl::Duration session_ttl = absl::Hours(1);
  // Most idle sessions one command deletes. Default: 64.
  size_t max_expired_sessions_per_command = 64;
  // Watch history kept: at least the last `history_revisions` revisions (compacted in
  // steps of 1,000), and with history_age > 0 none older than that in log time. Both
  // must be the same on every member. Defaults: 100,000 revisions, no age limit.
  int64_t history_revisions = 100000;
  absl::Duration history_age = absl::ZeroDuration();
};

// Checks a write before it is proposed (and again at apply), so that a request the
// state machine would refuse never enters the log: InvalidArgument naming the field or
// the limit and the size. Stateless: it does not read the keys.
absl::Status ValidateWriteRequest(const pb::ClientRequest& request, const KvLimits& limits);

// The ApplyFunction of the key-value service (see raft_node.h) with `options`.
// Deterministic: the outcome depends only on the command and the state before it.
// Errors other than the request's own (which are results, see above) come from reading
// the state: a DataLoss for a record that does not decode, or I/O errors.
ApplyFunction MakeKvApplyFunction(KvApplyOptions options);
// The same with default options.
absl::StatusOr<std::string> ApplyKvCommand(absl::string_view command, const pb::Entry& entry,
                                           const storage::StateReader& state,
                                           std::vector<storage::Mutation>* mutations);

// A read served from the local state machine.
struct KvRead {
  int64_t revision = 0;  // the store revision of the state read
  pb::RangeResponse range;
};

// Serves `request` from one snapshot of the local state: a single key when range_end is
// empty, else [key, range_end) ("\0" as range_end means every key >= key), honouring
// limit (0 or above kMaxRangeLimit means kMaxRangeLimit), reverse, keys_only and
// count_only. A page also ends before the pair that would take its keys and values
// over `max_response_bytes` (0: no byte bound), but holds at least one pair, so that
// one maximal value still reads. `count` is the number of keys of this page (without
// count_only: the number returned); `more` says whether the range holds more, and
// next_key (forward) or next_range_end (reverse) continues it.
//   InvalidArgument: malformed range, or a past revision / min_mod_revision asked for.
//   FailedPrecondition: revision or min_revision above the state's revision.
absl::StatusOr<KvRead> ReadRange(const pb::RangeRequest& request, size_t max_response_bytes,
                                 const storage::StateMachine& state);

}  // namespace stead::server

#endif  // STEAD_SERVER_KV_APPLY_H_
