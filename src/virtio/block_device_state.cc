// BlockDevice: quiesce and the queue indices for snapshots (block_device.h).
#include <algorithm>

#include "virtio/block_device.h"

namespace petrel::virtio {

void BlockDevice::quiesce(std::function<void()> idle) {
  idle_ = std::move(idle);
  maybe_idle();
}

void BlockDevice::unquiesce() {
  idle_ = nullptr;
}

void BlockDevice::maybe_idle() {
  if (!idle_) {
    return;
  }
  const bool busy = std::any_of(in_flight_.begin(), in_flight_.end(),
                                [](const std::optional<InFlight>& e) { return e.has_value(); });
  if (busy) {
    return;
  }
  auto idle = std::move(idle_);
  idle_ = nullptr;
  idle();
}

std::vector<std::optional<QueueIndices>> BlockDevice::queue_indices() const {
  if (!queue_) {
    return {std::nullopt};
  }
  return {QueueIndices{queue_->next_avail(), queue_->next_used()}};
}

}  // namespace petrel::virtio
