#include "vmm/base/mmap_region.h"

#include <sys/mman.h>

#include <cerrno>

namespace petrel {

Result<MmapRegion> MmapRegion::anonymous(size_t size) {
  void* addr = ::mmap(nullptr, size, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (addr == MAP_FAILED) {
    return Error::from_errno("mmap anonymous guest memory", errno);
  }
  return MmapRegion(addr, size);
}

Result<MmapRegion> MmapRegion::map_fd(int fd, size_t size, int prot, int flags, off_t offset) {
  void* addr = ::mmap(nullptr, size, prot, flags, fd, offset);
  if (addr == MAP_FAILED) {
    return Error::from_errno("mmap", errno);
  }
  return MmapRegion(addr, size);
}

MmapRegion::~MmapRegion() {
  if (addr_ != nullptr) {
    ::munmap(addr_, size_);
  }
}

MmapRegion& MmapRegion::operator=(MmapRegion&& other) noexcept {
  if (this != &other) {
    if (addr_ != nullptr) {
      ::munmap(addr_, size_);
    }
    addr_ = std::exchange(other.addr_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

}  // namespace petrel
