#include <array>
#include <catch2/catch.hpp>
#include <optional>

#include "vmm/base/guest_memory.h"
#include "vmm/layout.h"
#include "vmm/long_mode.h"

using petrel::GuestAddress;
using petrel::GuestMemory;
using petrel::GuestRegionSpec;
namespace layout = petrel::layout;

namespace {

constexpr uint64_t kGiB = 1ull << 30;
constexpr uint64_t kPresent = 1ull << 0;
constexpr uint64_t kWritable = 1ull << 1;
constexpr uint64_t kUser = 1ull << 2;
constexpr uint64_t kPageSize2M = 1ull << 7;
constexpr uint64_t kAddrMask = 0x000ffffffffff000ull;

// Every page table lies below 1 MiB.
GuestMemory low_mib() {
  std::array specs{GuestRegionSpec{GuestAddress(0), 1ull << 20}};
  auto mem = GuestMemory::create_anonymous(specs);
  REQUIRE(mem.ok());
  return std::move(mem).value();
}

uint64_t read_u64(const GuestMemory& mem, uint64_t addr) {
  auto v = mem.read_obj<uint64_t>(GuestAddress(addr));
  REQUIRE(v.ok());
  return *v;
}

uint64_t entry_at(const GuestMemory& mem, uint64_t table, uint64_t index) {
  return read_u64(mem, table + index * sizeof(uint64_t));
}

// A 4-level walk with 2 MiB pages (Intel SDM vol. 3A, 4.5), as the CPU does it from CR3 =
// layout::kPml4. nullopt when an entry on the way is not present.
std::optional<uint64_t> translate(const GuestMemory& mem, uint64_t va) {
  const uint64_t pml4e = entry_at(mem, layout::kPml4.value(), (va >> 39) & 511);
  if ((pml4e & kPresent) == 0) {
    return std::nullopt;
  }
  const uint64_t pdpte = entry_at(mem, pml4e & kAddrMask, (va >> 30) & 511);
  if ((pdpte & kPresent) == 0) {
    return std::nullopt;
  }
  REQUIRE((pdpte & kPageSize2M) == 0);  // no 1 GiB pages
  const uint64_t pde = entry_at(mem, pdpte & kAddrMask, (va >> 21) & 511);
  if ((pde & kPresent) == 0) {
    return std::nullopt;
  }
  REQUIRE((pde & kPageSize2M) != 0);  // 2 MiB pages, no page tables
  return (pde & kAddrMask & ~0x1fffffull) | (va & 0x1fffff);
}

// The number of PDPT entries that are present (they are consecutive from 0).
uint64_t mapped_gib(const GuestMemory& mem) {
  uint64_t n = 0;
  while (n < 512 && (entry_at(mem, layout::kPdpt.value(), n) & kPresent) != 0) {
    ++n;
  }
  for (uint64_t i = n; i < 512; ++i) {
    CHECK(entry_at(mem, layout::kPdpt.value(), i) == 0);
  }
  return n;
}

GuestMemory tables_for(uint64_t map_bytes, bool user_pages) {
  auto mem = low_mib();
  REQUIRE(petrel::write_long_mode_tables(mem, map_bytes, user_pages).ok());
  return mem;
}

}  // namespace

TEST_CASE("the boot GDT has a 64-bit code and a data descriptor", "[long_mode]") {
  auto mem = tables_for(1ull << 30, false);
  CHECK(read_u64(mem, layout::kGdt.value()) == 0);  // the null descriptor

  const uint64_t code = read_u64(mem, layout::kGdt.value() + layout::kBootCs);
  CHECK(layout::kBootCs == 0x10);
  CHECK(((code >> 47) & 1) == 1);  // P
  CHECK(((code >> 45) & 3) == 0);  // DPL 0
  CHECK(((code >> 44) & 1) == 1);  // S: code/data
  CHECK(((code >> 43) & 1) == 1);  // executable
  CHECK(((code >> 53) & 1) == 1);  // L: 64-bit
  CHECK(((code >> 54) & 1) == 0);  // D must be 0 with L

  const uint64_t data = read_u64(mem, layout::kGdt.value() + layout::kBootDs);
  CHECK(layout::kBootDs == 0x18);
  CHECK(((data >> 47) & 1) == 1);  // P
  CHECK(((data >> 45) & 3) == 0);  // DPL 0
  CHECK(((data >> 44) & 1) == 1);  // S
  CHECK(((data >> 43) & 1) == 0);  // data
  CHECK(((data >> 41) & 1) == 1);  // writable
}

TEST_CASE("the page tables identity-map with 2 MiB pages", "[long_mode]") {
  auto mem = tables_for(5 * kGiB, false);

  const uint64_t pml4e = read_u64(mem, layout::kPml4.value());
  CHECK((pml4e & kAddrMask) == layout::kPdpt.value());
  CHECK((pml4e & (kPresent | kWritable)) == (kPresent | kWritable));
  for (uint64_t i = 1; i < 512; ++i) {
    CHECK(entry_at(mem, layout::kPml4.value(), i) == 0);
  }
  REQUIRE(mapped_gib(mem) == 5);
  for (uint64_t g = 0; g < 5; ++g) {
    const uint64_t pdpte = entry_at(mem, layout::kPdpt.value(), g);
    CHECK((pdpte & kAddrMask) == layout::kPageDirectories.value() + g * GuestMemory::kPageSize);
  }

  CHECK(translate(mem, 0) == 0u);
  CHECK(translate(mem, 0x12345678) == 0x12345678u);
  CHECK(translate(mem, 0x1fffff) == 0x1fffffu);
  CHECK(translate(mem, 0x200000) == 0x200000u);
  CHECK(translate(mem, 0xfee00000) == 0xfee00000u);
  CHECK(translate(mem, 0x100000000 + 0x2345678) == 0x100000000u + 0x2345678);
  CHECK(translate(mem, 5 * kGiB - 1) == 5 * kGiB - 1);
  CHECK_FALSE(translate(mem, 5 * kGiB).has_value());
  CHECK_FALSE(translate(mem, 1ull << 39).has_value());
}

