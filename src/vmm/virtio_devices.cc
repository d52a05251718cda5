#include "vmm/virtio_devices.h"

#include <array>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "virtio/block_device.h"
#include "virtio/error_reporting_device.h"
#include "virtio/net_device.h"
#include "virtio/virtio_spec.h"
#include "vmm/layout.h"

namespace petrel {

namespace {

// IOAPIC inputs free for virtio-MMIO devices, in order of use: the legacy ISA lines no
// petrel device uses (0 PIT, 1 keyboard, 2 cascade, 3/4 COM, 8 RTC, 12 mouse stay
// free of virtio), then the PCI-era lines 16-23.
constexpr std::array<uint32_t, kMaxVirtioMmioDevices> kMmioGsis{5,  6,  7,  9,  10, 11, 14, 15,
                                                                16, 17, 18, 19, 20, 21, 22, 23};

virtio::DiskEngine to_virtio(DiskEngine engine) {
  switch (engine) {
    case DiskEngine::kUring:
      return virtio::DiskEngine::kUring;
    case DiskEngine::kSync:
      return virtio::DiskEngine::kSync;
    case DiskEngine::kAuto:
      break;
  }
  return virtio::DiskEngine::kAuto;
}

}  // namespace

VirtioDevices::VirtioDevices(const KvmVm& vm, const GuestMemory& memory,
                             boost::asio::io_context& io)
    : vm_(vm), memory_(memory), io_(io) {}

VirtioDevices::~VirtioDevices() = default;

Result<std::unique_ptr<VirtioDevices>> VirtioDevices::create(const VmConfig& config,
                                                             const KvmVm& vm,
                                                             const GuestMemory& memory,
                                                             boost::asio::io_context& io, Bus& pio,
                                                             Bus& mmio) {
  auto devices = std::make_unique<VirtioDevices>(vm, memory, io);
  for (size_t i = 0; i < config.disks.size(); ++i) {
    const DiskSpec& disk = config.disks[i];
    virtio::BlockConfig block{disk.path, disk.read_only, disk.serial, to_virtio(disk.engine),
                              false};
    auto device = virtio::BlockDevice::open(block);
    if (!device) {
      return std::move(device).error().context(fmt::format("disks[{}] {}", i, disk.path.string()));
    }
    std::string description = fmt::format("disk {} ({}{}, {} sectors, {} engine)", i,
                                          disk.path.string(), disk.read_only ? ", read-only" : "",
                                          (*device)->capacity_sectors(), (*device)->engine_name());
    const std::string id = fmt::format("disk{}", i);
    PETREL_TRY(devices->add(*device, id, disk.transport.value_or(config.virtio_transport),
                            std::move(description), pio, mmio));
    // add() made the reporter for `id` last.
    (*device)->set_error_handler([reporter = devices->reporters_.back().get()](std::string m) {
      reporter->report(std::move(m));
    });
    devices->disks_.push_back(Disk{disk.path.string(), *device});
  }
  for (size_t i = 0; i < config.nets.size(); ++i) {
    const NetSpec& spec = config.nets[i];
    virtio::NetConfig net;
    net.tap_name = spec.tap;
    if (!spec.mac.empty()) {
      PETREL_TRY_ASSIGN(net.mac, virtio::MacAddress::parse(spec.mac));
    }
    if (spec.mtu) {
      net.mtu = static_cast<uint16_t>(*spec.mtu);
    }
    net.vm_name = config.name;
    net.index = static_cast<unsigned>(i);
    auto device = virtio::NetDevice::create(net, io);
    if (!device) {
      return std::move(device).error().context(fmt::format("nets[{}]", i));
    }
    PETREL_TRY(devices->add(
        *device, fmt::format("net{}", i), spec.transport.value_or(config.virtio_transport),
        fmt::format("NIC {} (MAC {})", i, (*device)->mac().to_string()), pio, mmio));
    devices->nics_.push_back(Nic{(*device)->tap_name(), *device});
  }
  if (config.rng) {
    PETREL_TRY_ASSIGN(devices->rng_, virtio::RngDevice::create());
    PETREL_TRY(devices->add(devices->rng_, "rng0",
                            config.rng->transport.value_or(config.virtio_transport),
                            "entropy source (getrandom)", pio, mmio));
  }
  if (config.balloon) {
    const BalloonSpec& spec = *config.balloon;
    virtio::BalloonOptions options;
    options.initial_target_pages = static_cast<uint32_t>(spec.target_bytes / kBalloonPageBytes);
    options.deflate_on_oom = spec.deflate_on_oom;
    options.free_page_reporting = spec.free_page_reporting;
    options.stats_interval = std::chrono::seconds(spec.stats_interval_s);
    PETREL_TRY_ASSIGN(devices->balloon_, virtio::BalloonDevice::create(memory, options, io));
    PETREL_TRY(devices->add(
        devices->balloon_, "balloon0", spec.transport.value_or(config.virtio_transport),
        fmt::format("memory balloon (target {} MiB)", spec.target_bytes >> 20), pio, mmio));
  }
  return devices;
}

Result<void> VirtioDevices::add(std::shared_ptr<virtio::VirtioDevice> device, const std::string& id,
                                VirtioTransport transport, std::string description, Bus& pio,
                                Bus& mmio) {
  reporters_.push_back(std::make_unique<DeviceErrorReporter>(id, &error_sink_));
  device = std::make_shared<virtio::ErrorReportingDevice>(
      std::move(device),
      [reporter = reporters_.back().get()](std::string m) { reporter->report(std::move(m)); });
  if (transport == VirtioTransport::kPci) {
    PETREL_TRY(add_pci(std::move(device), description, pio, mmio));
    virtio::PciTransport* pci = pci_transports_.back().get();
    entries_.push_back(Entry{id, transport, &pci->core(), pci});
    return {};
  }
  PETREL_TRY(add_mmio(std::move(device), description, mmio));
  entries_.push_back(Entry{id, transport, &mmio_transports_.back()->core(), nullptr});
  return {};
}

Result<void> VirtioDevices::add_mmio(std::shared_ptr<virtio::VirtioDevice> device,
                                     const std::string& description, Bus& mmio) {
  size_t slot = acpi_mmio_.size();
  if (slot >= kMmioGsis.size() || slot >= layout::kVirtioMmioMaxSlots) {
    return Error(ErrorCode::kUnsupported,
                 fmt::format("more than {} virtio-MMIO devices", kMmioGsis.size()));
  }
  uint64_t base = layout::kVirtioMmioBase.value() + slot * layout::kVirtioMmioSlotSize;
  uint32_t gsi = kMmioGsis[slot];
  PETREL_TRY_ASSIGN(auto transport, virtio::MmioTransport::create(io_, memory_, device));
  PETREL_TRY(mmio.insert(transport, base, virtio::mmio::kSize));
  PETREL_TRY(vm_.add_irqfd(transport->irq_fd(), gsi));
  for (uint16_t q = 0; q < transport->num_queues(); ++q) {
    PETREL_TRY(vm_.add_ioeventfd(transport->kick_fd(q),
                                 GuestAddress(base + virtio::mmio::kQueueNotify), 4, uint64_t{q}));
  }
  acpi_mmio_.push_back({base, virtio::mmio::kSize, gsi});
  mmio_transports_.push_back(std::move(transport));
  spdlog::info("virtio-mmio {:#x} irq {}: {}", base, gsi, description);
  return {};
}

Result<void> VirtioDevices::add_pci(std::shared_ptr<virtio::VirtioDevice> device,
                                    const std::string& description, Bus& pio, Bus& mmio) {
  if (!pci_root_) {
    gsi_router_ = GsiRouter::for_vm(vm_);
    PETREL_TRY(gsi_router_->install_defaults());
    msi_ = std::make_unique<KvmMsiController>(vm_, *gsi_router_);
    pci_root_ = PciRoot::create(layout::kPciMmioWindow, layout::kPciMmioWindowSize);
    PETREL_TRY(
        pio.insert(pci_root_->config_io_device(), PciRoot::kConfigIoBase, PciRoot::kConfigIoSize));
    PETREL_TRY(mmio.insert(pci_root_->ecam_device(), layout::kPciEcam.value(), PciRoot::kEcamSize));
    PETREL_TRY(mmio.insert(pci_root_->bar_window_device(), layout::kPciMmioWindow.value(),
                           layout::kPciMmioWindowSize));
  }
  const KvmVm& vm = vm_;
  auto bind = [&vm](const EventFd& fd, GuestAddress addr, bool add) -> Result<void> {
    return add ? vm.add_ioeventfd(fd, addr, 2, std::nullopt)
               : vm.remove_ioeventfd(fd, addr, 2, std::nullopt);
  };
  PETREL_TRY_ASSIGN(auto transport,
                    virtio::PciTransport::create(io_, memory_, std::move(device), *msi_, bind));
  PETREL_TRY_ASSIGN(uint8_t slot, pci_root_->add_device(transport));
  pci_transports_.push_back(std::move(transport));
  spdlog::info("virtio-pci 00:{:02x}.0: {}", slot, description);
  return {};
}

void VirtioDevices::set_error_sink(
    std::function<void(std::string device, std::string message)> sink) {
  error_sink_ = std::move(sink);
}

std::vector<DiskMetrics> VirtioDevices::disk_metrics() const {
  std::vector<DiskMetrics> out;
  out.reserve(disks_.size());
  for (size_t i = 0; i < disks_.size(); ++i) {
    const virtio::BlockStats s = disks_[i].device->stats();
    out.push_back(DiskMetrics{
        .id = fmt::format("disk{}", i),
        .path = disks_[i].path,
        .read_bytes = s.read_bytes,
        .write_bytes = s.write_bytes,
        .read_ops = s.read_ops,
        .write_ops = s.write_ops,
        .flush_ops = s.flush_ops,
        .discard_ops = s.discard_ops,
        .errors = s.errors,
    });
  }
  return out;
}

std::vector<NetMetrics> VirtioDevices::net_metrics() const {
  std::vector<NetMetrics> out;
  out.reserve(nics_.size());
  for (size_t i = 0; i < nics_.size(); ++i) {
    const virtio::NetStats s = nics_[i].device->stats();
    out.push_back(NetMetrics{
        .id = fmt::format("net{}", i),
        .tap = nics_[i].tap,
        .rx_bytes = s.rx_bytes,
        .rx_packets = s.rx_frames,
        .rx_drops = s.rx_dropped,
        .tx_bytes = s.tx_bytes,
        .tx_packets = s.tx_frames,
        .tx_drops = s.tx_errors,
    });
  }
  return out;
}

void VirtioDevices::stop() {
  for (auto& t : mmio_transports_) {
    t->stop();
  }
  for (auto& t : pci_transports_) {
    t->stop();
  }
}

}  // namespace petrel
