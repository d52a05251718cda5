// DirtyBitmap: one bit per 4 KiB guest page of a region, set by the VMM when it writes guest
// memory on the guest's behalf (virtio buffers, used rings) so that live migration and diff
// snapshots see those pages. KVM's own dirty log covers vCPU writes; this covers the VMM's.
//
// Thread-safety: mark() and take() may run concurrently from any threads (atomic words).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

namespace petrel {

class DirtyBitmap {
 public:
  explicit DirtyBitmap(uint64_t pages);

  uint64_t pages() const { return pages_; }
  // Marks pages [first, first + count); pages past the end are ignored.
  void mark(uint64_t first, uint64_t count);
  bool test(uint64_t page) const;
  // Returns the bitmap as 64-bit words (bit i of word w = page 64*w + i) and clears it.
  std::vector<uint64_t> take();
  uint64_t count() const;

 private:
  uint64_t pages_;
  std::unique_ptr<std::atomic<uint64_t>[]> words_;  // (pages_ + 63) / 64 words
};

}  // namespace petrel
