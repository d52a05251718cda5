#include "vmm/pvm_host.h"

#include <array>

#include "vmm/base/kvm_vm.h"

namespace petrel {

namespace {

constexpr uint32_t bit(int n) {
  return 1u << n;
}

struct CpuidMask {
  uint32_t function;
  uint32_t index;
  uint32_t eax;
  uint32_t ebx;
  uint32_t ecx;
  uint32_t edx;
};

// Features whose instructions PVM's emulator cannot run (or that depend on one that it
// cannot: AVX needs XSAVE). Bit numbers from the Intel SDM vol. 2A, CPUID.
constexpr std::array<CpuidMask, 4> kEmulatedHidden = {{
    // PCLMUL SSSE3 FMA CX16 SSE4.1/2 MOVBE POPCNT AES XSAVE OSXSAVE AVX F16C RDRAND
    {0x1, 0, 0, 0,
     bit(1) | bit(9) | bit(12) | bit(13) | bit(19) | bit(20) | bit(22) | bit(23) | bit(25) |
         bit(26) | bit(27) | bit(28) | bit(29) | bit(30),
     0},
    // EBX: FSGSBASE BMI1 HLE AVX2 SMEP BMI2 INVPCID RTM AVX512* RDSEED ADX SMAP CLFLUSHOPT
    // CLWB SHA; ECX: AVX512VBMI PKU OSPKE WAITPKG VBMI2 GFNI VAES VPCLMUL VNNI BITALG
    // VPOPCNTDQ LA57 RDPID; EDX: AVX512 4x, SERIALIZE, AMX
    {0x7, 0, 0,
     bit(0) | bit(3) | bit(4) | bit(5) | bit(7) | bit(8) | bit(10) | bit(11) | bit(16) | bit(17) |
         bit(18) | bit(19) | bit(20) | bit(21) | bit(23) | bit(24) | bit(26) | bit(27) | bit(28) |
         bit(29) | bit(30) | bit(31),
     bit(1) | bit(3) | bit(4) | bit(5) | bit(6) | bit(8) | bit(9) | bit(10) | bit(11) | bit(12) |
         bit(14) | bit(16) | bit(22),
     bit(2) | bit(3) | bit(8) | bit(14) | bit(22) | bit(24) | bit(25)},
    // ECX: LZCNT SSE4A XOP FMA4 TBM; EDX: RDTSCP
    {0x80000001, 0, 0, 0, bit(5) | bit(6) | bit(11) | bit(16) | bit(21), bit(27)},
    // KVM paravirtual features that work through VMCALL hypercalls (EAX: KVM_FEATURE_PV_UNHALT,
    // _PV_SEND_IPI, _PV_SCHED_YIELD; Documentation/virt/kvm/x86/cpuid.rst). Measured: a
    // guest's KVM_HC_SEND_IPI never completes under PVM's emulator, so a 2-vCPU Linux hangs
    // bringing up its second CPU. Hidden, Linux falls back to plain APIC IPIs.
    {0x40000001, 0, bit(7) | bit(11) | bit(13), 0, 0, 0},
}};

// Linux X86_FEATURE_* numbers (arch/x86/include/asm/cpufeatures.h: word * 32 + bit) of what
// the emulator cannot run and CPUID leaves 1/7 cannot hide on this host: CX16 (141,
// CMPXCHG16B), POPCNT (151), XSAVE (154), RDRAND (158), FSGSBASE (288), SMEP (295), RDSEED
// (306), SMAP (308, CLAC/STAC). clearcpuid= takes numbers in every kernel that has it.
constexpr std::string_view kLinuxEmulatedCmdline = "clearcpuid=141,151,154,158,288,295,306,308";

}  // namespace

Result<PvmHost> PvmHost::detect(const KvmSystem& kvm) {
  PETREL_TRY_ASSIGN(KvmVm vm, kvm.create_vm());
  PETREL_TRY_ASSIGN(KvmVcpu vcpu, vm.create_vcpu(0));
  std::array<uint32_t, 2> msrs = {kMsrSignature, kMsrFeatures};
  auto values = vcpu.get_msrs(msrs);
  if (!values || values->empty() || (*values)[0].value != kSignature) {
    return PvmHost(false, 0);
  }
  uint64_t features = values->size() > 1 ? (*values)[1].value : 0;
  return PvmHost(true, features);
}

std::string_view to_string(ExecMode mode) {
  switch (mode) {
    case ExecMode::kPvmNative:
      return "PVM native";
    case ExecMode::kPvmEmulated:
      return "PVM emulated";
    case ExecMode::kHardware:
      break;
  }
  return "hardware";
}

ExecMode PvmHost::choose_mode(bool guest_native_capable, bool force_emulated) const {
  if (!is_pvm_) {
    return ExecMode::kHardware;
  }
  return guest_native_capable && !force_emulated ? ExecMode::kPvmNative : ExecMode::kPvmEmulated;
}

void PvmHost::adjust_cpuid(std::vector<kvm_cpuid_entry2>& entries, ExecMode mode) const {
  if (mode != ExecMode::kPvmEmulated) {
    return;
  }
  std::erase_if(entries, [](const kvm_cpuid_entry2& e) { return e.function == 0xd; });
  for (auto& e : entries) {
    for (const auto& mask : kEmulatedHidden) {
      if (e.function == mask.function && e.index == mask.index) {
        e.eax &= ~mask.eax;
        e.ebx &= ~mask.ebx;
        e.ecx &= ~mask.ecx;
        e.edx &= ~mask.edx;
      }
    }
  }
}

std::string_view PvmHost::linux_cmdline_extra(ExecMode mode) const {
  if (mode != ExecMode::kPvmEmulated) {
    return {};
  }
  return kLinuxEmulatedCmdline;
}

Result<void> PvmHost::enable_native(const KvmVcpu& vcpu, GuestAddress vif_page) const {
  std::array<MsrValue, 1> msr = {MsrValue{kMsrVifPage, vif_page.value() | kVifEnable}};
  return std::move(vcpu.set_msrs(msr)).context("registering the PVM VIF page");
}

Result<bool> PvmHost::handle_emulation_failure(const KvmVcpu& vcpu,
                                               const InternalErrorExit& exit) const {
  if (!is_pvm_ || exit.suberror != KVM_INTERNAL_ERROR_EMULATION || exit.insn_bytes.empty()) {
    return false;
  }
  const auto bytes = exit.insn_bytes;
  uint8_t vector = 0;
  PETREL_TRY_ASSIGN(kvm_regs regs, vcpu.get_regs());
  if (bytes[0] == 0xcc) {
    // INT3 is a trap: #BP is delivered with RIP past the instruction (Intel SDM vol. 3A, 6.5).
    vector = 3;
    regs.rip += 1;
    PETREL_TRY(vcpu.set_regs(regs));
  } else if (bytes.size() >= 2 && bytes[0] == 0x0f && bytes[1] == 0x0b) {
    // UD2 raises #UD, a fault: RIP stays on the instruction (Linux's BUG/WARN rely on it).
    vector = 6;
  } else {
    return false;
  }
  PETREL_TRY_ASSIGN(kvm_vcpu_events events, vcpu.get_vcpu_events());
  events.exception.injected = 1;
  events.exception.nr = vector;
  events.exception.has_error_code = 0;
  events.exception.error_code = 0;
  events.flags = 0;
  PETREL_TRY(vcpu.set_vcpu_events(events));
  return true;
}

}  // namespace petrel
