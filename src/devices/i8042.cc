#include "devices/i8042.h"

#include <algorithm>
#include <utility>

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

constexpr uint8_t kSelfTestPassed = 0x55;
constexpr uint8_t kInterfaceTestPassed = 0x00;
constexpr uint8_t kInterfaceClockStuckHigh = 0x02;

}  // namespace

I8042::I8042(std::function<void()> reset)
    : reset_(std::move(reset)),
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
      output_full_ = false;
      data[0] = std::byte{output_};
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
      return false;
  }
  return false;
}

void I8042::push_output_locked(uint8_t value) {
  output_ = value;
  output_full_ = true;
}

uint8_t I8042::status_locked() const {
  uint8_t status = kStatusKeyboardUnlocked;
  if (output_full_) {
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
