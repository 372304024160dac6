#include "storage/checkpoint_stream.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "storage/checkpoint.h"
#include "storage/checkpoint_files.h"
#include "storage/crc32c.h"
#include "storage/state_machine.h"
#include "storage/state_machine_testing.h"
#include "tests/testing/status_matchers.h"

namespace stead::storage {
namespace {

using ::stead::testing::StatusIs;
using testing::PutBatch;
using testing::TempDir;
using testing::TestOptions;

// Builds a checkpoint directory by hand from (name, contents) pairs: fast, and lets a
// test choose sizes (empty files, files of exactly one chunk).
void MakeSyntheticCheckpoint(const std::string& dir,
                             const std::vector<std::pair<std::string, std::string>>& contents,
                             raft::Index index = 10) {
  ASSERT_OK(files::CreateDirectories(dir));
  for (const auto& [name, data] : contents) std::ofstream(dir + "/" + name) << data;
  pb::SnapshotManifest base;
  base.set_format_version(kCheckpointFormatVersion);
  base.set_cluster_id(testing::kTestClusterId);
  base.mutable_raft()->set_index(index);
  base.mutable_raft()->set_term(1);
  ASSERT_OK_AND_ASSIGN(const pb::SnapshotManifest manifest, DescribeCheckpointFiles(dir, base));
  ASSERT_OK(WriteManifest(dir, manifest));
}

std::vector<pb::SnapshotChunk> ReadAll(const std::string& dir, CheckpointReaderOptions options) {
  std::vector<pb::SnapshotChunk> chunks;
  absl::StatusOr<std::unique_ptr<CheckpointReader>> reader = CheckpointReader::Open(dir, options);
  EXPECT_OK(reader);
  if (!reader.ok()) return chunks;
  // Bounded: a checkpoint of these tests has far fewer chunks.
  for (int i = 0; i < 100000; ++i) {
    absl::StatusOr<std::optional<pb::SnapshotChunk>> chunk = (*reader)->Next();
    EXPECT_OK(chunk);
    if (!chunk.ok() || !chunk->has_value()) break;
    chunks.push_back(**std::move(chunk));
  }
  return chunks;
}

CheckpointReaderOptions ChunkBytes(size_t max_chunk_bytes) {
  CheckpointReaderOptions options;
  options.max_chunk_bytes = max_chunk_bytes;
  return options;
}

const std::vector<std::pair<std::string, std::string>> kFiles = {
    {"a.sst", std::string(1000, 'a')},
    {"b.log", ""},
    {"c.sst", std::string(256, 'c')},
    {"d", "short"},
};

TEST(CheckpointStream, ChunksAreOrderedBoundedAndChecksummed) {
  TempDir dir;
  MakeSyntheticCheckpoint(dir.Sub("cp"), kFiles);
  const std::vector<pb::SnapshotChunk> chunks = ReadAll(dir.Sub("cp"), ChunkBytes(256));
  ASSERT_FALSE(chunks.empty());
  // Manifest first, then every file in manifest order with consecutive offsets.
  size_t i = 0;
  uint64_t offset = 0;
  for (; i < chunks.size() && chunks[i].kind() == pb::SNAPSHOT_CHUNK_KIND_MANIFEST; ++i) {
    EXPECT_EQ(chunks[i].offset(), offset);
    offset += chunks[i].data().size();
  }
  EXPECT_EQ(offset, chunks[0].part_bytes());
  const std::vector<std::pair<std::string, size_t>> want_files = {
      {"a.sst", 4}, {"b.log", 1}, {"c.sst", 1}, {"d", 1}};  // (name, chunk count)
  for (uint32_t file = 0; file < want_files.size(); ++file) {
    offset = 0;
    for (size_t n = 0; n < want_files[file].second; ++n, ++i) {
      ASSERT_LT(i, chunks.size());
      const pb::SnapshotChunk& chunk = chunks[i];
      EXPECT_EQ(chunk.kind(), pb::SNAPSHOT_CHUNK_KIND_FILE);
      EXPECT_EQ(chunk.file_index(), file);
      EXPECT_EQ(chunk.file_name(), want_files[file].first);
      EXPECT_EQ(chunk.offset(), offset);
      EXPECT_LE(chunk.data().size(), 256u);
      EXPECT_EQ(chunk.data_crc32c(), Crc32c(chunk.data()));
      EXPECT_EQ(chunk.manifest_crc32c(), chunks[0].manifest_crc32c());
      offset += chunk.data().size();
    }
  }
  EXPECT_EQ(i, chunks.size());
}

// Goal: a real checkpoint streamed in small chunks is rebuilt, verified and installed
// on a new member with identical state.
TEST(CheckpointStream, RoundTripIntoANewMember) {
  TempDir dir;
  ASSERT_OK_AND_ASSIGN(auto source, StateMachine::Open(TestOptions(dir.Sub("node1"), 1)));
  for (raft::Index i = 1; i <= 200; ++i) {
    ASSERT_OK(source->Apply(PutBatch(i, 1, {{absl::StrCat("key", i), std::string(300, 'v')}})));
  }
  ASSERT_OK_AND_ASSIGN(const pb::SnapshotManifest manifest,
                       source->CreateCheckpoint(dir.Sub("node1-checkpoints/cp")));
  const std::vector<pb::SnapshotChunk> chunks =
      ReadAll(dir.Sub("node1-checkpoints/cp"), ChunkBytes(4096));
  ASSERT_GT(chunks.size(), 10u);

  const std::string staging = dir.Sub("node2/checkpoints/incoming");
  ASSERT_OK_AND_ASSIGN(auto writer, CheckpointWriter::Create(staging));
  for (const pb::SnapshotChunk& chunk : chunks) ASSERT_OK(writer->Write(chunk));
  EXPECT_TRUE(writer->progress().complete);
  EXPECT_EQ(writer->progress().bytes_done, manifest.total_bytes());
  ASSERT_OK_AND_ASSIGN(const pb::SnapshotManifest received, writer->Finish());
  EXPECT_EQ(EncodeManifestFile(received), EncodeManifestFile(manifest));

  ASSERT_OK_AND_ASSIGN(auto member,
                       StateMachine::OpenFromCheckpoint(TestOptions(dir.Sub("node2"), 2), staging));
  EXPECT_EQ(member->applied_index(), 200u);
  ASSERT_OK_AND_ASSIGN(const ScanResult theirs, source->Scan({"kv", "", "", false, 1000}));
  ASSERT_OK_AND_ASSIGN(const ScanResult ours, member->Scan({"kv", "", "", false, 1000}));
  EXPECT_EQ(ours.pairs, theirs.pairs);
}

// Goal: a reordered, duplicated, corrupted or foreign chunk is refused with a clear
// error and leaves the writer where it was, so the transfer goes on with the right one.
TEST(CheckpointStream, BadChunksAreRefusedWithoutHarm) {
  TempDir dir;
  MakeSyntheticCheckpoint(dir.Sub("cp"), kFiles);
  MakeSyntheticCheckpoint(dir.Sub("other"), {{"x", "other checkpoint"}}, 11);
  const std::vector<pb::SnapshotChunk> chunks = ReadAll(dir.Sub("cp"), ChunkBytes(256));
  const std::vector<pb::SnapshotChunk> foreign = ReadAll(dir.Sub("other"), ChunkBytes(256));
  ASSERT_OK_AND_ASSIGN(auto writer, CheckpointWriter::Create(dir.Sub("staging")));

  size_t first_file = 0;
  while (chunks[first_file].kind() == pb::SNAPSHOT_CHUNK_KIND_MANIFEST) ++first_file;
  EXPECT_THAT(writer->Write(chunks[first_file]),
              StatusIs(absl::StatusCode::kInvalidArgument, "before the manifest was complete"));
  for (size_t i = 0; i < first_file; ++i) ASSERT_OK(writer->Write(chunks[i]));
  EXPECT_THAT(writer->Write(chunks[0]), StatusIs(absl::StatusCode::kInvalidArgument, "duplicate"));

  // chunks[first_file + 1] is a.sst at offset 256: a skipped chunk (reordering).
  EXPECT_THAT(writer->Write(chunks[first_file + 1]),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "out of order: expected file 0 (a.sst) at offset 0, got chunk of file 0 "
                       "(a.sst) at offset 256"));
  pb::SnapshotChunk corrupt = chunks[first_file];
  (*corrupt.mutable_data())[3] = 'z';
  EXPECT_THAT(writer->Write(corrupt), StatusIs(absl::StatusCode::kDataLoss, "data crc32c mismatch"));
  const pb::SnapshotChunk& other = foreign.back();
  EXPECT_THAT(writer->Write(other), StatusIs(absl::StatusCode::kFailedPrecondition, "another checkpoint"));
  pb::SnapshotChunk renamed = chunks[first_file];
  renamed.set_file_name("evil/../../x");
  EXPECT_THAT(writer->Write(renamed), StatusIs(absl::StatusCode::kInvalidArgument, "does not match"));
  pb::SnapshotChunk unknown = chunks[first_file];
  unknown.set_kind(pb::SNAPSHOT_CHUNK_KIND_UNSPECIFIED);
  EXPECT_THAT(writer->Write(unknown), StatusIs(absl::StatusCode::kInvalidArgument, "unknown kind"));

