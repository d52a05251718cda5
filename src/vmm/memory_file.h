// The snapshot memory file: guest RAM, one region after the other, each at the file offset
// the MemoryLayout gives (region i starts where region i-1 ends; the first at 0; every
// offset is a multiple of 4 KiB, so a region can be mmap'd straight from the file). Pages
// that are all zeros, or that the caller says to skip, are not written: they are holes of a
// sparse file and read back as zeros. The layout is stored by the caller as a state-file
// section (MemoryLayout::encode); see docs/snapshot.md.
//
// Thread-safety: no shared state. The caller keeps guest RAM still while saving (vCPUs
// parked, devices quiesced); a page that changes during save_memory may be saved torn.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <vector>

#include "vmm/base/guest_memory.h"
#include "vmm/base/mmap_region.h"
#include "vmm/base/result.h"

namespace petrel {

struct MemoryRegionLayout {
  uint64_t guest_start;  // guest-physical address of the region's first byte
  uint64_t size;         // bytes, a non-zero multiple of 4 KiB
  uint64_t file_offset;  // bytes from the start of the memory file

  bool operator==(const MemoryRegionLayout&) const = default;
};

struct MemoryLayout {
  static constexpr uint32_t kVersion = 1;
  static constexpr uint32_t kMaxRegions = 64;

  std::vector<MemoryRegionLayout> regions;  // sorted by guest_start, back to back in the file

  bool operator==(const MemoryLayout&) const = default;

  // The size of the memory file: the end of the last region.
  uint64_t file_size() const;
  // Little-endian: u32 kVersion, u32 region count, then per region u64 guest_start, u64
  // size, u64 file_offset.
  std::vector<std::byte> encode() const;
  // Untrusted bytes (from a state file or a migration stream): refuses another version, a
  // length that does not match the count, no regions or more than kMaxRegions, unaligned or
  // empty regions, overlaps or unsorted starts, wrapping addresses, and file offsets that are
  // not back to back.
  static Result<MemoryLayout> decode(std::span<const std::byte> bytes);
};

// Pages save_memory leaves out (they read back as zeros; e.g. pages the balloon gave back):
// one bitmap per region of the GuestMemory, in region order, in DirtyBitmap::take()'s word
// layout (bit i of word w = page 64*w + i of the region). Missing words mean "keep".
struct PageSkip {
  std::vector<std::vector<uint64_t>> regions;

  bool skipped(size_t region, uint64_t page) const;
};

// Writes `memory` to `path` (atomically: a temporary file renamed over it, so a restored
// guest that privately maps the old file is not disturbed) and returns the layout. The file
// is sized to the full layout; only pages that are not all zeros and not in `skip` occupy
// disk blocks. Reads guest RAM through the host mappings and does not mark pages dirty.
// Refuses a `skip` with more regions than `memory`.
Result<MemoryLayout> save_memory(const GuestMemory& memory, const std::filesystem::path& path,
                                 const PageSkip* skip = nullptr);

// Copies the memory file at `path` into `memory`, whose regions must match `layout`
// exactly. The file (untrusted) must be a regular file of exactly layout.file_size() bytes.
// Holes are skipped with SEEK_DATA/SEEK_HOLE; their pages in `memory` are zeroed only when
// they are not zero already, so fresh anonymous RAM stays unpopulated. Does not mark pages
// dirty.
Result<void> load_memory(GuestMemory& memory, const std::filesystem::path& path,
                         const MemoryLayout& layout);

// Maps [offset, offset + size) of the file at `path` read-write and MAP_PRIVATE: reads fault
// in the file's pages (holes read as zeros), and writes go to private copy-on-write pages,
// never to the file. `offset` and `size` must be multiples of 4 KiB, `size` non-zero, and
// the range must lie inside the file (a mapping past the end would raise SIGBUS on access).
// The file must not be truncated while mapped; replace it with save_memory's rename instead.
Result<MmapRegion> map_memory_private(const std::filesystem::path& path, uint64_t offset,
                                      uint64_t size);

// GuestMemory over map_memory_private mappings of every region of `layout`: a restored
// guest starts before its memory is read, pages come in from the file as they are touched.
Result<GuestMemory> map_guest_memory_private(const std::filesystem::path& path,
                                             const MemoryLayout& layout);

}  // namespace petrel
