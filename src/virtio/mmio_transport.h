// MmioTransport: a virtio-MMIO device, version 2 (virtio 1.2 section 4.2), in one 4 KiB bus
// slot. Registers (4.2.2) take aligned 32-bit accesses only; any other access to them reads
// 0 and writes nothing (logged at debug level). The device configuration space from 0x100
// takes 1-, 2-, 4- and 8-byte accesses and is forwarded to the device. There are no shared
// memory regions (ShmLen/ShmBase read all-ones) and QueueReset is not offered (reads 0).
//
// Notifications: a QueueNotify write normally never reaches this object, because the VM
// registers each kick_fd(i) as an ioeventfd (4-byte write of value i at slot + 0x50); one
// that does reach it (no ioeventfd) signals the same EventFd.
// Interrupts: irq_fd() is meant to be registered as irqfd on the slot's GSI. Each interrupt
// sets an InterruptStatus bit, then signals irq_fd(); KVM pulses the IOAPIC pin, so the pin
// must be described to the guest as edge-triggered. The driver clears the bits through
// InterruptACK.
//
// Threading: read/write on vCPU threads (BusDevice); see TransportCore for the rest.
#pragma once

#include <cstdint>
#include <memory>
#include <span>

#include <boost/asio/io_context.hpp>

#include "devices/bus_device.h"
#include "virtio/transport_core.h"
#include "virtio/virtio_device.h"
#include "vmm/base/event_fd.h"
#include "vmm/base/guest_memory.h"
#include "vmm/base/result.h"

namespace petrel::virtio {

class MmioTransport final : public BusDevice {
 public:
  // `io` and `memory` outlive the transport.
  static Result<std::shared_ptr<MmioTransport>> create(boost::asio::io_context& io,
                                                       const GuestMemory& memory,
                                                       std::shared_ptr<VirtioDevice> device);

  void read(uint64_t offset, std::span<std::byte> data) override;
  void write(uint64_t offset, std::span<const std::byte> data) override;

  // For KVM_IRQFD on the device's GSI. Any thread.
  const EventFd& irq_fd() const { return irq_; }
  uint16_t num_queues() const { return core_->num_queues(); }
  // For KVM_IOEVENTFD at slot base + mmio::kQueueNotify, len 4, datamatch = index.
  const EventFd& kick_fd(uint16_t index) const { return core_->kick_fd(index); }
  TransportCore& core() { return *core_; }
  // See TransportCore::stop(): call on the loop thread when the VM shuts down.
  void stop() { core_->stop(); }

  // Use create(); public only for std::make_shared.
  explicit MmioTransport(EventFd irq) : irq_(std::move(irq)) {}

 private:
  uint32_t read_register(uint64_t offset);
  void write_register(uint64_t offset, uint32_t value);
  void deliver();

  EventFd irq_;
  std::unique_ptr<TransportCore> core_;  // after irq_: its delivery signals irq_
};

}  // namespace petrel::virtio
