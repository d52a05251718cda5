// BzImage: a Linux bzImage built in memory for the boot-protocol unit tests
// (Documentation/arch/x86/boot.rst): (setup_sects + 1) sectors of real-mode setup with the
// setup header at 0x1f1, then the protected-mode payload.
#pragma once

#include <asm/bootparam.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>

#include "elf_builder.h"

namespace petrel::testing {

inline constexpr uint64_t kSetupHeaderOffset = 0x1f1;

static_assert(kSetupHeaderOffset + offsetof(setup_header, boot_flag) == 0x1fe);
static_assert(kSetupHeaderOffset + offsetof(setup_header, header) == 0x202);

struct BzImage {
  uint8_t setup_sects = 4;
  uint16_t version = 0x020f;
  uint16_t xloadflags = XLF_KERNEL_64;
  uint32_t init_size = 0x40000;
  uint32_t cmdline_size = 2047;
  uint32_t initrd_addr_max = 0x7fffffff;
  uint32_t kernel_alignment = 0x200000;
  uint8_t relocatable_kernel = 1;
  uint64_t pref_address = 0;
  Bytes payload = pattern(0x3000, 0x11);  // a multiple of 16, as the kernel's build pads it
  std::optional<uint32_t> syssize;        // default: the payload's size in paragraphs

  // setup_sects 0 means 4 (boot.rst).
  uint64_t setup_bytes() const { return (setup_sects == 0 ? 4u : setup_sects) * 512ull + 512; }

  setup_header header() const {
    setup_header hdr{};
    hdr.setup_sects = setup_sects;
    hdr.syssize = syssize.value_or(static_cast<uint32_t>(payload.size() / 16));
    hdr.boot_flag = 0xaa55;
    hdr.header = 0x53726448;  // "HdrS"
    hdr.version = version;
    hdr.xloadflags = xloadflags;
    hdr.init_size = init_size;
    hdr.cmdline_size = cmdline_size;
    hdr.initrd_addr_max = initrd_addr_max;
    hdr.kernel_alignment = kernel_alignment;
    hdr.relocatable_kernel = relocatable_kernel;
    hdr.pref_address = pref_address;
    return hdr;
  }

  Bytes build() const {
    Bytes out = pattern(setup_bytes(), 0x99);
    const setup_header hdr = header();
    std::memcpy(out.data() + kSetupHeaderOffset, &hdr, sizeof(hdr));
    out.insert(out.end(), payload.begin(), payload.end());
    return out;
  }
};

}  // namespace petrel::testing
