// VirtioDevices: the VM's virtio devices (disks, NICs, rng) built from a VmConfig, each behind
// its transport: virtio-MMIO slots (layout::kVirtioMmioBase, an edge-triggered IOAPIC line
// through irqfd, queue kicks through ioeventfd with datamatch) or virtio-PCI functions on a
// PCI root (config ports 0xcf8, ECAM, the BAR window; MSI-X vectors routed through KVM's GSI
// routing, kicks through ioeventfds that follow BAR moves).
//
// Lifetimes: the KvmVm, GuestMemory, io_context and buses outlive this object. Threads:
// create() on the VM-building thread; stop() on the event-loop thread (Vm::run's teardown)
// once the vCPUs have stopped; then destroy it (any thread: the loop no longer runs).
#pragma once

#include <memory>
#include <vector>

#include <boost/asio/io_context.hpp>

#include "devices/bus.h"
#include "devices/pci_root.h"
#include "virtio/mmio_transport.h"
#include "virtio/pci_transport.h"
#include "virtio/rng_device.h"
#include "vmm/acpi_tables.h"
#include "vmm/base/guest_memory.h"
#include "vmm/base/kvm_vm.h"
#include "vmm/gsi_router.h"
#include "vmm/kvm_msi_controller.h"
#include "vmm/vm_config.h"

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

  // Use create(); public only for std::make_unique.
  VirtioDevices(const KvmVm& vm, const GuestMemory& memory, boost::asio::io_context& io);

 private:
  Result<std::shared_ptr<virtio::VirtioDevice>> make_device(const VmConfig& config, size_t index);
  Result<void> add(std::shared_ptr<virtio::VirtioDevice> device, VirtioTransport transport,
                   std::string description, Bus& pio, Bus& mmio);
  Result<void> add_mmio(std::shared_ptr<virtio::VirtioDevice> device,
                        const std::string& description, Bus& mmio);
  Result<void> add_pci(std::shared_ptr<virtio::VirtioDevice> device, const std::string& description,
                       Bus& pio, Bus& mmio);

  const KvmVm& vm_;
  const GuestMemory& memory_;
  boost::asio::io_context& io_;
  std::unique_ptr<GsiRouter> gsi_router_;
  std::unique_ptr<KvmMsiController> msi_;
  std::shared_ptr<PciRoot> pci_root_;
  std::vector<AcpiVirtioMmio> acpi_mmio_;
  std::vector<std::shared_ptr<virtio::MmioTransport>> mmio_transports_;
  std::vector<std::shared_ptr<virtio::PciTransport>> pci_transports_;
  std::shared_ptr<virtio::RngDevice> rng_;
};

}  // namespace petrel
