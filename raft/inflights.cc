#include "raft/inflights.h"

#include "base/check.h"

namespace stead::raft {

Inflights::Inflights(size_t max_count, uint64_t max_bytes)
    : max_count_(max_count), max_bytes_(max_bytes) {
  STEAD_CHECK_GE(max_count_, 1u);
}

void Inflights::Add(Index last_index, uint64_t bytes) {
  STEAD_CHECK(!Full()) << "in-flight window is full";
  STEAD_CHECK(messages_.empty() || messages_.back().last_index < last_index)
      << "in-flight indexes must increase: " << messages_.back().last_index << " then "
      << last_index;
  messages_.push_back(InflightMessage{last_index, bytes});
  bytes_ += bytes;
}

void Inflights::FreeLE(Index index) {
  while (!messages_.empty() && messages_.front().last_index <= index) {
    FreeFirstOne();
  }
}

void Inflights::FreeFirstOne() {
  if (messages_.empty()) return;
  STEAD_CHECK_GE(bytes_, messages_.front().bytes);
  bytes_ -= messages_.front().bytes;
  messages_.pop_front();
}

void Inflights::Reset() {
  messages_.clear();
  bytes_ = 0;
}

bool Inflights::Full() const {
  if (messages_.size() >= max_count_) return true;
  return max_bytes_ != 0 && bytes_ >= max_bytes_;
}

}  // namespace stead::raft
