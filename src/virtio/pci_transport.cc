#include "virtio/pci_transport.h"

#include <array>
#include <cstring>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "virtio/virtio_spec.h"

namespace petrel::virtio {

namespace {

// 4.1.4 virtio_pci_cap.cfg_type.
constexpr uint8_t kCapCommon = 1;
constexpr uint8_t kCapNotify = 2;
constexpr uint8_t kCapIsr = 3;
constexpr uint8_t kCapDevice = 4;
constexpr uint8_t kCapPciCfg = 5;
constexpr uint8_t kCapVendor = 0x09;  // PCI capability ID: vendor-specific
// Offsets inside a virtio_pci_cap (from its first byte).
constexpr uint16_t kCapBar = 4;
constexpr uint16_t kCapOffset = 8;
constexpr uint16_t kCapLength = 12;
constexpr uint16_t kCapPciCfgData = 16;

// 4.1.4.3 struct virtio_pci_common_cfg (with the 1.2 queue_notify_data and queue_reset).
namespace common {
constexpr uint64_t kDeviceFeatureSelect = 0x00;
constexpr uint64_t kDeviceFeature = 0x04;
constexpr uint64_t kDriverFeatureSelect = 0x08;
constexpr uint64_t kDriverFeature = 0x0c;
constexpr uint64_t kConfigMsixVector = 0x10;
constexpr uint64_t kNumQueues = 0x12;
constexpr uint64_t kDeviceStatus = 0x14;
constexpr uint64_t kConfigGeneration = 0x15;
constexpr uint64_t kQueueSelect = 0x16;
constexpr uint64_t kQueueSize = 0x18;
constexpr uint64_t kQueueMsixVector = 0x1a;
constexpr uint64_t kQueueEnable = 0x1c;
constexpr uint64_t kQueueNotifyOff = 0x1e;
constexpr uint64_t kQueueDesc = 0x20;
constexpr uint64_t kQueueDriver = 0x28;
constexpr uint64_t kQueueDevice = 0x30;
constexpr uint64_t kSize = 0x3c;
}  // namespace common

constexpr uint16_t kVirtioVendor = 0x1af4;

uint32_t class_code(uint32_t device_type) {
  switch (device_type) {
    case kDeviceNet:
      return 0x020000;  // network controller, Ethernet
    case kDeviceBlock:
      return 0x018000;  // mass storage, other
    default:
      return 0xff0000;  // unassigned class
  }
}

bool overlaps(uint64_t offset, size_t size, uint64_t start, uint64_t len) {
  return offset < start + len && start < offset + size;
}

template <typename T>
void put(std::span<std::byte> out, uint64_t at, T value) {
  std::memcpy(out.data() + at, &value, sizeof(T));
}

uint64_t get_le(std::span<const std::byte> data) {
  uint64_t value = 0;
  std::memcpy(&value, data.data(), std::min(data.size(), sizeof(value)));
  return value;
}

}  // namespace

Result<std::shared_ptr<PciTransport>> PciTransport::create(boost::asio::io_context& io,
                                                           const GuestMemory& memory,
                                                           std::shared_ptr<VirtioDevice> device,
                                                           MsiController& msi, NotifyBinder bind) {
  if (!device) {
    return Error(ErrorCode::kInternal, "virtio-pci transport needs a device");
  }
  const size_t queues = device->queue_max_sizes().size();
  if (queues > kMaxQueues) {
    return Error(ErrorCode::kUnsupported,
                 fmt::format("virtio-pci: {} queues (at most {})", queues, kMaxQueues));
  }
  const uint32_t type = device->device_type();
  auto transport =
      std::make_shared<PciTransport>(PciIds{.vendor_id = kVirtioVendor,
                                            .device_id = static_cast<uint16_t>(0x1040 + type),
                                            .revision = 1,
                                            .class_code = class_code(type),
                                            .subsystem_vendor_id = kVirtioVendor,
                                            .subsystem_id = 0x40},
                                     std::move(bind));
  const uint16_t vectors = static_cast<uint16_t>(std::min<size_t>(queues + 1, kMaxVectors));
  PETREL_TRY_ASSIGN(transport->msix_, Msix::create(msi, vectors));
  PETREL_TRY(transport->build_capabilities(static_cast<uint16_t>(queues)));
  transport->queue_vectors_.assign(queues, kNoVector);
  transport->bound_.resize(queues);
  PciTransport* self = transport.get();
  PETREL_TRY_ASSIGN(transport->core_,
                    TransportCore::create(io, memory, std::move(device),
                                          [self](InterruptKind kind, uint16_t queue) {
                                            self->deliver(kind, queue);
                                          }));
  return transport;
}

PciTransport::PciTransport(const PciIds& ids, NotifyBinder bind)
    : bind_(std::move(bind)), config_(ids) {}

PciTransport::~PciTransport() {
  std::lock_guard lock(mu_);
  bind_notify_locked(std::nullopt);
}

void PciTransport::stop() {
  {
    std::lock_guard lock(mu_);
    bind_notify_locked(std::nullopt);
  }
  core_->stop();
}

uint8_t PciTransport::add_virtio_cap(uint8_t cfg_type, uint64_t offset, uint64_t length,
                                     std::span<const std::byte> extra,
                                     std::span<const std::byte> writable) {
  // virtio_pci_cap after cap_vndr and cap_next: cap_len, cfg_type, bar, id, padding[2],
  // offset, length; then the type's extra fields.
  std::vector<std::byte> body(14 + extra.size());
  put<uint8_t>(body, 0, static_cast<uint8_t>(2 + body.size()));
  put<uint8_t>(body, 1, cfg_type);
  put<uint8_t>(body, 2, kBar);
  put<uint32_t>(body, 6, static_cast<uint32_t>(offset));
  put<uint32_t>(body, 10, static_cast<uint32_t>(length));
  std::copy(extra.begin(), extra.end(), body.begin() + 14);
  std::vector<std::byte> mask;
  if (!writable.empty()) {
    mask.assign(body.size(), std::byte{0});
    std::copy(writable.begin(), writable.end(), mask.begin());
  }
  auto at = config_.add_capability(kCapVendor, body, mask);
  return at ? *at : 0;
}

Result<void> PciTransport::build_capabilities(uint16_t num_queues) {
  PETREL_TRY(config_.add_memory_bar(kBar, kBarSize));
  const std::array<std::byte, 4> multiplier{std::byte{kNotifyOffMultiplier}};
  const uint8_t caps[] = {
      add_virtio_cap(kCapCommon, kCommonOffset, kRegionSize, {}, {}),
      add_virtio_cap(kCapNotify, kNotifyOffset,
                     std::max<uint64_t>(num_queues, 1) * kNotifyOffMultiplier, multiplier, {}),
      add_virtio_cap(kCapIsr, kIsrOffset, kRegionSize, {}, {}),
      add_virtio_cap(kCapDevice, kDeviceOffset, kRegionSize, {}, {}),
  };
  // 4.1.4.9: the driver writes bar, offset, length and data.
  std::array<std::byte, 18> cfg_writable{};
  cfg_writable[kCapBar - 2] = std::byte{0xff};
  for (size_t i = kCapOffset - 2; i < cfg_writable.size(); ++i) {
    cfg_writable[i] = std::byte{0xff};
  }
  const std::array<std::byte, 4> data{};
  cfg_access_cap_ = add_virtio_cap(kCapPciCfg, 0, 0, data, cfg_writable);
  auto msix = config_.add_capability(
      Msix::kCapabilityId, msix_->capability_body(kBar, kMsixTableOffset, kBar, kMsixPbaOffset),
      Msix::capability_writable());
  for (uint8_t cap : caps) {
    if (cap == 0) {
      return Error(ErrorCode::kInternal, "virtio-pci capabilities do not fit");
    }
  }
  if (cfg_access_cap_ == 0 || !msix) {
    return Error(ErrorCode::kInternal, "virtio-pci capabilities do not fit");
  }
  msix_cap_ = *msix;
  return {};
}

void PciTransport::config_read(uint16_t offset, std::span<std::byte> data) {
  if (overlaps(offset, data.size(), cfg_access_cap_ + kCapPciCfgData, 4)) {
    cfg_access(false);
  }
  std::lock_guard lock(mu_);
  config_.read(offset, data);
}

void PciTransport::config_write(uint16_t offset, std::span<const std::byte> data) {
  {
    std::lock_guard lock(mu_);
    config_.write(offset, data);
    const uint16_t control = msix_cap_ + Msix::kMessageControlOffset;
    if (overlaps(offset, data.size(), control, 2)) {
      bool was_enabled = msix_->enabled();
      msix_->set_message_control(static_cast<uint16_t>(config_.load(control, 2)));
      if (msix_->enabled() != was_enabled) {
        spdlog::info("virtio-pci (device type {}): the driver {} MSI-X ({} vectors)",
                     core_->device_type(), msix_->enabled() ? "enabled" : "disabled",
                     msix_->vectors());
      }
    }
  }
  if (overlaps(offset, data.size(), cfg_access_cap_ + kCapPciCfgData, 4)) {
    cfg_access(true);
  }
}

void PciTransport::cfg_access(bool write) {
  std::array<std::byte, 4> buf{};
  uint32_t bar;
  uint32_t offset;
  uint32_t length;
  {
    std::lock_guard lock(mu_);
    bar = config_.load(cfg_access_cap_ + kCapBar, 1);
    offset = config_.load(cfg_access_cap_ + kCapOffset, 4);
    length = config_.load(cfg_access_cap_ + kCapLength, 4);
    const uint32_t value = config_.load(cfg_access_cap_ + kCapPciCfgData, 4);
    std::memcpy(buf.data(), &value, 4);
  }
  // 4.1.4.9.1: length 1, 2 or 4, offset a multiple of it, inside the BAR.
  if (bar != kBar || (length != 1 && length != 2 && length != 4) || offset % length != 0 ||
      offset > kBarSize - length) {
    spdlog::debug("virtio-pci: PCI cfg access to BAR {} offset {:#x} length {} ignored", bar,
                  offset, length);
    return;
  }
  const auto span = std::span(buf).first(length);
  if (write) {
    bar_write(kBar, offset, span);
    return;
  }
  bar_read(kBar, offset, span);
  uint32_t value = 0;
  std::memcpy(&value, buf.data(), 4);
  std::lock_guard lock(mu_);
  config_.store(cfg_access_cap_ + kCapPciCfgData, 4, value);
}

std::vector<PciBar> PciTransport::bars() const {
  std::lock_guard lock(mu_);
  return config_.bars();
}

void PciTransport::bar_read(uint8_t index, uint64_t offset, std::span<std::byte> data) {
  std::fill(data.begin(), data.end(), std::byte{0});
  if (index != kBar || data.empty() || offset >= kBarSize || data.size() > kBarSize - offset ||
      offset / kRegionSize != (offset + data.size() - 1) / kRegionSize) {
    return;
  }
  const uint64_t region = offset / kRegionSize * kRegionSize;
  const uint64_t at = offset - region;
  switch (region) {
    case kCommonOffset:
      common_read(at, data);
      break;
    case kIsrOffset:
      if (at == 0) {
        data[0] = std::byte(core_->take_interrupt_status() & 0xff);
      }
      break;
    case kDeviceOffset:
      core_->read_config(at, data);
      break;
    case kMsixTableOffset:
      msix_->read_table(at, data);
      break;
    case kMsixPbaOffset:
      msix_->read_pba(at, data);
      break;
    default:
      break;
  }
}

void PciTransport::bar_write(uint8_t index, uint64_t offset, std::span<const std::byte> data) {
  if (index != kBar || data.empty() || offset >= kBarSize || data.size() > kBarSize - offset ||
      offset / kRegionSize != (offset + data.size() - 1) / kRegionSize) {
    return;
  }
  const uint64_t region = offset / kRegionSize * kRegionSize;
  const uint64_t at = offset - region;
  switch (region) {
    case kCommonOffset:
      common_write(at, data);
      break;
    case kDeviceOffset:
      core_->write_config(at, data);
      break;
    case kNotifyOffset:
      // The exit path of a notification (4.1.4.4): the value written is the queue index, but
      // the address alone names the queue.
      if (at % kNotifyOffMultiplier == 0) {
        core_->kick(static_cast<uint32_t>(at / kNotifyOffMultiplier));
      }
      break;
    case kMsixTableOffset:
      msix_->write_table(at, data);
      break;
    default:
      break;  // ISR and PBA are read-only
  }
}

void PciTransport::common_read(uint64_t offset, std::span<std::byte> data) {
  std::array<std::byte, 0x40> regs{};
  static_assert(common::kSize <= regs.size());
  const uint32_t select = core_->queue_select();
  const bool queue_exists = select < core_->num_queues();
  put<uint32_t>(regs, common::kDeviceFeatureSelect, core_->device_features_select());
  put<uint32_t>(regs, common::kDeviceFeature, core_->device_features_word());
  put<uint32_t>(regs, common::kDriverFeatureSelect, core_->driver_features_select());
  put<uint32_t>(regs, common::kDriverFeature, core_->driver_features_word());
  put<uint16_t>(regs, common::kNumQueues, core_->num_queues());
  put<uint8_t>(regs, common::kDeviceStatus, core_->status());
  put<uint8_t>(regs, common::kConfigGeneration, static_cast<uint8_t>(core_->config_generation()));
  put<uint16_t>(regs, common::kQueueSelect, static_cast<uint16_t>(select));
  put<uint16_t>(regs, common::kQueueSize, core_->queue_size());
  put<uint16_t>(regs, common::kQueueEnable, core_->queue_ready() ? 1 : 0);
  put<uint16_t>(regs, common::kQueueNotifyOff, queue_exists ? static_cast<uint16_t>(select) : 0);
  put<uint64_t>(regs, common::kQueueDesc, core_->queue_address(QueueArea::kDesc));
  put<uint64_t>(regs, common::kQueueDriver, core_->queue_address(QueueArea::kDriver));
  put<uint64_t>(regs, common::kQueueDevice, core_->queue_address(QueueArea::kDevice));
  {
    std::lock_guard lock(mu_);
    put<uint16_t>(regs, common::kConfigMsixVector, config_vector_);
    put<uint16_t>(regs, common::kQueueMsixVector,
                  queue_exists ? queue_vectors_[select] : kNoVector);
  }
  // queue_notify_data (no VIRTIO_F_NOTIF_CONFIG_DATA) and queue_reset (no
  // VIRTIO_F_RING_RESET) read 0.
  for (size_t i = 0; i < data.size(); ++i) {
    data[i] = offset + i < regs.size() ? regs[offset + i] : std::byte{0};
  }
}

void PciTransport::common_write(uint64_t offset, std::span<const std::byte> data) {
  const size_t width = data.size();
  const uint64_t value = get_le(data);
  auto is = [&](uint64_t field, size_t field_width) {
    return offset == field && width == field_width;
  };
  // The 64-bit queue addresses, whole or as 32-bit halves.
  auto queue_address = [&] {
    constexpr std::pair<uint64_t, QueueArea> kAreas[] = {
        {common::kQueueDesc, QueueArea::kDesc},
        {common::kQueueDriver, QueueArea::kDriver},
        {common::kQueueDevice, QueueArea::kDevice}};
    for (const auto& [field, area] : kAreas) {
      if (is(field, 8)) {
        core_->set_queue_address(area, value);
        return true;
      }
      if (is(field, 4) || is(field + 4, 4)) {
        core_->set_queue_address_half(area, offset != field, static_cast<uint32_t>(value));
        return true;
      }
    }
    return false;
  };
  if (is(common::kDeviceFeatureSelect, 4)) {
    core_->set_device_features_select(static_cast<uint32_t>(value));
  } else if (is(common::kDriverFeatureSelect, 4)) {
    core_->set_driver_features_select(static_cast<uint32_t>(value));
  } else if (is(common::kDriverFeature, 4)) {
    core_->set_driver_features_word(static_cast<uint32_t>(value));
  } else if (is(common::kConfigMsixVector, 2)) {
    // 4.1.5.1.2: a vector the device cannot use reads back as NO_VECTOR.
    std::lock_guard lock(mu_);
    config_vector_ = value < msix_->vectors() ? static_cast<uint16_t>(value) : kNoVector;
  } else if (is(common::kDeviceStatus, 1)) {
    core_->write_status(static_cast<uint8_t>(value));
    if (value == 0) {
      reset_vectors();
    }
  } else if (is(common::kQueueSelect, 2)) {
    core_->select_queue(static_cast<uint32_t>(value));
  } else if (is(common::kQueueSize, 2)) {
    core_->set_queue_size(static_cast<uint32_t>(value));
  } else if (is(common::kQueueMsixVector, 2)) {
    const uint32_t select = core_->queue_select();
    std::lock_guard lock(mu_);
    if (select < queue_vectors_.size()) {
      queue_vectors_[select] = value < msix_->vectors() ? static_cast<uint16_t>(value) : kNoVector;
    }
  } else if (is(common::kQueueEnable, 2)) {
    // 4.1.4.3.2: the driver never writes 0; a queue is disabled by a device reset.
    if (value == 1) {
      core_->set_queue_ready(true);
    }
  } else if (!queue_address()) {
    spdlog::debug("virtio-pci: common cfg write of {} bytes at {:#x} ignored", width, offset);
  }
}

void PciTransport::reset_vectors() {
  std::lock_guard lock(mu_);
  config_vector_ = kNoVector;
  std::fill(queue_vectors_.begin(), queue_vectors_.end(), kNoVector);
}

void PciTransport::deliver(InterruptKind kind, uint16_t queue) {
  uint16_t vector = kNoVector;
  {
    std::lock_guard lock(mu_);
    if (kind == InterruptKind::kConfig) {
      vector = config_vector_;
    } else if (queue < queue_vectors_.size()) {
      vector = queue_vectors_[queue];
    }
  }
  if (vector == kNoVector) {
    return;
  }
  // false: MSI-X is disabled. The core has set the ISR bit; without INTx that is all.
  (void)msix_->trigger(vector);
}

void PciTransport::bar_mapped(uint8_t index, std::optional<GuestAddress> base) {
  if (index != kBar) {
    return;
  }
  std::lock_guard lock(mu_);
  bind_notify_locked(base);
}

void PciTransport::bind_notify_locked(std::optional<GuestAddress> base) {
  if (!bind_ || !core_) {
    return;
  }
  for (uint16_t i = 0; i < bound_.size(); ++i) {
    if (bound_[i]) {
      if (auto r = bind_(core_->kick_fd(i), *bound_[i], false); !r) {
        spdlog::warn("virtio-pci: unbinding queue {} notify: {}", i, r.error().to_string());
      }
      bound_[i].reset();
    }
  }
  if (!base) {
    return;
  }
  for (uint16_t i = 0; i < bound_.size(); ++i) {
    const GuestAddress addr = *base + kNotifyOffset + uint64_t{i} * kNotifyOffMultiplier;
    if (auto r = bind_(core_->kick_fd(i), addr, true); !r) {
      spdlog::warn("virtio-pci: binding queue {} notify at {:#x}: {} (exits will kick)", i,
                   addr.value(), r.error().to_string());
      continue;
    }
    bound_[i] = addr;
  }
}

}  // namespace petrel::virtio
