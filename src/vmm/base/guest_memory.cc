#include "vmm/base/guest_memory.h"

#include <sys/mman.h>

#include <algorithm>
#include <cerrno>

#include <fmt/format.h>

namespace petrel {

Result<GuestMemory> GuestMemory::create_anonymous(std::span<const GuestRegionSpec> specs) {
  std::vector<GuestRegionSpec> sorted(specs.begin(), specs.end());
  std::sort(sorted.begin(), sorted.end(),
            [](const auto& a, const auto& b) { return a.start < b.start; });
  if (sorted.empty()) {
    return Error(ErrorCode::kInvalidArgument, "guest memory needs at least one region");
  }
  for (size_t i = 0; i < sorted.size(); ++i) {
    const auto& s = sorted[i];
    if (s.size == 0 || s.size % kPageSize != 0 || s.start.value() % kPageSize != 0) {
      return Error(ErrorCode::kInvalidArgument,
                   fmt::format("guest region at {:#x} size {:#x} is not page-aligned and non-empty",
                               s.start.value(), s.size));
    }
    if (!s.start.checked_add(s.size)) {
      return Error(ErrorCode::kOutOfRange,
                   fmt::format("guest region at {:#x} wraps the address space", s.start.value()));
    }
    if (i > 0 && sorted[i - 1].start + sorted[i - 1].size > s.start) {
      return Error(ErrorCode::kInvalidArgument,
                   fmt::format("guest regions at {:#x} and {:#x} overlap",
                               sorted[i - 1].start.value(), s.start.value()));
    }
  }
  std::vector<GuestRegion> regions;
  regions.reserve(sorted.size());
  for (const auto& s : sorted) {
    PETREL_TRY_ASSIGN(auto mapping, MmapRegion::anonymous(s.size));
    regions.emplace_back(s.start, std::move(mapping), RegionBacking::kAnonymous);
  }
  return GuestMemory(std::move(regions));
}

Result<GuestMemory> GuestMemory::create_from_mappings(std::vector<GuestRegion> regions) {
  std::sort(regions.begin(), regions.end(),
            [](const auto& a, const auto& b) { return a.start() < b.start(); });
  if (regions.empty()) {
    return Error(ErrorCode::kInvalidArgument, "guest memory needs at least one region");
  }
  for (size_t i = 0; i < regions.size(); ++i) {
    const auto& r = regions[i];
    if (r.size() == 0 || r.size() % kPageSize != 0 || r.start().value() % kPageSize != 0) {
      return Error(ErrorCode::kInvalidArgument,
                   fmt::format("guest region at {:#x} size {:#x} is not page-aligned and non-empty",
                               r.start().value(), r.size()));
    }
    if (!r.start().checked_add(r.size())) {
      return Error(ErrorCode::kOutOfRange,
                   fmt::format("guest region at {:#x} wraps the address space", r.start().value()));
    }
    if (i > 0 && regions[i - 1].end() > r.start()) {
      return Error(ErrorCode::kInvalidArgument,
                   fmt::format("guest regions at {:#x} and {:#x} overlap",
                               regions[i - 1].start().value(), r.start().value()));
    }
  }
  return GuestMemory(std::move(regions));
}

uint64_t GuestMemory::total_size() const {
  uint64_t total = 0;
  for (const auto& r : regions_) {
    total += r.size();
  }
  return total;
}

const GuestRegion* GuestMemory::find(GuestAddress addr) const {
  auto it = std::upper_bound(regions_.begin(), regions_.end(), addr,
                             [](GuestAddress a, const GuestRegion& r) { return a < r.start(); });
  if (it == regions_.begin()) {
    return nullptr;
  }
  --it;
  return it->contains(addr) ? &*it : nullptr;
}

Result<std::span<std::byte>> GuestMemory::slice(GuestAddress addr, uint64_t len) const {
  const GuestRegion* region = find(addr);
  if (region == nullptr) {
    return Error(ErrorCode::kOutOfRange,
                 fmt::format("guest address {:#x} is not in guest RAM", addr.value()));
  }
  uint64_t offset = addr - region->start();
  if (len > region->size() - offset) {
    return Error(ErrorCode::kOutOfRange,
                 fmt::format("guest access {:#x}+{:#x} leaves the RAM region {:#x}-{:#x}",
                             addr.value(), len, region->start().value(), region->end().value()));
  }
  return std::span<std::byte>(region->host_base() + offset, len);
}

Result<std::span<std::byte>> GuestMemory::slice_mut(GuestAddress addr, uint64_t len) const {
  PETREL_TRY_ASSIGN(auto bytes, slice(addr, len));
  mark_dirty(addr, len);
  return bytes;
}

void GuestMemory::mark_dirty(GuestAddress addr, uint64_t len) const {
  if (!dirty_logging() || len == 0) {
    return;
  }
  const GuestRegion* region = find(addr);
  if (region == nullptr) {
    return;
  }
  uint64_t offset = addr - region->start();
  uint64_t last = std::min(offset + (len - 1), region->size() - 1);
  region->dirty().mark(offset / kPageSize, last / kPageSize - offset / kPageSize + 1);
}

Result<void> GuestMemory::discard(GuestAddress addr, uint64_t len) const {
  if (len == 0 || len % kPageSize != 0 || addr.value() % kPageSize != 0) {
    return Error(
        ErrorCode::kInvalidArgument,
        fmt::format("discard {:#x}+{:#x}: not page-aligned and non-empty", addr.value(), len));
  }
  const GuestRegion* region = find(addr);
  PETREL_TRY_ASSIGN(auto bytes, slice(addr, len));
  void* host = bytes.data();
  if (region->backing() == RegionBacking::kAnonymous) {
    if (::madvise(host, len, MADV_DONTNEED) != 0) {
      return Error::from_errno(fmt::format("madvise(DONTNEED) {:#x}+{:#x}", addr.value(), len),
                               errno);
    }
    return {};
  }
  void* mapped = ::mmap(host, len, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
  if (mapped == MAP_FAILED) {
    return Error::from_errno(fmt::format("mmap over {:#x}+{:#x}", addr.value(), len), errno);
  }
  return {};
}

Result<void> GuestMemory::read(GuestAddress addr, std::span<std::byte> out) const {
  PETREL_TRY_ASSIGN(auto src, slice(addr, out.size()));
  if (!out.empty()) {
    std::memcpy(out.data(), src.data(), out.size());
  }
  return {};
}

Result<void> GuestMemory::write(GuestAddress addr, std::span<const std::byte> data) const {
  PETREL_TRY_ASSIGN(auto dst, slice_mut(addr, data.size()));
  if (!data.empty()) {
    std::memcpy(dst.data(), data.data(), data.size());
  }
  return {};
}

}  // namespace petrel
