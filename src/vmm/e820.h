// The guest's physical memory map as firmware reports it: the e820 table of the Linux zero
// page (boot.rst, "zero page" e820_table) and the PVH memmap (hvm_start_info, type values
// as in e820). Built from the RAM regions and the reserved low areas in layout.h.
#pragma once

#include <cstdint>
#include <vector>

#include "vmm/base/guest_memory.h"

namespace petrel {

enum class E820Type : uint32_t { kRam = 1, kReserved = 2 };

struct E820Entry {
  uint64_t addr;
  uint64_t size;
  E820Type type;
};

// Sorted, non-overlapping: RAM below the EBDA, the EBDA and BIOS area reserved, RAM from
// 1 MiB, and every RAM region above it.
std::vector<E820Entry> build_e820(const GuestMemory& mem);

}  // namespace petrel
