#include "storage/wal.h"

#include <sys/mount.h>
#include <sys/stat.h>

#include <atomic>
#include <cerrno>
#include <filesystem>
#include <fstream>
#include <future>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "storage/segment.h"
#include "storage/wal_test_util.h"
#include "tests/testing/status_matchers.h"

namespace stead::storage {
namespace {

using ::stead::storage::testing::EntriesWrite;
using ::stead::storage::testing::MakeEntry;
using ::stead::storage::testing::TempDir;
using ::stead::storage::testing::TestFaultInjector;
using ::stead::testing::StatusIs;
using ::testing::HasSubstr;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void WriteFile(const std::string& path, const std::string& contents) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(contents.data(), static_cast<std::streamsize>(contents.size()));
}

class WalTest : public ::testing::Test {
 protected:
  WalOptions Options() const {
    WalOptions options;
    options.dir = dir_.path() + "/wal";
    options.logger = Logger(LogLevel::kWarning);
    return options;
  }
  // Small segments so that tests roll several of them.
  WalOptions SmallSegmentOptions() const {
    WalOptions options = Options();
    options.segment_bytes = 64 << 10;
    options.cache_bytes = 4 << 10;  // most reads go to the files
    return options;
  }
  std::string SegmentPath(const Wal& wal, size_t i) const {
    return Options().dir + "/" + wal.SegmentNames().at(i);
  }

  // Asserts that the log holds exactly [first, last] with entries made by MakeEntry
  // and the given term for each index.
  static void ExpectLog(const Wal& wal, raft::Index first, raft::Index last,
                        const std::function<raft::Term(raft::Index)>& term_of,
                        size_t data_bytes = 32) {
    ASSERT_EQ(wal.FirstIndex(), first);
    ASSERT_EQ(wal.LastIndex(), last);
    if (last < first) return;
    ASSERT_OK_AND_ASSIGN(std::vector<pb::Entry> entries, wal.Entries(first, last + 1, UINT64_MAX));
    ASSERT_EQ(entries.size(), last - first + 1);
    for (raft::Index index = first; index <= last; ++index) {
      const pb::Entry want = MakeEntry(index, term_of(index), data_bytes);
      const pb::Entry& got = entries[index - first];
      ASSERT_EQ(got.index(), index);
      ASSERT_EQ(got.term(), want.term()) << "index " << index;
      ASSERT_EQ(got.data(), want.data()) << "index " << index;
      ASSERT_OK_AND_ASSIGN(raft::Term term, wal.TermAt(index));
      ASSERT_EQ(term, want.term());
    }
  }

  TempDir dir_;
};

raft::Term Term1(raft::Index) { return 1; }

// The term at `index`, or a sentinel that no test expects when it cannot be read.
raft::Term TermOrZero(const Wal& wal, raft::Index index) {
  absl::StatusOr<raft::Term> term = wal.TermAt(index);
  return term.ok() ? *term : 999999;
}

TEST_F(WalTest, AppendsReadsAndReopens) {
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Wal> wal, Wal::Open(Options()));
    EXPECT_EQ(wal->FirstIndex(), 1u);
    EXPECT_EQ(wal->LastIndex(), 0u);
    EXPECT_EQ(TermOrZero(*wal, 0), 0u);
    for (raft::Index index = 1; index <= 100; index += 10) {
      WalWrite write = EntriesWrite(index, index + 9, 1);
      pb::HardState hard_state;
      hard_state.set_term(1);
      hard_state.set_vote(2);
      hard_state.set_commit(index);
      write.hard_state = hard_state;
      ASSERT_OK(wal->Write(std::move(write)));
    }
    ExpectLog(*wal, 1, 100, Term1);
    EXPECT_EQ(wal->stats().entries, 100u);
  }
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Wal> wal, Wal::Open(Options()));
  ExpectLog(*wal, 1, 100, Term1);
  const raft::PersistedState state = wal->InitialState();
  EXPECT_EQ(state.hard_state.term(), 1u);
  EXPECT_EQ(state.hard_state.vote(), 2u);
  EXPECT_EQ(state.hard_state.commit(), 91u);
  EXPECT_THAT(wal->TermAt(101), StatusIs(absl::StatusCode::kOutOfRange));
  EXPECT_THAT(wal->Entries(50, 102, UINT64_MAX), StatusIs(absl::StatusCode::kOutOfRange));
}

TEST_F(WalTest, EntriesStopAtMaxBytesButReturnAtLeastOne) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Wal> wal, Wal::Open(Options()));
  ASSERT_OK(wal->Write(EntriesWrite(1, 20, 1, 100)));
  const uint64_t entry_bytes = MakeEntry(1, 1, 100).ByteSizeLong();
  ASSERT_OK_AND_ASSIGN(auto three, wal->Entries(1, 21, 3 * entry_bytes + 1));
  EXPECT_EQ(three.size(), 3u);
  ASSERT_OK_AND_ASSIGN(auto one, wal->Entries(5, 21, 1));
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(one[0].index(), 5u);
}

