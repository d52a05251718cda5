#include "virtio/balloon_page_map.h"

#include <algorithm>
#include <bit>

#include <fmt/format.h>

namespace petrel::virtio {

BalloonPageMap::BalloonPageMap(const GuestMemory& memory) {
  for (const auto& region : memory.regions()) {
    starts_.push_back(region.start());
    pages_.push_back(region.size() / GuestMemory::kPageSize);
    words_.emplace_back(word_count(pages_.back()), 0);
  }
}

std::optional<BalloonPageMap::Location> BalloonPageMap::locate(uint64_t pfn) const {
  if (pfn > UINT64_MAX / GuestMemory::kPageSize) {
    return std::nullopt;
  }
  const GuestAddress addr(pfn * GuestMemory::kPageSize);
  auto it = std::upper_bound(starts_.begin(), starts_.end(), addr);
  if (it == starts_.begin()) {
    return std::nullopt;
  }
  const auto region = static_cast<size_t>(it - starts_.begin() - 1);
  const uint64_t page = (addr - starts_[region]) / GuestMemory::kPageSize;
  if (page >= pages_[region]) {
    return std::nullopt;
  }
  return Location{region, page};
}

GuestAddress BalloonPageMap::address(Location at) const {
  return starts_[at.region] + at.page * GuestMemory::kPageSize;
}

uint64_t BalloonPageMap::set(size_t region, uint64_t first, uint64_t count, bool on) {
  std::lock_guard lock(mutex_);
  auto& words = words_[region];
  uint64_t changed = 0;
  for (uint64_t page = first; page < first + count && page < pages_[region]; ++page) {
    uint64_t& word = words[page / 64];
    const uint64_t bit = uint64_t{1} << (page % 64);
    if (((word & bit) != 0) != on) {
      word ^= bit;
      ++changed;
    }
  }
  count_ = on ? count_ + changed : count_ - changed;
  return changed;
}

bool BalloonPageMap::test(size_t region, uint64_t page) const {
  std::lock_guard lock(mutex_);
  return region < words_.size() && page < pages_[region] &&
         (words_[region][page / 64] >> (page % 64) & 1) != 0;
}

uint64_t BalloonPageMap::count() const {
  std::lock_guard lock(mutex_);
  return count_;
}

std::vector<std::vector<uint64_t>> BalloonPageMap::words() const {
  std::lock_guard lock(mutex_);
  return words_;
}

void BalloonPageMap::clear() {
  std::lock_guard lock(mutex_);
  for (auto& words : words_) {
    std::fill(words.begin(), words.end(), 0);
  }
  count_ = 0;
}

Result<void> BalloonPageMap::assign(std::vector<std::vector<uint64_t>> words) {
  if (words.size() != pages_.size()) {
    return Error(
        ErrorCode::kInvalidArgument,
        fmt::format("balloon page map: {} regions, memory has {}", words.size(), pages_.size()));
  }
  uint64_t count = 0;
  for (size_t r = 0; r < words.size(); ++r) {
    if (words[r].size() != word_count(pages_[r])) {
      return Error(ErrorCode::kInvalidArgument,
                   fmt::format("balloon page map: region {} has {} words, expected {}", r,
                               words[r].size(), word_count(pages_[r])));
    }
    if (const uint64_t tail = pages_[r] % 64;
        tail != 0 && !words[r].empty() && (words[r].back() >> tail) != 0) {
      return Error(ErrorCode::kInvalidArgument,
                   fmt::format("balloon page map: region {} marks pages past its end", r));
    }
    for (uint64_t w : words[r]) {
      count += static_cast<uint64_t>(std::popcount(w));
    }
  }
  std::lock_guard lock(mutex_);
  words_ = std::move(words);
  count_ = count;
  return {};
}

}  // namespace petrel::virtio
