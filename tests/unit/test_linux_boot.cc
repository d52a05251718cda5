// The Linux boot protocol pieces (linux_boot.h) and the kernel-format dispatch
// (kernel_loader.h), with bzImages and ELF vmlinuxes built in memory.
#include <asm/bootparam.h>
#include <elf.h>

#include <catch2/catch.hpp>
#include <cstddef>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "bzimage_builder.h"
#include "elf_builder.h"
#include "vmm/base/guest_memory.h"
#include "vmm/e820.h"
#include "vmm/guest_abi.h"
#include "vmm/kernel_loader.h"
#include "vmm/layout.h"
#include "vmm/linux_boot.h"

using Catch::Contains;
using petrel::BootProtocol;
using petrel::ErrorCode;
using petrel::GuestAddress;
using petrel::GuestMemory;
using petrel::InitrdLocation;
using petrel::LoadedBzImage;
using petrel::ZeroPageParams;
using petrel::testing::Bytes;
using petrel::testing::BzImage;
using petrel::testing::ElfBuilder;
using petrel::testing::kSetupHeaderOffset;
using petrel::testing::note;
using petrel::testing::patch_phdr;
using petrel::testing::pattern;
using petrel::testing::petrel_note;
using petrel::testing::u32_bytes;
namespace layout = petrel::layout;

namespace {

constexpr uint64_t kMiB = 1ull << 20;
constexpr uint64_t kGiB = 1ull << 30;

// Guest RAM laid out as petrel does (layout::ram_regions). Small RAM is filled with 0xAA so
// that writes are visible; large RAM is left untouched (MAP_NORESERVE, never faulted in).
GuestMemory make_ram(uint64_t bytes) {
  auto specs = layout::ram_regions(bytes);
  auto mem = GuestMemory::create_anonymous(specs);
  REQUIRE(mem.ok());
  if (bytes <= 64 * kMiB) {
    auto all = mem->slice(GuestAddress(0), bytes);
    REQUIRE(all.ok());
    std::memset(all->data(), 0xaa, all->size());
  }
  return std::move(mem).value();
}

Bytes guest_bytes(const GuestMemory& mem, uint64_t addr, uint64_t len) {
  Bytes out(len);
  REQUIRE(mem.read(GuestAddress(addr), out).ok());
  return out;
}

LoadedBzImage load_bz_ok(const GuestMemory& mem, const Bytes& image) {
  auto r = petrel::load_bzimage(mem, image);
  if (!r.ok()) {
    FAIL("load_bzimage failed: " << r.error().to_string());
  }
  return std::move(r).value();
}

std::string bz_refusal(const Bytes& image, ErrorCode code = ErrorCode::kInvalidArgument,
                       uint64_t ram = 16 * kMiB) {
  auto mem = make_ram(ram);
  auto r = petrel::load_bzimage(mem, image);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code() == code);
  return r.error().message();
}

}  // namespace

TEST_CASE("the bzImage builder puts the signatures where boot.rst says", "[linux]") {
  Bytes image = BzImage{}.build();
  CHECK(image[0x1fe] == std::byte{0x55});
  CHECK(image[0x1ff] == std::byte{0xaa});
  CHECK(std::memcmp(image.data() + 0x202, "HdrS", 4) == 0);
  CHECK(petrel::is_bzimage(image));
  SECTION("a wrong boot flag") {
    image[0x1fe] = std::byte{0};
    CHECK_FALSE(petrel::is_bzimage(image));
  }
  SECTION("a wrong header magic") {
    image[0x205] = std::byte{'s'};
    CHECK_FALSE(petrel::is_bzimage(image));
  }
  SECTION("a file that ends inside the header") {
    image.resize(0x202);
    CHECK_FALSE(petrel::is_bzimage(image));
  }
}