TEST_F(WalTest, RollsSegmentsBySizeAndNamesThemByFirstIndex) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Wal> wal, Wal::Open(SmallSegmentOptions()));
  for (raft::Index index = 1; index <= 400; index += 20) {
    ASSERT_OK(wal->Write(EntriesWrite(index, index + 19, 1, 1000)));
  }
  const std::vector<std::string> names = wal->SegmentNames();
  ASSERT_GE(names.size(), 5u);
  raft::Index previous_first = 0;
  for (size_t i = 0; i < names.size(); ++i) {
    uint64_t sequence = 0;
    raft::Index first_index = 0;
    ASSERT_TRUE(ParseSegmentFileName(names[i], &sequence, &first_index));
    EXPECT_EQ(sequence, i + 1);
    EXPECT_GT(first_index, previous_first);
    previous_first = first_index;
  }
  ExpectLog(*wal, 1, 400, Term1, 1000);
  wal.reset();
  ASSERT_OK_AND_ASSIGN(wal, Wal::Open(SmallSegmentOptions()));
  EXPECT_EQ(wal->SegmentNames(), names);
  ExpectLog(*wal, 1, 400, Term1, 1000);
}

// A follower's conflicting suffix is replaced, including entries in older segments.
TEST_F(WalTest, TruncatesAConflictingSuffixAcrossSegments) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Wal> wal, Wal::Open(SmallSegmentOptions()));
  for (raft::Index index = 1; index <= 300; index += 20) {
    ASSERT_OK(wal->Write(EntriesWrite(index, index + 19, 1, 1000)));
  }
  ASSERT_GE(wal->SegmentNames().size(), 4u);
  // Index 50 lives in the first segments; replace 50.. with 10 entries of term 2.
  ASSERT_OK(wal->Write(EntriesWrite(50, 59, 2, 1000)));
  const auto term_of = [](raft::Index index) -> raft::Term { return index >= 50 ? 2 : 1; };
  ExpectLog(*wal, 1, 59, term_of, 1000);
  // And once more inside the new suffix, then grow again.
  ASSERT_OK(wal->Write(EntriesWrite(55, 70, 3, 1000)));
  const auto term_of2 = [](raft::Index index) -> raft::Term {
    return index >= 55 ? 3 : (index >= 50 ? 2 : 1);
  };
  ExpectLog(*wal, 1, 70, term_of2, 1000);
  wal.reset();
  ASSERT_OK_AND_ASSIGN(wal, Wal::Open(SmallSegmentOptions()));
  ExpectLog(*wal, 1, 70, term_of2, 1000);
}

TEST_F(WalTest, CompactionDeletesSegmentsWhollyBelowTheSnapshot) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Wal> wal, Wal::Open(SmallSegmentOptions()));
  pb::HardState hard_state;
  hard_state.set_term(4);
  hard_state.set_vote(1);
  WalWrite first = EntriesWrite(1, 20, 4, 1000);
  first.hard_state = hard_state;
  ASSERT_OK(wal->Write(std::move(first)));
  for (raft::Index index = 21; index <= 600; index += 20) {
    ASSERT_OK(wal->Write(EntriesWrite(index, index + 19, 4, 1000)));
  }
  const size_t segments_before = wal->SegmentNames().size();
  ASSERT_GE(segments_before, 6u);
  pb::SnapshotMetadata snapshot;
  snapshot.set_index(500);
  snapshot.set_term(4);
  snapshot.mutable_conf_state()->add_voters(1);
  ASSERT_OK(wal->Compact(snapshot));
  const size_t segments_after = wal->SegmentNames().size();
  EXPECT_LT(segments_after, segments_before - 3);
  EXPECT_EQ(wal->stats().segments_deleted, segments_before - segments_after);
  // Files are gone from the directory too.
  size_t files = 0;
  for (const auto& item : std::filesystem::directory_iterator(Options().dir)) {
    files += item.path().extension() == ".wal" ? 1 : 0;
  }
  EXPECT_EQ(files, segments_after);
  const auto term4 = [](raft::Index) -> raft::Term { return 4; };
  ExpectLog(*wal, 501, 600, term4, 1000);
  EXPECT_EQ(TermOrZero(*wal, 500), 4u);
  EXPECT_THAT(wal->TermAt(499), StatusIs(absl::StatusCode::kOutOfRange));
  EXPECT_THAT(wal->Entries(500, 501, 1), StatusIs(absl::StatusCode::kOutOfRange));

  // The hard state and snapshot survive the deletion of the segments they were
  // first written to.
  wal.reset();
  ASSERT_OK_AND_ASSIGN(wal, Wal::Open(SmallSegmentOptions()));
  ExpectLog(*wal, 501, 600, term4, 1000);
  EXPECT_EQ(wal->InitialState().hard_state.term(), 4u);
  EXPECT_EQ(wal->InitialState().hard_state.vote(), 1u);
  EXPECT_EQ(wal->LatestSnapshot().index(), 500u);
  EXPECT_EQ(wal->LatestSnapshot().conf_state().voters_size(), 1);
  ASSERT_OK(wal->Write(EntriesWrite(601, 610, 5, 1000)));
  EXPECT_EQ(wal->LastIndex(), 610u);
}

