// Entering a guest directly in 64-bit mode, as Firecracker does for vmlinux and as the Linux
// 64-bit boot protocol describes (Documentation/arch/x86/boot.rst, "64-bit Boot Protocol"):
// a flat GDT with __BOOT_CS/__BOOT_DS, 4-level identity-mapped paging, CR0.PG|PE, CR4.PAE,
// EFER.LME|LMA.
#pragma once

#include "vmm/base/kvm_abi.h"

#include <cstdint>

#include "vmm/base/guest_address.h"
#include "vmm/base/guest_memory.h"
#include "vmm/base/kvm_vcpu.h"
#include "vmm/base/result.h"

namespace petrel {

struct LongModeEntry {
  GuestAddress rip;
  GuestAddress rsi;  // boot information pointer handed to the guest
  GuestAddress rsp;
};

// Writes the GDT and page tables identity-mapping [0, map_bytes) with 2 MiB pages
// (map_bytes is rounded up to 1 GiB and capped at layout::kMaxIdentityGiB). With
// `user_pages`, U/S is set in every entry at every level (PVM native mode needs it).
Result<void> write_long_mode_tables(const GuestMemory& mem, uint64_t map_bytes, bool user_pages);

// Sets the vCPU's segment, control registers, general registers and x87/SSE state so that
// it starts at `entry` in 64-bit mode with interrupts masked.
Result<void> setup_long_mode_vcpu(const KvmVcpu& vcpu, const LongModeEntry& entry);

// The flat 64-bit segment set used at entry (exposed for unit tests).
kvm_sregs long_mode_sregs(kvm_sregs base);

// 32-bit protected mode, paging off, flat segments (the PVH entry state, pvh.pandoc).
kvm_sregs protected_mode_sregs(kvm_sregs base);

}  // namespace petrel