TEST_CASE("a good bzImage loads its protected-mode part at 1 MiB", "[linux]") {
  auto mem = make_ram(16 * kMiB);
  BzImage bz;
  SECTION("init_size larger than the payload") {
    bz.init_size = 0x40000;
  }
  SECTION("init_size smaller than the payload") {
    bz.init_size = 0x1000;
  }
  SECTION("setup_sects 0 means 4") {
    bz.setup_sects = 0;
  }
  SECTION("many setup sectors") {
    bz.setup_sects = 0x3f;
  }
  LoadedBzImage loaded = load_bz_ok(mem, bz.build());
  CHECK(loaded.entry == GuestAddress(0x100200));
  // Relocatable, 2 MiB alignment, no pref_address: it decompresses to 2 MiB (boot.rst
  // "init_size") and needs init_size bytes from there.
  CHECK(loaded.end ==
        GuestAddress(std::max<uint64_t>(kMiB + bz.payload.size(), 2 * kMiB + bz.init_size)));
  CHECK(loaded.header.version == bz.version);
  CHECK(loaded.header.init_size == bz.init_size);
  CHECK(loaded.header.initrd_addr_max == bz.initrd_addr_max);
  CHECK(unsigned{loaded.header.setup_sects} == bz.setup_sects);
  CHECK(guest_bytes(mem, kMiB, bz.payload.size()) == bz.payload);
  // Nothing of the setup code lands below 1 MiB, nothing past the payload is written.
  CHECK(guest_bytes(mem, kMiB - 16, 16) == Bytes(16, std::byte{0xaa}));
  CHECK(guest_bytes(mem, kMiB + bz.payload.size(), 16) == Bytes(16, std::byte{0xaa}));
}

TEST_CASE("boot protocol 2.12 is the oldest accepted", "[linux]") {
  auto mem = make_ram(16 * kMiB);
  BzImage bz;
  bz.version = 0x020c;
  CHECK(load_bz_ok(mem, bz.build()).header.version == 0x020c);
  bz.version = 0x020b;
  CHECK_THAT(bz_refusal(bz.build()), Contains("bzImage boot protocol 2.11 is older than 2.12"));
  bz.version = 0x0204;
  CHECK_THAT(bz_refusal(bz.build()), Contains("protocol 2.04 is older"));
}

TEST_CASE("bzImages that cannot be booted are refused", "[linux]") {
  BzImage bz;
  SECTION("not a bzImage at all") {
    CHECK_THAT(bz_refusal(pattern(0x1000, 1)), Contains("not a bzImage"));
  }
  SECTION("no 64-bit entry point") {
    bz.xloadflags = XLF_CAN_BE_LOADED_ABOVE_4G;
    CHECK_THAT(bz_refusal(bz.build()), Contains("no 64-bit entry point (XLF_KERNEL_64 clear)"));
  }
  SECTION("the file ends where the setup ends") {
    bz.payload.clear();
    bz.syssize = 0;
    CHECK_THAT(bz_refusal(bz.build()),
               Contains("bzImage is truncated: 2560 bytes, setup alone is 2560"));
  }
  SECTION("setup_sects says more than the file holds") {
    Bytes image = bz.build();
    image[kSetupHeaderOffset] = std::byte{0xff};  // 256 sectors of setup: 128 KiB
    CHECK_THAT(bz_refusal(image), Contains("setup alone is 131072"));
  }
  SECTION("syssize is larger than the file") {
    bz.syssize = static_cast<uint32_t>(bz.payload.size() / 16 + 1);
    CHECK_THAT(bz_refusal(bz.build()),
               Contains("bzImage is truncated: header says 12304 kernel bytes, file has 12288"));
  }
  SECTION("a cut-off download") {
    Bytes image = bz.build();
    image.resize(image.size() - 1);
    CHECK_THAT(bz_refusal(image), Contains("header says 12288 kernel bytes, file has 12287"));
  }
}

TEST_CASE("a kernel whose init_size does not fit in RAM is refused", "[linux]") {
  BzImage bz;
  bz.init_size = 14 * kMiB;  // from the 2 MiB runtime start exactly up to the end of 16 MiB
  auto mem = make_ram(16 * kMiB);
  CHECK(load_bz_ok(mem, bz.build()).end == GuestAddress(16 * kMiB));
  bz.init_size = 14 * kMiB + 1;
  CHECK_THAT(bz_refusal(bz.build(), ErrorCode::kOutOfRange),
             Contains("needs 14680065 bytes (init_size) from 0x200000"));
  bz.init_size = 0xffffffff;
  CHECK_THAT(bz_refusal(bz.build(), ErrorCode::kOutOfRange),
             Contains("does not fit in guest memory"));
}