TEST_F(WalTest, SnapshotThatDoesNotMatchTheLogDiscardsIt) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Wal> wal, Wal::Open(Options()));
  ASSERT_OK(wal->Write(EntriesWrite(1, 10, 1)));
  WalWrite install;
  install.snapshot.emplace();
  install.snapshot->set_index(500);
  install.snapshot->set_term(7);
  install.entries.push_back(MakeEntry(501, 7));
  ASSERT_OK(wal->Write(std::move(install)));
  const auto term7 = [](raft::Index) -> raft::Term { return 7; };
  ExpectLog(*wal, 501, 501, term7);
  // A snapshot inside the log whose term differs also discards everything.
  WalWrite mismatched;
  mismatched.snapshot.emplace();
  mismatched.snapshot->set_index(501);
  mismatched.snapshot->set_term(8);
  ASSERT_OK(wal->Write(std::move(mismatched)));
  EXPECT_EQ(wal->FirstIndex(), 502u);
  EXPECT_EQ(wal->LastIndex(), 501u);
  wal.reset();
  ASSERT_OK_AND_ASSIGN(wal, Wal::Open(Options()));
  EXPECT_EQ(wal->FirstIndex(), 502u);
  EXPECT_EQ(wal->LastIndex(), 501u);
  EXPECT_EQ(TermOrZero(*wal, 501), 8u);
}

TEST_F(WalTest, RejectsWritesOverTheLimitsAndMalformedOnes) {
  WalOptions options = Options();
  options.max_entry_bytes = 1000;
  options.max_write_bytes = 5000;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Wal> wal, Wal::Open(options));
  ASSERT_OK(wal->Write(EntriesWrite(1, 3, 2)));
  pb::HardState hard_state;
  hard_state.set_term(5);
  WalWrite with_term = EntriesWrite(4, 4, 2);
  with_term.hard_state = hard_state;
  ASSERT_OK(wal->Write(std::move(with_term)));

  EXPECT_THAT(wal->Write(EntriesWrite(5, 5, 2, 2000)),
              StatusIs(absl::StatusCode::kInvalidArgument, "max_entry_bytes=1000"));
  EXPECT_THAT(wal->Write(EntriesWrite(5, 14, 2, 900)),
              StatusIs(absl::StatusCode::kInvalidArgument, "max_write_bytes=5000"));
  EXPECT_THAT(wal->Write(EntriesWrite(7, 8, 2)),
              StatusIs(absl::StatusCode::kInvalidArgument, "must start in [1, 5]"));
  EXPECT_THAT(wal->Write(EntriesWrite(4, 4, 1)),
              StatusIs(absl::StatusCode::kInvalidArgument, "below the term"));
  WalWrite not_consecutive = EntriesWrite(5, 5, 2);
  not_consecutive.entries.push_back(MakeEntry(7, 2));
  EXPECT_THAT(wal->Write(std::move(not_consecutive)),
              StatusIs(absl::StatusCode::kInvalidArgument, "not consecutive"));
  WalWrite older_term;
  hard_state.set_term(4);
  older_term.hard_state = hard_state;
  EXPECT_THAT(wal->Write(std::move(older_term)),
              StatusIs(absl::StatusCode::kInvalidArgument, "below the persisted term"));
  // Refused writes change nothing and do not fail the WAL.
  EXPECT_EQ(wal->LastIndex(), 4u);
  EXPECT_OK(wal->health());
  ASSERT_OK(wal->Write(EntriesWrite(5, 5, 2)));
}

TEST_F(WalTest, RefusesAnotherIdentityAndASecondOpen) {
  WalOptions options = Options();
  options.identity = "cluster=a node=1";
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Wal> wal, Wal::Open(options));
    ASSERT_OK(wal->Write(EntriesWrite(1, 1, 1)));
    EXPECT_THAT(Wal::Open(options), StatusIs(absl::StatusCode::kFailedPrecondition, "locked"));
  }
  options.identity = "cluster=b node=1";
  EXPECT_THAT(Wal::Open(options),
              StatusIs(absl::StatusCode::kFailedPrecondition, "belongs to 'cluster=a node=1'"));
  options.identity = "";  // accepts whatever is there
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Wal> wal, Wal::Open(options));
  EXPECT_EQ(wal->LastIndex(), 1u);
}

