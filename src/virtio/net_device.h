// NetDevice: virtio-net (virtio 1.2 section 5.1) over a NetBackend (a TAP in production).
//
// One receive queue (0) and one transmit queue (1), 256 entries each. Offers VIRTIO_NET_F_MAC,
// F_STATUS (link always up), F_MRG_RXBUF, F_MTU when configured, and only the offloads the
// backend takes: F_CSUM/F_GUEST_CSUM with checksum offload, F_HOST_TSO4/6 and
// F_GUEST_TSO4/6 with TSO, F_HOST_ECN/F_GUEST_ECN with TSO-ECN. At activation the negotiated
// GUEST_* offloads are applied to the backend (TUNSETOFFLOAD), so it hands us nothing the
// guest cannot take.
//
// Transmit: each chain's header is checked (net_tx.h) and the frame written to the backend
// straight from guest memory; a bad chain is returned with length 0 and counted as a TX
// error; a frame the backend cannot take now (EAGAIN) stays in the ring and is retried when
// the backend's fd turns writable. Receive: while the rx queue has buffers, frames are read
// from the backend into a 64 KiB bounce buffer and copied into the guest's chains
// (net_rx.h); when the rx queue runs dry the device keeps the frame and stops reading the
// backend until the driver kicks queue 0. Used-ring updates are batched per turn and the
// driver is interrupted when should_notify() says so. A broken ring sets DEVICE_NEEDS_RESET.
//
// Quiesce: the device stops reading and writing the backend (its waits are cancelled; frames
// arriving meanwhile stay in the backend) and gives back the receive chains it holds for a
// partly covered frame (the available index is rewound so they are popped again; if an
// empty chain was returned among them, they are returned with length 0 instead). A frame
// already read from the backend and not yet delivered stays in the device's bounce buffer
// and is delivered after unquiesce; it is NOT part of the saved state, so a device restored
// from a snapshot has lost it (as if the link dropped it; the restored counters start at 0).
// Device-specific state: none (every config field is read-only for a VERSION_1 driver).
//
// Thread affinity: as VirtioDevice. The backend's readiness is watched with Asio on the
// event loop; handlers hold a weak reference and a generation number, so a reset or the
// device's destruction makes them no-ops. stats() may be read from any thread.
#pragma once

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>

#include "virtio/mac_address.h"
#include "virtio/net_backend.h"
#include "virtio/net_config.h"
#include "virtio/net_rx.h"
#include "virtio/net_spec.h"
#include "virtio/virtio_device.h"

namespace petrel::virtio {

struct NetStats {
  uint64_t tx_frames = 0;
  uint64_t tx_bytes = 0;   // Ethernet frame bytes, headers excluded
  uint64_t tx_errors = 0;  // chains dropped: malformed, or refused by the backend
  uint64_t rx_frames = 0;
  uint64_t rx_bytes = 0;
  uint64_t rx_errors = 0;  // receive chains too small for a header, backend read errors
  // Frames read from the backend and not delivered: too short or long, did not fit the
  // guest's buffers, or still held when the driver reset the device.
  uint64_t rx_dropped = 0;
};

class NetDevice final : public VirtioDevice, public std::enable_shared_from_this<NetDevice> {
  struct Key {};  // only the factories construct

 public:
  // Opens the TAP (net_config.h) and builds the device. `io` is the VMM event loop.
  static Result<std::shared_ptr<NetDevice>> create(const NetConfig& config,
                                                   boost::asio::io_context& io);
  // The device over any backend (tests, benchmarks). `mtu`: 68..65535 when set.
  static Result<std::shared_ptr<NetDevice>> create(std::unique_ptr<NetBackend> backend,
                                                   MacAddress mac, std::optional<uint16_t> mtu,
                                                   boost::asio::io_context& io);

  NetDevice(Key, std::unique_ptr<NetBackend> backend, MacAddress mac, std::optional<uint16_t> mtu,
            boost::asio::io_context& io);
  ~NetDevice() override;

  uint32_t device_type() const override;
  std::vector<uint16_t> queue_max_sizes() const override;
  uint64_t device_features() const override { return features_offered_; }
  void read_config(uint64_t offset, std::span<std::byte> data) const override;
  void write_config(uint64_t offset, std::span<const std::byte> data) override;
  Result<void> activate(ActivateContext ctx) override;
  void process_queue(uint16_t index) override;
  void reset() override;
  void quiesce(std::function<void()> idle) override;
  void unquiesce() override;
  std::vector<std::optional<QueueIndices>> queue_indices() const override;

  const MacAddress& mac() const { return mac_; }
  // The TAP interface's name (kernel-chosen when the config left it empty); empty for a
  // device over another backend. Constant after create().
  const std::string& tap_name() const { return tap_name_; }
  NetStats stats() const;

 private:
  enum class Delivery { kDelivered, kDropped, kNoBuffers, kRingError };

  Result<std::optional<DescriptorChain>> pop(Virtqueue& queue);
  void process_tx();
  void process_rx();
  Delivery deliver_pending();
  // Queues used entries of the rx queue, publishing earlier ones first if the batch would
  // exceed the queue size. false: the ring broke (already reported).
  bool append_used(std::span<const net::UsedEntry> entries);
  bool flush_rx();
  bool notify(Virtqueue& queue, uint16_t index);
  void arm_wait(bool write);
  void post_again(bool tx);
  void fail_ring(uint16_t index, const Error& error);
  // Forgets the frame held for the guest, if any, counting it as dropped.
  void drop_pending_rx();
  void stop();
  // Quiesce: hands the receive chains held in rx_chains_ back to the ring.
  void release_rx_chains();

  // Constant after construction.
  std::unique_ptr<NetBackend> backend_;
  MacAddress mac_;
  std::optional<uint16_t> mtu_;
  boost::asio::io_context& io_;
  uint64_t features_offered_ = 0;
  std::string tap_name_;
  boost::asio::io_context* loop_ = &io_;  // ActivateContext::io when given

  // Event-loop thread only.
  bool active_ = false;
  uint64_t features_ = 0;
  const GuestMemory* mem_ = nullptr;
  VirtioInterrupt* irq_ = nullptr;
  std::optional<Virtqueue> rx_;
  std::optional<Virtqueue> tx_;
  uint64_t generation_ = 0;  // bumped by reset(): stale handlers see a different value
  std::optional<boost::asio::posix::stream_descriptor> watch_;  // on a dup of backend_->fd()
  bool read_armed_ = false;
  bool write_armed_ = false;
  bool rx_failed_ = false;                  // the backend's read failed: RX off until reset
  std::vector<std::byte> rx_buf_;           // header + frame from the backend
  size_t rx_pending_ = 0;                   // bytes in rx_buf_ still to deliver; 0: none
  std::vector<DescriptorChain> rx_chains_;  // popped, not yet used
  // An empty chain was returned after the oldest of rx_chains_ was popped, so they are not
  // the last chains popped and the available index cannot simply be rewound.
  bool rx_chains_gap_ = false;
  bool quiesced_ = false;
  std::vector<net::UsedEntry> rx_used_;  // filled, not yet published

  struct AtomicStats {
    std::atomic<uint64_t> tx_frames{0}, tx_bytes{0}, tx_errors{0};
    std::atomic<uint64_t> rx_frames{0}, rx_bytes{0}, rx_errors{0}, rx_dropped{0};
  };
  AtomicStats stats_;
};

}  // namespace petrel::virtio
