#include "vmm/base/dirty_bitmap.h"

#include <bit>

namespace petrel {

namespace {
uint64_t word_count(uint64_t pages) {
  return (pages + 63) / 64;
}
}  // namespace

DirtyBitmap::DirtyBitmap(uint64_t pages)
    : pages_(pages), words_(std::make_unique<std::atomic<uint64_t>[]>(word_count(pages))) {}

void DirtyBitmap::mark(uint64_t first, uint64_t count) {
  if (first >= pages_) {
    return;
  }
  uint64_t end = count > pages_ - first ? pages_ : first + count;
  for (uint64_t page = first; page < end;) {
    uint64_t bit = page % 64;
    uint64_t n = std::min<uint64_t>(64 - bit, end - page);
    uint64_t mask = n == 64 ? ~uint64_t{0} : ((uint64_t{1} << n) - 1) << bit;
    words_[page / 64].fetch_or(mask, std::memory_order_relaxed);
    page += n;
  }
}

bool DirtyBitmap::test(uint64_t page) const {
  if (page >= pages_) {
    return false;
  }
  return (words_[page / 64].load(std::memory_order_relaxed) >> (page % 64)) & 1;
}

std::vector<uint64_t> DirtyBitmap::take() {
  std::vector<uint64_t> out(word_count(pages_));
  for (size_t i = 0; i < out.size(); ++i) {
    out[i] = words_[i].exchange(0, std::memory_order_acq_rel);
  }
  return out;
}

uint64_t DirtyBitmap::count() const {
  uint64_t n = 0;
  for (uint64_t i = 0; i < word_count(pages_); ++i) {
    n += static_cast<uint64_t>(std::popcount(words_[i].load(std::memory_order_relaxed)));
  }
  return n;
}

}  // namespace petrel