// Goal: a crash at any point of the last append loses only that append. Method: cut the
// last segment at every byte offset inside its last record (and pad with zeros, as
// preallocated space reads), reopen, and check the previous records are all there and
// that the log accepts appends again.
TEST_F(WalTest, RecoversFromATornTailAtEveryCutPoint) {
  const WalOptions options = Options();
  std::string segment_path;
  uint64_t last_record_offset = 0;
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Wal> wal, Wal::Open(options));
    for (raft::Index index = 1; index <= 9; ++index) {
      ASSERT_OK(wal->Write(EntriesWrite(index, index, 1, 60)));
    }
    segment_path = SegmentPath(*wal, 0);
    last_record_offset = std::filesystem::file_size(segment_path);
    ASSERT_OK(wal->Write(EntriesWrite(10, 10, 1, 60)));
  }
  const std::string full = ReadFile(segment_path);
  ASSERT_GT(full.size(), last_record_offset);
  for (uint64_t cut = last_record_offset; cut < full.size(); ++cut) {
    for (bool zero_padded : {false, true}) {
      SCOPED_TRACE(absl::StrCat("cut=", cut, " zero_padded=", zero_padded));
      std::string damaged = full.substr(0, cut);
      if (zero_padded) damaged.append(4096, '\0');
      WriteFile(segment_path, damaged);
      {
        ASSERT_OK_AND_ASSIGN(std::unique_ptr<Wal> wal, Wal::Open(options));
        ExpectLog(*wal, 1, 9, Term1, 60);
        EXPECT_EQ(std::filesystem::file_size(segment_path), last_record_offset);
        ASSERT_OK(wal->Write(EntriesWrite(10, 10, 1, 60)));
      }
      ASSERT_OK_AND_ASSIGN(std::unique_ptr<Wal> wal, Wal::Open(options));
      ExpectLog(*wal, 1, 10, Term1, 60);
    }
  }
}

TEST_F(WalTest, TornTailWithGarbageIsCutButBitFlipInTheMiddleIsDataLoss) {
  const WalOptions options = Options();
  std::string segment_path;
  std::vector<uint64_t> offsets;  // of each entry record
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Wal> wal, Wal::Open(options));
    segment_path = SegmentPath(*wal, 0);
    for (raft::Index index = 1; index <= 10; ++index) {
      offsets.push_back(std::filesystem::file_size(segment_path));
      ASSERT_OK(wal->Write(EntriesWrite(index, index, 1, 60)));
    }
  }
  const std::string full = ReadFile(segment_path);
  // A flipped bit in entry 5's payload: whole records follow, so this is not a tail.
  std::string flipped = full;
  flipped[offsets[4] + kRecordHeaderBytes + 10] ^= 0x04;
  WriteFile(segment_path, flipped);
  const std::string name = std::filesystem::path(segment_path).filename();
  EXPECT_THAT(Wal::Open(options),
              StatusIs(absl::StatusCode::kDataLoss,
                       absl::StrCat(name, ": corrupt record at offset ", offsets[4])));
  // The file was left alone for the operator.
  EXPECT_EQ(ReadFile(segment_path), flipped);
  // The same flip in the last record is a torn tail: cut, entries 1..9 remain.
  flipped = full;
  flipped[offsets[9] + kRecordHeaderBytes + 10] ^= 0x04;
  WriteFile(segment_path, flipped);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Wal> wal, Wal::Open(options));
  ExpectLog(*wal, 1, 9, Term1, 60);
}

// A crash while a new segment was being created leaves it without a whole header; the
// segment is removed and the log continues in the previous one.
TEST_F(WalTest, RemovesALastSegmentWhoseHeaderIsTorn) {
  const WalOptions options = SmallSegmentOptions();
  std::string last_path;
  size_t segment_count = 0;
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Wal> wal, Wal::Open(options));
    for (raft::Index index = 1; index <= 200; index += 20) {
      ASSERT_OK(wal->Write(EntriesWrite(index, index + 19, 1, 1000)));
    }
    segment_count = wal->SegmentNames().size();
    ASSERT_GE(segment_count, 2u);
  }
  // Make a new, empty-but-for-a-torn-header segment after the last one.
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Wal> wal, Wal::Open(options));
  const std::string header_only = ReadFile(SegmentPath(*wal, segment_count - 1)).substr(0, 7);
  wal.reset();
  uint64_t sequence = 0;
  raft::Index first_index = 0;
  ASSERT_OK_AND_ASSIGN(wal, Wal::Open(options));
  ASSERT_TRUE(ParseSegmentFileName(wal->SegmentNames().back(), &sequence, &first_index));
  wal.reset();
  for (const std::string& torn : {std::string(), header_only, std::string(100, '\0')}) {
    const std::string path = options.dir + "/" + SegmentFileName(sequence + 1, 201);
    WriteFile(path, torn);
    ASSERT_OK_AND_ASSIGN(wal, Wal::Open(options));
    EXPECT_FALSE(std::filesystem::exists(path));
    EXPECT_EQ(wal->SegmentNames().size(), segment_count);
    ExpectLog(*wal, 1, 200, Term1, 1000);
    wal.reset();
  }
}