TEST_CASE("U/S is set in every entry exactly when user_pages is asked for", "[long_mode]") {
  const bool user = GENERATE(false, true);
  CAPTURE(user);
  auto mem = tables_for(5 * kGiB, user);

  auto check = [&](uint64_t e) {
    REQUIRE((e & kPresent) != 0);
    CHECK(((e & kUser) != 0) == user);
    CHECK((e & kWritable) != 0);
  };
  check(read_u64(mem, layout::kPml4.value()));
  for (uint64_t g = 0; g < 5; ++g) {
    const uint64_t pdpte = entry_at(mem, layout::kPdpt.value(), g);
    check(pdpte);
    for (uint64_t i = 0; i < 512; ++i) {
      check(entry_at(mem, pdpte & kAddrMask, i));
    }
  }
}

TEST_CASE("the identity map covers at least 4 GiB and at most kMaxIdentityGiB", "[long_mode]") {
  SECTION("small RAM still gets the low 4 GiB (for the MMIO hole)") {
    auto mem = tables_for(16ull << 20, false);
    CHECK(mapped_gib(mem) == 4);
    CHECK(translate(mem, 0xfec00000) == 0xfec00000u);
    CHECK_FALSE(translate(mem, 4 * kGiB).has_value());
  }
  SECTION("no RAM size at all") {
    CHECK(mapped_gib(tables_for(0, false)) == 4);
  }
  SECTION("rounded up to whole GiB") {
    auto mem = tables_for(4 * kGiB + 1, false);
    CHECK(mapped_gib(mem) == 5);
    CHECK(translate(mem, 5 * kGiB - 0x1000) == 5 * kGiB - 0x1000);
  }
  SECTION("exactly kMaxIdentityGiB") {
    CHECK(mapped_gib(tables_for(layout::kMaxIdentityGiB * kGiB, false)) == layout::kMaxIdentityGiB);
  }
  SECTION("capped for huge RAM") {
    auto mem = tables_for(1ull << 40, false);
    CHECK(mapped_gib(mem) == layout::kMaxIdentityGiB);
    const uint64_t last = layout::kMaxIdentityGiB * kGiB - 0x200000;
    CHECK(translate(mem, last + 0x1234) == last + 0x1234);
    CHECK_FALSE(translate(mem, layout::kMaxIdentityGiB * kGiB).has_value());
  }
}

TEST_CASE("long_mode_sregs enters 64-bit mode with the boot GDT", "[long_mode]") {
  kvm_sregs base{};
  base.apic_base = 0xfee00900;
  const kvm_sregs s = petrel::long_mode_sregs(base);

  CHECK((s.cr0 & (1ull << 31)) != 0);   // PG
  CHECK((s.cr0 & (1ull << 0)) != 0);    // PE
  CHECK((s.cr4 & (1ull << 5)) != 0);    // PAE
  CHECK((s.efer & (1ull << 8)) != 0);   // LME
  CHECK((s.efer & (1ull << 10)) != 0);  // LMA
  CHECK(s.cr3 == layout::kPml4.value());

  CHECK(s.cs.selector == 0x10);
  CHECK(s.cs.l == 1);
  CHECK(s.cs.db == 0);
  CHECK(s.cs.present == 1);
  CHECK(s.cs.dpl == 0);
  CHECK(s.cs.s == 1);
  CHECK((s.cs.type & 0x8) != 0);  // code
  for (const kvm_segment* seg : {&s.ds, &s.es, &s.fs, &s.gs, &s.ss}) {
    CHECK(seg->selector == 0x18);
    CHECK(seg->present == 1);
    CHECK(seg->unusable == 0);
    CHECK((seg->type & 0x8) == 0);  // data
    CHECK((seg->type & 0x2) != 0);  // writable
  }
  CHECK(s.tr.selector == layout::kBootTss);
  CHECK(s.tr.present == 1);

  CHECK(s.gdt.base == layout::kGdt.value());
  CHECK(s.gdt.limit == 5 * 8 - 1);
  CHECK(s.gdt.limit >= layout::kBootDs + 7);
  CHECK(s.apic_base == 0xfee00900);  // fields it does not own are kept
}

TEST_CASE("long_mode_sregs segments match the GDT written to guest memory", "[long_mode]") {
  auto mem = tables_for(kGiB, false);
  const kvm_sregs s = petrel::long_mode_sregs(kvm_sregs{});
  const uint64_t code = read_u64(mem, s.gdt.base + s.cs.selector);
  CHECK(((code >> 53) & 1) == s.cs.l);
  CHECK(((code >> 40) & 0xf) == s.cs.type);
  const uint64_t data = read_u64(mem, s.gdt.base + s.ds.selector);
  CHECK(((data >> 40) & 0xf) == s.ds.type);
}
