// VirtioDevice: what every virtio device (block, net, rng, ...) gives its transport (MMIO or
// PCI). The transport owns the register interface, feature negotiation and the status state
// machine (virtio 1.2 section 3.1); the device only sees the negotiated outcome.
//
// Thread affinity:
//  - device_type, queue_max_sizes, device_features: any thread; constant for the device's life.
//  - read_config / write_config: vCPU threads (config-space accesses); the device guards any
//    mutable config state itself.
//  - activate, process_queue, reset, quiesce, unquiesce and everything the device does with
//    its queues and backend: the VMM event-loop thread only (the transport posts them there),
//    so they need no locking between themselves.
//  - queue_indices, save_state: the loop thread, or any thread while the device is quiesced
//    (the quiesce handshake orders the loop's last writes before the read).
//  - restore_state: on a device that was never activated, before the event loop runs it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <vector>

#include <boost/asio/io_context.hpp>

#include "virtio/virtqueue.h"
#include "vmm/base/guest_memory.h"
#include "vmm/base/result.h"

namespace petrel::virtio {

// How a device signals its driver; implemented by the transport. Event-loop thread.
class VirtioInterrupt {
 public:
  virtual ~VirtioInterrupt() = default;
  // Used buffers were added to queue `index` (and should_notify said yes).
  virtual void notify_queue(uint16_t index) = 0;
  // The device configuration changed.
  virtual void notify_config() = 0;
  // The device hit an error it cannot recover from without a reset (a broken ring):
  // sets DEVICE_NEEDS_RESET in the status and sends a configuration-change interrupt.
  virtual void set_needs_reset() = 0;
};

struct ActivateContext {
  const GuestMemory* memory = nullptr;  // outlives the activation
  uint64_t features = 0;                // negotiated: accepted by the driver, offered by us
  // Per queue index; nullopt for a queue the driver did not enable.
  std::vector<std::optional<Virtqueue>> queues;
  VirtioInterrupt* interrupt = nullptr;   // valid until reset() returns
  boost::asio::io_context* io = nullptr;  // the event loop these calls run on
};

// Where a queue's device side stands (Virtqueue::next_avail / next_used), for snapshots.
struct QueueIndices {
  uint16_t next_avail = 0;
  uint16_t next_used = 0;
};

class VirtioDevice {
 public:
  virtual ~VirtioDevice() = default;

  virtual uint32_t device_type() const = 0;
  // One entry per queue: its maximum size (a power of two).
  virtual std::vector<uint16_t> queue_max_sizes() const = 0;
  // Device-specific and reserved feature bits the device offers. The transport adds
  // VIRTIO_F_VERSION_1, VIRTIO_F_INDIRECT_DESC and VIRTIO_F_EVENT_IDX (the virtqueue
  // implements them for every device).
  virtual uint64_t device_features() const = 0;

  // Device configuration space (5.x.4 of each device). `offset` is guest-controlled: reads
  // beyond the config structure return zeros, writes beyond it (or to read-only fields) are
  // ignored.
  virtual void read_config(uint64_t offset, std::span<std::byte> data) const = 0;
  virtual void write_config(uint64_t offset, std::span<const std::byte> data) = 0;
  // Changes whenever the device changes its config space (4.2.2 ConfigGeneration).
  virtual uint32_t config_generation() const { return 0; }

  // DRIVER_OK was set. An error makes the transport set DEVICE_NEEDS_RESET.
  virtual Result<void> activate(ActivateContext ctx) = 0;
  // The driver notified queue `index` (an ioeventfd kick). Only called while active.
  virtual void process_queue(uint16_t index) = 0;
  // The driver reset the device (or the VM is going away). Afterwards the device holds no
  // queue, touches no guest memory and has no backend operation in flight; it can be
  // activated again.
  virtual void reset() = 0;

  // Quiesce (the VMM's own; virtio 1.2 has no pause). Called only while active, by the
  // transport, which then stops calling process_queue (kicks are noted and replayed after
  // unquiesce). The device finishes what it started: backend operations in flight complete
  // and their chains reach the used ring (drained, not cancelled), chains it popped and holds
  // are returned or given back to the ring; then it calls `idle` once, on the loop thread
  // (possibly from inside quiesce). From then until unquiesce() or reset() it touches neither
  // guest memory nor its queues and acts on no backend event. Default: a device with no
  // asynchronous work is idle at once.
  virtual void quiesce(std::function<void()> idle) { idle(); }
  // Ends a quiesce, also one whose `idle` has not been called yet (it is then dropped, never
  // called). The device resumes its backend; the transport replays the kicks.
  virtual void unquiesce() {}
  // One entry per queue: the device-side indices of each queue it holds (nullopt: none).
  // Default: none (the transport cannot save such a device while it is active).
  virtual std::vector<std::optional<QueueIndices>> queue_indices() const { return {}; }
  // Device-specific state beyond the transport's registers (config the driver wrote), saved
  // while quiesced. Default: nothing.
  virtual std::vector<std::byte> save_state() const { return {}; }
  // `state` is untrusted (a snapshot file, a migration stream). On failure nothing changed.
  // Default: only the empty state is accepted.
  virtual Result<void> restore_state(std::span<const std::byte> state) {
    if (!state.empty()) {
      return Error(ErrorCode::kInvalidArgument, "device state: this device keeps none, got bytes");
    }
    return {};
  }
};

}  // namespace petrel::virtio