TEST_CASE("a bzImage's runtime start follows pref_address and kernel_alignment", "[linux]") {
  auto mem = make_ram(64 * kMiB);
  BzImage bz;
  bz.init_size = 0x100000;
  SECTION("pref_address rounded up to the alignment") {
    bz.pref_address = 0x1000000 + 1;
    bz.kernel_alignment = 0x1000000;
    CHECK(load_bz_ok(mem, bz.build()).end == GuestAddress(0x2000000 + 0x100000));
  }
  SECTION("a non-relocatable kernel runs at pref_address") {
    bz.relocatable_kernel = 0;
    bz.pref_address = 0x3000000;
    CHECK(load_bz_ok(mem, bz.build()).end == GuestAddress(0x3100000));
  }
  SECTION("an alignment that is not a power of two is refused") {
    bz.kernel_alignment = 0x300000;
    CHECK_THAT(bz_refusal(bz.build(), ErrorCode::kInvalidArgument), Contains("not a power of two"));
  }
}

TEST_CASE("the command line limit comes from the bzImage header", "[linux]") {
  CHECK(petrel::linux_cmdline_max(std::nullopt) == 2047);
  setup_header hdr{};
  hdr.cmdline_size = 1000;
  hdr.version = 0x0206;
  CHECK(petrel::linux_cmdline_max(hdr) == 1000);
  hdr.version = 0x020f;
  hdr.cmdline_size = 4095;
  CHECK(petrel::linux_cmdline_max(hdr) == 4095);
  hdr.version = 0x0205;  // before cmdline_size existed
  CHECK(petrel::linux_cmdline_max(hdr) == 255);
}

TEST_CASE("the initrd goes page-aligned at the top of low RAM", "[linux]") {
  const Bytes initrd = pattern(0x3456, 0x21);
  auto mem = make_ram(64 * kMiB);

  SECTION("at the end of RAM") {
    auto r = petrel::load_initrd(mem, initrd, GuestAddress(2 * kMiB), 0x80000000);
    REQUIRE(r.ok());
    CHECK(r->addr == GuestAddress(0x3ffc000));
    CHECK(r->size == initrd.size());
    CHECK(guest_bytes(mem, 0x3ffc000, initrd.size()) == initrd);
  }
  SECTION("below the kernel's initrd_addr_max") {
    auto r = petrel::load_initrd(mem, initrd, GuestAddress(2 * kMiB), 0x2000800);
    REQUIRE(r.ok());
    CHECK(r->addr == GuestAddress(0x1ffd000));
    CHECK(r->addr.value() + r->size <= 0x2000800);
    CHECK(guest_bytes(mem, 0x1ffd000, initrd.size()) == initrd);
  }
  SECTION("exactly at min_start") {
    auto r = petrel::load_initrd(mem, initrd, GuestAddress(0x3ffc000), 0x80000000);
    REQUIRE(r.ok());
    CHECK(r->addr == GuestAddress(0x3ffc000));
  }
  SECTION("min_start is rounded up to a page") {
    auto r = petrel::load_initrd(mem, initrd, GuestAddress(0x3ffc001), 0x80000000);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code() == ErrorCode::kOutOfRange);
    CHECK_THAT(r.error().message(),
               Contains("the initrd (13398 bytes) does not fit in guest memory between the "
                        "kernel's end 0x3ffd000 and 0x4000000"));
  }
}

