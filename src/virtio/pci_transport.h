// PciTransport: a virtio device behind the virtio-PCI modern transport (virtio 1.2 section
// 4.1), as a PciDevice on the PciRoot.
//
// Identity (4.1.2): vendor 0x1af4, device 0x1040 + type, revision 1, subsystem vendor
// 0x1af4 / id 0x40, class by type (net 0x020000, block 0x018000, others 0xff0000). No INTx:
// the interrupt pin is 0 and the device signals with MSI-X only.
//
// One 32-bit memory BAR (BAR 0, kBarSize bytes) holds every structure, each named by a
// vendor-specific capability (4.1.4) in config space:
//   0x0000 common configuration (4.1.4.3)      0x3000 notifications (4.1.4.4), 4 bytes a queue
//   0x1000 ISR status, read-to-clear (4.1.4.5)  0x4000 MSI-X table, 0x5000 MSI-X PBA
//   0x2000 device configuration (4.1.4.6)
// plus the PCI configuration access capability (4.1.4.9) and the MSI-X capability.
//
// Notifications: queue i's notify address is BAR 0 + 0x3000 + 4 * i (queue_notify_off = i,
// notify_off_multiplier 4). Whenever BAR 0 starts answering somewhere (PciDevice::bar_mapped)
// each queue's kick EventFd is bound there through the NotifyBinder (KVM_IOEVENTFD, 2-byte
// writes, no datamatch), and unbound from the old place first; a notify write that still
// reaches the transport (no ioeventfd, or the PCI cfg capability) kicks the same EventFd.
// Interrupts: queue i signals the MSI-X vector in its queue_msix_vector, configuration
// changes the one in config_msix_vector (VIRTIO_MSI_NO_VECTOR: none). The ISR bits are set
// either way; with MSI-X disabled that is all that happens (there is no INTx line, so a
// driver without MSI-X has to poll ISR).
//
// Common-configuration writes must hit a field exactly (its offset and width; 64-bit
// addresses also as two 32-bit halves); other writes are ignored, and reads of any width
// return the fields' bytes. Everything the guest writes is guest-controlled.
//
// State (pci_transport_state.cc): the core's (TransportCore::save_state), the configuration
// space, MSI-X (table, pending bits, enable), config_msix_vector and every queue_msix_vector.
// The queue_select of the common configuration is the core's. After restore_state the
// notify ioeventfds are bound when the PciRoot reports BAR 0's restored address
// (PciRoot::restore_state calls bar_mapped), and Msix::restore_state programs the routes.
//
// Threading: PciDevice methods on vCPU threads; interrupt delivery on the event-loop thread
// (TransportCore's Deliver). mu_ guards the PCI state here and is never held while calling
// into the TransportCore (whose reset waits for the event loop).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <vector>

#include <boost/asio/io_context.hpp>

#include "devices/msi_controller.h"
#include "devices/msix.h"
#include "devices/pci_config_space.h"
#include "devices/pci_device.h"
#include "virtio/transport_core.h"
#include "virtio/virtio_device.h"
#include "vmm/base/event_fd.h"
#include "vmm/base/guest_address.h"
#include "vmm/base/guest_memory.h"
#include "vmm/base/result.h"

namespace petrel::virtio {

class PciTransport final : public PciDevice {
 public:
  // Binds (`add`) or unbinds a queue's kick EventFd to a 2-byte MMIO write at `addr`; the
  // VM implements it with KvmVm::add_ioeventfd / remove_ioeventfd(fd, addr, 2, nullopt).
  using NotifyBinder = std::function<Result<void>(const EventFd& fd, GuestAddress addr, bool add)>;

