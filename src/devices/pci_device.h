// PciDevice: a PCI function on PciRoot's bus 0 (function 0 of its slot).
//
// Thread affinity: every method is called on vCPU threads, possibly several at once; the
// device guards its state itself. PciRoot calls config_read/config_write/bars/bar_mapped
// with its own lock held (so those never run concurrently for one root) and bar_read/
// bar_write without it; none of them may call back into the PciRoot.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "vmm/base/guest_address.h"

namespace petrel {

// A memory BAR as the guest has programmed it (PCI Local Bus 3.0 section 6.2.5.1).
struct PciBar {
  uint8_t index = 0;      // 0..5
  uint64_t size = 0;      // bytes, a power of two
  GuestAddress address;   // guest-controlled: the BAR register's address bits
  bool decoding = false;  // the command register's memory-space bit
};

class PciDevice {
 public:
  virtual ~PciDevice() = default;

  // Configuration space (PCI Local Bus 3.0 section 6.1; PCIe extended space up to 4096).
  // The root checks width 1/2/4 and offset + width <= 4096; the offset is guest-controlled.
  virtual void config_read(uint16_t offset, std::span<std::byte> data) = 0;
  virtual void config_write(uint16_t offset, std::span<const std::byte> data) = 0;

  // The implemented memory BARs; sizes never change.
  virtual std::vector<PciBar> bars() const = 0;

  // An access inside BAR `index`, `offset` bytes from its start (guest-controlled; the root
  // checks that [offset, offset + size) lies inside the BAR). `data` is 1, 2, 4 or 8 bytes.
  virtual void bar_read(uint8_t index, uint64_t offset, std::span<std::byte> data) = 0;
  virtual void bar_write(uint8_t index, uint64_t offset, std::span<const std::byte> data) = 0;

  // BAR `index` now answers at `base` (nullopt: it answers nowhere: decoding off, or the
  // guest put it outside the BAR window). Called on every change, e.g. so that a virtio-pci
  // transport moves its ioeventfds.
  virtual void bar_mapped(uint8_t index, std::optional<GuestAddress> base) = 0;
};

}  // namespace petrel
