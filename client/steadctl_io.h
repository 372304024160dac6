// How steadctl takes values in and prints keys and values out, whatever their bytes.
//
// In: a value comes from an argument, from standard input (`put KEY -`) or from a file
// (`--value-file=PATH`), read whole and bounded by kMaxValueInputBytes.
//
// Out, table: keys and values are escaped (EscapeBytes) so that one pair is one line
// and every byte can be told back: \\ \t \n \r, and \xHH for every other control byte
// and every byte that is not part of valid UTF-8. Valid UTF-8 is printed as is.
//
// Out, JSON (the rule of every command's --output=json): a byte string that is valid
// UTF-8 is a JSON string under its name ("value"); one that is not is base64 (RFC 4648,
// with padding) under the name with "_base64" appended ("value_base64"), in its place.
// SetBytes applies the rule; PrintJson prints one object per line.
//
// Thread-safety: pure functions, except ReadValueInput and PrintJson (one caller at a
// time on standard input / standard output).
#ifndef STEAD_CLIENT_STEADCTL_IO_H_
#define STEAD_CLIENT_STEADCTL_IO_H_

#include <cstddef>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"

namespace stead::ctl {

// JSON objects keep their fields in the order they were set, as the help texts show.
using Json = nlohmann::ordered_json;

// The most bytes steadctl reads as one value: 3 MiB, over the value limit
// (max_value_bytes, 1 MiB), so that a value between the two is refused by the client
// library with InvalidArgument naming that limit, while reading stays bounded whatever
// the input (`put KEY - < /dev/zero`).
inline constexpr size_t kMaxValueInputBytes = 3u << 20;

// Every byte of the file at `path` ("-": standard input) until its end. InvalidArgument
// naming `source` (how the user gave it, e.g. "--value-file=/tmp/v") with the reason
// when it cannot be opened or read, or when it holds more than `max_bytes` (then
// reading stops there, so `put KEY - < /dev/zero` ends).
absl::StatusOr<std::string> ReadValueInput(const std::string& path, absl::string_view source,
                                           size_t max_bytes = kMaxValueInputBytes);

// True when `bytes` is well-formed UTF-8 (Unicode 15, table 3-7: no overlong forms,
// surrogates or code points above U+10FFFF).
bool IsValidUtf8(absl::string_view bytes);

// `bytes` for one field of a table line: \ tab newline CR as \\ \t \n \r; NUL, every
// other C0 or C1 control character and DEL as \xHH (a C1 character as its two UTF-8
// bytes); each byte that is not part of valid UTF-8 as \xHH; the rest as is.
std::string EscapeBytes(absl::string_view bytes);

// Sets object[name] to `bytes` when they are valid UTF-8, else object[name + "_base64"]
// to their base64.
void SetBytes(Json& object, const std::string& name, absl::string_view bytes);

// Prints `json` on one line of standard output. Every string in it must be valid UTF-8
// (set through SetBytes, or a literal of steadctl): nlohmann-json throws on any other,
// and steadctl, which catches nothing, aborts on that bug.
void PrintJson(const Json& json);

}  // namespace stead::ctl

#endif  // STEAD_CLIENT_STEADCTL_IO_H_
