// How the leader currently replicates to one follower (Raft thesis §3.5, flow control as
// in etcd-io/raft's progress tracking).
#ifndef STEAD_RAFT_PROGRESS_STATE_H_
#define STEAD_RAFT_PROGRESS_STATE_H_

#include "absl/strings/string_view.h"

namespace stead::raft {

enum class ProgressState {
  // The leader does not know where the follower's log matches its own: it sends one
  // APPEND at a time (per heartbeat interval) and waits for the answer.
  kProbe,
  // The follower's log matches through `match`: the leader streams APPENDs optimistically
  // up to the in-flight window.
  kReplicate,
  // The follower needs entries that were compacted: a snapshot is being streamed to it by
  // the runtime and APPENDs are paused until ReportSnapshot() or an acknowledgement.
  kSnapshot,
};

inline absl::string_view ProgressStateName(ProgressState state) {
  switch (state) {
    case ProgressState::kProbe:
      return "probe";
    case ProgressState::kReplicate:
      return "replicate";
    case ProgressState::kSnapshot:
      return "snapshot";
  }
  return "unknown";
}

}  // namespace stead::raft

#endif  // STEAD_RAFT_PROGRESS_STATE_H_
