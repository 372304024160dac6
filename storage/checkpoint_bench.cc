// checkpoint_bench: throughput of the state machine and its checkpoints on this disk.
//
// Fills a state machine with --fill_mib of user data (incompressible values), then
// prints apply throughput, and checkpoint create, verify, stream (reader -> writer into
// a staging dir, chunk by chunk) and install figures in MB/s. Not a test: it asserts
// nothing and is not registered with ctest. Build it in a release build for figures:
//
//   checkpoint_bench --fill_mib=256 --value_bytes=1024 --batch_mutations=16
//                    --chunk_kib=1024 --dir=/tmp   (works in a fresh mkdtemp dir there)
//                    --cold=true   (evict the checkpoint from the page cache before
//                                   verify and stream, to read it from the disk)
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <random>
#include <string>
#include <system_error>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "base/status_macros.h"
#include "storage/checkpoint.h"
#include "storage/checkpoint_stream.h"
#include "storage/state_machine.h"

namespace stead::storage {
namespace {

struct BenchFlags {
  uint64_t fill_mib = 256;
  uint64_t value_bytes = 1024;
  uint64_t batch_mutations = 16;
  uint64_t chunk_kib = 1024;
  std::string dir = "/tmp";
  bool cold = false;  // evict the checkpoint's files from the page cache before reading
};

bool ParseFlags(int argc, char** argv, BenchFlags* flags) {
  for (int i = 1; i < argc; ++i) {
    const absl::string_view arg = argv[i];
    const size_t equals = arg.find('=');
    if (!absl::StartsWith(arg, "--") || equals == absl::string_view::npos) return false;
    const absl::string_view name = arg.substr(2, equals - 2);
    const absl::string_view value = arg.substr(equals + 1);
    bool ok = true;
    if (name == "fill_mib") {
      ok = absl::SimpleAtoi(value, &flags->fill_mib);
    } else if (name == "value_bytes") {
      ok = absl::SimpleAtoi(value, &flags->value_bytes);
    } else if (name == "batch_mutations") {
      ok = absl::SimpleAtoi(value, &flags->batch_mutations);
    } else if (name == "chunk_kib") {
      ok = absl::SimpleAtoi(value, &flags->chunk_kib);
    } else if (name == "cold") {
      ok = value == "true" || value == "false";
      flags->cold = value == "true";
    } else if (name == "dir") {
      flags->dir = std::string(value);
    } else {
      ok = false;
    }
    if (!ok) return false;
  }
  return flags->fill_mib > 0 && flags->value_bytes > 0 && flags->batch_mutations > 0 &&
         flags->chunk_kib > 0;
}

// Drops the (clean, already fsynced) pages of every file in `dir` from the page cache,
// so the next read comes from the disk. Affects only these files.
void EvictFromPageCache(const std::string& dir) {
  std::error_code error;
  for (auto it = std::filesystem::directory_iterator(dir, error);
       !error && it != std::filesystem::directory_iterator(); it.increment(error)) {
    const int fd = ::open(it->path().c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    ::fdatasync(fd);
    ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    ::close(fd);
  }
}

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

double MiBPerSecond(uint64_t bytes, double seconds) {
  return static_cast<double>(bytes) / (1024.0 * 1024.0) / seconds;
}

void PrintRate(const char* what, uint64_t bytes, double seconds) {
  std::printf("%-22s %9.1f MiB in %7.3f s = %8.1f MiB/s\n", what,
              static_cast<double>(bytes) / (1024.0 * 1024.0), seconds,
              MiBPerSecond(bytes, seconds));
}

StateMachineOptions BenchOptions(const std::string& data_dir, raft::NodeId node_id) {
  StateMachineOptions options;
  options.data_dir = data_dir;
  options.identity = NodeIdentity{0xbe9c4, node_id, absl::StrCat("bench-", node_id)};
  options.logger = Logger(LogLevel::kWarning);
  return options;
}

absl::Status Fill(StateMachine& machine, const BenchFlags& flags) {
  std::mt19937_64 random(1);
  const uint64_t target_bytes = flags.fill_mib * 1024 * 1024;
  uint64_t user_bytes = 0;
  uint64_t batches = 0;
  uint64_t key = 0;
  std::string value(flags.value_bytes, '\0');
  const auto start = std::chrono::steady_clock::now();
  while (user_bytes < target_bytes) {
    ApplyBatch batch;
    batch.index = machine.applied_index() + 1;
    batch.term = 1;
    for (uint64_t m = 0; m < flags.batch_mutations; ++m) {
      // Incompressible values, so file sizes are the data's size.
      for (size_t i = 0; i < value.size(); i += 8) {
        const uint64_t bits = random();
        for (size_t b = 0; b < 8 && i + b < value.size(); ++b) {
          value[i + b] = static_cast<char>((bits >> (8 * b)) & 0xff);
        }
      }
      std::string key_bytes = absl::StrCat("key", 1000000000 + key++);
      user_bytes += key_bytes.size() + value.size();
      batch.mutations.push_back(Mutation::Put(kDefaultKeyspace, std::move(key_bytes), value));
    }
    STEAD_RETURN_IF_ERROR(machine.Apply(batch));
    ++batches;
  }
  const double seconds = SecondsSince(start);
  std::printf("apply                  %llu batches of %llu x %llu-byte values in %.3f s = "
              "%.0f batches/s, %.1f MiB/s\n",
              static_cast<unsigned long long>(batches),
              static_cast<unsigned long long>(flags.batch_mutations),
              static_cast<unsigned long long>(flags.value_bytes), seconds,
              static_cast<double>(batches) / seconds, MiBPerSecond(user_bytes, seconds));
  const auto flush_start = std::chrono::steady_clock::now();
  STEAD_RETURN_IF_ERROR(machine.Flush());
  std::printf("flush                  %.3f s\n", SecondsSince(flush_start));
  return absl::OkStatus();
}

absl::Status Stream(const std::string& checkpoint, const std::string& staging,
                    const BenchFlags& flags, uint64_t total_bytes) {
  CheckpointReaderOptions options;
  options.max_chunk_bytes = flags.chunk_kib * 1024;
  const auto start = std::chrono::steady_clock::now();
  STEAD_ASSIGN_OR_RETURN(auto reader, CheckpointReader::Open(checkpoint, options));
  STEAD_ASSIGN_OR_RETURN(auto writer, CheckpointWriter::Create(staging));
  uint64_t chunks = 0;
  for (;;) {
    STEAD_ASSIGN_OR_RETURN(std::optional<pb::SnapshotChunk> chunk, reader->Next());
    if (!chunk.has_value()) break;
    STEAD_RETURN_IF_ERROR(writer->Write(*chunk));
    ++chunks;
  }
  const double stream_seconds = SecondsSince(start);
  PrintRate("stream (read+write)", total_bytes, stream_seconds);
  std::printf("                       %llu chunks of <= %llu KiB\n",
              static_cast<unsigned long long>(chunks),
              static_cast<unsigned long long>(flags.chunk_kib));
  const auto finish_start = std::chrono::steady_clock::now();
  STEAD_RETURN_IF_ERROR(writer->Finish().status());
  PrintRate("stream finish (verify)", total_bytes, SecondsSince(finish_start));
  return absl::OkStatus();
}

absl::Status Run(const BenchFlags& flags, const std::string& root) {
  STEAD_ASSIGN_OR_RETURN(auto machine, StateMachine::Open(BenchOptions(root + "/node1", 1)));
  STEAD_RETURN_IF_ERROR(Fill(*machine, flags));

  const std::string checkpoint = root + "/node1/checkpoints/bench";
  auto start = std::chrono::steady_clock::now();
  STEAD_ASSIGN_OR_RETURN(const pb::SnapshotManifest manifest, machine->CreateCheckpoint(checkpoint));
  PrintRate("checkpoint create", manifest.total_bytes(), SecondsSince(start));
  std::printf("                       %d files, %llu keys, index %llu\n", manifest.files_size(),
              static_cast<unsigned long long>(manifest.key_count()),
              static_cast<unsigned long long>(manifest.raft().index()));

  if (flags.cold) EvictFromPageCache(checkpoint);
  start = std::chrono::steady_clock::now();
  STEAD_RETURN_IF_ERROR(VerifyCheckpoint(checkpoint).status());
  PrintRate(flags.cold ? "checkpoint verify cold" : "checkpoint verify", manifest.total_bytes(),
            SecondsSince(start));

  const std::string staging = root + "/node2/checkpoints/incoming";
  if (flags.cold) EvictFromPageCache(checkpoint);
  STEAD_RETURN_IF_ERROR(Stream(checkpoint, staging, flags, manifest.total_bytes()));

  start = std::chrono::steady_clock::now();
  STEAD_RETURN_IF_ERROR(
      StateMachine::InstallCheckpoint(BenchOptions(root + "/node2", 2), staging).status());
  PrintRate("install (verify+link)", manifest.total_bytes(), SecondsSince(start));
  return absl::OkStatus();
}

}  // namespace
}  // namespace stead::storage

int main(int argc, char** argv) {
  stead::storage::BenchFlags flags;
  if (!stead::storage::ParseFlags(argc, argv, &flags)) {
    std::fprintf(stderr,
                 "usage: checkpoint_bench [--fill_mib=256] [--value_bytes=1024] "
                 "[--batch_mutations=16] [--chunk_kib=1024] [--dir=/tmp] [--cold=false]\n");
    return 2;
  }
  std::string root = flags.dir + "/stead-checkpoint-bench-XXXXXX";
  if (::mkdtemp(root.data()) == nullptr) {
    std::perror("mkdtemp");
    return 1;
  }
  std::printf("checkpoint_bench in %s\n", root.c_str());
  const absl::Status status = stead::storage::Run(flags, root);
  std::error_code ignored;  // Best effort cleanup of the bench's own directory.
  std::filesystem::remove_all(root, ignored);
  if (!status.ok()) {
    std::fprintf(stderr, "checkpoint_bench: %s\n", status.ToString().c_str());
    return 1;
  }
  return 0;
}
