// MSR values a vCPU starts with, as firmware would leave them before a kernel runs: the
// SYSCALL/SYSENTER MSRs cleared, TSC 0, fast strings on, MTRRs enabled with write-back
// default type (Intel SDM vol. 3A 11.11.2.1, IA32_MTRR_DEF_TYPE).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "vmm/base/kvm_vcpu.h"
#include "vmm/base/result.h"

namespace petrel {

// The boot MSRs restricted to those KVM reports in KVM_GET_MSR_INDEX_LIST.
std::vector<MsrValue> boot_msrs(std::span<const uint32_t> kvm_msr_index_list);

Result<void> set_boot_msrs(const KvmVcpu& vcpu, std::span<const uint32_t> kvm_msr_index_list);

}  // namespace petrel
