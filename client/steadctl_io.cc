#include "client/steadctl_io.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

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
      return InputError(source, absl::StrCat("over ", max_bytes,
                                             " bytes, far over the server's value limit "
                                             "(max_value_bytes)"));
    }
  }
}

bool InRange(unsigned char byte, unsigned char low, unsigned char high) {
  return byte >= low && byte <= high;
}

// The length of the well-formed UTF-8 sequence at the start of `bytes` (Unicode table
// 3-7), or 0 when there is none.
size_t Utf8SequenceLength(absl::string_view bytes) {
  const auto byte = [&](size_t i) { return static_cast<unsigned char>(bytes[i]); };
  const unsigned char lead = byte(0);
  if (lead < 0x80) return 1;
  // The allowed range of the second byte depends on the lead; later bytes are 80..BF.
  size_t length = 0;
  unsigned char low = 0x80, high = 0xbf;
  if (InRange(lead, 0xc2, 0xdf)) {
    length = 2;
  } else if (InRange(lead, 0xe0, 0xef)) {
    length = 3;
    if (lead == 0xe0) low = 0xa0;   // no overlong forms
    if (lead == 0xed) high = 0x9f;  // no surrogates
  } else if (InRange(lead, 0xf0, 0xf4)) {
    length = 4;
    if (lead == 0xf0) low = 0x90;   // no overlong forms
    if (lead == 0xf4) high = 0x8f;  // nothing above U+10FFFF
  } else {
    return 0;
  }
  if (bytes.size() < length || !InRange(byte(1), low, high)) return 0;
  for (size_t i = 2; i < length; ++i) {
    if (!InRange(byte(i), 0x80, 0xbf)) return 0;
  }
  return length;
}

void AppendHex(unsigned char byte, std::string* out) {
  absl::StrAppend(out, absl::StrFormat("\\x%02x", byte));
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

bool IsValidUtf8(absl::string_view bytes) {
  while (!bytes.empty()) {
    const size_t length = Utf8SequenceLength(bytes);
    if (length == 0) return false;
    bytes.remove_prefix(length);
  }
  return true;
}

std::string EscapeBytes(absl::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  while (!bytes.empty()) {
    const auto lead = static_cast<unsigned char>(bytes[0]);
    const size_t length = Utf8SequenceLength(bytes);
    if (length == 0) {
      AppendHex(lead, &out);
    } else if (length == 1) {
      switch (lead) {
        case '\\':
          out += "\\\\";
          break;
        case '\t':
          out += "\\t";
          break;
        case '\n':
          out += "\\n";
          break;
        case '\r':
          out += "\\r";
          break;
        default:
          if (lead < 0x20 || lead == 0x7f) {
            AppendHex(lead, &out);
          } else {
            out += static_cast<char>(lead);
          }
      }
    } else if (lead == 0xc2 && static_cast<unsigned char>(bytes[1]) < 0xa0) {
      // A C1 control character (U+0080..U+009F): some terminals act on it (U+009B
      // starts a control sequence), so it is shown, never sent.
      AppendHex(lead, &out);
      AppendHex(static_cast<unsigned char>(bytes[1]), &out);
    } else {
      out.append(bytes.data(), length);
    }
    bytes.remove_prefix(length == 0 ? 1 : length);
  }
  return out;
}

void SetBytes(Json& object, const std::string& name, absl::string_view bytes) {
  if (IsValidUtf8(bytes)) {
    object[name] = std::string(bytes);
  } else {
    object[name + "_base64"] = absl::Base64Escape(bytes);
  }
}

void PrintJson(const Json& json) {
  const std::string text = json.dump();
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fputc('\n', stdout);
}

}  // namespace stead::ctl
