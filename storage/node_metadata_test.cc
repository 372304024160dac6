#include "storage/node_metadata.h"

#include <string>

#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace stead::storage {
namespace {

using ::stead::testing::StatusIs;

pb::NodeMetadata Stored() {
  return MakeNodeMetadata(NodeIdentity{0xabc, 7, "stead-2"}, absl::FromUnixMillis(1234));
}

TEST(NodeMetadata, CheckComparesClusterNameAndId) {
  const struct {
    const char* name;
    NodeIdentity expected;
    absl::StatusCode want_code;
    const char* want_message;
  } cases[] = {
      {"same", {0xabc, 7, "stead-2"}, absl::StatusCode::kOk, ""},
      {"other cluster", {0xdef, 7, "stead-2"}, absl::StatusCode::kFailedPrecondition,
       "data dir /x belongs to cluster 0xabc node stead-2 (id 7), not cluster 0xdef"},
      {"other name", {0xabc, 7, "stead-1"}, absl::StatusCode::kFailedPrecondition,
       "belongs to cluster 0xabc node stead-2 (id 7), not node stead-1"},
      {"other id", {0xabc, 8, "stead-2"}, absl::StatusCode::kFailedPrecondition,
       "not node id 8"},
      {"remedy", {0xdef, 1, "stead-0"}, absl::StatusCode::kFailedPrecondition,
       "point --data-dir at the right volume, or wipe it to join as a new member"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_THAT(CheckNodeMetadata(Stored(), c.expected, "/x"), StatusIs(c.want_code, c.want_message));
  }
}

TEST(NodeMetadata, EncodeDecodeRoundTrip) {
  const pb::NodeMetadata stored = Stored();
  const std::string bytes = EncodeNodeMetadata(stored);
  EXPECT_EQ(bytes, EncodeNodeMetadata(stored));  // Deterministic.
  ASSERT_OK_AND_ASSIGN(const pb::NodeMetadata decoded, DecodeNodeMetadata(bytes));
  EXPECT_EQ(decoded.cluster_id(), 0xabcu);
  EXPECT_EQ(decoded.node_id(), 7u);
  EXPECT_EQ(decoded.node_name(), "stead-2");
  EXPECT_EQ(decoded.created_unix_ms(), 1234);
  EXPECT_EQ(decoded.format_version(), kDataFormatVersion);
}

TEST(NodeMetadata, DecodeRefusesGarbageMissingFieldsAndNewerFormats) {
  EXPECT_THAT(DecodeNodeMetadata("\xff\xff\xff"), StatusIs(absl::StatusCode::kDataLoss));
  pb::NodeMetadata no_name = Stored();
  no_name.clear_node_name();
  EXPECT_THAT(DecodeNodeMetadata(EncodeNodeMetadata(no_name)),
              StatusIs(absl::StatusCode::kDataLoss, "node name"));
  pb::NodeMetadata no_version = Stored();
  no_version.clear_format_version();
  EXPECT_THAT(DecodeNodeMetadata(EncodeNodeMetadata(no_version)),
              StatusIs(absl::StatusCode::kDataLoss, "format version"));
  pb::NodeMetadata newer = Stored();
  newer.set_format_version(kDataFormatVersion + 1);
  EXPECT_THAT(DecodeNodeMetadata(EncodeNodeMetadata(newer)),
              StatusIs(absl::StatusCode::kFailedPrecondition, "newer"));
}

TEST(NodeMetadata, ValidateIdentityNamesTheMissingField) {
  EXPECT_OK(ValidateNodeIdentity({1, 2, "n"}));
  EXPECT_THAT(ValidateNodeIdentity({0, 2, "n"}), StatusIs(absl::StatusCode::kInvalidArgument, "cluster id"));
  EXPECT_THAT(ValidateNodeIdentity({1, 0, "n"}), StatusIs(absl::StatusCode::kInvalidArgument, "node id"));
  EXPECT_THAT(ValidateNodeIdentity({1, 2, ""}), StatusIs(absl::StatusCode::kInvalidArgument, "node name"));
}

}  // namespace
}  // namespace stead::storage
