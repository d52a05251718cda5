// Loading an ELF64 x86-64 executable (a vmlinux or a petrel test guest) into guest memory at
// its PT_LOAD physical addresses (System V gABI, "Program Header"). The file is untrusted:
// every offset and size is checked against the file and against guest RAM.
#pragma once

#include <cstdint>
#include <optional>
#include <span>

#include "vmm/base/guest_address.h"
#include "vmm/base/guest_memory.h"
#include "vmm/base/result.h"

namespace petrel {

struct LoadedElf {
  GuestAddress entry;   // e_entry, a 64-bit-mode entry point
  GuestAddress lowest;  // first byte loaded
  GuestAddress end;     // one past the highest byte loaded (incl. .bss)
  // The PETREL_GUEST_* flags of a "petrel" ELF note (guest_abi.h), when the image has one.
  std::optional<uint32_t> petrel_guest_flags;
  // The 32-bit PVH entry of a Linux vmlinux built with CONFIG_PVH (XEN_ELFNOTE_PHYS32_ENTRY).
  std::optional<GuestAddress> pvh_entry;
};

// `image` is the whole file. Segments must lie in RAM at or above layout::kKernelMin.
Result<LoadedElf> load_elf(const GuestMemory& mem, std::span<const std::byte> image);

}  // namespace petrel