TEST_F(WalTest, CorruptionInAnOlderSegmentOrAMissingSegmentIsDataLoss) {
  const WalOptions options = SmallSegmentOptions();
  std::vector<std::string> paths;
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Wal> wal, Wal::Open(options));
    for (raft::Index index = 1; index <= 300; index += 20) {
      ASSERT_OK(wal->Write(EntriesWrite(index, index + 19, 1, 1000)));
    }
    for (size_t i = 0; i < wal->SegmentNames().size(); ++i) paths.push_back(SegmentPath(*wal, i));
  }
  ASSERT_GE(paths.size(), 3u);
  // Cutting the end of a segment that is not the last is not a torn tail.
  const std::string second = ReadFile(paths[1]);
  WriteFile(paths[1], second.substr(0, second.size() - 5));
  EXPECT_THAT(Wal::Open(options), StatusIs(absl::StatusCode::kDataLoss, "not in the last segment"));
  WriteFile(paths[1], second);
  ASSERT_OK(Wal::Open(options).status());
  // A segment deleted from the middle.
  std::filesystem::rename(paths[1], dir_.path() + "/moved");
  EXPECT_THAT(Wal::Open(options), StatusIs(absl::StatusCode::kDataLoss, "is missing"));
  std::filesystem::rename(dir_.path() + "/moved", paths[1]);
  // The first segment deleted without a snapshot covering it.
  std::filesystem::remove(paths[0]);
  EXPECT_THAT(Wal::Open(options), StatusIs(absl::StatusCode::kDataLoss, "no snapshot covers them"));
}

// Goal: whatever damage the files suffer, Open either refuses with DataLoss or serves
// only entries identical to those written (a torn-looking tail may be cut). Method:
// seeded random bit flips, overwritten byte runs, truncations and appended garbage on
// a three-segment log, one damage per trial.
TEST_F(WalTest, RandomDamageIsRefusedOrCutButNeverServed) {
  const WalOptions options = SmallSegmentOptions();
  std::vector<std::string> paths;
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Wal> wal, Wal::Open(options));
    for (raft::Index index = 1; index <= 150; index += 5) {
      ASSERT_OK(wal->Write(EntriesWrite(index, index + 4, 1, 1000)));
    }
    for (size_t i = 0; i < wal->SegmentNames().size(); ++i) paths.push_back(SegmentPath(*wal, i));
  }
  ASSERT_GE(paths.size(), 3u);
  std::vector<std::string> originals;
  for (const std::string& path : paths) originals.push_back(ReadFile(path));
  std::mt19937_64 rng(42);
  int refused = 0;
  for (int trial = 0; trial < 200; ++trial) {
    for (size_t i = 0; i < paths.size(); ++i) WriteFile(paths[i], originals[i]);
    const size_t victim = rng() % paths.size();
    std::string damaged = originals[victim];
    const uint64_t kind = rng() % 4;
    const size_t at = rng() % damaged.size();
    SCOPED_TRACE(absl::StrCat("trial=", trial, " file=", victim, " kind=", kind, " at=", at));
    if (kind == 0) {
      damaged[at] = static_cast<char>(damaged[at] ^ (1 << (rng() % 8)));
    } else if (kind == 1) {
      for (size_t k = at; k < std::min(damaged.size(), at + 1 + rng() % 64); ++k) {
        damaged[k] = static_cast<char>(rng());
      }
    } else if (kind == 2) {
      damaged.resize(at);
    } else {
      for (uint64_t k = 1 + rng() % 100; k > 0; --k) damaged.push_back(static_cast<char>(rng()));
    }
    WriteFile(paths[victim], damaged);
    absl::StatusOr<std::unique_ptr<Wal>> wal = Wal::Open(options);
    if (!wal.ok()) {
      EXPECT_THAT(wal.status(), StatusIs(absl::StatusCode::kDataLoss));
      ++refused;
      continue;
    }
    EXPECT_EQ((*wal)->FirstIndex(), 1u);
    EXPECT_LE((*wal)->LastIndex(), 150u);
    ExpectLog(**wal, 1, (*wal)->LastIndex(), Term1, 1000);
  }
  EXPECT_GT(refused, 50);
}

// fsyncgate: a failed fdatasync fails its group, nothing of it is reported durable, and
// the WAL refuses every later write until reopened.
TEST_F(WalTest, FsyncErrorFailsTheWalUntilReopened) {
  TestFaultInjector faults;
  WalOptions options = Options();
  options.fault_injector = &faults;
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Wal> wal, Wal::Open(options));
    ASSERT_OK(wal->Write(EntriesWrite(1, 5, 1)));
    faults.Arm(FileFaultInjector::Op::kSync, EIO);
    EXPECT_THAT(wal->Write(EntriesWrite(6, 8, 1)),
                StatusIs(absl::StatusCode::kInternal, "Input/output error"));
    EXPECT_EQ(wal->LastIndex(), 5u);  // not visible: never reported durable
    faults.Disarm();
    EXPECT_THAT(wal->Write(EntriesWrite(6, 8, 1)), StatusIs(absl::StatusCode::kInternal, "reopen"));
    EXPECT_THAT(wal->health(), StatusIs(absl::StatusCode::kInternal, "fdatasync"));
    EXPECT_EQ(wal->LastIndex(), 5u);
    ExpectLog(*wal, 1, 5, Term1);
  }
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Wal> wal, Wal::Open(options));
  // Entries 6..8 reached the page cache, so they may be back: that is allowed (they
  // were never acknowledged). Acknowledged ones must be.
  EXPECT_GE(wal->LastIndex(), 5u);
  ExpectLog(*wal, 1, wal->LastIndex(), Term1);
  ASSERT_OK(wal->Write(EntriesWrite(wal->LastIndex() + 1, wal->LastIndex() + 1, 1)));
}

