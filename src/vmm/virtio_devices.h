// VirtioDevices: the VM's virtio devices (disks, NICs, rng) built from a VmConfig, each behind
// its transport: virtio-MMIO slots (layout::kVirtioMmioBase, an edge-triggered IOAPIC line
// through irqfd, queue kicks through ioeventfd with datamatch) or virtio-PCI functions on a
// PCI root (config ports 0xcf8, ECAM, the BAR window; MSI-X vectors routed through KVM's GSI
// routing, kicks through ioeventfds that follow BAR moves).
//
// Lifetimes: the KvmVm, GuestMemory, io_context and buses outlive this object. Threads:
// create() on the VM-building thread; stop() on the event-loop thread (Vm::run's teardown)
// once the vCPUs have stopped; then destroy it (any thread: the loop no longer runs).
//
// Devices are named "disk0", "disk1", ... and "net0", ... in config order ("rng0" for the
// entropy source): the ids of their metrics and error reports.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>

#include "devices/bus.h"
#include "devices/pci_root.h"
#include "virtio/block_device.h"
#include "virtio/mmio_transport.h"
#include "virtio/net_device.h"
#include "virtio/pci_transport.h"
#include "virtio/rng_device.h"
#include "vmm/acpi_tables.h"
#include "vmm/base/guest_memory.h"
#include "vmm/base/kvm_vm.h"
#include "vmm/device_error_reporter.h"
#include "vmm/gsi_router.h"
#include "vmm/kvm_msi_controller.h"
#include "vmm/vm_config.h"
#include "vmm/vm_control.h"

namespace petrel {

class VirtioDevices {
 public:
  static Result<std::unique_ptr<VirtioDevices>> create(const VmConfig& config, const KvmVm& vm,
                                                       const GuestMemory& memory,
                                                       boost::asio::io_context& io, Bus& pio,
                                                       Bus& mmio);
  ~VirtioDevices();
  VirtioDevices(const VirtioDevices&) = delete;
  VirtioDevices& operator=(const VirtioDevices&) = delete;

  // What the DSDT must describe: the MMIO slots with their GSIs, and whether a PCI root
  // exists.
  const std::vector<AcpiVirtioMmio>& acpi_mmio() const { return acpi_mmio_; }
  bool has_pci() const { return pci_root_ != nullptr; }

  // Stops every transport (device reset, kick waits cancelled). Event-loop thread.
  void stop();

  // Where device errors go: a device moved to DEVICE_NEEDS_RESET (a queue the driver broke,
  // a failed activation) or a block request the backend failed. Set before the devices
  // start (the event loop runs); the sink is then called on the event-loop thread, at most
  // DeviceErrorReporter::kMaxReports times per device plus one "further errors suppressed".
  // Default: nothing is called (the devices still log).
  void set_error_sink(std::function<void(std::string device, std::string message)> sink);

  // Any thread: the devices' counters (since they were built), in config order.
  std::vector<DiskMetrics> disk_metrics() const;
  std::vector<NetMetrics> net_metrics() const;

  // Use create(); public only for std::make_unique.
  VirtioDevices(const KvmVm& vm, const GuestMemory& memory, boost::asio::io_context& io);

 private:
  Result<std::shared_ptr<virtio::VirtioDevice>> make_device(const VmConfig& config, size_t index);
  // Wraps `device` so that its errors reach the sink as `id`, and puts it on `transport`.
  Result<void> add(std::shared_ptr<virtio::VirtioDevice> device, const std::string& id,
                   VirtioTransport transport, std::string description, Bus& pio, Bus& mmio);
  Result<void> add_mmio(std::shared_ptr<virtio::VirtioDevice> device,
                        const std::string& description, Bus& mmio);
  Result<void> add_pci(std::shared_ptr<virtio::VirtioDevice> device, const std::string& description,
                       Bus& pio, Bus& mmio);

  const KvmVm& vm_;
  const GuestMemory& memory_;
  boost::asio::io_context& io_;
  // Declared before the transports: the devices' callbacks use these until they are gone.
  DeviceErrorSink error_sink_;
  std::vector<std::unique_ptr<DeviceErrorReporter>> reporters_;
  struct Disk {
    std::string path;
    std::shared_ptr<virtio::BlockDevice> device;
  };
  struct Nic {
    std::string tap;
    std::shared_ptr<virtio::NetDevice> device;
  };
  std::vector<Disk> disks_;  // config order
  std::vector<Nic> nics_;    // config order
  std::unique_ptr<GsiRouter> gsi_router_;
  std::unique_ptr<KvmMsiController> msi_;
  std::shared_ptr<PciRoot> pci_root_;
  std::vector<AcpiVirtioMmio> acpi_mmio_;
  std::vector<std::shared_ptr<virtio::MmioTransport>> mmio_transports_;
  std::vector<std::shared_ptr<virtio::PciTransport>> pci_transports_;
  std::shared_ptr<virtio::RngDevice> rng_;
};

}  // namespace petrel
