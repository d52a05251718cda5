// VmKvmState: the VM-wide state KVM holds outside the vCPUs — the in-kernel PIC pair and
// IOAPIC, the PIT and kvmclock — captured from and restored into a KvmVm, and its encoding.
//
// Thread affinity: the VM's owner thread, with every vCPU parked outside KVM_RUN (the state
// would otherwise change under the capture). Restore into a VM created with the in-kernel
// irqchip (KVM_CREATE_IRQCHIP) and PIT (KVM_CREATE_PIT2), before its vCPUs first run.
#pragma once

#include "vmm/base/kvm_abi.h"

#include <cstddef>
#include <span>
#include <vector>

#include "vmm/base/kvm_vm.h"
#include "vmm/base/result.h"

namespace petrel {

struct VmKvmState {
  kvm_irqchip pic_master{};  // chip_id KVM_IRQCHIP_PIC_MASTER
  kvm_irqchip pic_slave{};   // chip_id KVM_IRQCHIP_PIC_SLAVE
  kvm_irqchip ioapic{};      // chip_id KVM_IRQCHIP_IOAPIC
  kvm_pit_state2 pit{};
  kvm_clock_data clock{};  // kvmclock in ns, with KVM's flags and the host real time
};

// How restore sets kvmclock (KVM_SET_CLOCK, api.rst 4.30).
enum class ClockRestore {
  // The guest's clock goes on from the saved value: the time the VM was saved does not
  // pass for it (a snapshot restored later; KVM_CLOCK_REALTIME is cleared).
  kResumeAtSaved,
  // The saved KVM_CLOCK_REALTIME is passed on, so KVM adds the host real time elapsed
  // since the capture (live migration between hosts with synchronised clocks: the guest
  // clock covers the downtime). Same as kResumeAtSaved when the capture had no real time.
  kAdvanceByRealTime,
};

Result<VmKvmState> capture_vm_kvm_state(const KvmVm& vm);

// Sets the PICs, the IOAPIC and the PIT, then the clock last, so that nothing set after it
// reads a clock that is about to jump.
Result<void> restore_vm_kvm_state(const KvmVm& vm, const VmKvmState& state,
                                  ClockRestore clock = ClockRestore::kResumeAtSaved);

// The versioned byte encoding (vmm/base/state_codec.h). decode_vm_kvm_state takes untrusted
// input: it refuses a bad magic, an unknown version, a missing, repeated or unknown record, a
// record of the wrong size, an irqchip record with the wrong chip_id, truncation and trailing
// bytes (ErrorCode::kInvalidArgument).
std::vector<std::byte> encode(const VmKvmState& state);
Result<VmKvmState> decode_vm_kvm_state(std::span<const std::byte> bytes);

}  // namespace petrel
