// TransportCore, queue registers (virtio 1.2 4.1.4.3 / 4.2.2): select, size, addresses,
// ready, and kicks that reached the VMM through a register write.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "virtio/transport_core.h"
#include "virtio/virtio_spec.h"

namespace petrel::virtio {

// --- queue registers ---

void TransportCore::select_queue(uint32_t index) {
  std::lock_guard lock(mutex_);
  queue_select_ = index;
}

uint32_t TransportCore::queue_select() const {
  std::lock_guard lock(mutex_);
  return queue_select_;
}

uint16_t TransportCore::queue_max_size() const {
  std::lock_guard lock(mutex_);
  const Queue* q = selected_queue();
  return q ? q->max_size : 0;
}

uint16_t TransportCore::queue_size() const {
  std::lock_guard lock(mutex_);
  const Queue* q = selected_queue();
  return q ? q->size : 0;
}

void TransportCore::set_queue_size(uint32_t size) {
  std::lock_guard lock(mutex_);
  Queue* q = writable_queue("size");
  if (!q) {
    return;
  }
  if (size == 0 || size > q->max_size) {
    spdlog::debug("virtio: queue {} size {} refused (max {})", queue_select_, size, q->max_size);
    q->size_refused = true;
    return;
  }
  q->size = static_cast<uint16_t>(size);
  q->size_refused = false;
}

bool TransportCore::queue_ready() const {
  std::lock_guard lock(mutex_);
  const Queue* q = selected_queue();
  return q && q->ready;
}

void TransportCore::set_queue_ready(bool ready) {
  std::lock_guard lock(mutex_);
  Queue* q = writable_queue("ready");
  if (!q) {
    return;
  }
  q->ready = ready;
}

uint64_t TransportCore::queue_address(QueueArea area) const {
  std::lock_guard lock(mutex_);
  const Queue* q = selected_queue();
  if (!q) {
    return 0;
  }
  return area_value(*q, area);
}

void TransportCore::set_queue_address(QueueArea area, uint64_t addr) {
  std::lock_guard lock(mutex_);
  Queue* q = writable_queue("address");
  if (!q) {
    return;
  }
  area_ref(*q, area) = addr;
}

void TransportCore::set_queue_address_half(QueueArea area, bool high, uint32_t value) {
  std::lock_guard lock(mutex_);
  Queue* q = writable_queue("address");
  if (!q) {
    return;
  }
  uint64_t& addr = area_ref(*q, area);
  if (high) {
    addr = (addr & 0xffffffffu) | (uint64_t{value} << 32);
  } else {
    addr = (addr & ~uint64_t{0xffffffffu}) | value;
  }
}

void TransportCore::kick(uint32_t queue) {
  if (queue >= queues_.size()) {
    spdlog::debug("virtio: notify of queue {} ignored (device has {})", queue, queues_.size());
    return;
  }
  if (!exit_kick_logged_.exchange(true)) {
    // Normally KVM's ioeventfd takes the notification without an exit; this path means it
    // is not registered (or the guest wrote an unexpected width/value).
    spdlog::debug("virtio (device type {}): queue {} notified through a VM exit, not an ioeventfd",
                  device_->device_type(), queue);
  }
  if (auto r = queues_[queue].kick.signal(); !r) {
    spdlog::warn("virtio: kick of queue {}: {}", queue, r.error().to_string());
  }
}

}  // namespace petrel::virtio
