// Bus: maps non-overlapping address ranges (port I/O or MMIO) to devices and dispatches
// accesses with the offset into the range. Registration happens while the VM is built;
// dispatch (read/write) is then lock-free and safe from many vCPU threads at once.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>

#include "devices/bus_device.h"
#include "vmm/base/result.h"

namespace petrel {

class Bus {
 public:
  explicit Bus(std::string name) : name_(std::move(name)) {}

  // Refuses an empty range, one that wraps, or one overlapping a registered range.
  Result<void> insert(std::shared_ptr<BusDevice> device, uint64_t base, uint64_t len);

  // false when no device covers the whole access [addr, addr + data.size()).
  bool read(uint64_t addr, std::span<std::byte> data) const;
  bool write(uint64_t addr, std::span<const std::byte> data) const;

 private:
  struct Range {
    uint64_t len;
    std::shared_ptr<BusDevice> device;
  };
  // Returns the device and offset for [addr, addr+size), or nullptr.
  BusDevice* resolve(uint64_t addr, uint64_t size, uint64_t* offset) const;

  std::string name_;
  std::map<uint64_t, Range> ranges_;  // by base
};

}  // namespace petrel
