// Node metadata: which cluster and which member a data volume belongs to.
//
// The state machine writes it on the first start of a data dir and checks it at every
// start, so a pod that mounts the wrong PersistentVolume (another cluster's, or another
// member's after a botched restore) refuses to start instead of silently serving or
// voting with someone else's state. The message always says what the operator can do.
//
// Thread-safety: pure functions.
#ifndef STEAD_STORAGE_NODE_METADATA_H_
#define STEAD_STORAGE_NODE_METADATA_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "google/protobuf/message_lite.h"
#include "proto/snapshot.pb.h"
#include "raft/types.h"

namespace stead::storage {

// The data-dir layout version this build writes and understands. A data dir written by
// a newer version is refused (FailedPrecondition): downgrades are not supported.
inline constexpr uint32_t kDataFormatVersion = 1;

// The identity a node expects its data volume to have.
struct NodeIdentity {
  uint64_t cluster_id = 0;          // never 0
  raft::NodeId node_id = raft::kNoNode;  // never 0
  std::string node_name;            // never empty, e.g. "stead-2"
};

// OK if every field of `identity` is set; InvalidArgument naming the missing one.
absl::Status ValidateNodeIdentity(const NodeIdentity& identity);

// The metadata to store for `identity`, created at `now`.
pb::NodeMetadata MakeNodeMetadata(const NodeIdentity& identity, absl::Time now);

// Serializes `message` deterministically (map order fixed), for bytes that are
// checksummed or compared: node metadata and snapshot manifests (STYLE.md §6).
std::string SerializeDeterministically(const google::protobuf::MessageLite& message);

// Deterministic serialization of `metadata`.
std::string EncodeNodeMetadata(const pb::NodeMetadata& metadata);

// Parses stored metadata. DataLoss if the bytes do not parse or a field is missing
// (the `meta` column family is corrupt); FailedPrecondition if the format version is
// newer than kDataFormatVersion.
absl::StatusOr<pb::NodeMetadata> DecodeNodeMetadata(absl::string_view bytes);

// Compares the metadata stored in `data_dir` with the identity the node was started
// with. OK if cluster id, node id and name all match; otherwise FailedPrecondition
// whose message names the volume's owner, the expected identity, and the remedy:
// point --data-dir at the right volume, or wipe it to join as a new member.
absl::Status CheckNodeMetadata(const pb::NodeMetadata& stored, const NodeIdentity& expected,
                               absl::string_view data_dir);

// "cluster 0xabc node stead-2 (id 7)".
std::string DescribeIdentity(uint64_t cluster_id, absl::string_view node_name,
                             raft::NodeId node_id);

}  // namespace stead::storage

#endif  // STEAD_STORAGE_NODE_METADATA_H_
