// Vcpu: one guest vCPU and the thread that runs it (KVM_RUN in a loop, dispatching exits to
// the port-I/O and MMIO buses). A stop is requested through the VM's StopLatch; kick() then
// makes KVM_RUN return (immediate_exit + a real-time signal, api.rst "immediate_exit") so
// the thread sees it. The thread is joined when the Vcpu is destroyed.
//
// Metrics: exits are counted by reason (relaxed atomics, written by the vCPU thread) and the
// thread's CPU time is measured (ThreadCpuClock); metrics() reads both from any thread.
#pragma once

#include <pthread.h>

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string_view>
#include <thread>

#include "devices/bus.h"
#include "vmm/base/guest_memory.h"
#include "vmm/base/kvm_vcpu.h"
#include "vmm/base/vcpu_exit.h"
#include "vmm/pvm_host.h"
#include "vmm/stop_latch.h"
#include "vmm/thread_cpu_clock.h"
#include "vmm/vcpu_gate.h"
#include "vmm/vm_control.h"

namespace petrel {

// What a vCPU thread shares with the rest of the VM; everything outlives the Vcpu.
struct VcpuContext {
  const Bus* pio;
  const Bus* mmio;
  const GuestMemory* memory;
  const PvmHost* pvm;
  StopLatch* stop;
  VcpuGate* gate;  // parks the thread while the VM is paused
  // Run first on the vCPU thread (its seccomp filter, VmHooks::on_thread_start); may be empty.
  // An error stops the VM before the vCPU runs.
  std::function<Result<void>()> on_thread_start;
};

class Vcpu {
 public:
  // The signal used to kick vCPU threads out of KVM_RUN.
  static int kick_signal();
  // Installs a no-op handler for kick_signal() (without SA_RESTART), once per process.
  static void install_kick_handler();

  Vcpu(KvmVcpu vcpu, VcpuContext ctx) : vcpu_(std::move(vcpu)), ctx_(ctx) {}
  Vcpu(const Vcpu&) = delete;
  Vcpu& operator=(const Vcpu&) = delete;

  const KvmVcpu& kvm() const { return vcpu_; }
  void start();
  // Any thread: make the vCPU thread leave KVM_RUN and look at the stop latch.
  void kick();
  void join();
  // Any thread: the vCPU thread logs its registers and the instruction at RIP, then runs on
  // (for an operator looking at a guest that seems stuck: SIGUSR1 to petrel).
  void request_dump();

  // All exits handled so far, kicks included (the sum over exits_by_reason_).
  uint64_t exit_count() const;

  // The exit reasons VcpuMetrics::exits names, in this order. "intr" also counts KVM_RUN
  // returning early for a signal or immediate_exit (a kick).
  static constexpr std::array<std::string_view, 9> kExitReasons{
      "io",       "mmio",           "hlt",        "intr", "system_event",
      "shutdown", "internal_error", "fail_entry", "other"};
  // The index in kExitReasons of `exit`'s reason.
  static size_t exit_reason_index(const VcpuExit& exit);

  // Any thread: this vCPU's id, its thread's CPU time (0 before start(), the final value
  // once the thread ended) and its exits by reason, every reason present.
  VcpuMetrics metrics() const;

 private:
  void run_loop();
  void log_state() const;
  // Returns false when the VM must stop (the reason is already in the latch).
  bool handle(const VcpuExit& exit);
  void handle_io(const IoExit& io);
  void handle_mmio(const MmioExit& mmio);
  bool handle_internal_error(const InternalErrorExit& exit);
  // "RIP 0x... (bytes: f3 48 0f ...)", for reports.
  std::string describe_rip(std::span<const uint8_t> insn_bytes) const;

  KvmVcpu vcpu_;
  VcpuContext ctx_;
  std::array<std::atomic<uint64_t>, kExitReasons.size()> exits_by_reason_{};
  ThreadCpuClock cpu_clock_;
  std::atomic<bool> started_{false};
  std::atomic<bool> dump_requested_{false};
  std::jthread thread_;
};

}  // namespace petrel
