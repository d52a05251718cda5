#include "devices/bus.h"

#include <fmt/format.h>

namespace petrel {

Result<void> Bus::insert(std::shared_ptr<BusDevice> device, uint64_t base, uint64_t len) {
  if (len == 0 || base + len < base) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("{} bus: invalid range {:#x}+{:#x}", name_, base, len));
  }
  uint64_t last = base + len - 1;
  auto next = ranges_.lower_bound(base);
  if (next != ranges_.end() && next->first <= last) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("{} bus: range {:#x}-{:#x} overlaps the device at {:#x}", name_, base,
                             last, next->first));
  }
  if (next != ranges_.begin()) {
    auto prev = std::prev(next);
    if (prev->first + prev->second.len - 1 >= base) {
      return Error(ErrorCode::kInvalidArgument,
                   fmt::format("{} bus: range {:#x}-{:#x} overlaps the device at {:#x}", name_,
                               base, last, prev->first));
    }
  }
  ranges_.emplace(base, Range{len, std::move(device)});
  return {};
}

BusDevice* Bus::resolve(uint64_t addr, uint64_t size, uint64_t* offset) const {
  auto it = ranges_.upper_bound(addr);
  if (it == ranges_.begin()) {
    return nullptr;
  }
  --it;
  uint64_t off = addr - it->first;
  if (off >= it->second.len || size > it->second.len - off) {
    return nullptr;
  }
  *offset = off;
  return it->second.device.get();
}

bool Bus::read(uint64_t addr, std::span<std::byte> data) const {
  uint64_t offset = 0;
  BusDevice* dev = resolve(addr, data.size(), &offset);
  if (dev == nullptr) {
    return false;
  }
  dev->read(offset, data);
  return true;
}

bool Bus::write(uint64_t addr, std::span<const std::byte> data) const {
  uint64_t offset = 0;
  BusDevice* dev = resolve(addr, data.size(), &offset);
  if (dev == nullptr) {
    return false;
  }
  dev->write(offset, data);
  return true;
}

}  // namespace petrel
