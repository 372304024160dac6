// CRC32C (Castagnoli), the checksum of every WAL record and checkpoint file.
#ifndef STEAD_STORAGE_CRC32C_H_
#define STEAD_STORAGE_CRC32C_H_

#include <cstdint>

#include "absl/strings/string_view.h"

namespace stead::storage {

// CRC32C of `crc`'s input followed by `data`. Start from 0:
//   uint32_t crc = Crc32cExtend(0, header); crc = Crc32cExtend(crc, payload);
// Uses the SSE4.2 crc32 instruction when the CPU has it. Thread-safe.
uint32_t Crc32cExtend(uint32_t crc, absl::string_view data);

inline uint32_t Crc32c(absl::string_view data) { return Crc32cExtend(0, data); }

namespace internal {
// The table-driven path, which the test compares with the hardware one.
uint32_t Crc32cPortableForTesting(uint32_t crc, absl::string_view data);
}  // namespace internal

}  // namespace stead::storage

#endif  // STEAD_STORAGE_CRC32C_H_
