// GuestMemory: the guest's RAM, as host mappings of guest-physical regions. It is the only
// way petrel code touches guest RAM. Every access is bounds-checked: one that leaves RAM or
// crosses from one region into another is an error, never undefined behaviour.
//
// Thread-safety: the region table is immutable after creation; reads and writes may happen
// from any thread (vCPUs run concurrently, so guest-visible contents can change under a
// reader: callers copy values out with read_obj before checking them).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <type_traits>
#include <vector>

#include "vmm/base/guest_address.h"
#include "vmm/base/mmap_region.h"
#include "vmm/base/result.h"

namespace petrel {

struct GuestRegionSpec {
  GuestAddress start;
  uint64_t size;  // bytes; a multiple of the 4 KiB page size
};

class GuestRegion {
 public:
  GuestRegion(GuestAddress start, MmapRegion mapping)
      : start_(start), mapping_(std::move(mapping)) {}
  GuestAddress start() const { return start_; }
  uint64_t size() const { return mapping_.size(); }
  GuestAddress end() const { return start_ + size(); }  // one past the last byte
  std::byte* host_base() const { return mapping_.data(); }
  bool contains(GuestAddress addr) const { return addr >= start_ && addr < end(); }

 private:
  GuestAddress start_;
  MmapRegion mapping_;
};

class GuestMemory {
 public:
  static constexpr uint64_t kPageSize = 4096;

  // Regions must be page-aligned, non-empty, sorted-or-not but non-overlapping.
  static Result<GuestMemory> create_anonymous(std::span<const GuestRegionSpec> specs);

  const std::vector<GuestRegion>& regions() const { return regions_; }
  uint64_t total_size() const;

  // The host bytes of [addr, addr+len), which must lie inside one region.
  Result<std::span<std::byte>> slice(GuestAddress addr, uint64_t len) const;

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
  explicit GuestMemory(std::vector<GuestRegion> regions) : regions_(std::move(regions)) {}
  const GuestRegion* find(GuestAddress addr) const;

  std::vector<GuestRegion> regions_;  // sorted by start
};

}  // namespace petrel