  static constexpr uint8_t kBar = 0;
  static constexpr uint32_t kBarSize = 0x8000;
  static constexpr uint64_t kCommonOffset = 0x0000;
  static constexpr uint64_t kIsrOffset = 0x1000;
  static constexpr uint64_t kDeviceOffset = 0x2000;
  static constexpr uint64_t kNotifyOffset = 0x3000;
  static constexpr uint64_t kMsixTableOffset = 0x4000;
  static constexpr uint64_t kMsixPbaOffset = 0x5000;
  static constexpr uint64_t kRegionSize = 0x1000;
  static constexpr uint32_t kNotifyOffMultiplier = 4;
  static constexpr uint16_t kNoVector = 0xffff;  // VIRTIO_MSI_NO_VECTOR
  static constexpr uint16_t kMaxQueues = kRegionSize / kNotifyOffMultiplier;
  static constexpr uint16_t kMaxVectors = kRegionSize / Msix::kEntrySize;

  // Allocates min(queues + 1, kMaxVectors) MSI-X vectors from `msi`. `io`, `memory` and
  // `msi` outlive the transport, and so does whatever `bind` uses (the KvmVm). `bind` may be
  // empty (notifications then always take the exit path).
  static Result<std::shared_ptr<PciTransport>> create(boost::asio::io_context& io,
                                                      const GuestMemory& memory,
                                                      std::shared_ptr<VirtioDevice> device,
                                                      MsiController& msi, NotifyBinder bind);
  ~PciTransport() override;
  PciTransport(const PciTransport&) = delete;
  PciTransport& operator=(const PciTransport&) = delete;

  // PciDevice.
  void config_read(uint16_t offset, std::span<std::byte> data) override;
  void config_write(uint16_t offset, std::span<const std::byte> data) override;
  std::vector<PciBar> bars() const override;
  void bar_read(uint8_t index, uint64_t offset, std::span<std::byte> data) override;
  void bar_write(uint8_t index, uint64_t offset, std::span<const std::byte> data) override;
  void bar_mapped(uint8_t index, std::optional<GuestAddress> base) override;

  uint16_t num_queues() const { return core_->num_queues(); }
  const EventFd& kick_fd(uint16_t index) const { return core_->kick_fd(index); }
  TransportCore& core() { return *core_; }
  // Unbinds the ioeventfds and stops the core (TransportCore::stop). Call when the VM shuts
  // down, before the event loop goes away.
  void stop();

  // While the device is quiesced and the vCPUs parked; any thread. kState as
  // TransportCore::save_state.
  Result<void> save_state(StateWriter& out) const;
  // On a transport freshly created for the same device, before vCPUs run. `in` is untrusted:
  // every field is checked (kInvalidArgument naming it) and nothing changes on failure. Reads
  // `in` to its end.
  Result<void> restore_state(StateReader& in);

  // Use create(); public only for std::make_shared.
  PciTransport(const PciIds& ids, NotifyBinder bind);

 private:
  Result<void> build_capabilities(uint16_t num_queues);
  uint8_t add_virtio_cap(uint8_t cfg_type, uint64_t offset, uint64_t length,
                         std::span<const std::byte> extra, std::span<const std::byte> writable);
  // Common configuration (4.1.4.3).
  void common_read(uint64_t offset, std::span<std::byte> data);
  void common_write(uint64_t offset, std::span<const std::byte> data);
  // The PCI configuration access capability's data field (4.1.4.9). mu_ not held.
  void cfg_access(bool write);
  void deliver(InterruptKind kind, uint16_t queue);
  // mu_ held: moves the kick ioeventfds to `base` (nullopt: unbinds them).
  void bind_notify_locked(std::optional<GuestAddress> base);
  void reset_vectors();

  NotifyBinder bind_;
  mutable std::mutex mu_;
  PciConfigSpace config_;  // guarded by mu_
  uint8_t msix_cap_ = 0;
  uint8_t cfg_access_cap_ = 0;
  std::vector<uint16_t> queue_vectors_;             // guarded by mu_
  uint16_t config_vector_ = kNoVector;              // guarded by mu_
  std::vector<std::optional<GuestAddress>> bound_;  // per queue: its ioeventfd; guarded by mu_
  std::unique_ptr<Msix> msix_;
  std::unique_ptr<TransportCore> core_;  // last: destroyed first, its Deliver uses the rest
};

}  // namespace petrel::virtio
