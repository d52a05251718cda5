// MsiVector: one message-signalled interrupt a device can raise (PCI Local Bus 3.0 section
// 6.8: a DWORD write of `data` to `address`), allocated from an MsiController.
//
// Thread affinity: set_route on vCPU threads (the guest programs the message), trigger on
// the VMM event-loop thread (device completions); implementations must allow both at once.
// The message is guest-controlled: any value is accepted and handed on unchanged (on x86 the
// in-kernel LAPIC decides what an address outside 0xfeexxxxx means).
#pragma once

#include <cstdint>

#include "vmm/base/result.h"

namespace petrel {

struct MsiMessage {
  uint64_t address = 0;
  uint32_t data = 0;

  bool operator==(const MsiMessage&) const = default;
};

class MsiVector {
 public:
  virtual ~MsiVector() = default;
  // Makes later trigger() calls deliver `message`.
  virtual Result<void> set_route(const MsiMessage& message) = 0;
  // Delivers the message last given to set_route (nothing if none was given).
  virtual Result<void> trigger() = 0;
};

}  // namespace petrel
