#include "devices/pvpanic.h"

#include <algorithm>
#include <utility>

namespace petrel {

PvPanic::PvPanic(std::function<void(uint8_t events)> on_event) : on_event_(std::move(on_event)) {}

void PvPanic::read(uint64_t offset, std::span<std::byte> data) {
  std::fill(data.begin(), data.end(), std::byte{0});
  if (offset == 0 && !data.empty()) {
    data[0] = std::byte{kSupportedEvents};
  }
}

void PvPanic::write(uint64_t offset, std::span<const std::byte> data) {
  if (offset != 0 || data.empty()) {
    return;
  }
  const auto events = static_cast<uint8_t>(std::to_integer<uint8_t>(data[0]) & kSupportedEvents);
  if (events != 0 && on_event_) {
    on_event_(events);
  }
}

}  // namespace petrel
