// <data-dir>/MEMBER: a member's identity decisions before its state machine holds them
// (pb::MemberBootstrap): the pending node id drawn at first start, then the cluster it
// formed, adopted or joined. Written atomically and fsynced before anyone is told, so a
// restart at any moment of bootstrap or join continues with the same ids.
#ifndef STEAD_SERVER_MEMBER_FILE_H_
#define STEAD_SERVER_MEMBER_FILE_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "proto/peer.pb.h"

namespace stead::server {

bool MemberFileExists(const std::string& data_dir);

// The MEMBER file of `data_dir`; when there is none, creates the dir if needed and
// writes one with `new_node_id` (and no cluster). DataLoss if the file is corrupt.
absl::StatusOr<pb::MemberBootstrap> LoadOrCreateMemberFile(const std::string& data_dir,
                                                           uint64_t new_node_id);

// Replaces the MEMBER file durably.
absl::Status WriteMemberFile(const std::string& data_dir, const pb::MemberBootstrap& member);

}  // namespace stead::server

#endif  // STEAD_SERVER_MEMBER_FILE_H_
