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
// entropy source): the ids of their metrics and error reports, and of their saved state.
//
// Pause / snapshot / migration (virtio_devices_state.cc): quiesce() makes every device stop
// touching guest memory (TransportCore::quiesce); while quiesced, save_state() gives one blob
// with every transport's registers, queue indices and device bytes; restore_state() installs
// such a blob into a VirtioDevices freshly built by create() from the same VmConfig.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>

#include "devices/bus.h"
#include "devices/pci_root.h"
#include "virtio/balloon_device.h"
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

  // Called from a thread other than the loop's while the vCPUs are parked (no register
  // access can come). Posts the quiesce of every transport to the event loop and waits until
  // every device is idle (VirtioDevice::quiesce: backend operations drained, held chains
  // returned, kicks only noted). After `limit`: kInternal naming the devices still busy, and
  // the devices are unquiesced again (posted). kState when already quiesced.
  Result<void> quiesce(std::chrono::milliseconds limit);
  // Any thread but the loop's: posts the end of the quiesce (devices resume, kicks noted
  // meanwhile are processed) and returns; the loop runs it before anything posted later.
  // Nothing when not quiesced.
  void unquiesce();
  bool quiesced() const { return quiesced_; }

  // While quiesced: hands every writable disk image's lock over (false: flush + unlock, so
  // that a migration's destination on this host can open it) or takes it back (true). On
  // a failed retake the images already retaken stay locked and the error names the image.
  Result<void> set_disk_locks(bool locked) const;

  // Only while quiesced (kState otherwise); any thread. One blob (own magic and version):
  // per device in config order its id, transport kind, device type, queue count and the
  // transport's state.
  Result<std::vector<std::byte>> save_state() const;
  // On a VirtioDevices freshly built by create() from the same VmConfig, before the vCPUs
  // run; the event loop need not run yet (the activations are posted). `state` is untrusted:
  // a device list that differs from this VM's (ids, types, transports, queue counts) is
  // refused naming the first difference, and every field is checked; any refusal is a
  // kInvalidArgument naming the device and field, and nothing changed.
  Result<void> restore_state(std::span<const std::byte> state);

  // Where device errors go: a device moved to DEVICE_NEEDS_RESET (a queue the driver broke,
  // a failed activation) or a block request the backend failed. Set before the devices
  // start (the event loop runs); the sink is then called on the event-loop thread, at most
  // DeviceErrorReporter::kMaxReports times per device plus one "further errors suppressed".
  // Default: nothing is called (the devices still log).
  void set_error_sink(std::function<void(std::string device, std::string message)> sink);

  // Any thread: the devices' counters (since they were built), in config order.
  std::vector<DiskMetrics> disk_metrics() const;
  std::vector<NetMetrics> net_metrics() const;

  // The memory balloon ("balloon0"), or null when the config has none. Its host-side
  // methods (target, stats, counters, ballooned pages) may be called from any thread.
  virtio::BalloonDevice* balloon() const { return balloon_.get(); }

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

  // One per device in config order, for quiesce and state.
  struct Entry {
    std::string id;
    VirtioTransport transport;
    virtio::TransportCore* core;
    virtio::PciTransport* pci;  // null for MMIO
  };

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
  std::shared_ptr<virtio::BalloonDevice> balloon_;
  std::vector<Entry> entries_;
  std::atomic<bool> quiesced_ = false;
};

}  // namespace petrel
