// PvPanic: QEMU's pvpanic ISA device (QEMU docs/specs/pvpanic.rst), one byte of port I/O
// (petrel puts it at port 0x505, QEMU's default, described to the guest as ACPI device
// QEMU0001 so Linux's pvpanic-mmio driver binds to it).
//
// A read returns the events the device supports (bit 0 PANICKED: the guest panicked;
// bit 1 CRASH_LOADED: the guest panicked and is loading a crash kernel). A write of a
// value with any supported bit set reports those events; unsupported bits are ignored and
// a write with none of the supported bits reports nothing.
//
// Thread affinity: read/write run on vCPU threads and keep no state; the callback runs on
// the vCPU thread that wrote, with no lock held (it may block that vCPU, nothing else).
// The written value is guest-controlled.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>

#include "devices/bus_device.h"

namespace petrel {

class PvPanic : public BusDevice {
 public:
  static constexpr uint64_t kPortCount = 1;
  static constexpr uint8_t kPanicked = 0x01;
  static constexpr uint8_t kCrashLoaded = 0x02;
  static constexpr uint8_t kSupportedEvents = kPanicked | kCrashLoaded;

  // `on_event` receives the written value masked to kSupportedEvents (never 0); may be
  // empty (events are dropped).
  explicit PvPanic(std::function<void(uint8_t events)> on_event);

  // Only the first byte of an access at offset 0 is used; the other bytes of a read, and
  // any other offset, read 0.
  void read(uint64_t offset, std::span<std::byte> data) override;
  void write(uint64_t offset, std::span<const std::byte> data) override;

 private:
  const std::function<void(uint8_t events)> on_event_;
};

}  // namespace petrel
