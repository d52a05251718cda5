// KvmVcpu: a vCPU fd and its mmap'd kvm_run area (api.rst section 4, "vcpu ioctls").
// Thread affinity: all ioctls except set_immediate_exit() are made on the vCPU's own thread
// once it runs; set_immediate_exit() may be called from any thread (it only writes the
// shared kvm_run field, see api.rst "immediate_exit").
#pragma once

#include "vmm/base/kvm_abi.h"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "vmm/base/guest_address.h"
#include "vmm/base/mmap_region.h"
#include "vmm/base/result.h"
#include "vmm/base/unique_fd.h"

namespace petrel {

struct MsrValue {
  uint32_t index;
  uint64_t value;
};

class KvmVcpu {
 public:
  KvmVcpu(uint32_t id, UniqueFd fd, MmapRegion run)
      : id_(id), fd_(std::move(fd)), run_(std::move(run)) {}

  uint32_t id() const { return id_; }
  int fd() const { return fd_.get(); }
  kvm_run* run_data() const { return reinterpret_cast<kvm_run*>(run_.data()); }
  size_t run_size() const { return run_.size(); }

  // KVM_RUN once. EINTR (a signal kick) is not an error: returns false then, true on an exit.
  Result<bool> run() const;
  void set_immediate_exit(bool on) const;

  Result<kvm_regs> get_regs() const;
  Result<void> set_regs(const kvm_regs& regs) const;
  Result<kvm_sregs> get_sregs() const;
  Result<void> set_sregs(const kvm_sregs& sregs) const;
  Result<kvm_fpu> get_fpu() const;
  Result<void> set_fpu(const kvm_fpu& fpu) const;
  Result<void> set_cpuid(std::span<const kvm_cpuid_entry2> entries) const;
  // Reads the given MSRs; an MSR KVM refuses ends the batch early: returns only those read.
  Result<std::vector<MsrValue>> get_msrs(std::span<const uint32_t> indices) const;
  // Fails unless KVM accepted every MSR.
  Result<void> set_msrs(std::span<const MsrValue> msrs) const;
  Result<kvm_vcpu_events> get_vcpu_events() const;
  Result<void> set_vcpu_events(const kvm_vcpu_events& events) const;
  Result<kvm_mp_state> get_mp_state() const;
  // KVM_SET_MP_STATE (api.rst 4.39): needs the in-kernel irqchip.
  Result<void> set_mp_state(const kvm_mp_state& state) const;
  // KVM_GET_XSAVE2 (api.rst 4.134) into `bytes` bytes, the size the VM's
  // KVM_CHECK_EXTENSION(KVM_CAP_XSAVE2) answers (KvmVm::xsave_size()); a `bytes` of
  // sizeof(kvm_xsave) (4 KiB) uses KVM_GET_XSAVE (api.rst 4.42), as on hosts without XSAVE2.
  Result<std::vector<std::byte>> get_xsave(size_t bytes) const;
  // KVM_SET_XSAVE (api.rst 4.43): KVM reads as many bytes as KVM_CAP_XSAVE2 says, so `area`
  // must be at least that size (and at least 4 KiB); the caller sizes it.
  Result<void> set_xsave(std::span<const std::byte> area) const;
  // KVM_GET_XCRS / KVM_SET_XCRS (api.rst 4.44, 4.45; KVM_CAP_XCRS).
  Result<kvm_xcrs> get_xcrs() const;
  Result<void> set_xcrs(const kvm_xcrs& xcrs) const;
  // KVM_GET_LAPIC / KVM_SET_LAPIC (api.rst 4.57, 4.58): the in-kernel LAPIC's register page.
  // Its layout (x2APIC IDs) depends on the APIC base MSR, so set it after KVM_SET_SREGS.
  Result<kvm_lapic_state> get_lapic() const;
  Result<void> set_lapic(const kvm_lapic_state& lapic) const;
  // KVM_GET_DEBUGREGS / KVM_SET_DEBUGREGS (api.rst 4.33, 4.34; KVM_CAP_DEBUGREGS).
  Result<kvm_debugregs> get_debugregs() const;
  Result<void> set_debugregs(const kvm_debugregs& regs) const;
  // KVM_GET_TSC_KHZ / KVM_SET_TSC_KHZ (api.rst 4.55, 4.56): the guest TSC frequency in kHz.
  // Setting a rate other than the host's needs TSC scaling (KVM_CAP_TSC_CONTROL).
  Result<uint32_t> get_tsc_khz() const;
  Result<void> set_tsc_khz(uint32_t khz) const;
  // KVM_TRANSLATE: the guest-physical address of a guest-linear one, nullopt if unmapped.
  Result<std::optional<GuestAddress>> translate(uint64_t linear) const;

 private:
  uint32_t id_;
  UniqueFd fd_;
  MmapRegion run_;
};

}  // namespace petrel
