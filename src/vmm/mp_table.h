// The Intel MultiProcessor Specification 1.4 tables petrel writes for kernels that do not use
// ACPI (built without it, or booted with acpi=off): the MP floating pointer structure
// (§4.1) and the MP configuration table (§4.2, §4.3) it points to, describing the same
// processors and interrupt routing as the MADT (firmware_common.h): one processor entry per
// vCPU (APIC ID = index, the BSP is 0), the ISA bus, the IOAPIC, the ISA IRQs' IOAPIC pins,
// ExtINT on LINT0 and NMI on LINT1. The system runs in virtual wire mode (no IMCR).
//
// Both lie in [layout::kMpTableStart, +kMpTableSize), in the BIOS ROM area 0xf0000-0xfffff
// where an OS looks for the floating pointer on 16-byte boundaries.
#pragma once

#include <cstdint>

#include "vmm/base/guest_memory.h"
#include "vmm/base/result.h"

namespace petrel {

// Fails for vcpus 0 or above firmware::kMaxVcpus, a table that outgrows the area, or guest
// memory that does not cover it.
Result<void> write_mp_table(const GuestMemory& mem, uint32_t vcpus);

}  // namespace petrel
