// RngDevice: virtio entropy device (virtio 1.2 section 5.4). One request queue (0) of 256
// entries; no feature bits, no configuration space. Each chain's device-writable buffers are
// filled from getrandom(2) (the kernel's CSPRNG, never blocking: before the pool is
// initialised a request is returned short), at most kMaxRequestBytes per chain; the used
// length is the number of bytes written. A chain without writable buffers is returned with
// length 0 (5.4.6.1: the device writes into device-writable buffers only). A broken ring sets
// DEVICE_NEEDS_RESET.
//
// Quiesce: every chain is answered within one turn, so the device is idle at once; a
// continuation posted for the rest of a long queue is dropped and the queue processed again
// at unquiesce. No device-specific state.
//
// Thread affinity: as VirtioDevice. bytes_served() may be read from any thread.
#pragma once

#include <atomic>
#include <memory>
#include <optional>

#include "virtio/virtio_device.h"

namespace petrel::virtio {

class RngDevice final : public VirtioDevice, public std::enable_shared_from_this<RngDevice> {
  struct Key {};  // only create() constructs

 public:
  static constexpr uint16_t kQueueSize = 256;
  static constexpr uint32_t kMaxRequestBytes = 64 * 1024;

  static Result<std::shared_ptr<RngDevice>> create();
  explicit RngDevice(Key) {}

  uint32_t device_type() const override;
  std::vector<uint16_t> queue_max_sizes() const override { return {kQueueSize}; }
  uint64_t device_features() const override { return 0; }
  void read_config(uint64_t offset, std::span<std::byte> data) const override;
  void write_config(uint64_t offset, std::span<const std::byte> data) override;
  Result<void> activate(ActivateContext ctx) override;
  void process_queue(uint16_t index) override;
  void reset() override;
  void quiesce(std::function<void()> idle) override;
  void unquiesce() override;
  std::vector<std::optional<QueueIndices>> queue_indices() const override;

  uint64_t bytes_served() const { return bytes_served_.load(std::memory_order_relaxed); }

 private:
  // Fills one chain; returns the bytes written.
  Result<uint32_t> fill(const DescriptorChain& chain);
  void fail_ring(const Error& error);

  // Event-loop thread only.
  bool active_ = false;
  bool quiesced_ = false;
  const GuestMemory* mem_ = nullptr;
  VirtioInterrupt* irq_ = nullptr;
  boost::asio::io_context* loop_ = nullptr;
  std::optional<Virtqueue> queue_;
  uint64_t generation_ = 0;  // bumped by reset(): a posted continuation becomes a no-op

  std::atomic<uint64_t> bytes_served_{0};
};

}  // namespace petrel::virtio
