// wal_bench: group-commit throughput of the WAL beside the disk's raw fdatasync rate,
// and (with --recovery_gib=N) the time to recover an N GiB log.
//
//   wal_bench [--dir=/var/tmp] [--seconds=3] [--recovery_gib=0] [--sync_delay_us=0]
//
// --dir must be on the disk being measured (not a tmpfs, but see below); a fresh
// sub-directory is made in it and removed at the end. Prints figures; asserts nothing.
//
// --sync_delay_us=N sleeps N µs before every fdatasync, the raw ones and the WAL's
// alike. With a tmpfs --dir it stands in for a disk with that sync latency (150 gives
// about 4,000 raw syncs/s, a fast SSD), so that group commit can be measured against a
// fast disk while the real one is busy or slow.
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "storage/wal.h"

namespace stead::storage {
namespace {

using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// --sync_delay_us: the extra latency of every fdatasync.
std::chrono::microseconds sync_delay{0};

// Sleeps sync_delay before each of the WAL's syncs; fails nothing.
class SyncDelay final : public FileFaultInjector {
 public:
  int Inject(Op op, absl::string_view /*path*/) override {
    if (op == Op::kSync && sync_delay.count() > 0) std::this_thread::sleep_for(sync_delay);
    return 0;
  }
};
SyncDelay sync_delay_injector;

// 4 KiB pwrite + fdatasync appends, as the WAL does, for `seconds`.
double RawFdatasyncPerSecond(const std::string& dir, double seconds) {
  const std::string path = dir + "/raw_fdatasync";
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    std::perror("open");
    std::exit(1);
  }
  ::fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, 64 << 20);
  const std::string block(4096, 'x');
  uint64_t count = 0;
  const auto start = Clock::now();
  while (SecondsSince(start) < seconds && count < 10000000) {
    if (sync_delay.count() > 0) std::this_thread::sleep_for(sync_delay);
    if (::pwrite(fd, block.data(), block.size(), static_cast<off_t>(count * block.size())) !=
            static_cast<ssize_t>(block.size()) ||
        ::fdatasync(fd) != 0) {
      std::perror("pwrite/fdatasync");
      std::exit(1);
    }
    ++count;
  }
  const double rate = static_cast<double>(count) / SecondsSince(start);
  ::close(fd);
  std::filesystem::remove(path);
  return rate;
}

struct GroupCommitResult {
  double entries_per_second = 0;
  double mb_per_second = 0;
  double entries_per_sync = 0;
};

