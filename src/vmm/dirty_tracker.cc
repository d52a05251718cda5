#include "vmm/dirty_tracker.h"

#include <bit>
#include <utility>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace petrel {

uint64_t RegionDirtyPages::count() const {
  uint64_t n = 0;
  for (uint64_t word : bitmap) {
    n += static_cast<uint64_t>(std::popcount(word));
  }
  return n;
}

std::vector<uint64_t> RegionDirtyPages::page_indices() const {
  std::vector<uint64_t> out;
  out.reserve(count());
  for (size_t w = 0; w < bitmap.size(); ++w) {
    for (uint64_t word = bitmap[w]; word != 0; word &= word - 1) {
      uint64_t page = w * 64 + static_cast<uint64_t>(std::countr_zero(word));
      if (page < pages) {
        out.push_back(page);
      }
    }
  }
  return out;
}

Result<DirtyTracker> DirtyTracker::start(const KvmVm& vm, const GuestMemory& memory) {
  DirtyTracker tracker(vm, memory);
  size_t regions = memory.regions().size();
  memory.set_dirty_logging(true);
  for (const auto& region : memory.regions()) {
    (void)region.dirty().take();
  }
  if (auto r = tracker.set_logging(regions, true); !r) {
    memory.set_dirty_logging(false);
    return std::move(r).error();
  }
  tracker.running_ = true;
  return tracker;
}

DirtyTracker::DirtyTracker(DirtyTracker&& other) noexcept
    : vm_(other.vm_), memory_(other.memory_), running_(other.running_) {
  other.running_ = false;
}

DirtyTracker::~DirtyTracker() {
  if (auto r = stop(); !r) {
    spdlog::error("dirty tracking: stopping failed: {}", r.error().to_string());
  }
}

Result<void> DirtyTracker::set_logging(size_t count, bool on) const {
  const auto& regions = memory_->regions();
  uint32_t flags = on ? KVM_MEM_LOG_DIRTY_PAGES : 0;
  for (size_t i = 0; i < count; ++i) {
    const GuestRegion& region = regions[i];
    auto r = vm_->set_memory_region(static_cast<uint32_t>(i), region.start(), region.size(),
                                    region.host_base(), flags);
    if (!r) {
      // Put the slots already switched back as they were; the first error is the one to tell.
      for (size_t j = 0; j < i; ++j) {
        (void)vm_->set_memory_region(static_cast<uint32_t>(j), regions[j].start(),
                                     regions[j].size(), regions[j].host_base(),
                                     on ? 0 : KVM_MEM_LOG_DIRTY_PAGES);
      }
      return std::move(r).error().context(
          fmt::format("{} dirty logging on slot {}", on ? "starting" : "stopping", i));
    }
  }
  return {};
}

Result<std::vector<RegionDirtyPages>> DirtyTracker::collect() {
  if (!running_) {
    return Error(ErrorCode::kState, "dirty tracking is not running");
  }
  const auto& regions = memory_->regions();
  std::vector<RegionDirtyPages> out;
  out.reserve(regions.size());
  for (size_t i = 0; i < regions.size(); ++i) {
    const GuestRegion& region = regions[i];
    RegionDirtyPages dirty;
    dirty.start = region.start();
    dirty.pages = region.size() / GuestMemory::kPageSize;
    dirty.bitmap.assign((dirty.pages + 63) / 64, 0);
    PETREL_TRY(vm_->get_dirty_log(static_cast<uint32_t>(i), dirty.pages, dirty.bitmap));
    std::vector<uint64_t> vmm = region.dirty().take();
    for (size_t w = 0; w < dirty.bitmap.size() && w < vmm.size(); ++w) {
      dirty.bitmap[w] |= vmm[w];
    }
    out.push_back(std::move(dirty));
  }
  return out;
}

Result<void> DirtyTracker::stop() {
  if (!running_) {
    return {};
  }
  running_ = false;
  memory_->set_dirty_logging(false);
  return set_logging(memory_->regions().size(), false);
}

}  // namespace petrel
