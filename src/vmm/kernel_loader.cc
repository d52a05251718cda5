#include "vmm/kernel_loader.h"

#include <elf.h>

#include <cstring>

#include "vmm/elf_loader.h"
#include "vmm/linux_boot.h"

namespace petrel {

std::string_view to_string(BootProtocol protocol) {
  switch (protocol) {
    case BootProtocol::kPetrelGuest:
      return "petrel test guest (64-bit entry)";
    case BootProtocol::kLinux64:
      return "Linux 64-bit boot protocol";
    case BootProtocol::kPvh:
      return "PVH";
  }
  return "unknown";
}

Result<LoadedKernel> load_kernel(const GuestMemory& mem, std::span<const std::byte> image) {
  if (is_bzimage(image)) {
    PETREL_TRY_ASSIGN(auto bz, load_bzimage(mem, image));
    return LoadedKernel{BootProtocol::kLinux64, bz.entry, bz.end, bz.header, std::nullopt};
  }
  if (image.size() >= SELFMAG && std::memcmp(image.data(), ELFMAG, SELFMAG) == 0) {
    PETREL_TRY_ASSIGN(auto elf, load_elf(mem, image));
    if (elf.petrel_guest_flags) {
      return LoadedKernel{BootProtocol::kPetrelGuest, elf.entry, elf.end, std::nullopt,
                          elf.petrel_guest_flags};
    }
    if (elf.pvh_entry) {
      return LoadedKernel{BootProtocol::kPvh, *elf.pvh_entry, elf.end, std::nullopt, std::nullopt};
    }
    return LoadedKernel{BootProtocol::kLinux64, elf.entry, elf.end, std::nullopt, std::nullopt};
  }
  return Error(ErrorCode::kInvalidArgument,
               "not a kernel image: neither a bzImage nor an ELF file");
}

}  // namespace petrel
