// Linux's own boot protocols (Documentation/arch/x86/boot.rst): the bzImage format with its
// setup header, and the zero page (struct boot_params) handed to the 64-bit entry point.
// The image is untrusted: every header field used is checked against the file and RAM.
#pragma once

#include <asm/bootparam.h>

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

#include "vmm/base/guest_address.h"
#include "vmm/base/guest_memory.h"
#include "vmm/base/result.h"

namespace petrel {

// Where a loaded bzImage's protected-mode kernel starts and what its header says.
struct LoadedBzImage {
  setup_header header;  // as found in the image (boot.rst, "The Real-Mode Kernel Header")
  GuestAddress entry;   // the 64-bit entry: load address + 0x200
  GuestAddress end;     // one past the kernel's footprint: its runtime start + init_size
};

struct InitrdLocation {
  GuestAddress addr;
  uint64_t size;
};

// True when the image carries the bzImage signatures (0xAA55 at 0x1fe, "HdrS" at 0x202).
bool is_bzimage(std::span<const std::byte> image);

// Loads the protected-mode part at 1 MiB. Needs boot protocol 2.12+ with a 64-bit entry
// (XLF_KERNEL_64).
Result<LoadedBzImage> load_bzimage(const GuestMemory& mem, std::span<const std::byte> image);

// The longest command line the kernel takes, without the NUL: the header's cmdline_size for
// a bzImage, COMMAND_LINE_SIZE - 1 (2047, x86) otherwise.
uint32_t linux_cmdline_max(const std::optional<setup_header>& header);

// Copies `initrd` to the highest page-aligned place in low RAM that ends at or below
// `max_end` (the kernel's initrd_addr_max + 1) and starts at or above `min_start`.
Result<InitrdLocation> load_initrd(const GuestMemory& mem, std::span<const std::byte> initrd,
                                   GuestAddress min_start, uint64_t max_end);

struct ZeroPageParams {
  std::optional<setup_header> header;  // a bzImage's header, copied in; else a minimal one
  GuestAddress cmdline;
  std::optional<InitrdLocation> initrd;
  std::optional<GuestAddress> rsdp;
};

// Writes boot_params at layout::kZeroPage with the e820 map of `mem`.
Result<void> write_zero_page(const GuestMemory& mem, const ZeroPageParams& params);

}  // namespace petrel
