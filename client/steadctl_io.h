// How steadctl takes values in, whatever their bytes.
//
// In: a value comes from an argument, from standard input (`put KEY -`) or from a file
// (`--value-file=PATH`), read whole and bounded by kMaxValueInputBytes.
//
// Thread-safety: ReadValueInput reads standard input for "-": one caller at a time.
#ifndef STEAD_CLIENT_STEADCTL_IO_H_
#define STEAD_CLIENT_STEADCTL_IO_H_

#include <cstddef>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace stead::ctl {

// The most bytes steadctl reads as one value: the largest request frame the client
// sends (ClientOptions::max_frame_bytes). The server's value limit is lower; it refuses
// a value over it with InvalidArgument naming max_value_bytes.
inline constexpr size_t kMaxValueInputBytes = 64u << 20;

// Every byte of the file at `path` ("-": standard input) until its end. InvalidArgument
// naming `source` (how the user gave it, e.g. "--value-file=/tmp/v") with the reason
// when it cannot be opened or read, or when it holds more than `max_bytes` (then
// reading stops there, so `put KEY - < /dev/zero` ends).
absl::StatusOr<std::string> ReadValueInput(const std::string& path, absl::string_view source,
                                           size_t max_bytes = kMaxValueInputBytes);

}  // namespace stead::ctl

#endif  // STEAD_CLIENT_STEADCTL_IO_H_
