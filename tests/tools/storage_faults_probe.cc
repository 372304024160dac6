// storage_faults_probe FILE OP...: opens FILE for writing (created if missing) and runs
// each OP on it in order, printing "<op> ok" or "<op> errno <number>" after each, so
// storage_faults_test sees through the preloaded library what a program would see.
//
//   write:N        N bytes at the file offset           fsync      fsync(2)
//   pwrite:N:AT    N bytes at offset AT                 fdatasync  fdatasync(2)
//   writev:N       N bytes in two pieces at the offset  rename:TO  rename(2) FILE to TO
//
// Exits 0 after the last op, 2 on a usage error, 1 when FILE cannot be opened.
#include <fcntl.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"

namespace {

// Runs one op; -1 with errno set when it failed, 0 when it did, 2 when it is no op.
int Run(int fd, const char* file, const std::string& op) {
  const std::vector<std::string> parts = absl::StrSplit(op, ':');
  size_t count = 0;
  if (parts.size() == 2 && parts[0] == "write" && absl::SimpleAtoi(parts[1], &count)) {
    const std::string data(count, 'w');
    return ::write(fd, data.data(), count) == static_cast<ssize_t>(count) ? 0 : -1;
  }
  off_t at = 0;
  if (parts.size() == 3 && parts[0] == "pwrite" && absl::SimpleAtoi(parts[1], &count) &&
      absl::SimpleAtoi(parts[2], &at)) {
    const std::string data(count, 'p');
    return ::pwrite(fd, data.data(), count, at) == static_cast<ssize_t>(count) ? 0 : -1;
  }
  if (parts.size() == 2 && parts[0] == "writev" && absl::SimpleAtoi(parts[1], &count)) {
    std::string data(count, 'v');
    const iovec pieces[2] = {{data.data(), count / 2},
                             {data.data() + count / 2, count - count / 2}};
    return ::writev(fd, pieces, 2) == static_cast<ssize_t>(count) ? 0 : -1;
  }
  if (op == "fsync") return ::fsync(fd);
  if (op == "fdatasync") return ::fdatasync(fd);
  if (parts.size() == 2 && parts[0] == "rename") return ::rename(file, parts[1].c_str());
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: storage_faults_probe FILE OP...\n");
    return 2;
  }
  const int fd = ::open(argv[1], O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    std::perror(argv[1]);
    return 1;
  }
  for (int i = 2; i < argc; ++i) {
    errno = 0;
    const int result = Run(fd, argv[1], argv[i]);
    if (result == 2) {
      std::fprintf(stderr, "storage_faults_probe: unknown op %s\n", argv[i]);
      return 2;
    }
    if (result == 0) {
      std::printf("%s ok\n", argv[i]);
    } else {
      std::printf("%s errno %d\n", argv[i], errno);
    }
    std::fflush(stdout);  // each line out before the next op, which may kill us
  }
  ::close(fd);
  return 0;
}
