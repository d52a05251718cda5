#include "devices/exit_device.h"

#include <algorithm>
#include <utility>

namespace petrel {

ExitDevice::ExitDevice(std::function<void(uint8_t status)> on_exit)
    : on_exit_(std::move(on_exit)) {}

void ExitDevice::read(uint64_t /*offset*/, std::span<std::byte> data) {
  std::fill(data.begin(), data.end(), std::byte{0});
}

void ExitDevice::write(uint64_t /*offset*/, std::span<const std::byte> data) {
  if (data.empty() || fired_.exchange(true)) {
    return;
  }
  if (on_exit_) {
    on_exit_(std::to_integer<uint8_t>(data[0]));
  }
}

}  // namespace petrel
