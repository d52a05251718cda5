// Vm: one guest machine built from a VmConfig: KVM VM with in-kernel irqchip and PIT, guest
// RAM, the port-I/O and MMIO buses with their devices, the vCPUs and the VMM event loop.
//
// Threads: create(), start(), finish() and destruction happen on the owning thread; start()
// starts one thread per vCPU and the event-loop thread, finish() stops and joins them all.
// pause()/resume() come from the one controlling thread (VmController serialises them).
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>

#include "devices/bus.h"
#include "devices/i8042.h"
#include "devices/serial_16550.h"
#include "vmm/base/guest_memory.h"
#include "vmm/base/kvm_system.h"
#include "vmm/base/kvm_vm.h"
#include "vmm/console_input.h"
#include "vmm/kernel_loader.h"
#include "vmm/memory_file.h"
#include "vmm/pvm_host.h"
#include "vmm/seccomp_allowlist.h"
#include "vmm/serial_socket.h"
#include "vmm/snapshot_file.h"
#include "vmm/stop_latch.h"
#include "vmm/vcpu.h"
#include "vmm/vcpu_gate.h"
#include "vmm/virtio_devices.h"
#include "vmm/vm_config.h"
#include "vmm/vm_control.h"
#include "vmm/vm_kvm_state.h"

namespace petrel {

// What a Vm reports upwards while it runs. Each may be empty; they run on the thread named.
struct VmHooks {
  // vCPU thread: the guest announced a panic through pvpanic (`events` as written).
  std::function<void(uint8_t events)> on_panic;
  // Event-loop thread: a device hit an error worth an operator's attention (rate-limited).
  std::function<void(std::string device, std::string message)> on_device_error;
  // First thing on each vCPU thread (kVcpu) and on the event-loop thread (kEventLoop): the
  // controller installs the thread's seccomp filter. An error stops the VM (kHostError).
  std::function<Result<void>(ThreadKind)> on_thread_start;
};

class Vm {
 public:
  static Result<std::unique_ptr<Vm>> create(const VmConfig& config, VmHooks hooks = {});
  // Builds a VM from `config` over `memory` (the guest RAM as it was saved, regions as
  // layout::ram_regions(config.memory_bytes)) and restores `sections` (save_state()'s, from
  // a snapshot file or a migration stream: untrusted, every section checked) into it. Not
  // started: start() lets the guest go on from where it was saved. `clock` as for
  // restore_vm_kvm_state. Source: vm_state.cc.
  static Result<std::unique_ptr<Vm>> create_restored(const VmConfig& config, GuestMemory memory,
                                                     std::span<const StateSection> sections,
                                                     ClockRestore clock, VmHooks hooks = {});
  ~Vm();
  Vm(const Vm&) = delete;
  Vm& operator=(const Vm&) = delete;

  // Starts the event loop and the vCPUs; once. `console_fd` (usually stdin) feeds the UART;
  // -1 for none. With a socket console (SerialMode::kSocket) the socket's client feeds it and
  // `console_fd` is not read.
  void start(int console_fd);
  // Blocks until the VM stops (the latch fires) and returns why. Does not tear down.
  StopReason wait() const { return stop_.wait(); }
  // Stops the vCPUs and the event loop and joins them; idempotent, also done on destruction.
  void finish();
  // start + wait + finish.
  StopReason run(int console_fd);

  // Controlling thread, after start(): parks every vCPU outside KVM_RUN (waits up to 5 s for
  // them; kInternal if one does not park, with the VM left running) / lets them go again.
  Result<void> pause();
  void resume();
  // Controlling thread, while paused (pause() succeeded): the machine's state as named
  // sections — "machine" (vCPU count, execution mode, RAM size), "vcpu.N", "kvm.vm" (irqchip,
  // PIT, clock) and the devices' ("dev.*"). Guest RAM is not included (memory()). Source:
  // vm_state.cc.
  Result<std::vector<StateSection>> save_state();
  // While paused: hands the disk images' locks to a migration's destination (false) or
  // takes them back after a failed migration (true; see VirtioDevices::set_disk_locks).
  Result<void> set_disk_locks(bool locked) const { return virtio_->set_disk_locks(locked); }
  // Any thread: Ctrl-Alt-Del on the i8042 keyboard (a graceful shutdown request).
  void send_ctrl_alt_del();
  // Any thread: every vCPU logs its registers (SIGUSR1).
  void request_dump();

  // Any thread: counters of the vCPUs and devices (the VmMetrics fields a Vm knows).
  void collect_metrics(VmMetrics& out) const;

  ExecMode exec_mode() const { return mode_; }
  const GuestMemory& memory() const { return memory_; }
  // The memory balloon, or null when the VM has none (its host side: any thread).
  virtio::BalloonDevice* balloon() const { return virtio_->balloon(); }
  // Pages a snapshot or a migration need not copy: those in the balloon (they read as zeros).
  PageSkip page_skip() const;
  const KvmVm& kvm_vm() const { return vm_; }
  StopLatch& stop_latch() { return stop_; }

  // Use create(); public only for std::make_unique.
  Vm(KvmSystem kvm, KvmVm vm, PvmHost pvm, GuestMemory memory, VmHooks hooks);

 private:
  // KVM VM, irqchip, PIT, memory slots over `memory`, devices; no guest loaded, no vCPUs.
  static Result<std::unique_ptr<Vm>> create_machine(const VmConfig& config, GuestMemory memory,
                                                    VmHooks hooks);
  Result<void> setup_devices(const VmConfig& config);
  Result<void> restore_state(const VmConfig& config, std::span<const StateSection> sections,
                             ClockRestore clock);
  Result<void> load_guest(const VmConfig& config);
  Result<void> boot_linux(const VmConfig& config, const LoadedKernel& kernel);
  Result<void> create_vcpus(const VmConfig& config);
  AcpiConfig acpi_config(const VmConfig& config) const;
  // On the new thread of `kind`, first: hooks_.on_thread_start.
  Result<void> start_thread(ThreadKind kind) const;
  void stop_vcpus();

  KvmSystem kvm_;
  KvmVm vm_;
  PvmHost pvm_;
  GuestMemory memory_;
  VmHooks hooks_;
  ExecMode mode_ = ExecMode::kHardware;
  // Before the buses: their devices (virtio transports) hold references to it.
  boost::asio::io_context io_;
  // Uses io_, memory_ and vm_: destroyed before them; finish() stops it on the loop thread.
  // Before the buses, so that the buses drop their references to the transports first and
  // the transports (and their MSI vectors) go before the GSI router they use.
  std::unique_ptr<VirtioDevices> virtio_;
  Bus pio_{"port I/O"};
  Bus mmio_{"MMIO"};
  StopLatch stop_;
  std::shared_ptr<Serial16550> serial_;
  std::shared_ptr<I8042> i8042_;
  // Set in socket mode. Uses io_: destroyed before it; after start() it is destroyed on the
  // loop thread by finish().
  std::unique_ptr<SerialSocket> serial_socket_;
  std::unique_ptr<ConsoleInput> console_;  // loop thread after start(), like serial_socket_
  std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> work_;
  std::jthread loop_;
  bool finished_ = false;
  std::unique_ptr<VcpuGate> gate_;            // outlives the vCPU threads
  std::vector<std::unique_ptr<Vcpu>> vcpus_;  // last: their threads stop before the rest
};

}  // namespace petrel
