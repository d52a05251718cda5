// Msix: the MSI-X state of one PCI function (PCI Local Bus 3.0 section 6.8.2): the
// capability's message control (enable, function mask), the vector table and the pending
// bit array (PBA), and delivery through one MsiVector per table entry.
//
// A vector fires only while MSI-X is enabled, the function is not masked and its entry's
// mask bit is clear; otherwise its PBA bit is set, and it is delivered as soon as it is
// unmasked (section 6.8.2.9). The route of a vector (address, data) is handed to its
// MsiVector when the vector becomes unmasked or its entry changes while unmasked, so the
// guest's usual "mask, program, unmask" costs one route update.
//
// Thread affinity: table/PBA/control accesses on vCPU threads, trigger on the event-loop
// thread; one mutex guards the state, and MsiVector calls are made with it held (they must
// not call back into this object). Table contents, offsets and widths are guest-controlled.
//
// State (save_state/restore_state): enable and function mask, and per table entry its
// message, mask bit and pending bit. Which route each MsiVector last received is not state:
// restore hands the routes on as the guest's table writes would have.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <vector>

#include "devices/msi_controller.h"
#include "devices/msi_vector.h"
#include "vmm/base/result.h"

namespace petrel {

class Msix {
 public:
  static constexpr uint8_t kCapabilityId = 0x11;
  static constexpr uint16_t kMaxVectors = 2048;
  static constexpr uint16_t kControlEnable = 1 << 15;
  static constexpr uint16_t kControlFunctionMask = 1 << 14;
  static constexpr uint64_t kEntrySize = 16;

  // Allocates `vectors` (1..2048) vectors from `controller`, which must outlive this object.
  static Result<std::unique_ptr<Msix>> create(MsiController& controller, uint16_t vectors);

  uint16_t vectors() const { return static_cast<uint16_t>(vectors_.size()); }
  uint64_t table_bytes() const { return vectors_.size() * kEntrySize; }
  uint64_t pba_bytes() const { return (vectors_.size() + 63) / 64 * 8; }

  // The capability's bytes after ID and next pointer (message control, table offset/BIR,
  // PBA offset/BIR) and their guest-writable bits, for PciConfigSpace::add_capability.
  // Offsets are 8-byte aligned, BARs 0..5.
  std::vector<std::byte> capability_body(uint8_t table_bar, uint32_t table_offset, uint8_t pba_bar,
                                         uint32_t pba_offset) const;
  static std::vector<std::byte> capability_writable();
  // Offset of message control inside the capability.
  static constexpr uint16_t kMessageControlOffset = 2;

  // The message control word the guest wrote (bits 15 and 14 matter).
  void set_message_control(uint16_t control);
  bool enabled() const;

  // `offset` from the start of the table / PBA; bytes outside read 0, writes there are
  // ignored. The PBA is read-only.
  void read_table(uint64_t offset, std::span<std::byte> data) const;
  void write_table(uint64_t offset, std::span<const std::byte> data);
  void read_pba(uint64_t offset, std::span<std::byte> data) const;

  // Raises `vector`. Returns false, doing nothing, when MSI-X is disabled or `vector` is
  // out of range (the caller may fall back to another signal); true when it was delivered
  // or left pending.
  bool trigger(uint16_t vector);
  bool pending(uint16_t vector) const;

  // Snapshot / migration state (format in the .cc). Called by the VM owner while every vCPU
  // is parked and the event loop quiesced (no trigger() meanwhile).
  std::vector<std::byte> save_state() const;
  // Called on an Msix freshly created with the same vector count, before any vCPU runs.
  // `bytes` is untrusted: a wrong magic or version, a truncated or trailing blob, a table
  // size other than vectors() or a flag byte other than 0/1 is ErrorCode::kInvalidArgument
  // naming the field, and nothing changes. On success every entry is refreshed as after a
  // guest table write: each deliverable one (enabled, function and entry unmasked) gets
  // its route through MsiVector::set_route and, if its pending bit was set, is delivered;
  // masked entries keep their pending bit and get their route when unmasked. With KVM the
  // delivery lands in the LAPIC at once, so restore after the vCPUs' LAPIC state.
  Result<void> restore_state(std::span<const std::byte> bytes);

 private:
  struct PassKey {
    explicit PassKey() = default;
  };
  struct Entry {
    MsiMessage message;
    bool masked = true;  // section 6.8.2.9: set after reset
    bool pending = false;
    std::optional<MsiMessage> installed;  // the route last handed to the MsiVector
    std::unique_ptr<MsiVector> vector;
  };

 public:
  Msix(PassKey, std::vector<Entry> entries) : vectors_(std::move(entries)) {}

 private:
  uint8_t table_byte(uint64_t offset) const;
  void set_table_byte(uint64_t offset, uint8_t value);
  bool deliverable_locked(const Entry& e) const;
  // When `e` is deliverable: brings its route up to date and delivers it if pending.
  void refresh_locked(Entry& e);
  void fire_locked(Entry& e);

  mutable std::mutex mu_;
  std::vector<Entry> vectors_;
  bool enabled_ = false;
  bool function_masked_ = false;
};

}  // namespace petrel