TEST_CASE("an initrd that does not fit is refused", "[linux]") {
  auto mem = make_ram(64 * kMiB);
  SECTION("larger than the space above the kernel") {
    auto r = petrel::load_initrd(mem, pattern(60 * kMiB, 1), GuestAddress(8 * kMiB), 4 * kGiB);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code() == ErrorCode::kOutOfRange);
    CHECK_THAT(r.error().message(), Contains("the initrd (62914560 bytes) does not fit"));
  }
  SECTION("larger than RAM") {
    auto r = petrel::load_initrd(mem, pattern(65 * kMiB, 1), GuestAddress(0), 4 * kGiB);
    REQUIRE_FALSE(r.ok());
    CHECK_THAT(r.error().message(), Contains("does not fit in guest memory"));
  }
  SECTION("larger than initrd_addr_max allows") {
    auto r = petrel::load_initrd(mem, pattern(kMiB, 1), GuestAddress(2 * kMiB), 2 * kMiB + 4096);
    REQUIRE_FALSE(r.ok());
    CHECK_THAT(r.error().message(), Contains("between the kernel's end 0x200000 and 0x201000"));
  }
}

TEST_CASE("with RAM above 4 GiB the initrd stays in the first region", "[linux]") {
  auto mem = make_ram(5 * kGiB);
  auto r = petrel::load_initrd(mem, pattern(0x1800, 3), GuestAddress(kMiB), 4 * kGiB);
  REQUIRE(r.ok());
  CHECK(r->addr == GuestAddress(3 * kGiB - 0x2000));
  CHECK(guest_bytes(mem, 3 * kGiB - 0x2000, 0x1800) == pattern(0x1800, 3));
}

