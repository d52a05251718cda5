// The CPUID table of one vCPU, from KVM_GET_SUPPORTED_CPUID (api.rst 4.46) plus what KVM
// leaves to the VMM: APIC IDs and the CPU topology for the VM's vCPU count (Intel SDM vol. 2A
// CPUID leaves 01H, 04H, 0BH/1FH; AMD APM vol. 3, Fn8000_0008 and Fn8000_001E), and the
// hypervisor bit. KVM's paravirtual leaves (0x40000000 "KVMKVMKVM", 0x40000001 features
// such as kvmclock) come with the supported table and are kept.
#pragma once

#include <cstdint>
#include <vector>

#include "vmm/base/kvm_abi.h"

namespace petrel {

// Topology petrel presents: one socket, `vcpus` cores, one thread per core; APIC ID = index.
std::vector<kvm_cpuid_entry2> vcpu_cpuid(const std::vector<kvm_cpuid_entry2>& supported,
                                         uint32_t vcpu_id, uint32_t vcpus);

}  // namespace petrel
