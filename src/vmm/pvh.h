// The PVH boot ABI (Xen's docs/misc/pvh.pandoc, start_info.h; Linux arch/x86/platform/pvh):
// the kernel is entered in 32-bit protected mode, paging off, at its
// XEN_ELFNOTE_PHYS32_ENTRY, with EBX = guest-physical address of struct hvm_start_info.
#pragma once

#include <cstdint>
#include <optional>

#include "vmm/base/guest_address.h"
#include "vmm/base/guest_memory.h"
#include "vmm/base/kvm_vcpu.h"
#include "vmm/base/result.h"
#include "vmm/linux_boot.h"

namespace petrel {

struct PvhParams {
  GuestAddress cmdline;
  std::optional<InitrdLocation> initrd;  // passed as module 0
  std::optional<GuestAddress> rsdp;
};

// Writes hvm_start_info (version 1) with the memmap and module list at layout::kPvhStartInfo.
Result<void> write_pvh_start_info(const GuestMemory& mem, const PvhParams& params);

// Sets the vCPU for the PVH entry: flat 32-bit segments, CR0.PE, paging off, IF clear.
Result<void> setup_pvh_vcpu(const KvmVcpu& vcpu, GuestAddress entry);

}  // namespace petrel
