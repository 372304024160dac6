#include "client/steadctl_io.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace stead::ctl {
namespace {

absl::Status InputError(absl::string_view source, absl::string_view reason) {
  return absl::InvalidArgumentError(absl::StrCat(source, ": ", reason));
}

// Reads `fd` until its end into `value`, failing once it holds more than `max_bytes`.
absl::Status ReadAll(int fd, absl::string_view source, size_t max_bytes, std::string* value) {
  char buffer[64 << 10];
  // Bounded by max_bytes: each pass adds at least one byte or ends.
  while (true) {
    const ssize_t got = ::read(fd, buffer, sizeof buffer);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) return InputError(source, std::strerror(errno));
    if (got == 0) return absl::OkStatus();
    value->append(buffer, static_cast<size_t>(got));
    if (value->size() > max_bytes) {
      return InputError(source, absl::StrCat("more than ", max_bytes,
                                             " bytes, the largest value steadctl sends"));
    }
  }
}

}  // namespace

absl::StatusOr<std::string> ReadValueInput(const std::string& path, absl::string_view source,
                                           size_t max_bytes) {
  const bool from_stdin = path == "-";
  const int fd = from_stdin ? STDIN_FILENO : ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return InputError(source, std::strerror(errno));
  std::string value;
  const absl::Status status = ReadAll(fd, source, max_bytes, &value);
  if (!from_stdin) ::close(fd);
  if (!status.ok()) return status;
  return value;
}

}  // namespace stead::ctl