  EXPECT_THAT(writer->Finish(), StatusIs(absl::StatusCode::kFailedPrecondition,
                                         "next is file 0 (a.sst) at offset 0"));
  // None of that did harm: the right chunks complete the transfer, then nothing more fits.
  for (size_t i = first_file; i < chunks.size(); ++i) {
    ASSERT_OK(writer->Write(chunks[i])) << "chunk " << i;
    if (i + 1 < chunks.size()) {
      EXPECT_THAT(writer->Write(chunks[i]), StatusIs(absl::StatusCode::kInvalidArgument, "out of order"));
    }
  }
  EXPECT_THAT(writer->Write(chunks.back()),
              StatusIs(absl::StatusCode::kFailedPrecondition, "after every file"));
  EXPECT_OK(writer->Finish().status());
}

// Goal: bytes that pass each chunk's CRC but not the file's (a sender that read bad
// data) are caught when the file completes; the file is discarded and resent.
TEST(CheckpointStream, FileFailingTheManifestCrcIsDiscardedAndResent) {
  TempDir dir;
  MakeSyntheticCheckpoint(dir.Sub("cp"), kFiles);
  const std::vector<pb::SnapshotChunk> chunks = ReadAll(dir.Sub("cp"), ChunkBytes(256));
  ASSERT_OK_AND_ASSIGN(auto writer, CheckpointWriter::Create(dir.Sub("staging")));
  size_t i = 0;
  for (; chunks[i].kind() == pb::SNAPSHOT_CHUNK_KIND_MANIFEST; ++i) ASSERT_OK(writer->Write(chunks[i]));
  const size_t first_file = i;
  pb::SnapshotChunk bad = chunks[i];
  (*bad.mutable_data())[0] = 'X';
  bad.set_data_crc32c(Crc32c(bad.data()));
  ASSERT_OK(writer->Write(bad));
  for (++i; i < first_file + 3; ++i) ASSERT_OK(writer->Write(chunks[i]));
  EXPECT_THAT(writer->Write(chunks[i]),
              StatusIs(absl::StatusCode::kDataLoss, "received file a.sst does not match the manifest"));
  EXPECT_EQ(writer->position(), (StreamPosition{0, 0}));
  for (i = first_file; i < chunks.size(); ++i) ASSERT_OK(writer->Write(chunks[i]));
  EXPECT_OK(writer->Finish().status());
}

// Goal: a broken transfer resumes where its files end, and only the rest is sent again.
TEST(CheckpointStream, ResumeAfterABrokenTransfer) {
  TempDir dir;
  MakeSyntheticCheckpoint(dir.Sub("cp"), kFiles);
  const std::vector<pb::SnapshotChunk> chunks = ReadAll(dir.Sub("cp"), ChunkBytes(256));
  const std::string staging = dir.Sub("staging");
  size_t manifest_chunks = 0;
  while (chunks[manifest_chunks].kind() == pb::SNAPSHOT_CHUNK_KIND_MANIFEST) ++manifest_chunks;
  {
    ASSERT_OK_AND_ASSIGN(auto writer, CheckpointWriter::Create(staging));
    for (size_t i = 0; i < manifest_chunks + 2; ++i) ASSERT_OK(writer->Write(chunks[i]));
  }  // The connection breaks after a.sst's second chunk.

  ASSERT_OK_AND_ASSIGN(auto writer, CheckpointWriter::Resume(staging));
  EXPECT_EQ(writer->position(), (StreamPosition{0, 512}));
  EXPECT_EQ(writer->progress().file_name, "a.sst");
  EXPECT_EQ(writer->progress().bytes_done, 512u);
  CheckpointReaderOptions options = ChunkBytes(256);
  options.start = writer->position();
  const std::vector<pb::SnapshotChunk> rest = ReadAll(dir.Sub("cp"), options);
  ASSERT_EQ(rest.size(), chunks.size() - 2);  // The manifest again, then from a.sst@512.
  EXPECT_EQ(rest[manifest_chunks].offset(), 512u);
  for (const pb::SnapshotChunk& chunk : rest) ASSERT_OK(writer->Write(chunk));
  ASSERT_OK_AND_ASSIGN(const pb::SnapshotManifest manifest, writer->Finish());
  EXPECT_EQ(manifest.files_size(), 4);
}

TEST(CheckpointStream, ResumeChecksItIsTheSameCheckpoint) {
  TempDir dir;
  MakeSyntheticCheckpoint(dir.Sub("cp"), kFiles);
  MakeSyntheticCheckpoint(dir.Sub("newer"), kFiles, 20);
  const std::vector<pb::SnapshotChunk> chunks = ReadAll(dir.Sub("cp"), ChunkBytes(100000));
  const std::string staging = dir.Sub("staging");
  {
    ASSERT_OK_AND_ASSIGN(auto writer, CheckpointWriter::Create(staging));
    ASSERT_OK(writer->Write(chunks[0]));  // The whole manifest in one chunk.
    ASSERT_OK(writer->Write(chunks[1]));  // All of a.sst.
  }
  ASSERT_OK_AND_ASSIGN(auto writer, CheckpointWriter::Resume(staging));
  EXPECT_EQ(writer->position(), (StreamPosition{1, 0}));
  const std::vector<pb::SnapshotChunk> newer = ReadAll(dir.Sub("newer"), ChunkBytes(100000));
  EXPECT_THAT(writer->Write(newer[0]),
              StatusIs(absl::StatusCode::kFailedPrecondition, "start the transfer over"));
  EXPECT_THAT(CheckpointWriter::Resume(dir.Sub("never-started")),
              StatusIs(absl::StatusCode::kNotFound));
}

TEST(CheckpointStream, ResumeDiscardsAFileThatIsCompleteButWrong) {
  TempDir dir;
  MakeSyntheticCheckpoint(dir.Sub("cp"), kFiles);
  const std::vector<pb::SnapshotChunk> chunks = ReadAll(dir.Sub("cp"), ChunkBytes(100000));
  const std::string staging = dir.Sub("staging");
  {
    ASSERT_OK_AND_ASSIGN(auto writer, CheckpointWriter::Create(staging));
    for (size_t i = 0; i < 3; ++i) ASSERT_OK(writer->Write(chunks[i]));  // manifest, a, b
  }
  std::ofstream(staging + "/a.sst", std::ios::trunc) << std::string(1000, 'Z');  // Torn.
  std::ofstream(staging + "/stray") << "junk";
  ASSERT_OK_AND_ASSIGN(auto writer, CheckpointWriter::Resume(staging));
  EXPECT_EQ(writer->position(), (StreamPosition{0, 0}));
  EXPECT_FALSE(files::Exists(staging + "/stray"));
  for (const pb::SnapshotChunk& chunk : chunks) ASSERT_OK(writer->Write(chunk));
  EXPECT_OK(writer->Finish().status());
}

TEST(CheckpointStream, ReaderRefusesACorruptSourceAndBadOptions) {
  TempDir dir;
  MakeSyntheticCheckpoint(dir.Sub("cp"), kFiles);
  std::ofstream(dir.Sub("cp") + "/c.sst", std::ios::trunc) << std::string(256, 'X');
  ASSERT_OK_AND_ASSIGN(auto reader, CheckpointReader::Open(dir.Sub("cp"), ChunkBytes(64)));
  absl::Status status;
  for (int i = 0; i < 1000 && status.ok(); ++i) {
    absl::StatusOr<std::optional<pb::SnapshotChunk>> chunk = reader->Next();
    status = chunk.status();
    if (chunk.ok() && !chunk->has_value()) break;
  }
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kDataLoss, "file c.sst crc32c mismatch"));

  EXPECT_THAT(CheckpointReader::Open(dir.Sub("cp"), ChunkBytes(0)),
              StatusIs(absl::StatusCode::kInvalidArgument, "max_chunk_bytes"));
  CheckpointReaderOptions past_end = ChunkBytes(64);
  past_end.start = StreamPosition{0, 1000};
  EXPECT_THAT(CheckpointReader::Open(dir.Sub("cp"), past_end),
              StatusIs(absl::StatusCode::kInvalidArgument, "past the end"));
  EXPECT_THAT(CheckpointReader::Open(dir.Sub("nothing"), ChunkBytes(64)),
              StatusIs(absl::StatusCode::kNotFound));
}

