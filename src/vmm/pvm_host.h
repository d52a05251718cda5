// PvmHost: everything petrel does differently on a PVM-flavoured KVM (kvm_pvm: the
// "Pagetable-based Virtual Machine" KVM of nested hosts, see docs/architecture.md "PVM").
// On ordinary KVM (VT-x / AMD-V) every method here is a no-op: this class is the one place
// where the PVM differences live.
//
// PVM runs a ring-0 guest either under KVM's instruction emulator ("emulated") or at full
// speed ("native") when the guest's page tables have U/S set at every level and the VMM
// registers a VIF page through MSR kMsrVifPage.
#pragma once

#include "vmm/base/kvm_abi.h"

#include <cstdint>
#include <string_view>
#include <vector>

#include "vmm/base/guest_address.h"
#include "vmm/base/kvm_system.h"
#include "vmm/base/kvm_vcpu.h"
#include "vmm/base/result.h"
#include "vmm/base/vcpu_exit.h"

namespace petrel {

enum class ExecMode { kHardware, kPvmEmulated, kPvmNative };

// "hardware", "PVM emulated", "PVM native": logs, the API's exec_mode, error messages.
std::string_view to_string(ExecMode mode);

class PvmHost {
 public:
  static constexpr uint32_t kMsrVifPage = 0x4b564d10;    // write: VIF page GPA | kVifEnable
  static constexpr uint32_t kMsrSignature = 0x4b564d11;  // reads kSignature on PVM
  static constexpr uint32_t kMsrFeatures = 0x4b564d12;
  static constexpr uint64_t kSignature = 0x4d5650;  // "PVM"
  static constexpr uint64_t kVifEnable = 0x400;

  // Probes the host with a throw-away VM and vCPU: on PVM, MSR kMsrSignature reads "PVM"
  // (this MSR is not in KVM_GET_MSR_INDEX_LIST and fails to read on other hosts).
  static Result<PvmHost> detect(const KvmSystem& kvm);
  static PvmHost standard() { return PvmHost(false, 0); }
  // A PVM host without probing (tests, and hosts where the probe VM cannot be created).
  static PvmHost assume_pvm(uint64_t features) { return PvmHost(true, features); }

  bool is_pvm() const { return is_pvm_; }
  uint64_t features() const { return features_; }

  // The execution mode for a guest: native only on PVM, for a guest that declares it can
  // (PETREL_GUEST_PVM_NATIVE) and when the operator did not force emulation.
  ExecMode choose_mode(bool guest_native_capable, bool force_emulated) const;

  // Hides from the guest's CPUID what PVM's instruction emulator cannot execute (measured:
  // XSAVE/XRSTOR, POPCNT, CLAC/STAC, AVX, BMI, SSE4, ...). Only in kPvmEmulated mode; in
  // native mode the guest sees the host CPUID anyway (CPUID does not trap).
  void adjust_cpuid(std::vector<kvm_cpuid_entry2>& entries, ExecMode mode) const;

  // Kernel parameters that keep a Linux guest off what PVM's emulator cannot run when CPUID
  // alone cannot hide it (this host answers CPUID leaves 1 and 7 partly from the hardware).
  // Empty unless `mode` is kPvmEmulated.
  std::string_view linux_cmdline_extra(ExecMode mode) const;

  // Registers the VIF page (must be inside a memory slot) on a vCPU. kPvmNative only.
  Result<void> enable_native(const KvmVcpu& vcpu, GuestAddress vif_page) const;

  // Repairs an emulation failure that is an artefact of PVM's emulator rather than a guest
  // error: INT3 (cc) is delivered as the #BP and UD2 (0f 0b) as the #UD the guest expects
  // (Linux's text-patching breakpoints and BUG/WARN). Returns false when the failure is
  // not one of these (the caller reports it and stops the VM).
  Result<bool> handle_emulation_failure(const KvmVcpu& vcpu, const InternalErrorExit& exit) const;

 private:
  PvmHost(bool is_pvm, uint64_t features) : is_pvm_(is_pvm), features_(features) {}
  bool is_pvm_;
  uint64_t features_;
};

}  // namespace petrel
