#include "server/backup_service.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "server/kv_store.h"

namespace stead::server {

BackupService::BackupService(BackupServiceOptions options, Logger logger)
    : options_(std::move(options)), logger_(std::move(logger)) {
  worker_ = std::thread([this] { Run(); });
}

BackupService::~BackupService() { Stop(); }

void BackupService::Attach(const storage::StateMachine* state) {
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
  STEAD_ASSIGN_OR_RETURN(const storage::ContentHash hash, snapshot->Hash());
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
  {
    MutexLock lock(&mu_);
    if (stopping_) return;
    stopping_ = true;
    waiting.swap(hashes_);
    wake_.SignalAll();
  }
  if (worker_.joinable()) worker_.join();
  for (HashJob& job : waiting) job.done(absl::UnavailableError("this member is stopping"));
}

}  // namespace stead::server
