// The schemas compile, round-trip and serialize manifests deterministically.
#include <string>

#include "gtest/gtest.h"
#include "proto/kv.pb.h"
#include "proto/raft.pb.h"
#include "proto/snapshot.pb.h"

namespace stead {
namespace {

TEST(RaftProto, MessageRoundTripsWithEntries) {
  pb::Message message;
  message.set_type(pb::MESSAGE_TYPE_APPEND);
  message.set_from(1);
  message.set_to(2);
  message.set_term(3);
  message.set_log_term(2);
  message.set_index(9);
  pb::Entry* entry = message.add_entries();
  entry->set_term(3);
  entry->set_index(10);
  entry->set_type(pb::ENTRY_TYPE_NORMAL);
  entry->set_data("put x 1");

  pb::Message decoded;
  ASSERT_TRUE(decoded.ParseFromString(message.SerializeAsString()));
  EXPECT_EQ(decoded.type(), pb::MESSAGE_TYPE_APPEND);
  ASSERT_EQ(decoded.entries_size(), 1);
  EXPECT_EQ(decoded.entries(0).index(), 10u);
  EXPECT_EQ(decoded.entries(0).data(), "put x 1");
}

TEST(SnapshotProto, ManifestSerializationIsDeterministic) {
  pb::SnapshotManifest manifest;
  manifest.set_format_version(1);
  manifest.set_cluster_id(0xfeed);
  manifest.mutable_raft()->set_index(812);
  manifest.mutable_raft()->set_term(7);
  manifest.mutable_raft()->mutable_conf_state()->add_voters(1);
  pb::SnapshotFile* file = manifest.add_files();
  file->set_name("000012.sst");
  file->set_size_bytes(4096);
  file->set_crc32c(0x1234);

  auto serialize = [](const pb::SnapshotManifest& m) {
    std::string out;
    google::protobuf::io::StringOutputStream stream(&out);
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    EXPECT_TRUE(m.SerializeToCodedStream(&coded));
    coded.Trim();
    return out;
  };
  pb::SnapshotManifest copy;
  ASSERT_TRUE(copy.ParseFromString(serialize(manifest)));
  EXPECT_EQ(serialize(copy), serialize(manifest));
}

TEST(KvProto, ErrorCarriesTheLeaderHint) {
  pb::ClientResponse response;
  response.set_request_id(5);
  response.mutable_error()->set_code(14);  // absl::StatusCode::kUnavailable
  response.mutable_error()->set_leader_name("stead-1");
  pb::ClientResponse decoded;
  ASSERT_TRUE(decoded.ParseFromString(response.SerializeAsString()));
  EXPECT_TRUE(decoded.has_error());
  EXPECT_EQ(decoded.error().leader_name(), "stead-1");
}

}  // namespace
}  // namespace stead
