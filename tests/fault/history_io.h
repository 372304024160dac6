// A History (tests/fault/history.h) on disk, in a fault run's folder, so a failed run
// can be checked again, and read by people and scripts:
//
//   registers.jsonl     one RegisterOp per line
//   bank.jsonl          one BankOp per line
//   watches.jsonl       one WatchRecord per line (its events inline)
//   bank_initial.json   {"account": balance, ...}
//
// Enums are words ("put", "ok", ...); a time of kNever and an absent CAS expectation
// are null. Every file is written, empty or not; reading requires all four.
//
// Thread-safety: none needed; each call touches only its own files.
#ifndef STEAD_TESTS_FAULT_HISTORY_IO_H_
#define STEAD_TESTS_FAULT_HISTORY_IO_H_

#include <filesystem>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "tests/fault/history.h"

namespace stead::fault {

// Writes the four files into `dir` (which must exist), replacing any already there.
// Fails if a file cannot be written or a string is not valid UTF-8 (JSON cannot hold it).
absl::Status WriteHistory(const History& history, const std::filesystem::path& dir);

// Reads the four files from `dir`. A missing file is NotFound; a malformed line is
// InvalidArgument naming the file, the line number and what is wrong with it.
absl::StatusOr<History> ReadHistory(const std::filesystem::path& dir);

}  // namespace stead::fault

#endif  // STEAD_TESTS_FAULT_HISTORY_IO_H_