TEST_F(WalTest, DiskFullFromTheSeamIsResourceExhaustedAndRecoversWithoutReopen) {
  TestFaultInjector faults;
  WalOptions options = Options();
  options.fault_injector = &faults;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Wal> wal, Wal::Open(options));
  ASSERT_OK(wal->Write(EntriesWrite(1, 5, 1)));
  faults.Arm(FileFaultInjector::Op::kWrite, ENOSPC);
  EXPECT_THAT(wal->Write(EntriesWrite(6, 8, 1)),
              StatusIs(absl::StatusCode::kResourceExhausted, "volume is full"));
  EXPECT_EQ(wal->LastIndex(), 5u);
  EXPECT_OK(wal->health());
  faults.Disarm();
  ASSERT_OK(wal->Write(EntriesWrite(6, 8, 1)));
  ExpectLog(*wal, 1, 8, Term1);
  wal.reset();
  ASSERT_OK_AND_ASSIGN(wal, Wal::Open(options));
  ExpectLog(*wal, 1, 8, Term1);
}

TEST_F(WalTest, AVolumeTooSmallForASegmentFailsTheOpenWithTheMinimumSize) {
  TestFaultInjector faults;
  WalOptions options = Options();
  options.segment_bytes = 4 << 20;
  options.fault_injector = &faults;
  faults.Arm(FileFaultInjector::Op::kAllocate, ENOSPC);
  EXPECT_THAT(Wal::Open(options),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       "each WAL segment preallocates 4 MiB and the log moves to a new one "
                       "before it drops the old, so the WAL volume needs at least 8 MiB free"));
  faults.Disarm();
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Wal> wal, Wal::Open(options));
  ASSERT_OK(wal->Write(EntriesWrite(1, 3, 1)));
}

// The same with a real full file system: a 1 MiB tmpfs (needs root to mount).
TEST_F(WalTest, DiskFullOnATinyTmpfsLosesNothingAndWorksAgainOnceSpaceIsFreed) {
  const std::string mount_point = dir_.path() + "/tiny";
  std::filesystem::create_directory(mount_point);
  if (::mount("tmpfs", mount_point.c_str(), "tmpfs", 0, "size=1m") != 0) {
    GTEST_SKIP() << "cannot mount a tmpfs here (needs root): " << std::strerror(errno);
  }
  struct Unmount {
    std::string path;
    ~Unmount() { ::umount2(path.c_str(), MNT_DETACH); }
  } unmount{mount_point};
  // Ballast that is freed later to make room.
  WriteFile(mount_point + "/ballast", std::string(256 << 10, 'b'));
  WalOptions options = Options();
  options.dir = mount_point + "/wal";
  options.segment_bytes = 64 << 10;
  raft::Index last_acked = 0;
  absl::Status failure;
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Wal> wal, Wal::Open(options));
    for (int attempt = 0; attempt < 5000 && failure.ok(); ++attempt) {
      failure = wal->Write(EntriesWrite(last_acked + 1, last_acked + 4, 1, 1000));
      if (failure.ok()) last_acked += 4;
    }
    EXPECT_THAT(failure, StatusIs(absl::StatusCode::kResourceExhausted));
    ASSERT_GT(last_acked, 0u);
    EXPECT_EQ(wal->LastIndex(), last_acked);
    EXPECT_OK(wal->health());
    ExpectLog(*wal, 1, last_acked, Term1, 1000);
    std::filesystem::remove(mount_point + "/ballast");
    ASSERT_OK(wal->Write(EntriesWrite(last_acked + 1, last_acked + 4, 1, 1000)));
    last_acked += 4;
  }
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Wal> wal, Wal::Open(options));
  ExpectLog(*wal, 1, last_acked, Term1, 1000);
}

// The hard state (and everything else of a group) is on disk before the callback
// runs: at callback time the active segment has no byte that was not synced.
TEST_F(WalTest, HardStateIsDurableBeforeTheCallbackRuns) {
  TestFaultInjector faults;
  WalOptions options = Options();
  options.fault_injector = &faults;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Wal> wal, Wal::Open(options));
  const std::string segment = SegmentPath(*wal, 0);
  std::promise<std::string> observed;
  WalWrite write;
  write.hard_state.emplace();
  write.hard_state->set_term(9);
  write.hard_state->set_vote(3);
  wal->Submit(std::move(write), [&](absl::Status status) {
    const int64_t size = static_cast<int64_t>(std::filesystem::file_size(segment));
    observed.set_value(absl::StrCat(status.ToString(), " size=", size,
                                    " synced=", faults.SyncedBytes(segment),
                                    " term=", wal->InitialState().hard_state.term()));
  });
  const std::string got = observed.get_future().get();
  const int64_t size = static_cast<int64_t>(std::filesystem::file_size(segment));
  EXPECT_EQ(got, absl::StrCat("OK size=", size, " synced=", size, " term=9"));
  wal.reset();
  ASSERT_OK_AND_ASSIGN(wal, Wal::Open(Options()));
  EXPECT_EQ(wal->InitialState().hard_state.vote(), 3u);
}

