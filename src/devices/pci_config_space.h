// PciConfigSpace: the configuration space of one PCI function with a type-0 header (PCI
// Local Bus 3.0 section 6.1 / PCIe 4.0 section 7.5.1), 32-bit memory BARs and a
// capability list (section 6.7).
//
// Guest writes go through a per-byte mask of writable bits: read-only fields (IDs, class,
// header type, status, capability contents the spec defines read-only) keep their value. BAR
// sizing (section 6.2.5.1) falls out of the mask: writing all-ones reads back the size mask
// with the type bits. The legacy 256 bytes are stored; offsets 256..4095 (PCIe extended space,
// no extended capabilities) read 0 and ignore writes, and so does anything past 4096.
//
// Thread affinity: none; the owner (a PciDevice) serializes access. Offsets and widths are
// guest-controlled: any value is accepted.
//
// State (save_state/restore_state): the 256 stored bytes (header, command, BAR addresses,
// capability contents). The write masks, BAR sizes and capability layout come from
// construction (add_memory_bar/add_capability) and are not state: restore requires a space
// built the same way and refuses bytes whose fixed parts differ from this space's: every
// read-only bit of the 64-byte header (IDs, class, header type, status, reserved command
// bits, a BAR's bits outside its write mask, capabilities pointer, interrupt pin, ...) and
// each capability's ID and next pointer. Capability bodies are taken as saved (a device may
// update their read-only fields with store()).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "devices/pci_device.h"
#include "vmm/base/result.h"

namespace petrel {

struct PciIds {
  uint16_t vendor_id = 0;
  uint16_t device_id = 0;
  uint8_t revision = 0;
  uint32_t class_code = 0;  // 24 bits: base class << 16 | subclass << 8 | programming interface
  uint16_t subsystem_vendor_id = 0;
  uint16_t subsystem_id = 0;
};

class PciConfigSpace {
 public:
  static constexpr size_t kLegacySize = 256;
  static constexpr uint16_t kVendorId = 0x00;
  static constexpr uint16_t kCommand = 0x04;
  static constexpr uint16_t kStatus = 0x06;
  static constexpr uint16_t kBar0 = 0x10;
  static constexpr uint16_t kCapabilitiesPointer = 0x34;
  static constexpr uint16_t kInterruptLine = 0x3c;
  static constexpr uint16_t kInterruptPin = 0x3d;
  static constexpr uint16_t kCommandMemory = 1 << 1;
  static constexpr uint16_t kStatusCapabilities = 1 << 4;
  static constexpr uint8_t kCapabilitiesStart = 0x40;

  // Interrupt pin 0: no INTx (the devices petrel builds signal with MSI-X only).
  explicit PciConfigSpace(const PciIds& ids);

  // Declares BAR `index` (< 6) as a 32-bit non-prefetchable memory BAR of `size` bytes (a
  // power of two, at least 16). Its address starts at 0 (unassigned).
  Result<void> add_memory_bar(uint8_t index, uint32_t size);
  // Appends a capability (section 6.7) whose bytes after the ID and next pointer are `body`;
  // `writable` is empty (all read-only) or holds the guest-writable bits of each body byte.
  // Returns the capability's offset (dword-aligned) in config space.
  Result<uint8_t> add_capability(uint8_t id, std::span<const std::byte> body,
                                 std::span<const std::byte> writable = {});

  void read(uint64_t offset, std::span<std::byte> data) const;
  // A guest write: only writable bits change.
  void write(uint64_t offset, std::span<const std::byte> data);

  // Device-side access, ignoring the mask (e.g. a capability field the device updates).
  uint32_t load(uint16_t offset, size_t width) const;
  void store(uint16_t offset, size_t width, uint32_t value);

  bool memory_enabled() const { return (load(kCommand, 2) & kCommandMemory) != 0; }
  // The implemented BARs with their current addresses and whether memory decoding is on.
  std::vector<PciBar> bars() const;

  // Snapshot / migration state (a StateWriter header and the 256 bytes). Called by the
  // owner, serialized with its other accesses, while every vCPU is parked.
  std::vector<std::byte> save_state() const;
  // On a space freshly built with the same BARs and capabilities, before any vCPU runs.
  // `bytes` is untrusted: a wrong magic or version, a truncated or trailing blob, a space
  // other than 256 bytes or a fixed part that differs (see above) is ErrorCode::
  // kInvalidArgument naming the field, and the space is left unchanged. This class has no
  // BAR-move callback and calls none: whoever reacts to BAR addresses asks bars() afterwards
  // (PciRoot::restore_state re-derives every slot's mappings and calls PciDevice::bar_mapped
  // for each change).
  Result<void> restore_state(std::span<const std::byte> bytes);

 private:
  // The fields a restore must leave as they are, with a name for error messages ("" for a
  // byte the guest or the device may change).
  std::array<std::string, kLegacySize> fixed_fields() const;

  std::array<std::byte, kLegacySize> bytes_{};
  std::array<std::byte, kLegacySize> writable_{};
  std::array<uint32_t, 6> bar_sizes_{};  // 0: not implemented
  uint8_t last_capability_ = 0;          // offset of the last capability, 0: none
  uint8_t next_capability_ = kCapabilitiesStart;
};

}  // namespace petrel
