#include "storage/node_metadata.h"

#include "absl/strings/str_cat.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"

namespace stead::storage {

absl::Status ValidateNodeIdentity(const NodeIdentity& identity) {
  if (identity.cluster_id == 0) return absl::InvalidArgumentError("node identity: cluster id is 0");
  if (identity.node_id == raft::kNoNode) {
    return absl::InvalidArgumentError("node identity: node id is 0");
  }
  if (identity.node_name.empty()) {
    return absl::InvalidArgumentError("node identity: node name is empty");
  }
  return absl::OkStatus();
}

pb::NodeMetadata MakeNodeMetadata(const NodeIdentity& identity, absl::Time now) {
  pb::NodeMetadata metadata;
  metadata.set_format_version(kDataFormatVersion);
  metadata.set_cluster_id(identity.cluster_id);
  metadata.set_node_id(identity.node_id);
  metadata.set_node_name(identity.node_name);
  metadata.set_created_unix_ms(absl::ToUnixMillis(now));
  return metadata;
}

std::string SerializeDeterministically(const google::protobuf::MessageLite& message) {
  std::string bytes;
  {
    // The coded stream writes its last bytes when destroyed, hence the scope.
    google::protobuf::io::StringOutputStream stream(&bytes);
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    message.ByteSizeLong();  // SerializeWithCachedSizes needs the sizes computed.
    message.SerializeWithCachedSizes(&coded);
  }
  return bytes;
}

std::string EncodeNodeMetadata(const pb::NodeMetadata& metadata) {
  return SerializeDeterministically(metadata);
}

absl::StatusOr<pb::NodeMetadata> DecodeNodeMetadata(absl::string_view bytes) {
  pb::NodeMetadata metadata;
  if (!metadata.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return absl::DataLossError("node metadata does not parse");
  }
  if (metadata.format_version() == 0) {
    return absl::DataLossError("node metadata has no format version");
  }
  if (metadata.format_version() > kDataFormatVersion) {
    return absl::FailedPreconditionError(
        absl::StrCat("data dir format version ", metadata.format_version(),
                     " is newer than this build understands (", kDataFormatVersion,
                     "): run a stead version at least as new as the one that wrote it"));
  }
  if (metadata.cluster_id() == 0 || metadata.node_id() == 0 || metadata.node_name().empty()) {
    return absl::DataLossError("node metadata lacks cluster id, node id or node name");
  }
  return metadata;
}

std::string DescribeIdentity(uint64_t cluster_id, absl::string_view node_name,
                             raft::NodeId node_id) {
  return absl::StrCat("cluster 0x", absl::Hex(cluster_id), " node ", node_name, " (id ",
                      node_id, ")");
}

absl::Status CheckNodeMetadata(const pb::NodeMetadata& stored, const NodeIdentity& expected,
                               absl::string_view data_dir) {
  const std::string owner =
      DescribeIdentity(stored.cluster_id(), stored.node_name(), stored.node_id());
  std::string mismatch;
  if (stored.cluster_id() != expected.cluster_id) {
    mismatch = absl::StrCat("cluster 0x", absl::Hex(expected.cluster_id));
  } else if (stored.node_name() != expected.node_name) {
    mismatch = absl::StrCat("node ", expected.node_name);
  } else if (stored.node_id() != expected.node_id) {
    // Same name, different id: the member was removed and re-added under a new id (or
    // the other way round). Reusing the old volume under the new id could let it vote
    // with state its old id promised; see DESIGN.md "Bootstrap and scaling".
    mismatch = absl::StrCat("node id ", expected.node_id);
  } else {
    return absl::OkStatus();
  }
  return absl::FailedPreconditionError(absl::StrCat(
      "data dir ", data_dir, " belongs to ", owner, ", not ", mismatch, " (expected ",
      DescribeIdentity(expected.cluster_id, expected.node_name, expected.node_id),
      "): point --data-dir at the right volume, or wipe it to join as a new member"));
}

}  // namespace stead::storage
