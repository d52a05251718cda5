#include "vmm/memory_file.h"
#include "vmm/base/state_codec.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "vmm/base/unique_fd.h"
#include "vmm/snapshot_file.h"

namespace petrel {

namespace {

constexpr uint64_t kPage = GuestMemory::kPageSize;
constexpr size_t kLayoutHeaderBytes = 8;
constexpr size_t kLayoutRegionBytes = 24;

bool is_zero(const std::byte* p, size_t len) {
  static constexpr std::array<std::byte, kPage> kZeros{};
  while (len > 0) {
    size_t n = std::min<size_t>(len, kZeros.size());
    if (std::memcmp(p, kZeros.data(), n) != 0) {
      return false;
    }
    p += n;
    len -= n;
  }
  return true;
}

// Zeroes [p, p + len) a page at a time, writing only pages that are not zero already.
void zero_if_needed(std::byte* p, size_t len) {
  while (len > 0) {
    size_t n = std::min<size_t>(len, kPage);
    if (!is_zero(p, n)) {
      std::memset(p, 0, n);
    }
    p += n;
    len -= n;
  }
}

Result<void> check_layout(const MemoryLayout& layout) {
  auto bad = [](std::string why) {
    return Error(ErrorCode::kInvalidArgument, "memory layout: " + std::move(why));
  };
  if (layout.regions.empty() || layout.regions.size() > MemoryLayout::kMaxRegions) {
    return bad(fmt::format("{} regions (1 to {} allowed)", layout.regions.size(),
                           MemoryLayout::kMaxRegions));
  }
  uint64_t file_end = 0;
  for (size_t i = 0; i < layout.regions.size(); ++i) {
    const auto& r = layout.regions[i];
    if (r.size == 0 || r.size % kPage != 0 || r.guest_start % kPage != 0) {
      return bad(fmt::format("region {} at {:#x} size {:#x} is not page-aligned and non-empty", i,
                             r.guest_start, r.size));
    }
    if (r.size > UINT64_MAX - r.guest_start) {
      return bad(fmt::format("region {} at {:#x} wraps the address space", i, r.guest_start));
    }
    if (i > 0) {
      const auto& prev = layout.regions[i - 1];
      if (prev.guest_start + prev.size > r.guest_start) {
        return bad(fmt::format("region {} at {:#x} overlaps or precedes region {}", i,
                               r.guest_start, i - 1));
      }
    }
    if (r.file_offset != file_end) {
      return bad(fmt::format("region {} is at file offset {:#x}, expected {:#x}", i, r.file_offset,
                             file_end));
    }
    if (r.size > UINT64_MAX - file_end || file_end + r.size > INT64_MAX) {
      return bad("the regions exceed the largest file size");
    }
    file_end += r.size;
  }
  return {};
}

Result<void> pwrite_all(int fd, const std::byte* data, uint64_t len, uint64_t offset) {
  while (len > 0) {
    ssize_t n = ::pwrite(fd, data, len, static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      return Error::from_errno(fmt::format("pwrite at {:#x}", offset), errno);
    }
    data += n;
    len -= static_cast<uint64_t>(n);
    offset += static_cast<uint64_t>(n);
  }
  return {};
}

Result<void> pread_all(int fd, std::byte* data, uint64_t len, uint64_t offset) {
  while (len > 0) {
    ssize_t n = ::pread(fd, data, len, static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      return Error::from_errno(fmt::format("pread at {:#x}", offset), errno);
    }
    if (n == 0) {
      return Error(ErrorCode::kIo, fmt::format("the file ends early, at {:#x}", offset));
    }
    data += n;
    len -= static_cast<uint64_t>(n);
    offset += static_cast<uint64_t>(n);
  }
  return {};
}

// Opens the memory file and checks that it is a regular file of `expected` bytes.
Result<UniqueFd> open_memory_file(const std::filesystem::path& path, uint64_t expected) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    return Error::from_errno(fmt::format("memory file {}", path.string()), errno);
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) < 0) {
    return Error::from_errno(fmt::format("memory file {}", path.string()), errno);
  }
  if (!S_ISREG(st.st_mode) || static_cast<uint64_t>(st.st_size) != expected) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("memory file {}: {} bytes, the layout needs a regular file of {}",
                             path.string(), st.st_size, expected));
  }
  return fd;
}

