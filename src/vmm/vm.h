// Vm: one guest machine built from a VmConfig: KVM VM with in-kernel irqchip and PIT, guest
// RAM, the port-I/O and MMIO buses with their devices, the vCPUs and the VMM event loop.
//
// Threads: create() and run() are called on the owning (main) thread; run() starts one
// thread per vCPU and the event-loop thread, waits until the StopLatch fires, then stops
// and joins them all before returning.
#pragma once

#include <memory>
#include <thread>
#include <vector>

#include <boost/asio/io_context.hpp>

#include "devices/bus.h"
#include "devices/serial_16550.h"
#include "vmm/base/guest_memory.h"
#include "vmm/base/kvm_system.h"
#include "vmm/base/kvm_vm.h"
#include "vmm/kernel_loader.h"
#include "vmm/pvm_host.h"
#include "vmm/serial_socket.h"
#include "vmm/stop_latch.h"
#include "vmm/vcpu.h"
#include "vmm/virtio_devices.h"
#include "vmm/vm_config.h"

namespace petrel {

class Vm {
 public:
  static Result<std::unique_ptr<Vm>> create(const VmConfig& config);
  ~Vm();
  Vm(const Vm&) = delete;
  Vm& operator=(const Vm&) = delete;

  // Runs the guest to its end. `console_fd` (usually stdin) feeds the UART; -1 for none. With
  // a socket console (SerialMode::kSocket) the socket's client feeds it and `console_fd` is
  // not read.
  StopReason run(int console_fd);

  ExecMode exec_mode() const { return mode_; }
  StopLatch& stop_latch() { return stop_; }

  // Use create(); public only for std::make_unique.
  Vm(KvmSystem kvm, KvmVm vm, PvmHost pvm, GuestMemory memory);

 private:
  Result<void> setup_devices(const VmConfig& config);
  Result<void> load_guest(const VmConfig& config);
  Result<void> boot_linux(const VmConfig& config, const LoadedKernel& kernel);
  Result<void> create_vcpus(const VmConfig& config);
  AcpiConfig acpi_config(const VmConfig& config) const;
  void stop_vcpus();

  KvmSystem kvm_;
  KvmVm vm_;
  PvmHost pvm_;
  GuestMemory memory_;
  ExecMode mode_ = ExecMode::kHardware;
  // Before the buses: their devices (virtio transports) hold references to it.
  boost::asio::io_context io_;
  // Uses io_, memory_ and vm_: destroyed before them; run() stops it on the loop thread.
  // Before the buses, so that the buses drop their references to the transports first and
  // the transports (and their MSI vectors) go before the GSI router they use.
  std::unique_ptr<VirtioDevices> virtio_;
  Bus pio_{"port I/O"};
  Bus mmio_{"MMIO"};
  StopLatch stop_;
  std::shared_ptr<Serial16550> serial_;
  // Set in socket mode. Uses io_: destroyed before it; after run() started it, run() destroys
  // it on the loop thread.
  std::unique_ptr<SerialSocket> serial_socket_;
  std::vector<std::unique_ptr<Vcpu>> vcpus_;  // last: their threads stop before the rest
};

}  // namespace petrel
