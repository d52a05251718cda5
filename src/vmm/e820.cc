#include "vmm/e820.h"

#include "vmm/layout.h"

namespace petrel {

std::vector<E820Entry> build_e820(const GuestMemory& mem) {
  std::vector<E820Entry> map;
  const uint64_t ebda = layout::kEbdaStart.value();
  const uint64_t one_mib = layout::kKernelMin.value();
  for (const auto& region : mem.regions()) {
    uint64_t start = region.start().value();
    uint64_t end = region.end().value();
    if (start < ebda) {
      map.push_back({start, std::min(end, ebda) - start, E820Type::kRam});
    }
    if (start < one_mib && end > ebda) {
      // EBDA .. end of the BIOS area (ACPI and MP tables): firmware-owned.
      map.push_back({ebda, std::min(end, one_mib) - ebda, E820Type::kReserved});
    }
    if (end > one_mib) {
      uint64_t from = std::max(start, one_mib);
      map.push_back({from, end - from, E820Type::kRam});
    }
  }
  return map;
}

}  // namespace petrel
