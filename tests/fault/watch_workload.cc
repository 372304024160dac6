#include "tests/fault/watch_workload.h"

#include <algorithm>
#include <chrono>
#include <iostream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace stead::fault {

WatchRecorder::WatchRecorder(uint32_t watcher, std::string prefix, int64_t start_revision) {
  current_.watcher = watcher;
  current_.prefix = std::move(prefix);
  current_.start_revision = start_revision;
  current_.progress_revision = start_revision - 1;
}

void WatchRecorder::OnEvents(const std::vector<WatchEvent>& events, int64_t progress_revision) {
  MutexLock lock(&mu_);
  for (const WatchEvent& event : events) {
    const bool deleted = event.type == WatchEvent::Type::kDelete;
    current_.events.push_back({.key = event.kv.key,
                               .value = deleted ? std::string() : event.kv.value,
                               .deleted = deleted,
                               .mod_revision = event.kv.mod_revision});
  }
  current_.progress_revision = std::max(current_.progress_revision, progress_revision);
}

int64_t WatchRecorder::Reopen(int64_t progress_revision) {
  MutexLock lock(&mu_);
  current_.progress_revision = std::max(current_.progress_revision, progress_revision);
  WatchRecord next;
  next.watcher = current_.watcher;
  next.prefix = current_.prefix;
  next.start_revision = current_.progress_revision + 1;
  next.progress_revision = current_.progress_revision;
  closed_.push_back(std::exchange(current_, std::move(next)));
  return current_.start_revision;
}

int64_t WatchRecorder::progress() const {
  MutexLock lock(&mu_);
  return current_.progress_revision;
}

bool WatchRecorder::Saw(const std::string& key, const std::string& value) const {
  MutexLock lock(&mu_);
  return std::any_of(current_.events.begin(), current_.events.end(),
                     [&](const WatchRecord::Event& e) {
                       return !e.deleted && e.key == key && e.value == value;
                     });
}

std::vector<WatchRecord> WatchRecorder::Records() const {
  MutexLock lock(&mu_);
  std::vector<WatchRecord> records = closed_;
  records.push_back(current_);
  return records;
}

struct WatchSet::Member {
  std::unique_ptr<Client> client;
  std::unique_ptr<WatchRecorder> recorder;
  Mutex mu;
  std::unique_ptr<Watcher> watcher ABSL_GUARDED_BY(mu);
  std::atomic<bool> closed{false};  // ended for good: not reopened

  void Open(const std::string& prefix, int64_t from) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    WatchRecorder* rec = recorder.get();
    watcher = client->Watch(prefix, {.range_end = PrefixEnd(prefix), .start_revision = from},
                            [rec](const std::vector<WatchEvent>& events, int64_t progress) {
                              rec->OnEvents(events, progress);
                            });
  }
};

WatchSet::WatchSet(WatchSetOptions options) : options_(std::move(options)) {}

WatchSet::~WatchSet() { Stop(); }

absl::Status WatchSet::Start(int64_t start_revision) {
  if (options_.endpoints.empty()) return absl::InvalidArgumentError("watchers need endpoints");
  for (int i = 0; i < options_.watchers; ++i) {
    // Watcher i dials member i first (the client goes round its endpoints in order).
    std::vector<std::string> endpoints = options_.endpoints;
    std::rotate(endpoints.begin(),
                endpoints.begin() + static_cast<std::ptrdiff_t>(
                                        static_cast<size_t>(i) % endpoints.size()),
                endpoints.end());
    absl::StatusOr<std::unique_ptr<Client>> client = Client::Create({
        .endpoints = std::move(endpoints),
        .connect_timeout = options_.connect_timeout,
        .route_to_leader = false,
    });
    if (!client.ok()) return client.status();
    auto member = std::make_unique<Member>();
    member->client = std::move(client).value();
    member->recorder =
        std::make_unique<WatchRecorder>(static_cast<uint32_t>(i), options_.prefix, start_revision);
    MutexLock lock(&member->mu);
    member->Open(options_.prefix, start_revision);
    members_.push_back(std::move(member));
  }
  monitor_ = std::thread([this] { Monitor(); });
  return absl::OkStatus();
}

void WatchSet::Monitor() {
  while (!stop_) {
    for (const std::unique_ptr<Member>& member : members_) {
      MutexLock lock(&member->mu);
      if (member->watcher == nullptr) continue;
      const absl::Status status = member->watcher->status();
      if (status.ok()) continue;
      // Ended: everything through its progress was delivered before it ended (the
      // callbacks and the end run in order on the watch's strand).
      const int64_t progress = member->watcher->progress_revision();
      member->watcher.reset();
      const int64_t from = member->recorder->Reopen(progress);
      std::cerr << "stead-fault: watcher " << &member - members_.data() << " ended at revision "
                << progress << ": " << status;
      if (absl::IsOutOfRange(status) || absl::IsInvalidArgument(status)) {
        std::cerr << "; not reopened\n";
        member->closed = true;
        continue;
      }
      std::cerr << "; reopened from " << from << "\n";
      member->Open(options_.prefix, from);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

bool WatchSet::WaitSeen(const std::string& key, const std::string& value,
                        absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  for (int round = 0; round < 1'000'000; ++round) {
    bool all = true;
    for (const std::unique_ptr<Member>& member : members_) {
      if (!member->closed && !member->recorder->Saw(key, value)) all = false;
    }
    if (all) return true;
    if (absl::Now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

std::vector<WatchRecord> WatchSet::Stop() {
  stop_ = true;
  if (monitor_.joinable()) monitor_.join();
  std::vector<WatchRecord> records;
  for (const std::unique_ptr<Member>& member : members_) {
    {
      MutexLock lock(&member->mu);
      member->watcher.reset();  // no callback runs after this
    }
    for (WatchRecord& record : member->recorder->Records()) records.push_back(std::move(record));
  }
  members_.clear();  // the clients, after their watchers
  return records;
}

}  // namespace stead::fault
