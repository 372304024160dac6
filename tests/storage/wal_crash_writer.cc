// wal_crash_writer DIR TERM SEED: appends to the WAL in DIR until killed, printing on
// stdout what it has done, one line per event, only once the WAL has reported it
// durable (the lines are the "acknowledgements" the crash test checks):
//
//   OPEN <first index> <last index>        after recovery
//   TRUNCATING <index>                     before submitting a write that replaces
//                                          entries from <index> on (acked ones included)
//   COMPACTING <index>                     before submitting a compaction to <index>
//   ACK <first> <last> <term>              entries [first, last] of <term> are durable
//   HS <term> <commit>                     this hard state is durable
//   FAIL <status>                          a write failed (injected faults); the
//                                          writer then stops submitting and exits
//
// Writes are pipelined (up to 16 in flight) so that groups hold several writes.
// Exits after 60 s or 10^6 writes if nobody kills it.
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <random>
#include <string>

#include "absl/strings/str_cat.h"
#include "storage/wal.h"
#include "tests/storage/crash_entries.h"

namespace {

using stead::raft::Index;
using stead::raft::Term;

// One write(2) per line, so a kill never leaves half a line that looks whole.
void Print(const std::string& line) {
  const std::string out = line + "\n";
  size_t done = 0;
  while (done < out.size()) {
    const ssize_t written = ::write(STDOUT_FILENO, out.data() + done, out.size() - done);
    if (written <= 0) std::_Exit(3);
    done += static_cast<size_t>(written);
  }
}

int Run(const std::string& dir, Term term, uint64_t seed) {
  stead::storage::WalOptions options;
  options.dir = dir;
  options.identity = "wal-crash-test";
  options.segment_bytes = 128 << 10;
  options.logger = stead::Logger(stead::LogLevel::kWarning);
  absl::StatusOr<std::unique_ptr<stead::storage::Wal>> opened = stead::storage::Wal::Open(options);
  if (!opened.ok()) {
    Print(absl::StrCat("OPENFAIL ", opened.status().ToString()));
    return 2;
  }
  stead::storage::Wal& wal = **opened;
  Print(absl::StrCat("OPEN ", wal.FirstIndex(), " ", wal.LastIndex()));

  std::mt19937_64 rng(seed);
  std::mutex mu;
  std::condition_variable cv;
  int in_flight = 0;
  bool failed = false;
  Index planned_last = wal.LastIndex();
  Index compacted = wal.FirstIndex() - 1;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  for (int i = 0; i < 1000000 && std::chrono::steady_clock::now() < deadline; ++i) {
    {
      std::unique_lock<std::mutex> lock(mu);
      cv.wait(lock, [&] { return in_flight < 16; });
      if (failed) break;
      ++in_flight;
    }
    stead::storage::WalWrite write;
    Index first = planned_last + 1;
    if (rng() % 40 == 0 && planned_last > compacted + 4) {
      first = planned_last - rng() % 3;
      Print(absl::StrCat("TRUNCATING ", first));
    }
    const Index last = first + rng() % 8;
    for (Index index = first; index <= last; ++index) {
      stead::pb::Entry entry;
      entry.set_index(index);
      entry.set_term(term);
      entry.set_type(stead::pb::ENTRY_TYPE_NORMAL);
      entry.set_data(stead::storage::crash_test::EntryData(index, term));
      write.entries.push_back(std::move(entry));
    }
    planned_last = last;
    write.hard_state.emplace();
    write.hard_state->set_term(term);
    write.hard_state->set_vote(1);
    // Entries at or below the durable last index minus a margin can no longer be
    // replaced by a TRUNCATING write (those go back at most 2 from planned_last).
    const Index durable_last = wal.LastIndex();
    write.hard_state->set_commit(durable_last);
    if (rng() % 100 == 0 && durable_last > compacted + 60) {
      const Index index = durable_last - 20;
      absl::StatusOr<Term> snapshot_term = wal.TermAt(index);
      if (snapshot_term.ok()) {
        write.snapshot.emplace();
        write.snapshot->set_index(index);
        write.snapshot->set_term(*snapshot_term);
        compacted = index;
        Print(absl::StrCat("COMPACTING ", index));
      }
    }
    const uint64_t commit = durable_last;
    wal.Submit(std::move(write), [&, first, last, commit](absl::Status status) {
      if (status.ok()) {
        Print(absl::StrCat("ACK ", first, " ", last, " ", term));
        Print(absl::StrCat("HS ", term, " ", commit));
      } else {
        Print(absl::StrCat("FAIL ", status.ToString()));
      }
      std::lock_guard<std::mutex> lock(mu);
      failed = failed || !status.ok();
      --in_flight;
      cv.notify_all();
    });
  }
  // The callbacks use the locals above: wait for them before the WAL is destroyed.
  std::unique_lock<std::mutex> lock(mu);
  cv.wait(lock, [&] { return in_flight == 0; });
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s DIR TERM SEED\n", argv[0]);
    return 1;
  }
  return Run(argv[1], std::strtoull(argv[2], nullptr, 10), std::strtoull(argv[3], nullptr, 10));
}