// `appenders` threads each append one 256-byte entry at a time and wait for it to be
// durable; the index is taken and the write submitted under one lock so that writes
// reach the WAL in index order, as they do from the raft strand.
GroupCommitResult MeasureGroupCommit(const std::string& dir, int appenders, double seconds) {
  WalOptions options;
  options.dir = dir;
  options.logger = Logger(LogLevel::kWarning);
  options.fault_injector = &sync_delay_injector;
  absl::StatusOr<std::unique_ptr<Wal>> opened = Wal::Open(options);
  if (!opened.ok()) {
    std::fprintf(stderr, "%s\n", opened.status().ToString().c_str());
    std::exit(1);
  }
  Wal& wal = **opened;
  std::mutex submit_mu;
  raft::Index next_index = wal.LastIndex() + 1;
  const std::string data(256, 'v');
  const auto deadline = Clock::now() + std::chrono::duration<double>(seconds);
  std::vector<uint64_t> done_per_thread(static_cast<size_t>(appenders), 0);
  const auto start = Clock::now();
  // Each appender waits on an atomic of its own (one futex wake per completion, no
  // mutex for the woken thread to contend on); they outlive the threads.
  std::vector<std::atomic<bool>> durable(static_cast<size_t>(appenders));
  std::vector<std::thread> threads;
  for (int t = 0; t < appenders; ++t) {
    threads.emplace_back([&, t] {
      std::atomic<bool>& done = durable[static_cast<size_t>(t)];
      for (uint64_t i = 0; i < 100000000 && Clock::now() < deadline; ++i) {
        done.store(false);
        {
          std::lock_guard<std::mutex> lock(submit_mu);
          WalWrite write;
          pb::Entry& entry = write.entries.emplace_back();
          entry.set_index(next_index++);
          entry.set_term(1);
          entry.set_type(pb::ENTRY_TYPE_NORMAL);
          entry.set_data(data);
          wal.Submit(std::move(write), [&done](absl::Status status) {
            if (!status.ok()) {
              std::fprintf(stderr, "append failed: %s\n", status.ToString().c_str());
              std::exit(1);
            }
            done.store(true);
            done.notify_one();
          });
        }
        done.wait(false);
        ++done_per_thread[static_cast<size_t>(t)];
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  const double elapsed = SecondsSince(start);
  uint64_t entries = 0;
  for (uint64_t count : done_per_thread) entries += count;
  const WalStats stats = wal.stats();
  GroupCommitResult result;
  result.entries_per_second = static_cast<double>(entries) / elapsed;
  result.mb_per_second = result.entries_per_second * 256 / 1e6;
  result.entries_per_sync =
      static_cast<double>(stats.entries) / static_cast<double>(std::max<uint64_t>(stats.groups, 1));
  return result;
}

void MeasureRecovery(const std::string& dir, uint64_t gib) {
  WalOptions options;
  options.dir = dir;
  options.logger = Logger(LogLevel::kWarning);
  const uint64_t target_bytes = gib << 30;
  uint64_t entries = 0;
  {
    absl::StatusOr<std::unique_ptr<Wal>> wal = Wal::Open(options);
    if (!wal.ok()) std::exit(1);
    const std::string data(256, 'r');
    const auto start = Clock::now();
    raft::Index next = 1;
    while ((*wal)->stats().bytes < target_bytes) {
      WalWrite write;
      for (int i = 0; i < 4096; ++i) {
        pb::Entry& entry = write.entries.emplace_back();
        entry.set_index(next++);
        entry.set_term(1);
        entry.set_data(data);
      }
      if (absl::Status status = (*wal)->Write(std::move(write)); !status.ok()) {
        std::fprintf(stderr, "%s\n", status.ToString().c_str());
        std::exit(1);
      }
    }
    entries = (*wal)->LastIndex();
    std::printf("wrote %.2f GiB log (%llu entries) in %.1f s\n",
                static_cast<double>((*wal)->stats().bytes) / (1 << 30),
                static_cast<unsigned long long>(entries), SecondsSince(start));
  }
  // Drop the page cache where permitted so recovery reads from the disk.
  ::sync();
  if (FILE* drop = std::fopen("/proc/sys/vm/drop_caches", "w")) {
    std::fputs("3", drop);
    std::fclose(drop);
  }
  const auto start = Clock::now();
  absl::StatusOr<std::unique_ptr<Wal>> wal = Wal::Open(options);
  const double seconds = SecondsSince(start);
  if (!wal.ok() || (*wal)->LastIndex() != entries) {
    std::fprintf(stderr, "recovery failed\n");
    std::exit(1);
  }
  std::printf("recovery of %llu GiB (%llu entries, %zu segments): %.2f s, %.0f MB/s\n",
              static_cast<unsigned long long>(gib), static_cast<unsigned long long>(entries),
              (*wal)->SegmentNames().size(), seconds,
              static_cast<double>(gib << 30) / 1e6 / seconds);
}

int Main(int argc, char** argv) {
  std::string parent = "/var/tmp";
  double seconds = 3;
  uint64_t recovery_gib = 0;
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    if (absl::ConsumePrefix(&arg, "--dir=")) {
      parent = std::string(arg);
    } else if (absl::StartsWith(arg, "--seconds=")) {
      if (!absl::SimpleAtod(arg.substr(10), &seconds)) return 1;
    } else if (absl::StartsWith(arg, "--recovery_gib=")) {
      if (!absl::SimpleAtoi(arg.substr(15), &recovery_gib)) return 1;
    } else if (absl::StartsWith(arg, "--sync_delay_us=")) {
      int64_t delay_us = 0;
      if (!absl::SimpleAtoi(arg.substr(16), &delay_us) || delay_us < 0) return 1;
      sync_delay = std::chrono::microseconds(delay_us);
    } else {
      std::fprintf(stderr, "usage: %s [--dir=/var/tmp] [--seconds=3] [--recovery_gib=0] "
                   "[--sync_delay_us=0]\n",
                   argv[0]);
      return 1;
    }
  }
  std::string pattern = parent + "/stead_wal_bench.XXXXXX";
  if (::mkdtemp(pattern.data()) == nullptr) {
    std::perror("mkdtemp");
    return 1;
  }
  const std::string root = pattern;
  std::printf("wal_bench dir=%s seconds=%.1f entry=256 bytes sync_delay_us=%lld\n", root.c_str(),
              seconds, static_cast<long long>(sync_delay.count()));
  // The disk is shared and its rate drifts: measure the raw rate before and after the
  // group-commit runs and compare against their mean.
  const double raw_before = RawFdatasyncPerSecond(root, seconds);
  std::printf("raw 4 KiB write+fdatasync (before): %.0f /s\n", raw_before);
  std::vector<std::pair<int, GroupCommitResult>> results;
  for (int appenders : {1, 16, 64}) {
    const std::string dir = absl::StrCat(root, "/gc", appenders);
    results.emplace_back(appenders, MeasureGroupCommit(dir, appenders, seconds));
    std::filesystem::remove_all(dir);
  }
  const double raw_after = RawFdatasyncPerSecond(root, seconds);
  const double raw = (raw_before + raw_after) / 2;
  std::printf("raw 4 KiB write+fdatasync (after):  %.0f /s, mean %.0f /s\n", raw_after, raw);
  for (const auto& [appenders, result] : results) {
    std::printf(
        "group commit appenders=%-3d %9.0f entries/s %7.2f MB/s %6.1f entries/sync "
        "%6.1fx raw fdatasync rate\n",
        appenders, result.entries_per_second, result.mb_per_second, result.entries_per_sync,
        result.entries_per_second / raw);
  }
  if (recovery_gib > 0) MeasureRecovery(root + "/recovery", recovery_gib);
  std::filesystem::remove_all(root);
  return 0;
}

}  // namespace
}  // namespace stead::storage

int main(int argc, char** argv) { return stead::storage::Main(argc, argv); }
