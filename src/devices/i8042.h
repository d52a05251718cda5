// I8042: a minimal PS/2 keyboard controller, registered over ports 0x60..0x64
// (PETREL_PORT_I8042_DATA, 5 ports): offset 0 is the data port, offset 4 the status
// (read) / command (write) port. Offsets 1..3 read 0xff and ignore writes (port 0x61 is
// served by KVM's in-kernel PIT and never reaches this device).
//
// Its job is the reset line (command 0xfe, or 0xd1 with output port bit 0 clear) and
// answering the commands Linux's i8042 driver sends at probe. No keyboard or mouse is
// attached and no IRQ is wired: bytes the guest sends to the keyboard are dropped, and
// the AUX interface test reports a stuck clock line so Linux gives up on the AUX port.
//
// Thread affinity: read/write run on vCPU threads, guarded by a mutex. The reset callback
// runs on the vCPU thread that requested the reset, without the mutex held. All command
// and data bytes are guest-controlled; any value is accepted.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <span>

#include "devices/bus_device.h"

namespace petrel {

class I8042 : public BusDevice {
 public:
  static constexpr uint64_t kPortCount = 5;

  // `reset` is called each time the guest pulses the CPU reset line; may be empty.
  explicit I8042(std::function<void()> reset);

  // Only the first byte of an access is used; the other bytes of a read are 0.
  void read(uint64_t offset, std::span<std::byte> data) override;
  void write(uint64_t offset, std::span<const std::byte> data) override;

 private:
  // What the next data port write means.
  enum class DataTarget { kKeyboard, kCommandByte, kOutputPort };

  // The *_locked helpers require mutex_. Both return true when the guest asked for reset.
  bool write_command_locked(uint8_t command);
  bool write_data_locked(uint8_t value);
  void push_output_locked(uint8_t value);
  uint8_t status_locked() const;

  const std::function<void()> reset_;

  std::mutex mutex_;
  uint8_t command_byte_;
  uint8_t output_port_;
  uint8_t output_ = 0;  // last byte put in the output buffer
  bool output_full_ = false;
  bool last_write_was_command_ = false;
  DataTarget data_target_ = DataTarget::kKeyboard;
};

}  // namespace petrel
