// The e820 memory map (e820.h) and the PVH start info (pvh.h, write_pvh_start_info).
#include <catch2/catch.hpp>
#include <cstdint>
#include <optional>
#include <vector>

#include "vmm/base/guest_memory.h"
#include "vmm/e820.h"
#include "vmm/layout.h"
#include "vmm/linux_boot.h"
#include "vmm/pvh.h"

using petrel::build_e820;
using petrel::E820Entry;
using petrel::E820Type;
using petrel::GuestAddress;
using petrel::GuestMemory;
using petrel::GuestRegionSpec;
using petrel::InitrdLocation;
using petrel::PvhParams;
namespace layout = petrel::layout;

namespace {

constexpr uint64_t kMiB = 1ull << 20;
constexpr uint64_t kGiB = 1ull << 30;

// Xen's public/arch-x86/hvm/start_info.h, written out here independently of pvh.cc.
struct StartInfo {
  uint32_t magic;
  uint32_t version;
  uint32_t flags;
  uint32_t nr_modules;
  uint64_t modlist_paddr;
  uint64_t cmdline_paddr;
  uint64_t rsdp_paddr;
  uint64_t memmap_paddr;
  uint32_t memmap_entries;
  uint32_t reserved;
};
static_assert(sizeof(StartInfo) == 56);

struct ModlistEntry {
  uint64_t paddr;
  uint64_t size;
  uint64_t cmdline_paddr;
  uint64_t reserved;
};

struct MemmapEntry {
  uint64_t addr;
  uint64_t size;
  uint32_t type;
  uint32_t reserved;
};
static_assert(sizeof(MemmapEntry) == 24);

GuestMemory make_ram(std::vector<GuestRegionSpec> specs) {
  auto mem = GuestMemory::create_anonymous(specs);
  REQUIRE(mem.ok());
  return std::move(mem).value();
}

GuestMemory make_ram(uint64_t bytes) {
  return make_ram(layout::ram_regions(bytes));
}

void check_entry(const E820Entry& e, uint64_t addr, uint64_t size, E820Type type) {
  CHECK(e.addr == addr);
  CHECK(e.size == size);
  CHECK(e.type == type);
}

// Sorted, non-overlapping, and every byte reported as RAM is guest RAM.
void check_well_formed(const GuestMemory& mem, const std::vector<E820Entry>& map) {
  for (size_t i = 0; i < map.size(); ++i) {
    INFO("entry " << i);
    CHECK(map[i].size > 0);
    if (i > 0) {
      CHECK(map[i - 1].addr + map[i - 1].size <= map[i].addr);
    }
    CHECK(mem.slice(GuestAddress(map[i].addr), map[i].size).ok());
  }
}

}  // namespace

TEST_CASE("e820 for 256 MiB: low RAM, the EBDA and BIOS area, RAM from 1 MiB", "[e820]") {
  auto mem = make_ram(256 * kMiB);
  auto map = build_e820(mem);
  REQUIRE(map.size() == 3);
  check_entry(map[0], 0, 0x9fc00, E820Type::kRam);
  check_entry(map[1], 0x9fc00, 0x100000 - 0x9fc00, E820Type::kReserved);
  check_entry(map[2], kMiB, 255 * kMiB, E820Type::kRam);
  check_well_formed(mem, map);
}

TEST_CASE("e820 for 5 GiB: RAM continues at 4 GiB, the MMIO hole is left out", "[e820]") {
  auto mem = make_ram(5 * kGiB);
  auto map = build_e820(mem);
  REQUIRE(map.size() == 4);
  check_entry(map[0], 0, 0x9fc00, E820Type::kRam);
  check_entry(map[1], 0x9fc00, 0x100000 - 0x9fc00, E820Type::kReserved);
  check_entry(map[2], kMiB, 3 * kGiB - kMiB, E820Type::kRam);
  check_entry(map[3], 4 * kGiB, 2 * kGiB, E820Type::kRam);
  for (const auto& e : map) {
    // Nothing in [3 GiB, 4 GiB): the IOAPIC, LAPIC and KVM's TSS live there.
    CHECK((e.addr + e.size <= layout::kMmioHoleStart.value() || e.addr >= 4 * kGiB));
  }
  uint64_t ram = 0;
  for (const auto& e : map) {
    ram += e.type == E820Type::kRam ? e.size : 0;
  }
  CHECK(ram == 5 * kGiB - (kMiB - 0x9fc00));
  check_well_formed(mem, map);
}

