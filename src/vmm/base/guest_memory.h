// GuestMemory: the guest's RAM, as host mappings of guest-physical regions. It is the only
// way petrel code touches guest RAM. Every access is bounds-checked: one that leaves RAM or
// crosses from one region into another is an error, never undefined behaviour.
//
// Thread-safety: the region table is immutable after creation; reads and writes may happen
// from any thread (vCPUs run concurrently, so guest-visible contents can change under a
// reader: callers copy values out with read_obj before checking them).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <type_traits>
#include <vector>

#include "vmm/base/dirty_bitmap.h"
#include "vmm/base/guest_address.h"
#include "vmm/base/mmap_region.h"
#include "vmm/base/result.h"

namespace petrel {

struct GuestRegionSpec {
  GuestAddress start;
  uint64_t size;  // bytes; a multiple of the 4 KiB page size
};

// How a region's host mapping is backed; decides how GuestMemory::discard gives pages back.
enum class RegionBacking {
  // Private anonymous memory (create_anonymous): MADV_DONTNEED drops the pages and the range
  // reads as zeros afterwards.
  kAnonymous,
  // Any other MAP_PRIVATE mapping, e.g. of a snapshot's memory file (map_memory_private):
  // MADV_DONTNEED would bring the file's bytes back, so discard maps fresh anonymous memory
  // over the range instead (correct for anonymous mappings too, only costlier). A MAP_SHARED
  // mapping must not be adopted as a region: discard would detach it from its file.
  kPrivateMapping,
};

class GuestRegion {
 public:
  GuestRegion(GuestAddress start, MmapRegion mapping,
              RegionBacking backing = RegionBacking::kPrivateMapping)
      : start_(start),
        mapping_(std::move(mapping)),
        backing_(backing),
        dirty_(std::make_unique<DirtyBitmap>(mapping_.size() / 4096)) {}
  GuestAddress start() const { return start_; }
  uint64_t size() const { return mapping_.size(); }
  GuestAddress end() const { return start_ + size(); }  // one past the last byte
  std::byte* host_base() const { return mapping_.data(); }
  bool contains(GuestAddress addr) const { return addr >= start_ && addr < end(); }
  RegionBacking backing() const { return backing_; }
  // Pages of this region the VMM wrote while dirty logging was on.
  DirtyBitmap& dirty() const { return *dirty_; }

 private:
  GuestAddress start_;
  MmapRegion mapping_;
  RegionBacking backing_;
  std::unique_ptr<DirtyBitmap> dirty_;
};

class GuestMemory {
 public:
  static constexpr uint64_t kPageSize = 4096;

  // Regions must be page-aligned, non-empty, sorted-or-not but non-overlapping.
  static Result<GuestMemory> create_anonymous(std::span<const GuestRegionSpec> specs);
  // Adopts existing mappings (e.g. private mappings of a snapshot's memory file), each
  // region's start, size and backing as given; the same checks as create_anonymous.
  static Result<GuestMemory> create_from_mappings(std::vector<GuestRegion> regions);

  const std::vector<GuestRegion>& regions() const { return regions_; }
  uint64_t total_size() const;

  // The host bytes of [addr, addr+len), which must lie inside one region. For reading: a
  // writer uses slice_mut() or write(), which record the pages in the dirty log.
  Result<std::span<std::byte>> slice(GuestAddress addr, uint64_t len) const;
  // As slice(), and marks the pages dirty (when logging is on) for a write through the span.
  Result<std::span<std::byte>> slice_mut(GuestAddress addr, uint64_t len) const;

  // VMM-side dirty logging (see DirtyBitmap). Off at creation. Any thread.
  void set_dirty_logging(bool on) const { dirty_logging_->store(on); }
  bool dirty_logging() const { return dirty_logging_->load(std::memory_order_relaxed); }
  // Records [addr, addr+len) as written by the VMM, if logging is on. Addresses outside RAM
  // are ignored.
  void mark_dirty(GuestAddress addr, uint64_t len) const;

  // Gives the host memory behind [addr, addr+len) back: afterwards the range reads as zeros
  // and holds no host pages until touched again (see RegionBacking for how). `addr` and `len`
  // must be multiples of kPageSize, `len` non-zero, the range inside one region; else
  // kInvalidArgument / kOutOfRange and nothing happens. The host address range stays the
  // same, so a KVM memory slot over it stays valid (KVM's MMU notifier drops its mappings of
  // the old pages). Any thread; vCPUs and VMM threads may use other pages meanwhile (the
  // replacing mmap is atomic: no thread ever sees the range unmapped). A concurrent write to
  // the discarded range itself may be lost: callers discard only pages the guest gave up.
  // Does not mark pages dirty: the guest has given their contents up (virtio 1.2 5.5.6: the
  // device may change a page once it is in an inflate or free page report request), so a
  // migration may leave a stale copy at the destination and a snapshot may save a zero page.
  // A failed mmap (e.g. vm.max_map_count reached by many small discards of a private file
  // mapping) is an error; the range then still holds its old contents.
  Result<void> discard(GuestAddress addr, uint64_t len) const;

  Result<void> read(GuestAddress addr, std::span<std::byte> out) const;
  Result<void> write(GuestAddress addr, std::span<const std::byte> data) const;

  template <typename T>
  Result<T> read_obj(GuestAddress addr) const {
    static_assert(std::is_trivially_copyable_v<T>);
    T value;
    PETREL_TRY(read(addr, std::as_writable_bytes(std::span(&value, 1))));
    return value;
  }

  template <typename T>
  Result<void> write_obj(GuestAddress addr, const T& value) const {
    static_assert(std::is_trivially_copyable_v<T>);
    return write(addr, std::as_bytes(std::span(&value, 1)));
  }

 private:
  explicit GuestMemory(std::vector<GuestRegion> regions)
      : regions_(std::move(regions)), dirty_logging_(std::make_unique<std::atomic<bool>>(false)) {}
  const GuestRegion* find(GuestAddress addr) const;

  std::vector<GuestRegion> regions_;  // sorted by start
  std::unique_ptr<std::atomic<bool>> dirty_logging_;
};

}  // namespace petrel
