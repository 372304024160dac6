#include "server/kv_store.h"

#include <iterator>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "base/check.h"
#include "base/status_macros.h"

namespace stead::server {
namespace {

constexpr char kKvMetaKey[] = "state";

absl::StatusOr<pb::KeyValue> DecodeStoredPair(absl::string_view key, absl::string_view stored) {
  pb::KeyValue kv;
  if (!kv.ParseFromArray(stored.data(), static_cast<int>(stored.size())) || kv.version() <= 0) {
    return absl::DataLossError(absl::StrCat("stored pair of key \"", absl::CEscape(key),
                                            "\" does not decode: written by another format?"));
  }
  kv.set_key(std::string(key));
  return kv;
}

}  // namespace

std::vector<std::string> KvKeyspaces() {
  return {storage::kDefaultKeyspace, kKvMetaKeyspace, kSessionsKeyspace, kHistoryKeyspace,
          kAuthKeyspace};
}

std::string HistoryKey(int64_t revision) {
  STEAD_CHECK_GE(revision, 0);
  std::string key(8, '\0');
  for (int i = 7; i >= 0; --i) {
    key[static_cast<size_t>(i)] = static_cast<char>(revision & 0xff);
    revision >>= 8;
  }
  return key;
}

absl::StatusOr<int64_t> ParseHistoryKey(absl::string_view key) {
  if (key.size() != 8 || static_cast<unsigned char>(key[0]) > 0x7f) {
    return absl::DataLossError(
        absl::StrCat("history key \"", absl::CEscape(key), "\" is not a revision"));
  }
  int64_t revision = 0;
  for (const char byte : key) revision = (revision << 8) | static_cast<unsigned char>(byte);
  return revision;
}

absl::StatusOr<pb::KvMeta> ReadKvMeta(const storage::StateReader& state) {
  STEAD_ASSIGN_OR_RETURN(std::optional<std::string> stored, state.Get(kKvMetaKeyspace, kKvMetaKey));
  pb::KvMeta meta;
  if (stored && !meta.ParseFromString(*stored)) {
    return absl::DataLossError("kvmeta record does not decode");
  }
  return meta;
}

storage::Mutation WriteKvMeta(const pb::KvMeta& meta) {
  return storage::Mutation::Put(kKvMetaKeyspace, kKvMetaKey, meta.SerializeAsString());
}

absl::StatusOr<std::optional<pb::KeyValue>> KvView::Get(absl::string_view key) const {
  if (auto it = pending_.find(key); it != pending_.end()) return it->second;
  STEAD_ASSIGN_OR_RETURN(std::optional<std::string> stored,
                         state_->Get(storage::kDefaultKeyspace, key));
  if (!stored) return std::nullopt;
  return DecodeStoredPair(key, *stored);
}

absl::StatusOr<KvPage> KvView::Scan(absl::string_view start, absl::string_view end, bool reverse,
                                    size_t limit, size_t max_bytes) const {
  STEAD_ASSIGN_OR_RETURN(KvPage page, ScanPage(start, end, reverse, limit, max_bytes, max_bytes));
  if (page.kvs.empty() && page.more) {
    // This command deleted every pair the byte-bounded read found (only a transaction
    // can): a page must hold a pair to say where the next one starts, so read on by
    // count alone.
    return ScanPage(start, end, reverse, limit, max_bytes, /*read_max_bytes=*/0);
  }
  return page;
}

absl::StatusOr<KvPage> KvView::ScanPage(absl::string_view start, absl::string_view end,
                                        bool reverse, size_t limit, size_t max_bytes,
                                        size_t read_max_bytes) const {
  STEAD_CHECK_GE(limit, 1u);
  const auto pending_begin = pending_.lower_bound(start);
  const auto pending_end = end.empty() ? pending_.end() : pending_.lower_bound(end);
  const auto pending_count = static_cast<size_t>(std::distance(pending_begin, pending_end));
  // Each pending write can hide or replace at most one stored pair, so fetching
  // limit + 1 + pending_count stored pairs leaves at least limit + 1 after the merge
  // whenever the range holds that many: `more` is then exact.
  storage::ScanOptions scan;
  scan.start_key = std::string(start);
  scan.end_key = std::string(end);
  scan.reverse = reverse;
  scan.limit = limit + 1 + pending_count;
  // A stored pair is its value with counters (at least PairBytes of its user form), so
  // the pairs read reach max_bytes no earlier than the page does.
  scan.max_bytes = read_max_bytes;
  if (scan.limit > storage::kMaxScanLimit) {
    return absl::InvalidArgumentError(absl::StrCat("a read in this transaction follows writes to ",
                                                   pending_count,
                                                   " keys of its range; split the transaction"));
  }
  STEAD_ASSIGN_OR_RETURN(storage::ScanResult stored, state_->Scan(scan));
  std::map<std::string, pb::KeyValue, std::less<>> merged;
  for (const storage::KeyValue& pair : stored.pairs) {
    STEAD_ASSIGN_OR_RETURN(pb::KeyValue kv, DecodeStoredPair(pair.key, pair.value));
    merged.emplace(pair.key, std::move(kv));
  }
  for (auto it = pending_begin; it != pending_end; ++it) {
    // Past the last stored pair fetched, the stored keys are unknown: a pending key
    // there could not be ordered against them.
    if (stored.more && !stored.pairs.empty()) {
      const std::string& last = stored.pairs.back().key;
      if (reverse ? it->first < last : it->first > last) continue;
    }
    if (it->second) {
      merged.insert_or_assign(it->first, *it->second);
    } else {
      merged.erase(it->first);
    }
  }
  KvPage page;
  size_t page_bytes = 0;
  auto take = [&](auto begin, auto finish) {
    auto it = begin;
    for (; it != finish && page.kvs.size() < limit; ++it) {
      const size_t bytes = PairBytes(it->second);
      if (max_bytes > 0 && !page.kvs.empty() && page_bytes + bytes > max_bytes) break;
      page_bytes += bytes;
      page.kvs.push_back(std::move(it->second));
    }
    // Past the pairs taken: more merged ones, or stored ones not read (a scan stopped
    // by its limit leaves at least one merged pair behind, one stopped by max_bytes may
    // not when pending deletes hid what it read).
    page.more = it != finish || stored.more;
  };
  if (reverse) {
    take(merged.rbegin(), merged.rend());
  } else {
    take(merged.begin(), merged.end());
  }
  return page;
}

void KvView::Put(pb::KeyValue kv) {
  STEAD_CHECK(!kv.key().empty());
  STEAD_CHECK_GT(kv.version(), 0);
  std::string key = kv.key();
  pending_.insert_or_assign(std::move(key), std::move(kv));
}

void KvView::Delete(std::string key) { pending_.insert_or_assign(std::move(key), std::nullopt); }

void KvView::AppendMutations(std::vector<storage::Mutation>* mutations) const {
  for (const auto& [key, kv] : pending_) {
    if (!kv) {
      mutations->push_back(storage::Mutation::Delete(storage::kDefaultKeyspace, key));
      continue;
    }
    pb::KeyValue stored = *kv;
    stored.clear_key();
    mutations->push_back(
        storage::Mutation::Put(storage::kDefaultKeyspace, key, stored.SerializeAsString()));
  }
}

absl::Status KvView::AppendEvents(int64_t revision, pb::RevisionEvents* events) const {
  for (const auto& [key, kv] : pending_) {
    pb::Event& event = *events->add_events();
    if (kv) {
      event.set_type(pb::Event::TYPE_PUT);
      *event.mutable_kv() = *kv;
      continue;
    }
    STEAD_ASSIGN_OR_RETURN(std::optional<std::string> existed,
                           state_->Get(storage::kDefaultKeyspace, key));
    if (!existed) {
      events->mutable_events()->RemoveLast();
      continue;
    }
    event.set_type(pb::Event::TYPE_DELETE);
    event.mutable_kv()->set_key(key);
    event.mutable_kv()->set_mod_revision(revision);
  }
  return absl::OkStatus();
}

}  // namespace stead::server
