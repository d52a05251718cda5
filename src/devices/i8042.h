// I8042: a PS/2 keyboard controller, registered over ports 0x60..0x64
// (PETREL_PORT_I8042_DATA, 5 ports): offset 0 is the data port, offset 4 the status
// (read) / command (write) port. Offsets 1..3 read 0xff and ignore writes (port 0x61 is
// served by KVM's in-kernel PIT and never reaches this device).
//
// The controller drives the reset line (command 0xfe, or 0xd1 with output port bit 0 clear)
// and answers the commands Linux's i8042 driver sends at probe. The AUX interface test
// reports a stuck clock line so Linux gives up on the AUX port; bytes for the AUX port
// (command 0xd4) are dropped.
//
// Constructed with an InterruptLine, a PS/2 keyboard is attached to the keyboard port: it
// answers the commands Linux's atkbd sends (reset, get ID, scan enable/disable, LEDs,
// scancode set, typematic rate) and the host can make it type Ctrl-Alt-Del
// (inject_ctrl_alt_del). Keyboard bytes wait in the keyboard's own queue and move to the
// output buffer one at a time, while the buffer is empty and the keyboard interface is
// enabled (command byte bit 4 clear), translated to scancode set 1 when the command byte's
// XLATE bit (6) is set, as the 8042 does. The IRQ line (IRQ 1) is asserted while the output
// buffer is full and the command byte's keyboard-interrupt bit (0) is set; it is dropped
// and raised again when the guest reads a byte and another one follows, so an
// edge-triggered PIC/IOAPIC input sees one edge per byte. Without an InterruptLine (the
// one-argument constructor) no keyboard is attached: bytes sent to it are dropped.
//
// Thread affinity: read/write run on vCPU threads, inject_ctrl_alt_del on any thread; all
// are guarded by one mutex. InterruptLine::set_level is called with that mutex held (so
// the line follows the state in order): it must not call back into this device. The reset
// callback runs on the vCPU thread that requested the reset, without the mutex held. All
// command and data bytes are guest-controlled; any value is accepted.
//
// State (save_state/restore_state): the controller (command byte, output port, output
// buffer, the last byte read, which port was written last, what the next data byte means)
// and the keyboard (its byte queue, a command awaiting its parameter, scancode set, scanning
// on/off, a swallowed set-2 break prefix). The LEDs and typematic rate are acknowledged but
// never stored by this model, so there is nothing of them to carry.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <span>
#include <vector>

#include "devices/bus_device.h"
#include "devices/interrupt_line.h"
#include "vmm/base/result.h"

namespace petrel {

class I8042 : public BusDevice {
 public:
  static constexpr uint64_t kPortCount = 5;
  // Bytes the keyboard holds for the controller; a key sequence that does not fit whole
  // is dropped.
  static constexpr size_t kKeyboardQueueCapacity = 64;

  // `reset` is called each time the guest pulses the CPU reset line; may be empty.
  // No keyboard is attached and no interrupt is raised.
  explicit I8042(std::function<void()> reset);
  // With a keyboard attached whose interrupt is `irq` (IRQ 1; null: not wired). The line is
  // assumed deasserted at construction.
  I8042(std::function<void()> reset, std::shared_ptr<InterruptLine> irq);

  // Only the first byte of an access is used; the other bytes of a read are 0.
  void read(uint64_t offset, std::span<std::byte> data) override;
  void write(uint64_t offset, std::span<const std::byte> data) override;

  // Queues the make and break codes of Left Ctrl, Left Alt and Delete (Ctrl and Alt pressed,
  // Delete pressed and released, Alt and Ctrl released) in the keyboard's current scancode
  // set. Returns false, queueing nothing, when no keyboard is attached, the guest disabled
  // scanning (keyboard command 0xf5 not followed by 0xf4) or the queue has no room for the
  // whole sequence. Any thread.
  bool inject_ctrl_alt_del();

  // Snapshot / migration state (format: a StateWriter header, then the fields; see the .cc).
  // Called by the VM owner while every vCPU is parked and nothing injects keys.
  std::vector<std::byte> save_state() const;
  // Called on a controller freshly built with the same constructor (keyboard attached or
  // not), before any vCPU runs. `bytes` is untrusted: a wrong magic or version, a truncated
  // or oversized blob, or a state the guest could never have produced (more bytes queued
  // than the buffers hold, scancode set outside 1..3, an unknown pending keyboard command,
  // keyboard state on a controller without a keyboard, keyboard bytes held back from an
  // empty output buffer while the interface is enabled) is ErrorCode::kInvalidArgument
  // naming the field, and the controller is left unchanged. On success the IRQ line is
  // driven as after any access: asserted when a byte waits and the command byte enables the
  // keyboard interrupt; so restore after the in-kernel irqchip state, whose input it drives.
  Result<void> restore_state(std::span<const std::byte> bytes);

 private:
  // What the next data port write means.
  enum class DataTarget { kKeyboard, kCommandByte, kOutputPort, kAux };

  // The *_locked helpers require mutex_. The two write helpers return true when the guest
  // asked for reset.
  bool write_command_locked(uint8_t command);
  bool write_data_locked(uint8_t value);
  void keyboard_command_locked(uint8_t value);
  void keyboard_reset_locked();
  void push_keyboard_locked(std::initializer_list<uint8_t> bytes);
  void push_output_locked(uint8_t value);
  // Moves keyboard bytes into an empty output buffer, then drives the IRQ line;
  // `new_byte_edge`: the guest has just read a byte, so a still-asserted line is pulsed.
  void update_locked(bool new_byte_edge = false);
  uint8_t status_locked() const;

  const std::function<void()> reset_;
  const bool keyboard_attached_;
  const std::shared_ptr<InterruptLine> irq_;

  mutable std::mutex mutex_;
  uint8_t command_byte_;
  uint8_t output_port_;
  uint8_t last_output_ = 0;     // the byte last read from the output buffer
  std::deque<uint8_t> output_;  // the output buffer; controller replies may queue up
  bool last_write_was_command_ = false;
  DataTarget data_target_ = DataTarget::kKeyboard;
  bool irq_asserted_ = false;

  // The keyboard.
  std::deque<uint8_t> keyboard_queue_;    // in the keyboard's scancode set, untranslated
  uint8_t keyboard_pending_command_ = 0;  // 0xed/0xf0/0xf3 awaiting an argument, or 0
  uint8_t scancode_set_ = 2;              // 1, 2 or 3
  bool scanning_ = true;
  bool translate_break_ = false;  // XLATE: a set-2 0xf0 break prefix was swallowed
};

}  // namespace petrel
