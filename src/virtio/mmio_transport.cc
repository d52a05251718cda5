#include "virtio/mmio_transport.h"

#include <sys/eventfd.h>

#include <cstring>

#include <spdlog/spdlog.h>

#include "virtio/virtio_spec.h"

namespace petrel::virtio {

Result<std::shared_ptr<MmioTransport>> MmioTransport::create(boost::asio::io_context& io,
                                                             const GuestMemory& memory,
                                                             std::shared_ptr<VirtioDevice> device) {
  PETREL_TRY_ASSIGN(EventFd irq, EventFd::create(EFD_NONBLOCK));
  auto transport = std::make_shared<MmioTransport>(std::move(irq));
  MmioTransport* self = transport.get();
  PETREL_TRY_ASSIGN(transport->core_,
                    TransportCore::create(io, memory, std::move(device),
                                          [self](InterruptKind, uint16_t) { self->deliver(); }));
  return transport;
}

void MmioTransport::deliver() {
  if (auto r = irq_.signal(); !r) {
    spdlog::warn("virtio-mmio: interrupt: {}", r.error().to_string());
  }
}

void MmioTransport::read(uint64_t offset, std::span<std::byte> data) {
  std::memset(data.data(), 0, data.size());
  if (offset >= mmio::kConfig) {
    if (offset < mmio::kSize && data.size() <= mmio::kSize - offset) {
      core_->read_config(offset - mmio::kConfig, data);
    }
    return;
  }
  if (data.size() != 4 || offset % 4 != 0) {
    spdlog::debug("virtio-mmio: {}-byte read at {:#x} ignored", data.size(), offset);
    return;
  }
  uint32_t value = read_register(offset);
  std::memcpy(data.data(), &value, sizeof(value));
}

void MmioTransport::write(uint64_t offset, std::span<const std::byte> data) {
  if (offset >= mmio::kConfig) {
    if (offset < mmio::kSize && data.size() <= mmio::kSize - offset) {
      core_->write_config(offset - mmio::kConfig, data);
    }
    return;
  }
  if (data.size() != 4 || offset % 4 != 0) {
    spdlog::debug("virtio-mmio: {}-byte write at {:#x} ignored", data.size(), offset);
    return;
  }
  uint32_t value = 0;
  std::memcpy(&value, data.data(), sizeof(value));
  write_register(offset, value);
}

uint32_t MmioTransport::read_register(uint64_t offset) {
  switch (offset) {
    case mmio::kMagicValue:
      return kMmioMagic;
    case mmio::kVersion:
      return kMmioVersion;
    case mmio::kDeviceId:
      return core_->device_type();
    case mmio::kVendorId:
      return kMmioVendorId;
    case mmio::kDeviceFeatures:
      return core_->device_features_word();
    case mmio::kQueueNumMax:
      return core_->queue_max_size();
    case mmio::kQueueReady:
      return core_->queue_ready() ? 1 : 0;
    case mmio::kInterruptStatus:
      return core_->interrupt_status();
    case mmio::kStatus:
      return core_->status();
    case mmio::kShmLenLow:
    case mmio::kShmLenHigh:
    case mmio::kShmBaseLow:
    case mmio::kShmBaseHigh:
      return 0xffffffff;  // 4.2.2: no such region
    case mmio::kQueueReset:
      return 0;
    case mmio::kConfigGeneration:
      return core_->config_generation();
    default:
      spdlog::debug("virtio-mmio: read of write-only or reserved register {:#x}", offset);
      return 0;
  }
}

void MmioTransport::write_register(uint64_t offset, uint32_t value) {
  switch (offset) {
    case mmio::kDeviceFeaturesSel:
      core_->set_device_features_select(value);
      return;
    case mmio::kDriverFeatures:
      core_->set_driver_features_word(value);
      return;
    case mmio::kDriverFeaturesSel:
      core_->set_driver_features_select(value);
      return;
    case mmio::kQueueSel:
      core_->select_queue(value);
      return;
    case mmio::kQueueNum:
      core_->set_queue_size(value);
      return;
    case mmio::kQueueReady:
      core_->set_queue_ready((value & 1) != 0);
      return;
    case mmio::kQueueNotify:
      core_->kick(value);
      return;
    case mmio::kInterruptAck:
      core_->ack_interrupt(value);
      return;
    case mmio::kStatus:
      core_->write_status(static_cast<uint8_t>(value));
      return;
    case mmio::kQueueDescLow:
    case mmio::kQueueDescHigh:
      core_->set_queue_address_half(QueueArea::kDesc, offset == mmio::kQueueDescHigh, value);
      return;
    case mmio::kQueueDriverLow:
    case mmio::kQueueDriverHigh:
      core_->set_queue_address_half(QueueArea::kDriver, offset == mmio::kQueueDriverHigh, value);
      return;
    case mmio::kQueueDeviceLow:
    case mmio::kQueueDeviceHigh:
      core_->set_queue_address_half(QueueArea::kDevice, offset == mmio::kQueueDeviceHigh, value);
      return;
    default:
      spdlog::debug("virtio-mmio: write of {:#x} to read-only or reserved register {:#x}", value,
                    offset);
      return;
  }
}

}  // namespace petrel::virtio
