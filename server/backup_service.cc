#include "server/backup_service.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/status_macros.h"
#include "server/kv_store.h"
#include "storage/checkpoint_files.h"
#include "storage/checkpoint_stream.h"

namespace stead::server {
namespace {

// How often a paused save looks at its connection's unsent bytes again.
constexpr absl::Duration kRoomPollInterval = absl::Milliseconds(2);

}  // namespace

BackupService::BackupService(BackupServiceOptions options, Logger logger)
    : options_(std::move(options)), logger_(std::move(logger)) {
  worker_ = std::thread([this] { Run(); });
}

BackupService::~BackupService() { Stop(); }

void BackupService::Attach(storage::StateMachine* state) {
  if (!options_.checkpoint_dir.empty() && storage::files::Exists(options_.checkpoint_dir)) {
    // Nothing runs yet, so whatever is there was left by a save a crash interrupted.
    STEAD_LOG(logger_, Info) << "removing leftovers of interrupted saves in "
                             << options_.checkpoint_dir;
    if (absl::Status removed = storage::files::RemoveAll(options_.checkpoint_dir); !removed.ok()) {
      STEAD_LOG(logger_, Warning) << "cannot remove " << options_.checkpoint_dir << ": "
                                  << removed.message();
    }
  }
  MutexLock lock(&mu_);
  state_ = state;
  wake_.SignalAll();
}

void BackupService::Hash(absl::Time deadline, BackupDone done) {
  absl::Status refused;
  {
    MutexLock lock(&mu_);
    if (stopping_) {
      refused = absl::UnavailableError("this member is stopping");
    } else if (state_ == nullptr) {
      refused = absl::UnavailableError("this member is not serving yet");
    } else if (hashes_.size() >= options_.max_queued_hashes) {
      refused = absl::ResourceExhaustedError(absl::StrCat(
          hashes_.size(), " hash requests wait on this member already: back off"));
    } else {
      hashes_.push_back(HashJob{deadline, std::move(done)});
      wake_.Signal();
      return;
    }
  }
  done(refused);
}

void BackupService::Run() {
  for (;;) {
    HashJob job;
    const storage::StateMachine* state = nullptr;
    {
      MutexLock lock(&mu_);
      while (!stopping_ && (hashes_.empty() || state_ == nullptr)) wake_.Wait(&mu_);
      if (stopping_) return;
      job = std::move(hashes_.front());
      hashes_.pop_front();
      // Stop() waits for this thread before the state machine goes away, so the
      // pointer stays valid for the whole job.
      state = state_;
    }
    if (absl::Now() > job.deadline) {
      job.done(absl::DeadlineExceededError("the hash request waited past its deadline"));
      continue;
    }
    const absl::Time started = absl::Now();
    absl::StatusOr<pb::ClientResponse> response = ComputeHash(*state);
    if (response.ok()) {
      STEAD_LOG(logger_, Info) << "content hash at index " << response->hash().applied_index()
                               << ": " << absl::StrCat(absl::Hex(response->hash().hash()))
                               << " over " << response->hash().key_count() << " pairs in "
                               << absl::FormatDuration(absl::Now() - started);
    }
    job.done(std::move(response));
  }
}

absl::StatusOr<pb::ClientResponse> BackupService::ComputeHash(
    const storage::StateMachine& state) const {
  // One snapshot for the hash, the index and the revision: they describe one state.
  STEAD_ASSIGN_OR_RETURN(std::unique_ptr<storage::StateSnapshot> snapshot, state.NewSnapshot());
  STEAD_ASSIGN_OR_RETURN(const storage::ContentHash hash,
                         snapshot->Hash(options_.unhashed_keyspaces));
  STEAD_ASSIGN_OR_RETURN(const pb::KvMeta meta, ReadKvMeta(*snapshot));
  pb::ClientResponse response;
  pb::HashResponse* answer = response.mutable_hash();
  answer->set_hash(hash.hash);
  answer->set_key_count(hash.key_count);
  answer->set_applied_index(snapshot->applied().index());
  answer->set_revision(meta.revision());
  response.mutable_header()->set_revision(meta.revision());
  return response;
}

void BackupService::Stop() {
  std::deque<HashJob> waiting;
  std::thread save_thread;
  {
    MutexLock lock(&mu_);
    if (stopping_) return;
    stopping_ = true;
    waiting.swap(hashes_);
    save_thread = std::move(save_thread_);
    wake_.SignalAll();
    save_wake_.SignalAll();
  }
  if (worker_.joinable()) worker_.join();
  if (save_thread.joinable()) save_thread.join();
  for (HashJob& job : waiting) job.done(absl::UnavailableError("this member is stopping"));
}

// ---- snapshot save ----

void BackupService::SendError(WatchStream& stream, uint64_t request_id,
                              const absl::Status& status) const {
  pb::ClientResponse response;
  response.set_request_id(request_id);
  response.mutable_error()->set_code(static_cast<int32_t>(status.code()));
  response.mutable_error()->set_message(std::string(status.message()));
  stream.Send(std::move(response));
}

void BackupService::OpenSnapshotSave(std::shared_ptr<WatchStream> stream, uint64_t request_id,
                                     const pb::SnapshotSaveRequest& request) {
  const size_t chunk_bytes =
      request.max_chunk_bytes() == 0 ? options_.default_chunk_bytes : request.max_chunk_bytes();
  if (chunk_bytes > storage::kMaxSnapshotChunkBytes) {
    return SendError(*stream, request_id,
                     absl::InvalidArgumentError(absl::StrCat(
                         "max_chunk_bytes ", chunk_bytes, " is over the limit of ",
                         storage::kMaxSnapshotChunkBytes)));
  }
  std::thread previous;
  absl::Status refused;
  {
    MutexLock lock(&mu_);
    if (options_.checkpoint_dir.empty()) {
      refused = absl::UnimplementedError("this member serves no snapshot saves");
    } else if (stopping_) {
      refused = absl::UnavailableError("this member is stopping");
    } else if (state_ == nullptr) {
      refused = absl::UnavailableError("this member is not serving yet");
    } else if (save_ != nullptr) {
      refused = absl::ResourceExhaustedError(
          "a snapshot save is running on this member already (one at a time): retry later");
    } else {
      save_ = std::make_shared<Save>();
      save_->stream = stream;
      save_->request_id = request_id;
      save_->chunk_bytes = chunk_bytes;
      // The previous save's thread has finished its work (save_ was reset); it is
      // joined below, outside the lock.
      previous = std::move(save_thread_);
      save_thread_ = std::thread([this, save = save_, state = state_] { RunSave(save, state); });
    }
  }
  if (previous.joinable()) previous.join();
  if (!refused.ok()) SendError(*stream, request_id, refused);
}

void BackupService::CloseStream(const WatchStream* stream) {
  MutexLock lock(&mu_);
  if (save_ != nullptr && save_->stream.get() == stream) {
    save_->cancelled = true;
    save_wake_.SignalAll();
  }
}

void BackupService::RunSave(std::shared_ptr<Save> save, storage::StateMachine* state) {
  // Unique per member: one save at a time, and request ids differ between connections
  // only with the time.
  const std::string dir = storage::files::JoinPath(
      options_.checkpoint_dir,
      absl::StrCat("save-", absl::ToUnixMillis(absl::Now()), "-", save->request_id));
  // Stop() joins this thread before the state machine is closed.
  absl::Status status = StreamSave(*save, *state, dir);
  if (absl::Status removed = storage::files::RemoveAll(dir); !removed.ok()) {
    STEAD_LOG(logger_, Warning) << "cannot remove the save's checkpoint " << dir << ": "
                                << removed.message() << " (removed at the next start)";
  }
  bool cancelled = false;
  {
    MutexLock lock(&mu_);
    cancelled = save->cancelled;
    save_.reset();
  }
  if (!status.ok()) {
    STEAD_LOG(logger_, Warning) << "snapshot save for request " << save->request_id
                                << " failed: " << status.message();
    if (!cancelled) SendError(*save->stream, save->request_id, status);
  }
}

absl::Status BackupService::StreamSave(Save& save, storage::StateMachine& state,
                                       const std::string& dir) {
  const absl::Time started = absl::Now();
  STEAD_ASSIGN_OR_RETURN(const pb::SnapshotManifest manifest, state.CreateCheckpoint(dir));
  storage::CheckpointReaderOptions reader_options;
  reader_options.max_chunk_bytes = save.chunk_bytes;
  STEAD_ASSIGN_OR_RETURN(std::unique_ptr<storage::CheckpointReader> reader,
                         storage::CheckpointReader::Open(dir, reader_options));
  STEAD_LOG(logger_, Info) << "snapshot save: checkpoint at index " << manifest.raft().index()
                           << " term " << manifest.raft().term() << ", "
                           << manifest.files_size() << " files, " << manifest.total_bytes()
                           << " bytes, " << manifest.key_count() << " keys";
  uint64_t sent_bytes = 0;
  for (;;) {
    STEAD_ASSIGN_OR_RETURN(std::optional<pb::SnapshotChunk> chunk, reader->Next());
    STEAD_RETURN_IF_ERROR(WaitForRoom(save));
    pb::ClientResponse response;
    response.set_request_id(save.request_id);
    if (!chunk.has_value()) {
      response.mutable_snapshot_save()->set_done(true);
      save.stream->Send(std::move(response));
      break;
    }
    sent_bytes += chunk->data().size();
    *response.mutable_snapshot_save()->mutable_chunk() = *std::move(chunk);
    save.stream->Send(std::move(response));
  }
  const double seconds = absl::ToDoubleSeconds(absl::Now() - started);
  STEAD_LOG(logger_, Info) << "snapshot save at index " << manifest.raft().index() << " sent: "
                           << sent_bytes << " bytes in "
                           << absl::StrFormat("%.2f s (%.1f MB/s)", seconds,
                                              seconds > 0 ? static_cast<double>(sent_bytes) / 1e6 / seconds : 0.0);
  return absl::OkStatus();
}

absl::Status BackupService::WaitForRoom(const Save& save) {
  MutexLock lock(&mu_);
  size_t last_unsent = save.stream->UnsentBytes();
  absl::Time stall_deadline = absl::Now() + options_.stall_timeout;
  for (;;) {
    if (stopping_) return absl::UnavailableError("this member is stopping");
    if (save.cancelled) return absl::CancelledError("the client closed the connection");
    const size_t unsent = save.stream->UnsentBytes();
    if (unsent <= options_.max_unsent_bytes) return absl::OkStatus();
    if (unsent < last_unsent) {
      last_unsent = unsent;
      stall_deadline = absl::Now() + options_.stall_timeout;
    } else if (absl::Now() >= stall_deadline) {
      return absl::DeadlineExceededError(absl::StrCat(
          "the client read nothing for ", absl::FormatDuration(options_.stall_timeout)));
    }
    save_wake_.WaitWithTimeout(&mu_, kRoomPollInterval);
  }
}

}  // namespace stead::server
