#include "vmm/boot_msrs.h"

#include <algorithm>
#include <array>

namespace petrel {

namespace {

constexpr std::array<MsrValue, 11> kBootMsrs = {{
    {0x174, 0},       // IA32_SYSENTER_CS
    {0x175, 0},       // IA32_SYSENTER_ESP
    {0x176, 0},       // IA32_SYSENTER_EIP
    {0xc0000081, 0},  // STAR
    {0xc0000082, 0},  // LSTAR
    {0xc0000083, 0},  // CSTAR
    {0xc0000084, 0},  // SYSCALL_MASK (FMASK)
    {0xc0000102, 0},  // KERNEL_GS_BASE
    {0x10, 0},        // IA32_TSC
    {0x1a0, 1},       // IA32_MISC_ENABLE: fast-string enable
    {0x2ff, 0x806},   // IA32_MTRR_DEF_TYPE: MTRRs enabled, default type write-back
}};

}  // namespace

std::vector<MsrValue> boot_msrs(std::span<const uint32_t> kvm_msr_index_list) {
  std::vector<MsrValue> out;
  for (const auto& msr : kBootMsrs) {
    if (std::find(kvm_msr_index_list.begin(), kvm_msr_index_list.end(), msr.index) !=
        kvm_msr_index_list.end()) {
      out.push_back(msr);
    }
  }
  return out;
}

Result<void> set_boot_msrs(const KvmVcpu& vcpu, std::span<const uint32_t> kvm_msr_index_list) {
  auto msrs = boot_msrs(kvm_msr_index_list);
  return vcpu.set_msrs(msrs);
}

}  // namespace petrel
