// BalloonPageMap: which 4 KiB guest pages are in the virtio balloon (inflated and not yet
// deflated), one bitmap per region of a GuestMemory. The word layout is PageSkip's and
// DirtyBitmap::take()'s (bit i of word w = page 64*w + i of the region), so the VMM can hand
// ballooned_pages() to save_memory / the migration sender as pages to skip.
//
// Thread-safety: every method may be called from any thread (one mutex). The region layout
// is fixed at construction.
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <vector>

#include "vmm/base/guest_address.h"
#include "vmm/base/guest_memory.h"
#include "vmm/base/result.h"

namespace petrel::virtio {

class BalloonPageMap {
 public:
  struct Location {
    size_t region = 0;
    uint64_t page = 0;  // 4 KiB page index inside the region
  };

  explicit BalloonPageMap(const GuestMemory& memory);

  // Where the 4 KiB frame `pfn` (guest-controlled) lies; nullopt when outside guest RAM.
  std::optional<Location> locate(uint64_t pfn) const;
  // The guest address of a page; `at` must come from locate().
  GuestAddress address(Location at) const;
  size_t region_count() const { return starts_.size(); }
  uint64_t region_pages(size_t region) const { return pages_[region]; }

  // Sets (`on`) or clears pages [first, first+count) of `region`; the range must lie inside
  // the region (callers pass locate()d runs). Returns how many bits changed.
  uint64_t set(size_t region, uint64_t first, uint64_t count, bool on);
  bool test(size_t region, uint64_t page) const;
  uint64_t count() const;
  // A copy of the bitmaps (see the file comment).
  std::vector<std::vector<uint64_t>> words() const;
  void clear();
  // Replaces the bitmaps with `words` (untrusted: from a saved state): one entry per region,
  // each exactly the region's word count, no bit past the region's last page. On error
  // nothing changes.
  Result<void> assign(std::vector<std::vector<uint64_t>> words);

 private:
  static uint64_t word_count(uint64_t pages) { return (pages + 63) / 64; }

  std::vector<GuestAddress> starts_;  // per region, sorted
  std::vector<uint64_t> pages_;       // per region

  mutable std::mutex mutex_;
  std::vector<std::vector<uint64_t>> words_;
  uint64_t count_ = 0;
};

}  // namespace petrel::virtio