TEST_CASE("the zero page carries the header, command line, initrd, RSDP and e820", "[linux]") {
  auto mem = make_ram(5 * kGiB);
  ZeroPageParams params;
  params.cmdline = layout::kCmdline;
  BzImage bz;

  SECTION("a bzImage with an initrd and an RSDP") {
    params.header = bz.header();
    params.initrd = InitrdLocation{GuestAddress(0x1'2345'6000), 0x1'0000'0123};
    params.rsdp = GuestAddress(0xe0000);
  }
  SECTION("an ELF kernel: a minimal header, no initrd, no RSDP") {}
  REQUIRE(petrel::write_zero_page(mem, params).ok());
  auto zp = mem.read_obj<boot_params>(layout::kZeroPage);
  REQUIRE(zp.ok());

  CHECK(zp->hdr.boot_flag == 0xaa55);
  CHECK(zp->hdr.header == 0x53726448);
  CHECK(unsigned{zp->hdr.type_of_loader} == 0xffu);
  CHECK(zp->hdr.cmd_line_ptr == layout::kCmdline.value());
  CHECK(zp->ext_cmd_line_ptr == 0);
  if (params.header) {
    CHECK(zp->hdr.version == bz.version);
    CHECK(zp->hdr.init_size == bz.init_size);
    CHECK(zp->hdr.initrd_addr_max == bz.initrd_addr_max);
    CHECK(zp->hdr.ramdisk_image == 0x2345'6000u);
    CHECK(zp->ext_ramdisk_image == 1u);
    CHECK(zp->hdr.ramdisk_size == 0x123u);
    CHECK(zp->ext_ramdisk_size == 1u);
    CHECK(zp->acpi_rsdp_addr == 0xe0000u);
  } else {
    CHECK(zp->hdr.version == 0);
    CHECK(zp->hdr.ramdisk_image == 0);
    CHECK(zp->hdr.ramdisk_size == 0);
    CHECK(zp->ext_ramdisk_image == 0);
    CHECK(zp->ext_ramdisk_size == 0);
    CHECK(zp->acpi_rsdp_addr == 0);
  }

  const auto map = petrel::build_e820(mem);
  REQUIRE(map.size() == 4);
  REQUIRE(zp->e820_entries == map.size());
  for (size_t i = 0; i < map.size(); ++i) {
    INFO("e820 entry " << i);
    CHECK(zp->e820_table[i].addr == map[i].addr);
    CHECK(zp->e820_table[i].size == map[i].size);
    CHECK(zp->e820_table[i].type == static_cast<uint32_t>(map[i].type));
  }
  CHECK(zp->e820_table[map.size()].size == 0);
}

TEST_CASE("load_kernel: a bzImage boots with the Linux 64-bit protocol", "[linux][kernel]") {
  auto mem = make_ram(16 * kMiB);
  BzImage bz;
  auto r = petrel::load_kernel(mem, bz.build());
  REQUIRE(r.ok());
  CHECK(r->protocol == BootProtocol::kLinux64);
  CHECK(r->entry == GuestAddress(0x100200));
  CHECK(r->end == GuestAddress(2 * kMiB + bz.init_size));
  REQUIRE(r->bzimage_header.has_value());
  CHECK(r->bzimage_header->version == bz.version);
  CHECK_FALSE(r->petrel_guest_flags.has_value());
  CHECK(guest_bytes(mem, kMiB, bz.payload.size()) == bz.payload);
}

TEST_CASE("load_kernel: ELF kernels by their notes", "[linux][kernel]") {
  constexpr uint64_t kVirt = 0xffffffff81000000;
  constexpr uint64_t kPhys = 0x1000000;
  auto mem = make_ram(32 * kMiB);
  ElfBuilder b;
  b.entry(kVirt + 0x40).load(kPhys, pattern(0x2000, 7), 0x5000);

  auto load = [&](const ElfBuilder& builder) {
    Bytes image = builder.build();
    patch_phdr(image, 0, [&](Elf64_Phdr& p) { p.p_vaddr = kVirt; });
    auto r = petrel::load_kernel(mem, image);
    if (!r.ok()) {
      FAIL("load_kernel failed: " << r.error().to_string());
    }
    return std::move(r).value();
  };

  SECTION("no notes: the 64-bit entry at its physical address") {
    auto k = load(b);
    CHECK(k.protocol == BootProtocol::kLinux64);
    CHECK(k.entry == GuestAddress(kPhys + 0x40));
    CHECK(k.end == GuestAddress(kPhys + 0x5000));
    CHECK_FALSE(k.bzimage_header.has_value());
    CHECK_FALSE(k.petrel_guest_flags.has_value());
    CHECK(guest_bytes(mem, kPhys, 0x2000) == pattern(0x2000, 7));
  }
  SECTION("a Xen PVH entry note") {
    Bytes notes = note("GNU", NT_GNU_BUILD_ID, pattern(20, 0));
    Bytes pvh = note("Xen", 18, u32_bytes(0x1000123));
    notes.insert(notes.end(), pvh.begin(), pvh.end());
    b.notes(notes);
    auto k = load(b);
    CHECK(k.protocol == BootProtocol::kPvh);
    CHECK(k.entry == GuestAddress(0x1000123));
    CHECK(k.end == GuestAddress(kPhys + 0x5000));
    CHECK_FALSE(k.bzimage_header.has_value());
  }
  SECTION("a Xen note of another type is not a PVH entry") {
    b.notes(note("Xen", 17, u32_bytes(0x1000123)));
    CHECK(load(b).protocol == BootProtocol::kLinux64);
  }
  SECTION("the petrel note") {
    b.notes(petrel_note(PETREL_GUEST_PVM_NATIVE));
    auto k = load(b);
    CHECK(k.protocol == BootProtocol::kPetrelGuest);
    CHECK(k.entry == GuestAddress(kPhys + 0x40));
    CHECK(k.petrel_guest_flags == PETREL_GUEST_PVM_NATIVE);
  }
}

TEST_CASE("load_kernel refuses what is neither a bzImage nor an ELF", "[linux][kernel]") {
  auto mem = make_ram(16 * kMiB);
  for (const Bytes& junk : {Bytes{}, pattern(3, 0x7f), pattern(0x4000, 0x42)}) {
    auto r = petrel::load_kernel(mem, junk);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code() == ErrorCode::kInvalidArgument);
    CHECK_THAT(r.error().message(), Contains("not a kernel image"));
  }
  // A broken bzImage or ELF reports its own problem, not "not a kernel image".
  BzImage old;
  old.version = 0x0200;
  auto r = petrel::load_kernel(mem, old.build());
  REQUIRE_FALSE(r.ok());
  CHECK_THAT(r.error().message(), Contains("older than 2.12"));
  Bytes elf = ElfBuilder().load(kMiB, pattern(16, 1)).build();
  elf.resize(elf.size() - 1);
  auto e = petrel::load_kernel(mem, elf);
  REQUIRE_FALSE(e.ok());
  CHECK_THAT(e.error().message(), Contains("truncated"));
}