// Goal: whatever a faulty network does to the stream, the writer never accepts a bad
// byte and completes with exactly the checkpoint. Method: a seeded sender that, at each
// step, sends the chunk the writer expects, a random other chunk (reordering,
// duplicates), or a damaged copy (data, offset, index or CRC changed); sometimes the
// transfer breaks and resumes. Every damaged chunk must be refused; at the end Finish()
// must verify and the files must equal the source.
TEST(CheckpointStream, RandomlyFaultyStreamsNeverCorruptTheResult) {
  TempDir dir;
  MakeSyntheticCheckpoint(dir.Sub("cp"), kFiles);
  const std::vector<pb::SnapshotChunk> chunks = ReadAll(dir.Sub("cp"), ChunkBytes(100));
  std::mt19937_64 random(99);
  for (int run = 0; run < 20; ++run) {
    SCOPED_TRACE(absl::StrCat("run ", run));
    const std::string staging = dir.Sub(absl::StrCat("staging", run));
    ASSERT_OK_AND_ASSIGN(auto writer, CheckpointWriter::Create(staging));
    bool manifest_done = false;
    size_t manifest_next = 0;  // index in `chunks` of the next manifest chunk
    for (int step = 0; step < 5000 && !writer->progress().complete; ++step) {
      // The chunk the writer expects next.
      size_t expected = manifest_next;
      if (manifest_done) {
        const StreamPosition at = writer->position();
        expected = 0;
        while (chunks[expected].kind() != pb::SNAPSHOT_CHUNK_KIND_FILE ||
               chunks[expected].file_index() != at.file_index ||
               chunks[expected].offset() != at.offset) {
          ++expected;
        }
      }
      const uint64_t choice = random() % 10;
      if (choice < 5) {
        ASSERT_OK(writer->Write(chunks[expected]));
        if (!manifest_done) {
          ++manifest_next;
          manifest_done = chunks[manifest_next].kind() == pb::SNAPSHOT_CHUNK_KIND_FILE;
        }
      } else if (choice < 7) {
        const size_t other = random() % chunks.size();
        if (other == expected) continue;
        EXPECT_FALSE(writer->Write(chunks[other]).ok()) << "chunk " << other << " accepted out of order";
      } else if (choice < 9) {
        pb::SnapshotChunk damaged = chunks[expected];
        switch (random() % 4) {
          case 0:
            if (damaged.data().empty()) continue;
            (*damaged.mutable_data())[random() % damaged.data().size()] ^= 0x10;
            break;
          case 1: damaged.set_offset(damaged.offset() + 1 + random() % 50); break;
          case 2: damaged.set_file_index(damaged.file_index() + 1); break;
          default: damaged.set_data_crc32c(damaged.data_crc32c() ^ 1); break;
        }
        EXPECT_FALSE(writer->Write(damaged).ok()) << "a damaged chunk was accepted";
      } else if (manifest_done) {
        // The transfer breaks; a new writer resumes, and the manifest comes again.
        writer.reset();
        ASSERT_OK_AND_ASSIGN(writer, CheckpointWriter::Resume(staging));
        manifest_done = false;
        manifest_next = 0;
      }
    }
    ASSERT_TRUE(writer->progress().complete);
    ASSERT_OK(writer->Finish().status());
    for (const auto& [name, data] : kFiles) {
      std::ifstream in(staging + "/" + name, std::ios::binary);
      EXPECT_EQ(std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()), data)
          << name;
    }
  }
}

}  // namespace
}  // namespace stead::storage
