// The guest-physical memory map petrel builds (x86-64 PC-like). Units are bytes.
#pragma once

#include <cstdint>

#include <vector>

#include "vmm/base/guest_address.h"
#include "vmm/base/guest_memory.h"

namespace petrel::layout {

// Boot structures in the first 1 MiB (below the EBDA at 0x9fc00).
inline constexpr GuestAddress kGdt{0x500};
inline constexpr GuestAddress kPvhStartInfo{0x4000};  // hvm_start_info + memmap + modules
inline constexpr GuestAddress kZeroPage{0x5000};      // Linux boot_params (4 KiB)
inline constexpr GuestAddress kBootInfo{0x6000};      // struct petrel_boot_info
inline constexpr GuestAddress kPvmVifPage{0x7000};    // PVM native mode VIF page (4 KiB)
inline constexpr GuestAddress kBootStackTop{0x8ff0};
inline constexpr GuestAddress kPml4{0x9000};
inline constexpr GuestAddress kPdpt{0xa000};
inline constexpr GuestAddress kPageDirectories{0xb000};  // kMaxIdentityGiB pages of 4 KiB
inline constexpr uint64_t kMaxIdentityGiB = 64;
inline constexpr GuestAddress kCmdline{0x4c000};
inline constexpr uint64_t kCmdlineMax = 4096;  // including the NUL
// Below 1 MiB the e820 map reserves the EBDA and the BIOS area (ACPI tables, MP table);
// Linux also reserves [EBDA, 1 MiB) whatever the map says (arch/x86/kernel/ebda.c).
inline constexpr GuestAddress kEbdaStart{0x9fc00};
inline constexpr GuestAddress kBiosAreaStart{0xe0000};
// ACPI (acpi_tables.h): the RSDP first, 16-byte aligned in 0xe0000-0xfffff where an OS scans
// for it (ACPI 6.4 §5.2.5.1), then XSDT, FADT, MADT, DSDT.
inline constexpr GuestAddress kAcpiTablesStart{0xe0000};
inline constexpr uint64_t kAcpiTablesSize = 0x10000;
inline constexpr GuestAddress kRsdp = kAcpiTablesStart;
// MP table (mp_table.h): the floating pointer, 16-byte aligned in the BIOS ROM area
// 0xf0000-0xfffff (MP spec 1.4 §4), then the configuration table. Not in the EBDA's first
// KiB: that holds the table of at most ~40 vCPUs.
inline constexpr GuestAddress kMpTableStart{0xf0000};
inline constexpr uint64_t kMpTableSize = 0x10000;
// Kernels load at or above 1 MiB.
inline constexpr GuestAddress kKernelMin{0x100000};

// The 32-bit MMIO hole: RAM above kMmioHoleStart continues at 4 GiB.
inline constexpr GuestAddress kMmioHoleStart{0xc0000000};
inline constexpr GuestAddress kFourGiB{0x100000000};
// Inside the hole (all 32-bit, so test guests' identity map reaches them):
// PCI 32-bit BAR window (petrel assigns BARs here; the guest may move them inside it).
inline constexpr GuestAddress kPciMmioWindow{0xc0000000};
inline constexpr uint64_t kPciMmioWindowSize = 0x10000000;
// virtio-MMIO devices: slot n at kVirtioMmioBase + n * 4 KiB (virtio 1.2 4.2.2).
inline constexpr GuestAddress kVirtioMmioBase{0xd0000000};
inline constexpr uint64_t kVirtioMmioSlotSize = 0x1000;
inline constexpr uint32_t kVirtioMmioMaxSlots = 32;
// PCI Express enhanced configuration (ECAM/MMCONFIG) for bus 0 only: 32 devices x 8
// functions x 4 KiB.
inline constexpr GuestAddress kPciEcam{0xe0000000};
inline constexpr uint64_t kPciEcamSize = 0x100000;
// KVM's TSS (3 pages) and identity-map page live in the hole, below the IOAPIC/LAPIC.
inline constexpr GuestAddress kKvmTss{0xfffbd000};
inline constexpr GuestAddress kKvmIdentityMap{0xfffbc000};
// KVM's in-kernel IOAPIC and the LAPICs, at the x86 default addresses.
inline constexpr GuestAddress kIoApic{0xfec00000};
inline constexpr GuestAddress kLocalApic{0xfee00000};

// GDT selectors, as the Linux 64-bit boot protocol expects (boot.rst "64-bit Boot Protocol"),
// plus a flat 32-bit code segment for the PVH entry.
inline constexpr uint16_t kBootCs32 = 0x08;
inline constexpr uint16_t kBootCs = 0x10;
inline constexpr uint16_t kBootDs = 0x18;
inline constexpr uint16_t kBootTss = 0x20;

static_assert(kAcpiTablesStart >= kBiosAreaStart && kRsdp.value() % 16 == 0);
static_assert(kAcpiTablesStart + kAcpiTablesSize <= kMpTableStart);
static_assert(kMpTableStart.value() % 16 == 0 && kMpTableStart + kMpTableSize <= kKernelMin);

}  // namespace petrel::layout

namespace petrel::layout {

// RAM regions for `bytes` of guest memory: below the MMIO hole, and the rest from 4 GiB.
inline std::vector<GuestRegionSpec> ram_regions(uint64_t bytes) {
  const uint64_t low = kMmioHoleStart.value();
  if (bytes <= low) {
    return {{GuestAddress(0), bytes}};
  }
  return {{GuestAddress(0), low}, {kFourGiB, bytes - low}};
}

}  // namespace petrel::layout