// Goal: a write that asks for no sync (a commit-only hard state) is written in order
// without an fdatasync of its own; the next synced write makes it durable with it.
class SyncCounter final : public FileFaultInjector {
 public:
  int Inject(Op op, absl::string_view) override {
    if (op == Op::kSync) ++syncs;
    return 0;
  }
  std::atomic<int> syncs{0};
};

TEST_F(WalTest, UnsyncedWriteIsWrittenInOrderWithoutItsOwnSync) {
  SyncCounter counter;
  WalOptions options = Options();
  options.fault_injector = &counter;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Wal> wal, Wal::Open(options));
  ASSERT_OK(wal->Write(EntriesWrite(1, 5, 1)));
  const int after_entries = counter.syncs.load();
  WalWrite commit_only;
  commit_only.hard_state.emplace();
  commit_only.hard_state->set_term(1);
  commit_only.hard_state->set_commit(5);
  commit_only.sync = false;
  ASSERT_OK(wal->Write(commit_only));
  EXPECT_EQ(counter.syncs.load(), after_entries) << "no fdatasync for a commit-only write";
  EXPECT_EQ(wal->stats().unsynced_groups, 1u);
  ASSERT_OK(wal->Write(EntriesWrite(6, 6, 1)));
  EXPECT_EQ(counter.syncs.load(), after_entries + 1);
  wal.reset();
  ASSERT_OK_AND_ASSIGN(wal, Wal::Open(Options()));
  EXPECT_EQ(wal->InitialState().hard_state.commit(), 5u);
  EXPECT_EQ(wal->LastIndex(), 6u);
}

// Goal: writes queued while a sync runs share the next sync. Method: hold the writer
// inside the first group's sync until 50 more writes are queued.
class BlockingSyncInjector final : public FileFaultInjector {
 public:
  int Inject(Op op, absl::string_view) override {
    if (op == Op::kSync && !released_) {
      entered_.set_value();
      release_.get_future().wait_for(std::chrono::seconds(30));
      released_ = true;
    }
    return 0;
  }
  std::promise<void> entered_;
  std::promise<void> release_;
  std::atomic<bool> released_{false};
  std::atomic<bool> armed_{false};
};

TEST_F(WalTest, GroupCommitSharesOneSyncAmongQueuedWrites) {
  BlockingSyncInjector blocker;
  blocker.released_ = true;  // let Open's own syncs through
  WalOptions options = Options();
  options.fault_injector = &blocker;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Wal> wal, Wal::Open(options));
  blocker.released_ = false;
  std::vector<std::promise<absl::Status>> done(51);
  std::vector<int> order;
  std::mutex order_mu;
  for (int i = 0; i < 51; ++i) {
    wal->Submit(EntriesWrite(static_cast<raft::Index>(i + 1), static_cast<raft::Index>(i + 1), 1),
                [&, i](absl::Status status) {
                  {
                    std::lock_guard<std::mutex> lock(order_mu);
                    order.push_back(i);
                  }
                  done[static_cast<size_t>(i)].set_value(status);
                });
    if (i == 0) {
      ASSERT_EQ(blocker.entered_.get_future().wait_for(std::chrono::seconds(30)),
                std::future_status::ready);
    }
  }
  blocker.release_.set_value();
  for (auto& promise : done) EXPECT_OK(promise.get_future().get());
  EXPECT_EQ(wal->stats().groups, 2u);
  EXPECT_EQ(wal->stats().writes, 51u);
  std::vector<int> want(51);
  for (int i = 0; i < 51; ++i) want[static_cast<size_t>(i)] = i;
  EXPECT_EQ(order, want);
  EXPECT_EQ(wal->LastIndex(), 51u);
}

TEST_F(WalTest, RefusesSubmissionsBeyondThePendingLimit) {
  BlockingSyncInjector blocker;
  blocker.released_ = true;
  WalOptions options = Options();
  options.fault_injector = &blocker;
  options.max_pending_bytes = 4096;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Wal> wal, Wal::Open(options));
  blocker.released_ = false;
  std::vector<std::promise<absl::Status>> done(40);
  for (int i = 0; i < 40; ++i) {
    wal->Submit(
        EntriesWrite(static_cast<raft::Index>(i + 1), static_cast<raft::Index>(i + 1), 1, 200),
        [&done, i](absl::Status status) {
          done[static_cast<size_t>(i)].set_value(absl::Status(status.code(), status.message()));
        });
    if (i == 0) {
      ASSERT_EQ(blocker.entered_.get_future().wait_for(std::chrono::seconds(30)),
                std::future_status::ready);
    }
  }
  blocker.release_.set_value();
  // The first write was taken by the writer; then about 4096 / 230 more fit in the queue.
  int accepted = 0;
  int refused = 0;
  for (int i = 0; i < 40; ++i) {
    const absl::Status status = done[static_cast<size_t>(i)].get_future().get();
    if (status.ok()) {
      EXPECT_EQ(refused, 0) << "a write was accepted after an earlier one was refused";
      ++accepted;
    } else {
      EXPECT_THAT(status, StatusIs(absl::StatusCode::kResourceExhausted, "max_pending_bytes"));
      ++refused;
    }
  }
  EXPECT_GT(accepted, 10);
  EXPECT_GT(refused, 10);
  EXPECT_EQ(wal->LastIndex(), static_cast<raft::Index>(accepted));
}

