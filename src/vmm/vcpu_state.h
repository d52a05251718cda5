// VcpuState: everything KVM holds for one x86 vCPU, captured from and restored into a
// KvmVcpu (for pause/snapshot/restore and live migration), and its byte encoding.
//
// Thread affinity: capture_vcpu/restore_vcpu/settle_vcpu make vCPU ioctls, so they run on the
// vCPU's own thread, or on any thread while that thread is parked outside KVM_RUN (VcpuGate).
// The CPUID (KVM_SET_CPUID2) is not part of the state: the restoring VMM sets the same table
// (from the same config) on the vCPU before restore_vcpu, since KVM checks XSAVE features and
// MSRs against it.
#pragma once

#include "vmm/base/kvm_abi.h"

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "vmm/base/kvm_vcpu.h"
#include "vmm/base/result.h"
#include "vmm/pvm_host.h"

namespace petrel {

struct VcpuState {
  uint32_t vcpu_id = 0;
  kvm_mp_state mp_state{};
  kvm_vcpu_events events{};
  kvm_regs regs{};
  kvm_sregs sregs{};
  std::vector<std::byte> xsave;  // KVM's XSAVE area (uabi format), at least 4 KiB
  kvm_xcrs xcrs{};
  kvm_debugregs debugregs{};
  kvm_lapic_state lapic{};
  std::vector<MsrValue> msrs;  // in capture order
  uint32_t tsc_khz = 0;        // guest TSC rate; 0 = unknown, not restored
};

// The MSRs a VcpuState carries: those of `msr_index_list` (KvmSystem::msr_index_list(),
// api.rst 4.3 KVM_GET_MSR_INDEX_LIST) and the MTRRs (not in that list) that KVM_GET_MSRS
// reads on `probe` (a vCPU with the guest's CPUID already set), plus, on a PVM host,
// PvmHost::kMsrVifPage: PVM's VIF page registration is not in the index list, and a vCPU
// restored without it falls back from native mode to emulation.
Result<std::vector<uint32_t>> vcpu_state_msrs(const KvmVcpu& probe,
                                              std::span<const uint32_t> msr_index_list,
                                              const PvmHost& pvm);

// Completes an exit KVM has not finished (KVM_EXIT_IO, _MMIO, ... are complete only after the
// next KVM_RUN, api.rst 5 "kvm_run", note on KVM_EXIT_IO): KVM_RUN with immediate_exit set,
// which returns EINTR at once. Call before capture_vcpu when the last KVM_RUN returned an
// exit the VMM handled rather than EINTR.
Result<void> settle_vcpu(const KvmVcpu& vcpu);

// Reads the vCPU's state. `msrs` from vcpu_state_msrs(); `xsave_bytes` is
// KvmVm::xsave_size(). mp_state is read first, since KVM_GET_MP_STATE may act on a pending
// INIT/SIPI and so change the registers, then the events (KVM_GET_VCPU_EVENTS may deliver an
// exception payload into CR2/DR6), then the registers.
Result<VcpuState> capture_vcpu(const KvmVcpu& vcpu, std::span<const uint32_t> msrs,
                               size_t xsave_bytes);

// Writes `state` into `vcpu` (same vCPU id; its VM has the in-kernel irqchip, the memory slots
// and the CPUID the source had). `xsave_bytes` is this VM's KvmVm::xsave_size(): a smaller
// saved area is zero-extended (the components beyond it are absent from its XSTATE_BV), a
// larger one refused. Order: TSC rate before the TSC MSR is written; KVM_SET_REGS (which
// drops a pending exception) and KVM_SET_SREGS (which sets the APIC base and may change
// mp_state) before the LAPIC, whose layout follows the APIC base; the LAPIC before the MSRs,
// since KVM ignores IA32_TSC_DEADLINE unless the LAPIC timer is in TSC-deadline mode, and
// IA32_TSC_DEADLINE after IA32_TSC; then the vCPU events (SIPI vector, pending exception,
// NMI) and KVM_SET_MP_STATE last, which uses the SIPI vector.
Result<void> restore_vcpu(const KvmVcpu& vcpu, const VcpuState& state, size_t xsave_bytes);

// The versioned byte encoding (vmm/base/state_codec.h). decode_vcpu_state takes untrusted
// input and refuses a bad magic, an unknown version, a missing, repeated or unknown record,
// a record of the wrong size, a count out of range, truncation and trailing bytes
// (ErrorCode::kInvalidArgument).
std::vector<std::byte> encode(const VcpuState& state);
Result<VcpuState> decode_vcpu_state(std::span<const std::byte> bytes);

}  // namespace petrel
