// Helpers shared by the WAL tests: temporary directories, entries, a fault injector.
#ifndef STEAD_STORAGE_WAL_TEST_UTIL_H_
#define STEAD_STORAGE_WAL_TEST_UTIL_H_

#include <sys/stat.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "proto/raft.pb.h"
#include "storage/file.h"
#include "storage/wal.h"

namespace stead::storage::testing {

// A directory under /tmp created with mkdtemp and removed with everything in it.
class TempDir {
 public:
  TempDir() {
    std::string pattern = "/tmp/stead_wal_test.XXXXXX";
    char* made = ::mkdtemp(pattern.data());
    if (made == nullptr) std::abort();
    path_ = made;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

inline pb::Entry MakeEntry(raft::Index index, raft::Term term, size_t data_bytes = 32) {
  pb::Entry entry;
  entry.set_index(index);
  entry.set_term(term);
  entry.set_type(pb::ENTRY_TYPE_NORMAL);
  std::string data = absl::StrCat("entry-", index, "-term-", term, "-");
  data.resize(data_bytes, static_cast<char>('a' + index % 26));
  entry.set_data(data);
  return entry;
}

inline WalWrite EntriesWrite(raft::Index first, raft::Index last, raft::Term term,
                             size_t data_bytes = 32) {
  WalWrite write;
  for (raft::Index index = first; index <= last; ++index) {
    write.entries.push_back(MakeEntry(index, term, data_bytes));
  }
  return write;
}

// Fails operations of a chosen kind with a chosen errno while armed, and remembers the
// size each file had when it was last synced.
class TestFaultInjector final : public FileFaultInjector {
 public:
  void Arm(Op op, int error_number) {
    std::lock_guard<std::mutex> lock(mu_);
    armed_[op] = error_number;
  }
  void Disarm() {
    std::lock_guard<std::mutex> lock(mu_);
    armed_.clear();
  }
  int Inject(Op op, absl::string_view path) override {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = armed_.find(op);
    if (it != armed_.end()) return it->second;
    if (op == Op::kSync) {
      struct stat st;
      if (::stat(std::string(path).c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
        synced_bytes_[std::string(path)] = static_cast<uint64_t>(st.st_size);
      }
    }
    return 0;
  }
  // Size of `path` at its last sync, or -1.
  int64_t SyncedBytes(const std::string& path) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = synced_bytes_.find(path);
    return it == synced_bytes_.end() ? -1 : static_cast<int64_t>(it->second);
  }

 private:
  std::mutex mu_;
  std::map<Op, int> armed_;
  std::map<std::string, uint64_t> synced_bytes_;
};

}  // namespace stead::storage::testing

#endif  // STEAD_STORAGE_WAL_TEST_UTIL_H_
