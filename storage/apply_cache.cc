#include "storage/apply_cache.h"

#include <iterator>
#include <utility>

#include "absl/strings/str_cat.h"

namespace stead::storage {
namespace {

std::string EntryId(absl::string_view keyspace, absl::string_view key) {
  return absl::StrCat(keyspace, absl::string_view("\0", 1), key);
}

}  // namespace

std::optional<std::optional<std::string>> ApplyCache::Find(absl::string_view keyspace,
                                                           absl::string_view key) {
  MutexLock lock(&mu_);
  const auto it = index_.find(EntryId(keyspace, key));
  if (it == index_.end()) return std::nullopt;
  entries_.splice(entries_.begin(), entries_, it->second);
  return it->second->value;
}

void ApplyCache::Insert(absl::string_view keyspace, absl::string_view key,
                        std::optional<std::string> value) {
  if (capacity_bytes_ == 0) return;
  std::string id = EntryId(keyspace, key);
  MutexLock lock(&mu_);
  if (const auto it = index_.find(id); it != index_.end()) {
    bytes_ -= it->second->bytes();
    it->second->value = std::move(value);
    bytes_ += it->second->bytes();
    entries_.splice(entries_.begin(), entries_, it->second);
  } else {
    entries_.push_front(Entry{id, keyspace.size(), std::move(value)});
    bytes_ += entries_.front().bytes();
    index_.emplace(std::move(id), entries_.begin());
    ++keyspace_entries_[keyspace];
  }
  EvictLocked();
}

void ApplyCache::Update(absl::string_view keyspace, absl::string_view key,
                        std::optional<std::string> value) {
  MutexLock lock(&mu_);
  const auto it = index_.find(EntryId(keyspace, key));
  if (it == index_.end()) return;
  bytes_ -= it->second->bytes();
  it->second->value = std::move(value);
  bytes_ += it->second->bytes();
  entries_.splice(entries_.begin(), entries_, it->second);
  EvictLocked();
}

void ApplyCache::EraseRange(absl::string_view keyspace, absl::string_view begin,
                            absl::string_view end) {
  const std::string first = EntryId(keyspace, begin);
  const std::string last = EntryId(keyspace, end);
  MutexLock lock(&mu_);
  if (const auto count = keyspace_entries_.find(keyspace);
      count == keyspace_entries_.end() || count->second == 0) {
    return;
  }
  for (auto it = entries_.begin(); it != entries_.end();) {
    const auto next = std::next(it);
    if (it->id >= first && it->id < last) EraseLocked(it);
    it = next;
  }
}

size_t ApplyCache::bytes() const {
  MutexLock lock(&mu_);
  return bytes_;
}

size_t ApplyCache::entries() const {
  MutexLock lock(&mu_);
  return entries_.size();
}

void ApplyCache::EvictLocked() {
  while (bytes_ > capacity_bytes_ && !entries_.empty()) EraseLocked(std::prev(entries_.end()));
}

void ApplyCache::EraseLocked(List::iterator entry) {
  bytes_ -= entry->bytes();
  --keyspace_entries_[entry->keyspace()];
  index_.erase(entry->id);
  entries_.erase(entry);
}

}  // namespace stead::storage
