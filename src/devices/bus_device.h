// BusDevice: a device reached through port I/O or MMIO. The bus hands it offsets from the
// start of the range it was registered at, never absolute addresses.
//
// Thread affinity: read/write are called on vCPU threads, possibly several at once;
// a device that has state guards it itself. `data` spans are 1, 2, 4 or 8 bytes
// (guest-chosen width); values are little-endian as on x86.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace petrel {

class BusDevice {
 public:
  virtual ~BusDevice() = default;
  // Fills `data` with what the guest reads at `offset`.
  virtual void read(uint64_t offset, std::span<std::byte> data) = 0;
  virtual void write(uint64_t offset, std::span<const std::byte> data) = 0;
};

}  // namespace petrel
