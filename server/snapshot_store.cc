#include "server/snapshot_store.h"

#include <algorithm>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "storage/checkpoint.h"
#include "storage/checkpoint_files.h"
#include "storage/crc32c.h"
#include "storage/state_machine_dir.h"

namespace stead::server {

namespace files = storage::files;

namespace {

bool SameSnapshot(const pb::SnapshotMetadata& a, const pb::SnapshotMetadata& b) {
  return a.index() == b.index() && a.term() == b.term();
}

// The CRC32C of the manifest file a partial transfer in `dir` holds; nullopt if none.
std::optional<uint32_t> StagedManifestCrc(const std::string& dir) {
  absl::StatusOr<std::string> bytes =
      files::ReadFile(files::JoinPath(dir, storage::kManifestFileName), storage::kMaxManifestFileBytes);
  if (!bytes.ok()) return std::nullopt;
  return storage::Crc32c(*bytes);
}

}  // namespace

SnapshotStore::SnapshotStore(std::string root, Logger logger)
    : root_(std::move(root)),
      taken_dir_(files::JoinPath(root_, "raft")),
      incoming_dir_(files::JoinPath(root_, "incoming")),
      received_dir_(files::JoinPath(root_, "received")),
      logger_(std::move(logger)) {}

SnapshotStore::~SnapshotStore() = default;

absl::StatusOr<std::unique_ptr<SnapshotStore>> SnapshotStore::Open(const std::string& data_dir,
                                                                   Logger logger) {
  std::unique_ptr<SnapshotStore> store(
      new SnapshotStore(files::JoinPath(data_dir, storage::kCheckpointsDirName), std::move(logger)));
  STEAD_RETURN_IF_ERROR(files::CreateDirectories(store->taken_dir_));
  // Keeps every checkpoint; removes what an interrupted CreateCheckpoint left.
  STEAD_RETURN_IF_ERROR(
      storage::RemoveOldCheckpoints(store->taken_dir_, std::numeric_limits<size_t>::max())
          .status());
  STEAD_RETURN_IF_ERROR(files::RemoveAll(store->received_dir_));
  STEAD_RETURN_IF_ERROR(files::CreateDirectories(store->received_dir_));
  if (absl::StatusOr<pb::SnapshotManifest> staged = storage::ReadManifest(store->incoming_dir_);
      staged.ok()) {
    store->offered_index_ = staged->raft().index();
  }
  return store;
}

absl::StatusOr<pb::SnapshotManifest> SnapshotStore::Take(storage::StateMachine& state) {
  MutexLock lock(&taken_mu_);
  // The checkpoint is named after the state it holds, which only CreateCheckpoint
  // knows: applies run on until it holds them up, so an index read before it may be
  // behind, and a checkpoint named by that index would never be found by PinTaken for
  // the snapshot the log was compacted to. So it is taken under a staging name
  // (".partial": never listed) and renamed once its manifest says what it holds.
  const std::string staging =
      files::JoinPath(taken_dir_, absl::StrCat("taking", storage::kPartialSuffix));
  STEAD_RETURN_IF_ERROR(files::RemoveAll(staging));  // Leftover of a crash.
  STEAD_ASSIGN_OR_RETURN(pb::SnapshotManifest manifest, state.CreateCheckpoint(staging));
  const std::string dir = files::JoinPath(
      taken_dir_, storage::CheckpointDirName(manifest.raft().index(), manifest.raft().term()));
  if (files::Exists(dir)) {
    STEAD_RETURN_IF_ERROR(files::RemoveAll(staging));
    return absl::AlreadyExistsError(absl::StrCat("checkpoint ", dir, " already exists"));
  }
  STEAD_RETURN_IF_ERROR(files::Rename(staging, dir));
  STEAD_RETURN_IF_ERROR(files::SyncPath(taken_dir_));
  return manifest;
}

absl::StatusOr<std::vector<storage::CheckpointInfo>> SnapshotStore::List() const {
  return storage::ListCheckpoints(taken_dir_);
}

absl::Status SnapshotStore::RemoveBelow(raft::Index index) {
  MutexLock lock(&taken_mu_);
  return RemoveUnpinned(taken_dir_,
                        [index](const pb::SnapshotManifest& m) { return m.raft().index() < index; });
}

absl::StatusOr<SnapshotStore::Pin> SnapshotStore::PinTaken(const pb::SnapshotMetadata& snapshot) {
  return PinPath(
      files::JoinPath(taken_dir_, storage::CheckpointDirName(snapshot.index(), snapshot.term())));
}

absl::StatusOr<SnapshotStore::Pin> SnapshotStore::PinReceived(const pb::SnapshotMetadata& snapshot) {
  return PinPath(
      files::JoinPath(received_dir_, storage::CheckpointDirName(snapshot.index(), snapshot.term())));
}

absl::Status SnapshotStore::RemoveReceivedThrough(raft::Index index) {
  return RemoveUnpinned(received_dir_,
                        [index](const pb::SnapshotManifest& m) { return m.raft().index() <= index; });
}

absl::Status SnapshotStore::KeepReceived(const pb::SnapshotMetadata& snapshot) {
  {
    MutexLock lock(&taken_mu_);
    const std::string name = storage::CheckpointDirName(snapshot.index(), snapshot.term());
    const std::string from = files::JoinPath(received_dir_, name);
    const std::string to = files::JoinPath(taken_dir_, name);
    if (files::Exists(to)) {
      STEAD_RETURN_IF_ERROR(files::RemoveAll(from));
    } else {
      STEAD_RETURN_IF_ERROR(files::Rename(from, to));
      STEAD_RETURN_IF_ERROR(files::SyncPath(taken_dir_));
    }
    STEAD_RETURN_IF_ERROR(files::SyncPath(received_dir_));
  }
  return RemoveReceivedThrough(snapshot.index());
}

absl::StatusOr<SnapshotStore::Pin> SnapshotStore::PinPath(const std::string& path) {
  MutexLock lock(&pins_->mu);
  // Checked under the lock: removal checks pins under it too.
  if (!files::Exists(files::JoinPath(path, storage::kManifestFileName))) {
    return absl::NotFoundError(absl::StrCat("no checkpoint ", path));
  }
  ++pins_->holders[path];
  return Pin(new std::string(path), [pins = pins_](const std::string* pinned) {
    {
      MutexLock unpin(&pins->mu);
      if (--pins->holders[*pinned] == 0) pins->holders.erase(*pinned);
    }
    delete pinned;
  });
}

bool SnapshotStore::IsPinned(const std::string& path) const {
  MutexLock lock(&pins_->mu);
  return pins_->holders.contains(path);
}

template <typename Predicate>
absl::Status SnapshotStore::RemoveUnpinned(const std::string& parent, Predicate remove) {
  STEAD_ASSIGN_OR_RETURN(const std::vector<storage::CheckpointInfo> checkpoints,
                         storage::ListCheckpoints(parent));
  for (const storage::CheckpointInfo& checkpoint : checkpoints) {
    if (!remove(checkpoint.manifest)) continue;
    // Under the pin lock, so no pin is taken between the check and the removal.
    MutexLock lock(&pins_->mu);
    if (pins_->holders.contains(checkpoint.path)) continue;
    STEAD_RETURN_IF_ERROR(files::RemoveAll(checkpoint.path));
  }
  return absl::OkStatus();
}

absl::StatusOr<SnapshotSink::Transfer> SnapshotStore::BeginTransfer(
    const pb::SnapshotMetadata& snapshot, uint32_t manifest_crc32c) {
  MutexLock lock(&mu_);
  ++transfer_;
  transfer_snapshot_ = snapshot;
  offered_index_ = std::max(offered_index_.load(), snapshot.index());
  writer_.reset();
  Transfer transfer;
  transfer.id = transfer_;
  if (StagedManifestCrc(incoming_dir_) == manifest_crc32c) {
    absl::StatusOr<std::unique_ptr<storage::CheckpointWriter>> resumed =
        storage::CheckpointWriter::Resume(incoming_dir_);
    if (resumed.ok()) {
      writer_ = std::move(resumed).value();
      transfer.resume = writer_->position();
      transfer.resumed = writer_->progress().bytes_done > 0;
      return transfer;
    }
    STEAD_LOG(logger_, Warning) << "cannot resume the staged snapshot transfer ("
                                << resumed.status().message() << "); starting it anew";
  }
  STEAD_ASSIGN_OR_RETURN(writer_, storage::CheckpointWriter::Create(incoming_dir_));
  return transfer;
}

absl::Status SnapshotStore::WriteChunk(uint64_t transfer, const pb::SnapshotChunk& chunk,
                                       bool* complete) {
  MutexLock lock(&mu_);
  if (transfer != transfer_ || writer_ == nullptr) {
    return absl::AbortedError("superseded by a newer snapshot offer");
  }
  STEAD_RETURN_IF_ERROR(EndTransferIfVolumeFull(writer_->Write(chunk)));
  *complete = writer_->progress().complete;
  return absl::OkStatus();
}

absl::Status SnapshotStore::FinishTransfer(uint64_t transfer) {
  MutexLock lock(&mu_);
  if (transfer != transfer_ || writer_ == nullptr) {
    return absl::AbortedError("superseded by a newer snapshot offer");
  }
  absl::StatusOr<pb::SnapshotManifest> finished = writer_->Finish();
  STEAD_RETURN_IF_ERROR(EndTransferIfVolumeFull(finished.status()));
  const pb::SnapshotManifest manifest = *std::move(finished);
  writer_.reset();
  if (!SameSnapshot(manifest.raft(), transfer_snapshot_)) {
    STEAD_RETURN_IF_ERROR(files::RemoveAll(incoming_dir_));
    return absl::InvalidArgumentError(absl::StrCat(
        "the checkpoint holds index ", manifest.raft().index(), " term ", manifest.raft().term(),
        ", the SNAPSHOT message says index ", transfer_snapshot_.index(), " term ",
        transfer_snapshot_.term()));
  }
  const std::string received = files::JoinPath(
      received_dir_, storage::CheckpointDirName(manifest.raft().index(), manifest.raft().term()));
  if (IsPinned(received)) {
    // Being installed from an earlier transfer of the same checkpoint: that one stands.
    return files::RemoveAll(incoming_dir_);
  }
  STEAD_RETURN_IF_ERROR(files::RemoveAll(received));
  STEAD_RETURN_IF_ERROR(files::Rename(incoming_dir_, received));
  STEAD_RETURN_IF_ERROR(files::SyncPath(received_dir_));
  return files::SyncPath(root_);
}

absl::Status SnapshotStore::EndTransferIfVolumeFull(absl::Status status) {
  if (!absl::IsResourceExhausted(status)) return status;
  writer_.reset();
  const uint64_t offered = transfer_snapshot_.index();
  absl::Status removed = [&]() -> absl::Status {
    STEAD_ASSIGN_OR_RETURN(const std::vector<std::string> names,
                           files::ListDirectory(incoming_dir_));
    for (const std::string& name : names) {
      if (name != storage::kManifestFileName) {
        STEAD_RETURN_IF_ERROR(files::RemoveAll(files::JoinPath(incoming_dir_, name)));
      }
    }
    return files::SyncPath(incoming_dir_);
  }();
  STEAD_LOG(logger_, Error) << "the data volume is full: the snapshot index=" << offered
                            << " from the leader does not fit (" << status.message() << "); "
                            << (removed.ok() ? std::string("removed its partial files")
                                             : absl::StrCat("could not remove its partial files: ",
                                                            removed.message()))
                            << ". Grow the data volume (docs/resize-volumes.md): the leader "
                               "offers the snapshot again, less and less often, and this member "
                               "is not ready until it holds it";
  return status;
}

}  // namespace stead::server
