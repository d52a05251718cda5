// MmapRegion: sole owner of one mmap(2)'d host mapping; unmaps on destruction.
#pragma once

#include <cstddef>
#include <span>
#include <utility>

#include "vmm/base/result.h"

namespace petrel {

class MmapRegion {
 public:
  // Private anonymous read-write memory, zero-filled, not reserved in swap (MAP_NORESERVE).
  static Result<MmapRegion> anonymous(size_t size);
  // Adopts an existing mapping (e.g. the kvm_run area of a vCPU fd).
  static Result<MmapRegion> map_fd(int fd, size_t size, int prot, int flags, off_t offset = 0);

  MmapRegion() = default;
  ~MmapRegion();
  MmapRegion(MmapRegion&& other) noexcept
      : addr_(std::exchange(other.addr_, nullptr)), size_(std::exchange(other.size_, 0)) {}
  MmapRegion& operator=(MmapRegion&& other) noexcept;
  MmapRegion(const MmapRegion&) = delete;
  MmapRegion& operator=(const MmapRegion&) = delete;

  std::byte* data() const { return static_cast<std::byte*>(addr_); }
  size_t size() const { return size_; }
  std::span<std::byte> bytes() const { return {data(), size_}; }

 private:
  MmapRegion(void* addr, size_t size) : addr_(addr), size_(size) {}
  void* addr_ = nullptr;
  size_t size_ = 0;
};

}  // namespace petrel