// Copies [offset, offset + len) of the file to `dest`, reading only the data extents.
Result<void> copy_in(int fd, std::byte* dest, uint64_t offset, uint64_t len) {
  uint64_t pos = offset;
  uint64_t end = offset + len;
  while (pos < end) {
    off_t data = ::lseek(fd, static_cast<off_t>(pos), SEEK_DATA);
    uint64_t data_at = end;
    uint64_t hole_at = end;
    if (data >= 0) {
      data_at = std::min<uint64_t>(static_cast<uint64_t>(data), end);
      off_t hole = ::lseek(fd, static_cast<off_t>(data_at), SEEK_HOLE);
      hole_at = hole < 0 ? end : std::min<uint64_t>(static_cast<uint64_t>(hole), end);
    } else if (errno != ENXIO) {  // no SEEK_DATA on this file system: all of it is data
      data_at = pos;
    }
    zero_if_needed(dest + (pos - offset), data_at - pos);
    if (data_at < end) {
      PETREL_TRY(pread_all(fd, dest + (data_at - offset), hole_at - data_at, data_at));
    }
    pos = std::max(hole_at, data_at);
  }
  return {};
}

}  // namespace

uint64_t MemoryLayout::file_size() const {
  return regions.empty() ? 0 : regions.back().file_offset + regions.back().size;
}

std::vector<std::byte> MemoryLayout::encode() const {
  std::vector<std::byte> out;
  out.reserve(kLayoutHeaderBytes + kLayoutRegionBytes * regions.size());
  put_le(out, kVersion, 4);
  put_le(out, regions.size(), 4);
  for (const auto& r : regions) {
    put_le(out, r.guest_start, 8);
    put_le(out, r.size, 8);
    put_le(out, r.file_offset, 8);
  }
  return out;
}

Result<MemoryLayout> MemoryLayout::decode(std::span<const std::byte> bytes) {
  if (bytes.size() < kLayoutHeaderBytes) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("memory layout: {} bytes is too short", bytes.size()));
  }
  uint64_t version = get_le(bytes.data(), 4);
  if (version != kVersion) {
    return Error(
        ErrorCode::kUnsupported,
        fmt::format("memory layout version {}; this petrel reads version {}", version, kVersion));
  }
  uint64_t count = get_le(bytes.data() + 4, 4);
  if (count == 0 || count > kMaxRegions ||
      bytes.size() != kLayoutHeaderBytes + kLayoutRegionBytes * count) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("memory layout: {} regions in {} bytes", count, bytes.size()));
  }
  MemoryLayout layout;
  for (uint64_t i = 0; i < count; ++i) {
    const std::byte* p = bytes.data() + kLayoutHeaderBytes + kLayoutRegionBytes * i;
    layout.regions.push_back({get_le(p, 8), get_le(p + 8, 8), get_le(p + 16, 8)});
  }
  PETREL_TRY(check_layout(layout));
  return layout;
}

bool PageSkip::skipped(size_t region, uint64_t page) const {
  if (region >= regions.size() || page / 64 >= regions[region].size()) {
    return false;
  }
  return (regions[region][page / 64] >> (page % 64)) & 1;
}

