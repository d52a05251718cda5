// Recognises a kernel image and loads it: a bzImage (Linux boot protocol), an ELF vmlinux
// (PVH entry when it has the note, else the 64-bit entry with boot_params), or one of the
// project's own test guests (an ELF with the "petrel" note).
#pragma once

#include <asm/bootparam.h>

#include <optional>
#include <span>

#include "vmm/base/guest_address.h"
#include "vmm/base/guest_memory.h"
#include "vmm/base/result.h"

namespace petrel {

enum class BootProtocol {
  kPetrelGuest,  // 64-bit entry, RSI = struct petrel_boot_info (guest_abi.h)
  kLinux64,      // 64-bit entry, RSI = struct boot_params (boot.rst "64-bit Boot Protocol")
  kPvh,          // 32-bit entry, EBX = struct hvm_start_info (pvh.pandoc)
};

std::string_view to_string(BootProtocol protocol);

struct LoadedKernel {
  BootProtocol protocol;
  GuestAddress entry;
  GuestAddress end;                            // one past the kernel's footprint in RAM
  std::optional<setup_header> bzimage_header;  // bzImage only
  std::optional<uint32_t> petrel_guest_flags;  // kPetrelGuest only
};

Result<LoadedKernel> load_kernel(const GuestMemory& mem, std::span<const std::byte> image);

}  // namespace petrel
