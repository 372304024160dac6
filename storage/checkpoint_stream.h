// Streaming a checkpoint as ordered chunks (Raft snapshots to a lagging or new member,
// `steadctl snapshot save`).
//
// The stream is: the manifest file's bytes, then the bytes of every file in manifest
// order, each cut into chunks of at most max_chunk_bytes (pb::SnapshotChunk). Every
// chunk carries its position (file index and byte offset), the size of the part it
// belongs to, a CRC32C of its data and the CRC32C of the whole manifest file, which
// identifies the checkpoint. A file of size 0 is sent as one empty chunk.
//
// The receiving CheckpointWriter accepts chunks strictly in order into a staging
// directory; a chunk that is out of order, duplicated, corrupt, or of another checkpoint
// is refused with a clear error and changes nothing, so the sender can go on with the
// right chunk. Each file's CRC is checked as soon as its last byte arrives, and Finish()
// verifies the whole checkpoint against the manifest before the caller installs it
// (StateMachine::InstallCheckpoint).
//
// Resuming a broken transfer: CheckpointWriter::Resume() reopens the staging directory
// and reports position(); the sender opens a CheckpointReader at that position, which
// sends the manifest again (the writer checks it is the same checkpoint) and then the
// file data from that position on.
//
// Thread-safety: a reader or writer is used by one thread at a time.
#ifndef STEAD_STORAGE_CHECKPOINT_STREAM_H_
#define STEAD_STORAGE_CHECKPOINT_STREAM_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "proto/snapshot.pb.h"

namespace stead::storage {

// Largest chunk a writer accepts, and the largest max_chunk_bytes a reader takes. Keeps
// a chunk well inside one peer frame.
inline constexpr size_t kMaxSnapshotChunkBytes = 16 * 1024 * 1024;

// A position in the file data of a stream: byte `offset` of manifest.files[file_index].
// file_index == manifest.files_size() (offset 0) is the end of the stream.
struct StreamPosition {
  uint32_t file_index = 0;
  uint64_t offset = 0;
  bool operator==(const StreamPosition&) const = default;
};

struct CheckpointReaderOptions {
  // Most data bytes per chunk; 1..kMaxSnapshotChunkBytes. Default: 1 MiB.
  size_t max_chunk_bytes = 1024 * 1024;
  // Where the file data starts (the manifest is always sent first). Default: the start.
  StreamPosition start;
};

// Produces the chunks of the checkpoint in a directory. The checkpoint must stay in
// place while it is read: whoever removes old checkpoints (RemoveOldCheckpoints) must
// keep the ones being streamed.
class CheckpointReader {
 public:
  // Reads and validates the checkpoint's manifest. NotFound/DataLoss as ReadManifest;
  // InvalidArgument if the options are out of range or `start` is past a file's end.
  // Files are not verified up front: each file's CRC is checked as it is read from its
  // first byte, so a corrupt source fails the stream (DataLoss naming the file) instead
  // of shipping bad bytes.
  static absl::StatusOr<std::unique_ptr<CheckpointReader>> Open(
      const std::string& dir, const CheckpointReaderOptions& options);
  ~CheckpointReader();
  CheckpointReader(const CheckpointReader&) = delete;
  CheckpointReader& operator=(const CheckpointReader&) = delete;

  // The next chunk, or nullopt after the last one. DataLoss if a file does not match
  // the manifest (size or CRC); other codes on read errors.
  absl::StatusOr<std::optional<pb::SnapshotChunk>> Next();

  const pb::SnapshotManifest& manifest() const;

 private:
  class Impl;
  explicit CheckpointReader(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// How far a writer has got.
struct CheckpointWriterProgress {
  bool manifest_received = false;
  StreamPosition position;    // the next expected file data (valid once manifest_received)
  std::string file_name;      // name of the file at `position`, empty at the end
  uint64_t bytes_done = 0;    // file bytes before `position`
  uint64_t total_bytes = 0;   // manifest.total_bytes(), 0 until the manifest arrived
  bool complete = false;      // every file received; Finish() may be called
};

// Rebuilds a checkpoint from chunks in a staging directory.
class CheckpointWriter {
 public:
  // Starts a new transfer in `staging_dir`, removing whatever it held.
  static absl::StatusOr<std::unique_ptr<CheckpointWriter>> Create(const std::string& staging_dir);
  // Continues a transfer into `staging_dir` from where its files end. NotFound if no
  // manifest was received there (start anew with Create); DataLoss if the stored
  // manifest is corrupt. A file whose received bytes are complete but do not match
  // the manifest is discarded and received again.
  static absl::StatusOr<std::unique_ptr<CheckpointWriter>> Resume(const std::string& staging_dir);
  ~CheckpointWriter();
  CheckpointWriter(const CheckpointWriter&) = delete;
  CheckpointWriter& operator=(const CheckpointWriter&) = delete;

  // Accepts the next chunk. On any error the writer's state is unchanged (except the
  // DataLoss of a whole file, which rewinds to the start of that file):
  //   InvalidArgument: chunk out of order or duplicated (message says which position
  //     was expected), unknown kind, sizes or names not matching the manifest, or a
  //     chunk larger than kMaxSnapshotChunkBytes.
  //   FailedPrecondition: chunk of another checkpoint (manifest CRC differs), a resent
  //     manifest that differs from the stored one, or a chunk after completion.
  //   DataLoss: the chunk's data fails its CRC, the manifest is corrupt, or a completed
  //     file fails the manifest's CRC (the file is discarded; resend it from offset 0).
  absl::Status Write(const pb::SnapshotChunk& chunk);

  // Where the sender should (re)start: pass as CheckpointReaderOptions::start.
  StreamPosition position() const;
  CheckpointWriterProgress progress() const;

  // Completes the transfer: fsyncs and verifies every file against the manifest
  // (VerifyCheckpoint). FailedPrecondition if chunks are missing (the message names the
  // position); DataLoss as VerifyCheckpoint. The staging directory then holds a valid
  // checkpoint, ready for StateMachine::InstallCheckpoint.
  absl::StatusOr<pb::SnapshotManifest> Finish();

 private:
  class Impl;
  explicit CheckpointWriter(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace stead::storage

#endif  // STEAD_STORAGE_CHECKPOINT_STREAM_H_