// Callbacks slower than a sync are handed to the completion thread while the writer
// goes on syncing; they still run one at a time, in submission order, each after its
// write is durable and visible.
TEST_F(WalTest, SlowCallbacksMoveToTheCompletionThreadAndKeepTheirOrder) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Wal> wal, Wal::Open(Options()));
  constexpr int kSubmitters = 8;
  constexpr int kWritesEach = 10;
  std::mutex submit_mu;  // takes the index and submits at once, as the raft strand does
  raft::Index next_index = 1;
  std::mutex seen_mu;
  std::vector<raft::Index> seen;
  std::set<std::thread::id> callback_threads;
  std::atomic<int> running{0};
  std::vector<std::thread> submitters;
  for (int t = 0; t < kSubmitters; ++t) {
    submitters.emplace_back([&] {
      for (int i = 0; i < kWritesEach; ++i) {
        // Shared: the callback may still be inside set_value() when the wait returns.
        auto done = std::make_shared<std::promise<void>>();
        std::future<void> durable = done->get_future();
        {
          std::lock_guard<std::mutex> lock(submit_mu);
          const raft::Index index = next_index++;
          wal->Submit(EntriesWrite(index, index, 1), [&, index, done](absl::Status status) {
            EXPECT_EQ(running.fetch_add(1), 0) << "callbacks overlap";
            EXPECT_OK(status);
            EXPECT_GE(wal->LastIndex(), index) << "callback ran before its entry was durable";
            {
              std::lock_guard<std::mutex> seen_lock(seen_mu);
              seen.push_back(index);
              callback_threads.insert(std::this_thread::get_id());
            }
            // Far longer than a sync: the writer hands later groups to the completion
            // thread rather than wait for these.
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
            running.fetch_sub(1);
            done->set_value();
          });
        }
        durable.wait();
      }
    });
  }
  for (std::thread& submitter : submitters) submitter.join();
  std::vector<raft::Index> want(kSubmitters * kWritesEach);
  for (size_t i = 0; i < want.size(); ++i) want[i] = i + 1;
  EXPECT_EQ(seen, want);
  EXPECT_EQ(callback_threads.size(), 2u) << "expected the writer and the completion thread";
  EXPECT_EQ(wal->LastIndex(), want.size());
}

// Readers on another thread see a consistent, durable log while the writer appends,
// truncates and compacts (run under TSan in CI).
TEST_F(WalTest, ConcurrentReadsSeeConsistentEntries) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Wal> wal, Wal::Open(SmallSegmentOptions()));
  std::atomic<bool> stop{false};
  std::atomic<int> bad{0};
  std::atomic<int> reads{0};
  std::thread reader([&] {
    for (int i = 0; i < 200000 && !stop; ++i) {
      const raft::Index first = wal->FirstIndex();
      const raft::Index last = wal->LastIndex();
      if (last < first) continue;
      absl::StatusOr<std::vector<pb::Entry>> entries = wal->Entries(first, last + 1, 64 << 10);
      if (!entries.ok()) {
        // The log may have been compacted between the calls; nothing else may fail.
        if (entries.status().code() != absl::StatusCode::kOutOfRange) ++bad;
        continue;
      }
      for (size_t k = 0; k < entries->size(); ++k) {
        if ((*entries)[k].index() != first + k) ++bad;
      }
      ++reads;
    }
  });
  raft::Index last = 0;
  for (int round = 0; round < 60; ++round) {
    ASSERT_OK(wal->Write(
        EntriesWrite(last + 1, last + 10, 1 + static_cast<raft::Term>(round / 10), 500)));
    last += 10;
    if (round % 7 == 6) {
      ASSERT_OK(wal->Write(
          EntriesWrite(last - 3, last - 3, 1 + static_cast<raft::Term>(round / 10), 500)));
      last -= 3;
    }
    if (round % 20 == 19) {
      pb::SnapshotMetadata snapshot;
      snapshot.set_index(last - 5);
      ASSERT_OK_AND_ASSIGN(raft::Term term, wal->TermAt(last - 5));
      snapshot.set_term(term);
      ASSERT_OK(wal->Compact(snapshot));
    }
  }
  stop = true;
  reader.join();
  EXPECT_EQ(bad.load(), 0);
  EXPECT_GT(reads.load(), 0);
}

}  // namespace
}  // namespace stead::storage
