#include "server/member_file.h"

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "storage/checkpoint_files.h"
#include "storage/node_metadata.h"
#include "storage/state_machine_dir.h"

namespace stead::server {

namespace files = storage::files;

namespace {

// A MEMBER file is a few hundred bytes; anything near this is not one.
constexpr uint64_t kMaxMemberFileBytes = 1 << 20;

std::string MemberPath(const std::string& data_dir) {
  return files::JoinPath(data_dir, storage::kMemberFileName);
}

}  // namespace

bool MemberFileExists(const std::string& data_dir) { return files::Exists(MemberPath(data_dir)); }

absl::StatusOr<pb::MemberBootstrap> LoadOrCreateMemberFile(const std::string& data_dir,
                                                           uint64_t new_node_id) {
  const std::string path = MemberPath(data_dir);
  if (!files::Exists(path)) {
    pb::MemberBootstrap member;
    member.set_node_id(new_node_id);
    STEAD_RETURN_IF_ERROR(files::CreateDirectories(data_dir));
    STEAD_RETURN_IF_ERROR(WriteMemberFile(data_dir, member));
    return member;
  }
  STEAD_ASSIGN_OR_RETURN(const std::string bytes, files::ReadFile(path, kMaxMemberFileBytes));
  pb::MemberBootstrap member;
  if (!member.ParseFromString(bytes) || member.node_id() == 0) {
    return absl::DataLossError(absl::StrCat(
        path, " is corrupt: if this member never joined a cluster, remove the file and "
              "restart; otherwise restore its volumes"));
  }
  return member;
}

absl::Status WriteMemberFile(const std::string& data_dir, const pb::MemberBootstrap& member) {
  return files::WriteFileAtomically(MemberPath(data_dir),
                                    storage::SerializeDeterministically(member));
}

}  // namespace stead::server
