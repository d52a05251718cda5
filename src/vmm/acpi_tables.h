// The ACPI tables petrel writes for the guest (ACPI 6.4 §5.2): RSDP -> XSDT -> {FADT, MADT},
// FADT -> DSDT. A hardware-reduced ACPI platform (§4.1: no PM1 blocks, PM timer, GPEs, SCI
// or FACS); the MADT describes the vCPUs' local APICs and KVM's in-kernel IOAPIC
// (firmware_common.h), the DSDT the legacy devices on the port I/O bus (COM1, i8042).
//
// Everything lies in [layout::kAcpiTablesStart, +kAcpiTablesSize), the RSDP at layout::kRsdp
// where Linux finds it by scanning 0xe0000-0xfffff (and it may also be handed the address,
// boot_params.acpi_rsdp_addr / hvm_start_info.rsdp_paddr).
#pragma once

#include <cstdint>

#include "vmm/base/guest_address.h"
#include "vmm/base/guest_memory.h"
#include "vmm/base/result.h"

namespace petrel {

struct AcpiConfig {
  uint32_t vcpus;  // APIC IDs 0..vcpus-1; 1..firmware::kMaxVcpus
  // Whether a CMOS RTC answers at ports 0x70/0x71. petrel has none yet, so the FADT says
  // "CMOS RTC Not Present" and Linux registers no rtc_cmos device.
  bool cmos_rtc = false;
};

// Writes the tables and returns the RSDP's address (layout::kRsdp). Fails for a vCPU count
// out of range, tables that outgrow the area, or guest memory that does not cover it.
Result<GuestAddress> write_acpi_tables(const GuestMemory& mem, const AcpiConfig& cfg);

}  // namespace petrel
