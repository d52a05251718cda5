#include "vmm/cpuid.h"

#include <algorithm>
#include <bit>

namespace petrel {

namespace {

constexpr uint32_t kLeaf1EcxHypervisor = 1u << 31;
constexpr uint32_t kLeaf1EdxHtt = 1u << 28;
constexpr uint32_t kTopologyLevelSmt = 1;
constexpr uint32_t kTopologyLevelCore = 2;

// Bits needed to hold IDs 0..n-1.
uint32_t id_bits(uint32_t n) {
  return n <= 1 ? 0 : std::bit_width(n - 1);
}

}  // namespace

std::vector<kvm_cpuid_entry2> vcpu_cpuid(const std::vector<kvm_cpuid_entry2>& supported,
                                         uint32_t vcpu_id, uint32_t vcpus) {
  std::vector<kvm_cpuid_entry2> out = supported;
  const uint32_t core_bits = id_bits(vcpus);
  for (auto& e : out) {
    switch (e.function) {
      case 0x1:
        // EBX[31:24] initial APIC ID, EBX[23:16] logical processors per package.
        e.ebx = (e.ebx & 0x0000ffff) | (vcpu_id << 24) | ((vcpus & 0xff) << 16);
        e.ecx |= kLeaf1EcxHypervisor;
        e.edx = vcpus > 1 ? e.edx | kLeaf1EdxHtt : e.edx & ~kLeaf1EdxHtt;
        break;
      case 0x4:
        // EAX[31:26] cores per package - 1; EAX[25:14] threads sharing this cache - 1.
        if ((e.eax & 0x1f) != 0) {
          e.eax = (e.eax & 0x3fff) | (std::min(vcpus - 1, 63u) << 26);  // 6-bit field
        }
        break;
      case 0xb:
      case 0x1f:
        // Extended topology: subleaf 0 = SMT (1 thread), subleaf 1 = core (vcpus).
        e.edx = vcpu_id;
        if (e.index == 0) {
          e.eax = 0;
          e.ebx = 1;
          e.ecx = (kTopologyLevelSmt << 8) | e.index;
        } else if (e.index == 1) {
          e.eax = core_bits;
          e.ebx = vcpus;
          e.ecx = (kTopologyLevelCore << 8) | e.index;
        } else {
          e.eax = 0;
          e.ebx = 0;
          e.ecx = e.index;
        }
        break;
      case 0x80000008:
        // ECX[7:0] NC = cores - 1, ECX[15:12] APIC ID size.
        e.ecx = (e.ecx & ~0xf0ffu) | (core_bits << 12) | ((vcpus - 1) & 0xff);
        break;
      case 0x8000001e:
        // EAX extended APIC ID; EBX[15:8] threads per core - 1, EBX[7:0] core ID.
        e.eax = vcpu_id;
        e.ebx = (e.ebx & ~0xffffu) | (vcpu_id & 0xff);
        e.ecx &= ~0x7ffu;
        break;
      default:
        break;
    }
  }
  return out;
}

}  // namespace petrel
