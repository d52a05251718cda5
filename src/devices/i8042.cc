#include "devices/i8042.h"

#include <algorithm>
#include <array>
#include <initializer_list>
#include <span>
#include <utility>

#include <fmt/format.h>

#include "vmm/base/state_codec.h"

namespace petrel {

namespace {

constexpr uint64_t kDataPort = 0;
constexpr uint64_t kCommandPort = 4;

// Status register (Linux drivers/input/serio/i8042.h I8042_STR_*).
constexpr uint8_t kStatusOutputFull = 0x01;
constexpr uint8_t kStatusSystemFlag = 0x04;
constexpr uint8_t kStatusLastWasCommand = 0x08;
constexpr uint8_t kStatusKeyboardUnlocked = 0x10;

// Controller command byte (I8042_CTR_*).
constexpr uint8_t kCtrKbdInt = 0x01;
constexpr uint8_t kCtrSystemFlag = 0x04;
constexpr uint8_t kCtrKbdDisable = 0x10;
constexpr uint8_t kCtrAuxDisable = 0x20;
constexpr uint8_t kCtrTranslate = 0x40;
constexpr uint8_t kCtrInitial = kCtrKbdInt | kCtrSystemFlag | kCtrTranslate;

// Output port: bit 0 drives the CPU reset line (active low), bit 1 the A20 gate.
constexpr uint8_t kOutputPortNotReset = 0x01;
constexpr uint8_t kOutputPortA20 = 0x02;

constexpr uint8_t kCmdReadCommandByte = 0x20;
constexpr uint8_t kCmdWriteCommandByte = 0x60;
constexpr uint8_t kCmdAuxDisable = 0xa7;
constexpr uint8_t kCmdAuxEnable = 0xa8;
constexpr uint8_t kCmdAuxTest = 0xa9;
constexpr uint8_t kCmdSelfTest = 0xaa;
constexpr uint8_t kCmdKbdTest = 0xab;
constexpr uint8_t kCmdKbdDisable = 0xad;
constexpr uint8_t kCmdKbdEnable = 0xae;
constexpr uint8_t kCmdReadOutputPort = 0xd0;
constexpr uint8_t kCmdWriteOutputPort = 0xd1;
// 0xf0..0xff pulse the output port lines whose bits (0-3) are clear in the command;
// 0xfe pulses bit 0 alone, the CPU reset.
constexpr uint8_t kCmdPulseBase = 0xf0;

constexpr uint8_t kCmdWriteAux = 0xd4;
constexpr uint8_t kSelfTestPassed = 0x55;
constexpr size_t kOutputCapacity = 8;  // controller replies waiting in the output buffer
constexpr uint8_t kInterfaceTestPassed = 0x00;
constexpr uint8_t kInterfaceClockStuckHigh = 0x02;

// Keyboard commands (Linux drivers/input/keyboard/atkbd.c ATKBD_CMD_*) and replies.
constexpr uint8_t kKbdSetLeds = 0xed;
constexpr uint8_t kKbdEcho = 0xee;
constexpr uint8_t kKbdScancodeSet = 0xf0;
constexpr uint8_t kKbdGetId = 0xf2;
constexpr uint8_t kKbdSetRate = 0xf3;
constexpr uint8_t kKbdEnable = 0xf4;
constexpr uint8_t kKbdDefaultDisable = 0xf5;
constexpr uint8_t kKbdSetDefault = 0xf6;
constexpr uint8_t kKbdReset = 0xff;
constexpr uint8_t kKbdAck = 0xfa;
constexpr uint8_t kKbdSelfTestPassed = 0xaa;
constexpr uint8_t kKbdIdFirst = 0xab;  // MF2 keyboard: ab 83
constexpr uint8_t kKbdIdSecond = 0x83;

// Set 2 and set 3 break codes are the make code after this prefix.
constexpr uint8_t kBreakPrefix = 0xf0;
constexpr uint8_t kSet1Break = 0x80;  // set 1: break = make | 0x80

// Ctrl-Alt-Del (Left Ctrl, Left Alt, Delete; Delete is an E0-prefixed key in sets 1 and 2):
// make Ctrl, make Alt, make Delete, break Delete, break Alt, break Ctrl.
constexpr std::array<uint8_t, 8> kCtrlAltDelSet1 = {
    0x1d, 0x38, 0xe0, 0x53, 0xe0, 0x53 | kSet1Break, 0x38 | kSet1Break, 0x1d | kSet1Break};
constexpr std::array<uint8_t, 11> kCtrlAltDelSet2 = {
    0x14, 0x11, 0xe0, 0x71, 0xe0, kBreakPrefix, 0x71, kBreakPrefix, 0x11, kBreakPrefix, 0x14};
constexpr std::array<uint8_t, 9> kCtrlAltDelSet3 = {
    0x11, 0x19, 0x64, kBreakPrefix, 0x64, kBreakPrefix, 0x19, kBreakPrefix, 0x11};

// The 8042's set 2 -> set 1 translation (XLATE) of bytes below 0x80: the inverse of Linux's
// atkbd_unxlate_table. 0x83 becomes 0x41 and every other byte from 0x80 up is unchanged.
constexpr std::array<uint8_t, 128> kTranslate = {
    0xff, 0x43, 0x41, 0x3f, 0x3d, 0x3b, 0x3c, 0x58, 0x64, 0x44, 0x42, 0x40, 0x3e, 0x0f, 0x29, 0x59,
    0x65, 0x38, 0x2a, 0x70, 0x1d, 0x10, 0x02, 0x5a, 0x66, 0x71, 0x2c, 0x1f, 0x1e, 0x11, 0x03, 0x5b,
    0x67, 0x2e, 0x2d, 0x20, 0x12, 0x05, 0x04, 0x5c, 0x68, 0x39, 0x2f, 0x21, 0x14, 0x13, 0x06, 0x5d,
    0x69, 0x31, 0x30, 0x23, 0x22, 0x15, 0x07, 0x5e, 0x6a, 0x72, 0x32, 0x24, 0x16, 0x08, 0x09, 0x5f,
    0x6b, 0x33, 0x25, 0x17, 0x18, 0x0b, 0x0a, 0x60, 0x6c, 0x34, 0x35, 0x26, 0x27, 0x19, 0x0c, 0x61,
    0x6d, 0x73, 0x28, 0x74, 0x1a, 0x0d, 0x62, 0x6e, 0x3a, 0x36, 0x1c, 0x1b, 0x75, 0x2b, 0x63, 0x76,
    0x55, 0x56, 0x77, 0x78, 0x79, 0x7a, 0x0e, 0x7b, 0x7c, 0x4f, 0x7d, 0x4b, 0x47, 0x7e, 0x7f, 0x6f,
    0x52, 0x53, 0x50, 0x4c, 0x4d, 0x48, 0x01, 0x45, 0x57, 0x4e, 0x51, 0x4a, 0x37, 0x49, 0x46, 0x54,
};

// State format 1: header; u8 keyboard attached (0/1), command byte, output port, last byte
// read, last write was a command (0/1), data target (DataTarget, 0..3); the output buffer and
// the keyboard queue as byte strings, oldest first; u8 pending keyboard command, scancode
// set, scanning (0/1), swallowed break prefix (0/1).
constexpr uint32_t kStateMagic = 0x32343038;  // "8042"
constexpr uint32_t kStateVersion = 1;

Result<bool> read_bool(StateReader& r, std::string_view field) {
  PETREL_TRY_ASSIGN(uint8_t v, r.u8());
  if (v > 1) {
    return r.fail(fmt::format("i8042 {} is {}, expected 0 or 1", field, v));
  }
  return v == 1;
}

Result<std::deque<uint8_t>> read_queue(StateReader& r, std::string_view field, size_t capacity) {
  PETREL_TRY_ASSIGN(auto bytes, r.bytes(capacity).context(
                                    fmt::format("i8042 {} (capacity {} bytes)", field, capacity)));
  std::deque<uint8_t> out;
  for (std::byte b : bytes) {
    out.push_back(std::to_integer<uint8_t>(b));
  }
  return out;
}

uint8_t translate(uint8_t code) {
  if (code < kTranslate.size()) {
    return kTranslate[code];
  }
  return code == kKbdIdSecond ? 0x41 : code;
}

}  // namespace

I8042::I8042(std::function<void()> reset)
    : reset_(std::move(reset)),
      keyboard_attached_(false),
      command_byte_(kCtrInitial),
      output_port_(kOutputPortNotReset | kOutputPortA20) {}

I8042::I8042(std::function<void()> reset, std::shared_ptr<InterruptLine> irq)
    : reset_(std::move(reset)),
      keyboard_attached_(true),
      irq_(std::move(irq)),
      command_byte_(kCtrInitial),
      output_port_(kOutputPortNotReset | kOutputPortA20) {}

void I8042::read(uint64_t offset, std::span<std::byte> data) {
  if (data.empty()) {
    return;
  }
  std::fill(data.begin(), data.end(), std::byte{0});
  std::lock_guard lock(mutex_);
  switch (offset) {
    case kDataPort:
      // An empty output buffer reads back the last byte, as on the real part.
      if (!output_.empty()) {
        last_output_ = output_.front();
        output_.pop_front();
        update_locked(/*new_byte_edge=*/true);
      }
      data[0] = std::byte{last_output_};
      break;
    case kCommandPort:
      data[0] = std::byte{status_locked()};
      break;
    default:
      std::fill(data.begin(), data.end(), std::byte{0xff});
      break;
  }
}

void I8042::write(uint64_t offset, std::span<const std::byte> data) {
  if (data.empty()) {
    return;
  }
  auto value = std::to_integer<uint8_t>(data[0]);
  bool reset = false;
  {
    std::lock_guard lock(mutex_);
    if (offset == kDataPort) {
      reset = write_data_locked(value);
    } else if (offset == kCommandPort) {
      reset = write_command_locked(value);
    }
    update_locked();
  }
  if (reset && reset_) {
    reset_();
  }
}

bool I8042::write_command_locked(uint8_t command) {
  last_write_was_command_ = true;
  data_target_ = DataTarget::kKeyboard;
  switch (command) {
    case kCmdReadCommandByte:
      push_output_locked(command_byte_);
      return false;
    case kCmdWriteCommandByte:
      data_target_ = DataTarget::kCommandByte;
      return false;
    case kCmdAuxDisable:
      command_byte_ |= kCtrAuxDisable;
      return false;
    case kCmdAuxEnable:
      command_byte_ &= static_cast<uint8_t>(~kCtrAuxDisable);
      return false;
    case kCmdAuxTest:
      // Nothing is attached to the AUX port and it has no IRQ.
      push_output_locked(kInterfaceClockStuckHigh);
      return false;
    case kCmdSelfTest:
      command_byte_ |= kCtrSystemFlag;
      push_output_locked(kSelfTestPassed);
      return false;
    case kCmdKbdTest:
      push_output_locked(kInterfaceTestPassed);
      return false;
    case kCmdKbdDisable:
      command_byte_ |= kCtrKbdDisable;
      return false;
    case kCmdKbdEnable:
      command_byte_ &= static_cast<uint8_t>(~kCtrKbdDisable);
      return false;
    case kCmdReadOutputPort:
      push_output_locked(output_port_);
      return false;
    case kCmdWriteOutputPort:
      data_target_ = DataTarget::kOutputPort;
      return false;
    case kCmdWriteAux:
      data_target_ = DataTarget::kAux;
      return false;
    default:
      return (command & kCmdPulseBase) == kCmdPulseBase && (command & kOutputPortNotReset) == 0;
  }
}

bool I8042::write_data_locked(uint8_t value) {
  last_write_was_command_ = false;
  DataTarget target = std::exchange(data_target_, DataTarget::kKeyboard);
  switch (target) {
    case DataTarget::kCommandByte:
      command_byte_ = value;
      return false;
    case DataTarget::kOutputPort:
      output_port_ = value;
      return (value & kOutputPortNotReset) == 0;
    case DataTarget::kKeyboard:
      keyboard_command_locked(value);
      return false;
    case DataTarget::kAux:
      return false;
  }
  return false;
}

void I8042::keyboard_command_locked(uint8_t value) {
  if (!keyboard_attached_) {
    return;
  }
  switch (std::exchange(keyboard_pending_command_, 0)) {
    case kKbdSetLeds:
    case kKbdSetRate:
      push_keyboard_locked({kKbdAck});
      return;
    case kKbdScancodeSet:
      push_keyboard_locked({kKbdAck});
      if (value == 0) {
        push_keyboard_locked({scancode_set_});
      } else if (value <= 3) {
        scancode_set_ = value;
      }
      return;
    default:
      break;
  }
  switch (value) {
    case kKbdSetLeds:
    case kKbdScancodeSet:
    case kKbdSetRate:
      keyboard_pending_command_ = value;
      push_keyboard_locked({kKbdAck});
      return;
    case kKbdEcho:
      push_keyboard_locked({kKbdEcho});
      return;
    case kKbdGetId:
      push_keyboard_locked({kKbdAck, kKbdIdFirst, kKbdIdSecond});
      return;
    case kKbdEnable:
      scanning_ = true;
      push_keyboard_locked({kKbdAck});
      return;
    case kKbdDefaultDisable:
      keyboard_reset_locked();
      scanning_ = false;
      push_keyboard_locked({kKbdAck});
      return;
    case kKbdSetDefault:
      keyboard_reset_locked();
      push_keyboard_locked({kKbdAck});
      return;
    case kKbdReset:
      keyboard_reset_locked();
      keyboard_queue_.clear();
      push_keyboard_locked({kKbdAck, kKbdSelfTestPassed});
      return;
    default:
      push_keyboard_locked({kKbdAck});
      return;
  }
}

void I8042::keyboard_reset_locked() {
  scancode_set_ = 2;
  scanning_ = true;
}

void I8042::push_keyboard_locked(std::initializer_list<uint8_t> bytes) {
  // Replies are short and the guest controls their rate: past the capacity they are lost,
  // as a real keyboard's would be.
  for (uint8_t b : bytes) {
    if (keyboard_queue_.size() < kKeyboardQueueCapacity) {
      keyboard_queue_.push_back(b);
    }
  }
}

bool I8042::inject_ctrl_alt_del() {
  std::lock_guard lock(mutex_);
  if (!keyboard_attached_ || !scanning_) {
    return false;
  }
  std::span<const uint8_t> codes = kCtrlAltDelSet3;
  if (scancode_set_ == 1) {
    codes = kCtrlAltDelSet1;
  } else if (scancode_set_ == 2) {
    codes = kCtrlAltDelSet2;
  }
  if (kKeyboardQueueCapacity - keyboard_queue_.size() < codes.size()) {
    return false;
  }
  keyboard_queue_.insert(keyboard_queue_.end(), codes.begin(), codes.end());
  update_locked();
  return true;
}

std::vector<std::byte> I8042::save_state() const {
  auto as_bytes = [](const std::deque<uint8_t>& q) {
    std::vector<std::byte> out;
    for (uint8_t b : q) {
      out.push_back(std::byte{b});
    }
    return out;
  };
  std::lock_guard lock(mutex_);
  StateWriter w;
  w.header(kStateMagic, kStateVersion);
  w.u8(keyboard_attached_ ? 1 : 0);
  w.u8(command_byte_);
  w.u8(output_port_);
  w.u8(last_output_);
  w.u8(last_write_was_command_ ? 1 : 0);
  w.u8(static_cast<uint8_t>(data_target_));
  w.bytes(as_bytes(output_));
  w.bytes(as_bytes(keyboard_queue_));
  w.u8(keyboard_pending_command_);
  w.u8(scancode_set_);
  w.u8(scanning_ ? 1 : 0);
  w.u8(translate_break_ ? 1 : 0);
  return std::move(w).take();
}

Result<void> I8042::restore_state(std::span<const std::byte> bytes) {
  StateReader r(bytes, "i8042 state");
  PETREL_TRY(r.expect_header(kStateMagic, kStateVersion));
  PETREL_TRY_ASSIGN(bool attached, read_bool(r, "keyboard attached"));
  if (attached != keyboard_attached_) {
    return r.fail(fmt::format("i8042 keyboard attached is {}, this controller has {}",
                              attached ? "yes" : "no", keyboard_attached_ ? "one" : "none"));
  }
  PETREL_TRY_ASSIGN(uint8_t command_byte, r.u8());
  PETREL_TRY_ASSIGN(uint8_t output_port, r.u8());
  PETREL_TRY_ASSIGN(uint8_t last_output, r.u8());
  PETREL_TRY_ASSIGN(bool last_write_was_command, read_bool(r, "last write was command"));
  PETREL_TRY_ASSIGN(uint8_t target, r.u8());
  if (target > static_cast<uint8_t>(DataTarget::kAux)) {
    return r.fail(fmt::format("i8042 data target {} is not 0..3", target));
  }
  PETREL_TRY_ASSIGN(auto output, read_queue(r, "output buffer", kOutputCapacity));
  PETREL_TRY_ASSIGN(auto keyboard_queue, read_queue(r, "keyboard queue", kKeyboardQueueCapacity));
  PETREL_TRY_ASSIGN(uint8_t pending, r.u8());
  if (pending != 0 && pending != kKbdSetLeds && pending != kKbdScancodeSet &&
      pending != kKbdSetRate) {
    return r.fail(
        fmt::format("i8042 pending keyboard command {:#04x} takes no parameter", pending));
  }
  PETREL_TRY_ASSIGN(uint8_t scancode_set, r.u8());
  if (scancode_set < 1 || scancode_set > 3) {
    return r.fail(fmt::format("i8042 keyboard scancode set {} is not 1..3", scancode_set));
  }
  PETREL_TRY_ASSIGN(bool scanning, read_bool(r, "keyboard scanning"));
  PETREL_TRY_ASSIGN(bool translate_break, read_bool(r, "swallowed break prefix"));
  PETREL_TRY(r.expect_end());
  if (!attached && (!keyboard_queue.empty() || pending != 0 || scancode_set != 2 || !scanning ||
                    translate_break)) {
    return r.fail("i8042 keyboard state on a controller without a keyboard");
  }
  if (output.empty() && !keyboard_queue.empty() && (command_byte & kCtrKbdDisable) == 0) {
    return r.fail("i8042 keyboard queue holds bytes behind an empty output buffer");
  }

  std::lock_guard lock(mutex_);
  command_byte_ = command_byte;
  output_port_ = output_port;
  last_output_ = last_output;
  output_ = std::move(output);
  last_write_was_command_ = last_write_was_command;
  data_target_ = static_cast<DataTarget>(target);
  keyboard_queue_ = std::move(keyboard_queue);
  keyboard_pending_command_ = pending;
  scancode_set_ = scancode_set;
  scanning_ = scanning;
  translate_break_ = translate_break;
  update_locked();
  return {};
}

void I8042::push_output_locked(uint8_t value) {
  // The real output buffer holds one byte; a few are kept so that a reply is not lost
  // behind a keyboard byte, but a guest that never reads cannot grow it.
  if (output_.size() < kOutputCapacity) {
    output_.push_back(value);
  }
}

void I8042::update_locked(bool new_byte_edge) {
  const bool xlate = (command_byte_ & kCtrTranslate) != 0;
  while (output_.empty() && !keyboard_queue_.empty() && (command_byte_ & kCtrKbdDisable) == 0) {
    uint8_t b = keyboard_queue_.front();
    keyboard_queue_.pop_front();
    if (!xlate) {
      output_.push_back(b);
    } else if (b == kBreakPrefix) {
      translate_break_ = true;
    } else {
      output_.push_back(
          static_cast<uint8_t>(translate(b) | (std::exchange(translate_break_, false) ? 0x80 : 0)));
    }
  }
  if (irq_ == nullptr) {
    return;
  }
  const bool want = !output_.empty() && (command_byte_ & kCtrKbdInt) != 0;
  if (irq_asserted_ && (!want || new_byte_edge)) {
    irq_->set_level(false);
    irq_asserted_ = false;
  }
  if (want && !irq_asserted_) {
    irq_->set_level(true);
    irq_asserted_ = true;
  }
}

uint8_t I8042::status_locked() const {
  uint8_t status = kStatusKeyboardUnlocked;
  if (!output_.empty()) {
    status |= kStatusOutputFull;
  }
  if ((command_byte_ & kCtrSystemFlag) != 0) {
    status |= kStatusSystemFlag;
  }
  if (last_write_was_command_) {
    status |= kStatusLastWasCommand;
  }
  return status;
}

}  // namespace petrel
