// PciRoot: a PCI host bridge with one bus (bus 0): configuration access through the
// configuration mechanism #1 ports 0xCF8/0xCFC (PCI Local Bus 3.0 section 3.2.2.3.2) and
// through ECAM (PCIe 4.0 section 7.2.2; offset = device << 15 | function << 12 | register),
// and the memory window that holds the devices' 32-bit BARs.
//
// Device 0 is the host bridge itself (Intel 0x8086:0x0d57, class 0x060000, no BARs);
// devices are added at slots 1..31, function 0. Any other bus, slot or function reads
// all-ones (no device) and ignores writes.
//
// BARs: add_device pre-assigns every BAR inside the window, naturally aligned, with memory
// decoding left off (the guest's driver turns it on). The guest may move a BAR (sizing with
// all-ones, then a new address) or turn decoding off; after each configuration write the
// root recomputes where that device's BARs answer and calls PciDevice::bar_mapped on every
// change. A BAR answers only while decoding is on and the BAR lies wholly inside the window;
// overlapping BARs are the guest's mistake: the lowest slot wins.
//
// Thread affinity: add_device while the VM is built, before the bus devices are used; the
// bus devices on vCPU threads, concurrently. One mutex guards configuration accesses and
// the BAR table; BAR accesses are dispatched without holding it.
//
// State (save_state/restore_state): the CONFIG_ADDRESS latch, the host bridge's
// configuration space and which slots hold a device (a check that the root was built the
// same way). Each device's own state (its configuration space included) is saved by its
// owner; the BAR mappings are derived from those spaces.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <vector>

#include "devices/bus_device.h"
#include "devices/pci_config_space.h"
#include "devices/pci_device.h"
#include "vmm/base/guest_address.h"
#include "vmm/base/result.h"

namespace petrel {

class PciRoot : public std::enable_shared_from_this<PciRoot> {
 public:
  static constexpr uint64_t kConfigIoBase = 0xcf8;
  static constexpr uint64_t kConfigIoSize = 8;
  static constexpr uint64_t kEcamSize = 32 * 8 * 4096;  // bus 0
  static constexpr uint8_t kSlots = 32;

  // `window_base`/`window_size`: the guest-physical range for BARs, below 4 GiB.
  static std::shared_ptr<PciRoot> create(GuestAddress window_base, uint64_t window_size);

  // Puts `device` at the next free slot and assigns its BARs. Returns the slot number.
  Result<uint8_t> add_device(std::shared_ptr<PciDevice> device);

  // Bus devices to register: ports [kConfigIoBase, +kConfigIoSize) on the port-I/O bus,
  // the ECAM region (kEcamSize bytes) and the BAR window (window_size bytes at window_base)
  // on the MMIO bus. Each keeps the root alive.
  std::shared_ptr<BusDevice> config_io_device();
  std::shared_ptr<BusDevice> ecam_device();
  std::shared_ptr<BusDevice> bar_window_device();

  // Snapshot / migration state (format in the .cc). Called by the VM owner while every vCPU
  // is parked.
  std::vector<std::byte> save_state() const;
  // Called on a root built with the same window and the same devices in the same slots,
  // before any vCPU runs, AFTER every device's configuration space has been restored: on
  // success it re-derives every slot's BAR mappings from the devices' bars() and calls
  // PciDevice::bar_mapped for each BAR whose mapping changed (e.g. so a virtio-pci transport
  // re-registers its ioeventfds), under the root's lock as on a guest write. `bytes` is
  // untrusted: a wrong magic or version, a truncated or trailing blob, a CONFIG_ADDRESS with
  // bits 1:0 set, another slot occupancy or a refused host bridge space is ErrorCode::
  // kInvalidArgument naming the field, and the root is left unchanged (no bar_mapped call).
  Result<void> restore_state(std::span<const std::byte> bytes);

  PciRoot(GuestAddress window_base, uint64_t window_size);  // use create()

 private:
  class ConfigIo;
  class Ecam;
  class BarWindow;
  struct Mapping {
    uint64_t base = 0;
    uint64_t size = 0;
    uint8_t slot = 0;
    uint8_t bar = 0;
  };
  struct Slot {
    std::shared_ptr<PciDevice> device;
    std::array<std::optional<GuestAddress>, 6> mapped;
  };

  // `reg` + data.size() <= 4096 checked by the callers.
  void config_read(uint8_t bus, uint8_t slot, uint8_t function, uint16_t reg,
                   std::span<std::byte> data);
  void config_write(uint8_t bus, uint8_t slot, uint8_t function, uint16_t reg,
                    std::span<const std::byte> data);
  void window_read(uint64_t offset, std::span<std::byte> data);
  void window_write(uint64_t offset, std::span<const std::byte> data);
  // Under mu_: recomputes where the BARs of `slot` answer, notifies the device of changes.
  void update_mappings_locked(uint8_t slot);
  // Finds the device BAR covering [window offset, +size): the device, BAR and BAR offset.
  std::shared_ptr<PciDevice> resolve(uint64_t offset, uint64_t size, uint8_t* bar,
                                     uint64_t* bar_offset);

  const uint64_t window_base_;
  const uint64_t window_size_;
  mutable std::mutex mu_;
  uint32_t config_address_ = 0;  // guarded by mu_
  PciConfigSpace host_bridge_;   // guarded by mu_
  std::array<Slot, kSlots> slots_;
  std::vector<Mapping> mappings_;  // guarded by mu_, ordered by slot
  uint64_t next_bar_address_;      // build time only
};

}  // namespace petrel
