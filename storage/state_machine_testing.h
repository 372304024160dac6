// Helpers for the state machine and checkpoint tests: temporary directories and
// options for a test node.
#ifndef STEAD_STORAGE_STATE_MACHINE_TESTING_H_
#define STEAD_STORAGE_STATE_MACHINE_TESTING_H_

#include <stdlib.h>
#include <sys/mount.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "base/check.h"
#include "base/log.h"
#include "proto/peer.pb.h"
#include "proto/snapshot.pb.h"
#include "storage/state_machine.h"

namespace stead::storage::testing {

// A directory made with mkdtemp under /tmp and removed, with everything in it, at the
// end of the scope.
class TempDir {
 public:
  TempDir() {
    std::string pattern = "/tmp/stead-storage-test-XXXXXX";
    STEAD_CHECK(::mkdtemp(pattern.data()) != nullptr) << "mkdtemp failed";
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;  // Best effort: a leftover in /tmp is harmless.
    std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  std::string Sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// A tmpfs of a given size mounted on `dir` (created) for the life of the object, then
// detached (a process may still hold files in it). Mounting needs root: check mounted().
class TmpfsMount {
 public:
  TmpfsMount(std::string dir, const std::string& size) : dir_(std::move(dir)) {
    std::filesystem::create_directories(dir_);
    mounted_ = ::mount("tmpfs", dir_.c_str(), "tmpfs", 0, ("size=" + size).c_str()) == 0;
  }
  ~TmpfsMount() {
    if (mounted_) ::umount2(dir_.c_str(), MNT_DETACH);
  }
  TmpfsMount(const TmpfsMount&) = delete;
  TmpfsMount& operator=(const TmpfsMount&) = delete;

  bool mounted() const { return mounted_; }
  // Grows or shrinks the volume, keeping its files; whether that worked.
  bool Resize(const std::string& size) {
    return ::mount("tmpfs", dir_.c_str(), "tmpfs", MS_REMOUNT, ("size=" + size).c_str()) == 0;
  }

 private:
  const std::string dir_;
  bool mounted_ = false;
};

inline constexpr uint64_t kTestClusterId = 0xabc;

// Options for node `node_id` named "stead-<node_id - 1>" of the test cluster, logging
// only warnings so test output stays readable.
inline StateMachineOptions TestOptions(std::string data_dir, raft::NodeId node_id = 1,
                                       uint64_t cluster_id = kTestClusterId) {
  StateMachineOptions options;
  options.data_dir = std::move(data_dir);
  options.identity.cluster_id = cluster_id;
  options.identity.node_id = node_id;
  options.identity.node_name = "stead-" + std::to_string(node_id - 1);
  options.logger = Logger(LogLevel::kWarning);
  options.clock = [] { return absl::FromUnixSeconds(1800000000); };
  return options;
}

// The member record of member `id` named `name`, reached at <name>:2480 by peers and
// <name>:2479 by clients (what a restore or re-identification writes for itself).
inline pb::MemberInfo TestMember(raft::NodeId id, const std::string& name) {
  pb::MemberInfo info;
  info.set_id(id);
  info.set_name(name);
  info.set_peer_address(name + ":2480");
  info.set_client_address(name + ":2479");
  return info;
}

// A batch for entry `index` in `term` putting each pair into the "kv" keyspace.
inline ApplyBatch PutBatch(raft::Index index, raft::Term term,
                           std::vector<std::pair<std::string, std::string>> pairs) {
  ApplyBatch batch;
  batch.index = index;
  batch.term = term;
  for (auto& [key, value] : pairs) {
    batch.mutations.push_back(Mutation::Put(kDefaultKeyspace, std::move(key), std::move(value)));
  }
  return batch;
}

// The name of the first SST file of a checkpoint's manifest; empty if there is none.
inline std::string FirstSst(const pb::SnapshotManifest& manifest) {
  for (const pb::SnapshotFile& file : manifest.files()) {
    if (file.name().size() > 4 && file.name().substr(file.name().size() - 4) == ".sst") {
      return file.name();
    }
  }
  return "";
}

// Overwrites one byte of `path` at `offset` with its complement, in place: every hard
// link of the file, and a process that has it open, sees the change (as when the disk
// flips a bit under a running database).
inline void FlipByteInPlace(const std::string& path, uint64_t offset) {
  std::fstream file(path, std::ios::in | std::ios::out | std::ios::binary);
  file.seekg(static_cast<std::streamoff>(offset));
  const int original = file.get();
  file.seekp(static_cast<std::streamoff>(offset));
  file.put(static_cast<char>(~original));
}

// FlipByte, through a fresh copy: a checkpoint's SSTs are hard links to the live
// database, and the live one must stay intact (as when the disk flips a bit in one copy).
inline void FlipByte(const std::string& path, uint64_t offset) {
  const std::string copy = path + ".copy";
  std::filesystem::copy_file(path, copy);
  std::filesystem::rename(copy, path);
  FlipByteInPlace(path, offset);
}

// The SST files of the live database in `data_dir` (the one ACTIVE names), sorted.
inline std::vector<std::string> LiveSstFiles(const std::string& data_dir) {
  std::ifstream active_file(data_dir + "/ACTIVE");
  std::string active;
  std::getline(active_file, active);
  std::vector<std::string> found;
  for (const auto& entry : std::filesystem::directory_iterator(data_dir + "/" + active)) {
    if (entry.path().extension() == ".sst") found.push_back(entry.path().string());
  }
  std::sort(found.begin(), found.end());
  return found;
}

}  // namespace stead::storage::testing

#endif  // STEAD_STORAGE_STATE_MACHINE_TESTING_H_