Result<MemoryLayout> save_memory(const GuestMemory& memory, const std::filesystem::path& path,
                                 const PageSkip* skip) {
  if (skip != nullptr && skip->regions.size() > memory.regions().size()) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("memory file {}: the skip map has {} regions, the memory {}",
                             path.string(), skip->regions.size(), memory.regions().size()));
  }
  MemoryLayout layout;
  uint64_t offset = 0;
  for (const auto& r : memory.regions()) {
    layout.regions.push_back({r.start().value(), r.size(), offset});
    offset += r.size();
  }
  PETREL_TRY(check_layout(layout));
  auto keep = [&](size_t region, uint64_t page) {
    return !(skip != nullptr && skip->skipped(region, page)) &&
           !is_zero(memory.regions()[region].host_base() + page * kPage, kPage);
  };
  PETREL_TRY(replace_file_atomically(path, [&](int fd) -> Result<void> {
    if (::ftruncate(fd, static_cast<off_t>(layout.file_size())) < 0) {
      return Error::from_errno("ftruncate", errno);
    }
    for (size_t i = 0; i < memory.regions().size(); ++i) {
      const std::byte* base = memory.regions()[i].host_base();
      uint64_t pages = memory.regions()[i].size() / kPage;
      uint64_t page = 0;
      while (page < pages) {
        if (!keep(i, page)) {
          ++page;
          continue;
        }
        uint64_t run_end = page + 1;
        while (run_end < pages && keep(i, run_end)) {
          ++run_end;
        }
        PETREL_TRY(pwrite_all(fd, base + page * kPage, (run_end - page) * kPage,
                              layout.regions[i].file_offset + page * kPage));
        page = run_end;
      }
    }
    return {};
  }));
  return layout;
}

Result<void> load_memory(GuestMemory& memory, const std::filesystem::path& path,
                         const MemoryLayout& layout) {
  PETREL_TRY(check_layout(layout));
  const auto& regions = memory.regions();
  bool same = regions.size() == layout.regions.size();
  for (size_t i = 0; same && i < regions.size(); ++i) {
    same = regions[i].start().value() == layout.regions[i].guest_start &&
           regions[i].size() == layout.regions[i].size;
  }
  if (!same) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("memory file {}: the layout's regions differ from guest memory's",
                             path.string()));
  }
  PETREL_TRY_ASSIGN(UniqueFd fd, open_memory_file(path, layout.file_size()));
  for (size_t i = 0; i < regions.size(); ++i) {
    auto copied = copy_in(fd.get(), regions[i].host_base(), layout.regions[i].file_offset,
                          layout.regions[i].size);
    if (!copied.ok()) {
      return std::move(copied).error().context(fmt::format("memory file {}", path.string()));
    }
  }
  return {};
}

Result<MmapRegion> map_memory_private(const std::filesystem::path& path, uint64_t offset,
                                      uint64_t size) {
  if (size == 0 || size % kPage != 0 || offset % kPage != 0) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("memory file {}: mapping {:#x}+{:#x} is not page-aligned and "
                             "non-empty",
                             path.string(), offset, size));
  }
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  struct stat st {};
  if (!fd.valid() || ::fstat(fd.get(), &st) < 0) {
    return Error::from_errno(fmt::format("memory file {}", path.string()), errno);
  }
  uint64_t file_size = static_cast<uint64_t>(st.st_size);
  if (!S_ISREG(st.st_mode) || offset > file_size || size > file_size - offset) {
    return Error(ErrorCode::kOutOfRange,
                 fmt::format("memory file {}: mapping {:#x}+{:#x} is not inside its {} bytes",
                             path.string(), offset, size, file_size));
  }
  // The mapping keeps its own reference to the file; the fd closes on return.
  auto mapping = MmapRegion::map_fd(fd.get(), size, PROT_READ | PROT_WRITE,
                                    MAP_PRIVATE | MAP_NORESERVE, static_cast<off_t>(offset));
  if (!mapping.ok()) {
    return std::move(mapping).error().context(fmt::format("memory file {}", path.string()));
  }
  return std::move(mapping).value();
}

Result<GuestMemory> map_guest_memory_private(const std::filesystem::path& path,
                                             const MemoryLayout& layout) {
  PETREL_TRY(check_layout(layout));
  // Only for the size check: a file shorter than the layout would SIGBUS the guest later.
  PETREL_TRY_ASSIGN(UniqueFd fd, open_memory_file(path, layout.file_size()));
  std::vector<GuestRegion> regions;
  regions.reserve(layout.regions.size());
  for (const auto& r : layout.regions) {
    PETREL_TRY_ASSIGN(auto mapping, map_memory_private(path, r.file_offset, r.size));
    regions.emplace_back(GuestAddress(r.guest_start), std::move(mapping));
  }
  return GuestMemory::create_from_mappings(std::move(regions));
}

}  // namespace petrel