TEST_CASE("e820 for RAM that ends inside the first megabyte", "[e820]") {
  SECTION("below the EBDA: all RAM") {
    auto map = build_e820(make_ram(std::vector{GuestRegionSpec{GuestAddress(0), 0x80000}}));
    REQUIRE(map.size() == 1);
    check_entry(map[0], 0, 0x80000, E820Type::kRam);
  }
  SECTION("inside the BIOS area: the reserved part is cut at the end of RAM") {
    auto map = build_e820(make_ram(std::vector{GuestRegionSpec{GuestAddress(0), 0xf0000}}));
    REQUIRE(map.size() == 2);
    check_entry(map[0], 0, 0x9fc00, E820Type::kRam);
    check_entry(map[1], 0x9fc00, 0xf0000 - 0x9fc00, E820Type::kReserved);
  }
}

TEST_CASE("the PVH start info describes memory, command line, RSDP and initrd", "[pvh]") {
  auto mem = make_ram(5 * kGiB);
  PvhParams params;
  params.cmdline = layout::kCmdline;
  SECTION("with an initrd and an RSDP") {
    params.initrd = InitrdLocation{GuestAddress(0xbff00000), 0x87654};
    params.rsdp = GuestAddress(0xe0000);
  }
  SECTION("without either") {}
  REQUIRE(petrel::write_pvh_start_info(mem, params).ok());

  auto info = mem.read_obj<StartInfo>(layout::kPvhStartInfo);
  REQUIRE(info.ok());
  CHECK(info->magic == 0x336ec578u);
  CHECK(info->version == 1u);
  CHECK(info->flags == 0u);
  CHECK(info->cmdline_paddr == layout::kCmdline.value());
  CHECK(info->rsdp_paddr == (params.rsdp ? 0xe0000u : 0u));
  CHECK(info->reserved == 0u);

  if (params.initrd) {
    REQUIRE(info->nr_modules == 1u);
    // The module list lies in the start info's own page, past the start info.
    CHECK(info->modlist_paddr >= layout::kPvhStartInfo.value() + sizeof(StartInfo));
    CHECK(info->modlist_paddr + sizeof(ModlistEntry) <= layout::kPvhStartInfo.value() + 4096);
    auto mod = mem.read_obj<ModlistEntry>(GuestAddress(info->modlist_paddr));
    REQUIRE(mod.ok());
    CHECK(mod->paddr == 0xbff00000u);
    CHECK(mod->size == 0x87654u);
    CHECK(mod->cmdline_paddr == 0u);
  } else {
    CHECK(info->nr_modules == 0u);
  }

  const auto map = build_e820(mem);
  REQUIRE(info->memmap_entries == map.size());
  CHECK(info->memmap_paddr >= layout::kPvhStartInfo.value() + sizeof(StartInfo));
  CHECK(info->memmap_paddr + map.size() * sizeof(MemmapEntry) <=
        layout::kPvhStartInfo.value() + 4096);
  if (params.initrd) {
    // The memmap and the module list do not overlap.
    const uint64_t mod_end = info->modlist_paddr + sizeof(ModlistEntry);
    const uint64_t map_end = info->memmap_paddr + map.size() * sizeof(MemmapEntry);
    CHECK((mod_end <= info->memmap_paddr || map_end <= info->modlist_paddr));
  }
  for (size_t i = 0; i < map.size(); ++i) {
    INFO("memmap entry " << i);
    auto e = mem.read_obj<MemmapEntry>(GuestAddress(info->memmap_paddr + i * sizeof(MemmapEntry)));
    REQUIRE(e.ok());
    CHECK(e->addr == map[i].addr);
    CHECK(e->size == map[i].size);
    CHECK(e->type == static_cast<uint32_t>(map[i].type));
    CHECK(e->reserved == 0u);
  }
}
