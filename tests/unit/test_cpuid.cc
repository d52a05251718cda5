// The per-vCPU CPUID table (cpuid.h), the boot MSRs (boot_msrs.h) and the command line
// limit (boot_info.h, write_cmdline): the parts that need no /dev/kvm.
#include <algorithm>
#include <array>
#include <catch2/catch.hpp>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "vmm/base/guest_memory.h"
#include "vmm/base/kvm_abi.h"
#include "vmm/boot_info.h"
#include "vmm/boot_msrs.h"
#include "vmm/cpuid.h"
#include "vmm/layout.h"

using Catch::Contains;
using petrel::ErrorCode;
using petrel::GuestAddress;
using petrel::GuestMemory;
using petrel::GuestRegionSpec;
using petrel::MsrValue;
namespace layout = petrel::layout;

namespace {

constexpr uint32_t kHypervisor = 1u << 31;  // leaf 1 ECX
constexpr uint32_t kHtt = 1u << 28;         // leaf 1 EDX

kvm_cpuid_entry2 leaf(uint32_t function, uint32_t index, uint32_t eax, uint32_t ebx, uint32_t ecx,
                      uint32_t edx) {
  kvm_cpuid_entry2 e{};
  e.function = function;
  e.index = index;
  e.eax = eax;
  e.ebx = ebx;
  e.ecx = ecx;
  e.edx = edx;
  return e;
}

// What KVM_GET_SUPPORTED_CPUID might report on a host with 8 cores and SMT.
std::vector<kvm_cpuid_entry2> supported_table() {
  return {
      leaf(0x1, 0, 0x000906ea, 0xff7f0812, 0x7ffafbff, 0x1fabfbff),  // HTT set, no hypervisor
      leaf(0x4, 0, 0xfc004121, 0x01c0003f, 0x0000003f, 0),           // L1d, shared by 2
      leaf(0x4, 1, 0xfc01c163, 0x03c0003f, 0x00003fff, 0x6),         // L3, shared by 8
      leaf(0x4, 2, 0, 0, 0, 0),                                      // no more caches
      leaf(0xb, 0, 0x1, 0x2, 0x100, 0x7),
      leaf(0xb, 1, 0x4, 0x10, 0x201, 0x7),
      leaf(0x40000000, 0, 0x40000001, 0x4b4d564b, 0x564b4d56, 0x4d),  // "KVMKVMKVM"
      leaf(0x80000008, 0, 0x3030, 0, 0x00017007, 0),
      leaf(0x8000001e, 0, 0x12, 0x0103, 0x0301, 0),
  };
}

const kvm_cpuid_entry2& find(const std::vector<kvm_cpuid_entry2>& table, uint32_t function,
                             uint32_t index = 0) {
  auto it = std::find_if(table.begin(), table.end(), [&](const kvm_cpuid_entry2& e) {
    return e.function == function && e.index == index;
  });
  REQUIRE(it != table.end());
  return *it;
}

}  // namespace

TEST_CASE("leaf 1 carries the APIC ID, the vCPU count and the hypervisor bit", "[cpuid]") {
  const auto supported = supported_table();
  SECTION("one vCPU: no HTT") {
    auto t = petrel::vcpu_cpuid(supported, 0, 1);
    const auto& l1 = find(t, 0x1);
    CHECK(l1.ebx >> 24 == 0u);
    CHECK(((l1.ebx >> 16) & 0xff) == 1u);
    CHECK((l1.ebx & 0xffff) == 0x0812u);  // brand index and CLFLUSH size kept
    CHECK((l1.edx & kHtt) == 0u);
    CHECK((l1.ecx & kHypervisor) != 0u);
    CHECK(l1.eax == 0x000906eau);
    CHECK((l1.ecx & ~kHypervisor) == 0x7ffafbffu);
    CHECK((l1.edx | kHtt) == 0x1fabfbffu);
  }
  SECTION("four vCPUs, the last one") {
    auto t = petrel::vcpu_cpuid(supported, 3, 4);
    const auto& l1 = find(t, 0x1);
    CHECK(l1.ebx >> 24 == 3u);
    CHECK(((l1.ebx >> 16) & 0xff) == 4u);
    CHECK((l1.ebx & 0xffff) == 0x0812u);
    CHECK((l1.edx & kHtt) != 0u);
    CHECK((l1.ecx & kHypervisor) != 0u);
  }
  SECTION("HTT is set even when the host table lacks it") {
    auto table = supported;
    table[0].edx &= ~kHtt;
    auto t = petrel::vcpu_cpuid(table, 1, 2);
    CHECK((find(t, 0x1).edx & kHtt) != 0u);
    CHECK((petrel::vcpu_cpuid(table, 0, 1)[0].edx & kHtt) == 0u);
  }
}

TEST_CASE("leaf 0xb: an SMT level of one thread, then a core level of all vCPUs", "[cpuid]") {
  const auto supported = supported_table();
  auto [vcpus, shift] = GENERATE(table<uint32_t, uint32_t>({
      {1, 0},
      {2, 1},
      {3, 2},
      {4, 2},
      {5, 3},
      {8, 3},
      {9, 4},
      {64, 6},
  }));
  const uint32_t id = vcpus - 1;
  INFO(vcpus << " vCPUs, APIC ID " << id);
  auto t = petrel::vcpu_cpuid(supported, id, vcpus);

  const auto& smt = find(t, 0xb, 0);
  CHECK(smt.eax == 0u);      // no bits for the thread ID
  CHECK(smt.ebx == 1u);      // one logical processor at this level
  CHECK(smt.ecx == 0x100u);  // level type 1 (SMT), level number 0
  CHECK(smt.edx == id);      // x2APIC ID

  const auto& core = find(t, 0xb, 1);
  CHECK(core.eax == shift);
  CHECK(core.ebx == vcpus);
  CHECK(core.ecx == 0x201u);  // level type 2 (core), level number 1
  CHECK(core.edx == id);

  // APIC ID in leaf 1 agrees with the x2APIC ID.
  CHECK(find(t, 0x1).ebx >> 24 == id);

  // AMD: NC = cores - 1, ApicIdSize = the same shift; PerfTscSize bits kept.
  const auto& amd = find(t, 0x80000008);
  CHECK((amd.ecx & 0xff) == vcpus - 1);
  CHECK(((amd.ecx >> 12) & 0xf) == shift);
  CHECK((amd.ecx & ~0xf0ffu) == 0x00010000u);
  CHECK(amd.eax == 0x3030u);

  // Deterministic cache parameters: cores per package, one thread per cache.
  const auto& l1d = find(t, 0x4, 0);
  CHECK(l1d.eax >> 26 == vcpus - 1);
  CHECK(((l1d.eax >> 14) & 0xfff) == 0u);
  CHECK((l1d.eax & 0x3fff) == 0x0121u);
  CHECK(l1d.ebx == 0x01c0003fu);
  const auto& l3 = find(t, 0x4, 1);
  CHECK(l3.eax >> 26 == vcpus - 1);
  CHECK((l3.eax & 0x3fff) == 0x0163u);
  CHECK(find(t, 0x4, 2).eax == 0u);  // the terminating null subleaf stays null
}

TEST_CASE("leaf 0xb subleaves past the core level are invalid levels", "[cpuid]") {
  auto table = supported_table();
  table.push_back(leaf(0xb, 2, 0x5, 0x20, 0x302, 0x7));
  auto t = petrel::vcpu_cpuid(table, 2, 3);
  const auto& e = find(t, 0xb, 2);
  CHECK(e.eax == 0u);
  CHECK(e.ebx == 0u);
  CHECK(e.ecx == 2u);  // level type 0 (invalid), level number echoed
  CHECK(e.edx == 2u);
}

TEST_CASE("AMD extended APIC ID leaf and untouched leaves", "[cpuid]") {
  const auto supported = supported_table();
  auto t = petrel::vcpu_cpuid(supported, 5, 6);

  const auto& ext = find(t, 0x8000001e);
  CHECK(ext.eax == 5u);
  CHECK((ext.ebx & 0xff) == 5u);         // core ID
  CHECK(((ext.ebx >> 8) & 0xff) == 0u);  // one thread per core
  CHECK((ext.ecx & 0x7ff) == 0u);        // node 0, one node

  // Same entries in the same order: nothing added, nothing dropped.
  REQUIRE(t.size() == supported.size());
  for (size_t i = 0; i < t.size(); ++i) {
    CHECK(t[i].function == supported[i].function);
    CHECK(t[i].index == supported[i].index);
  }
  // KVM's paravirtual signature leaf is passed through byte for byte.
  const auto& kvm = find(t, 0x40000000);
  CHECK(std::memcmp(&kvm, &find(supported, 0x40000000), sizeof(kvm)) == 0);
}

TEST_CASE("boot MSRs are limited to those KVM lists", "[msr]") {
  const std::array<uint32_t, 6> index_list = {0x10, 0x1a0, 0x2ff, 0xc0000082, 0x12345, 0x174};
  auto msrs = petrel::boot_msrs(index_list);
  std::sort(msrs.begin(), msrs.end(),
            [](const MsrValue& a, const MsrValue& b) { return a.index < b.index; });
  REQUIRE(msrs.size() == 5);
  CHECK(msrs[0].index == 0x10u);  // TSC
  CHECK(msrs[0].value == 0u);
  CHECK(msrs[1].index == 0x174u);  // SYSENTER_CS
  CHECK(msrs[1].value == 0u);
  CHECK(msrs[2].index == 0x1a0u);  // MISC_ENABLE: fast strings
  CHECK(msrs[2].value == 1u);
  CHECK(msrs[3].index == 0x2ffu);  // MTRR_DEF_TYPE: enabled, write-back
  CHECK(msrs[3].value == 0x806u);
  CHECK(msrs[4].index == 0xc0000082u);  // LSTAR
  CHECK(msrs[4].value == 0u);

  CHECK(petrel::boot_msrs({}).empty());
  const std::array<uint32_t, 2> unrelated = {0x12345, 0x3a};
  CHECK(petrel::boot_msrs(unrelated).empty());
}

TEST_CASE("every boot MSR is set once when KVM lists them all", "[msr]") {
  const std::array<uint32_t, 12> all = {0x174,      0x175,      0x176,      0xc0000081,
                                        0xc0000082, 0xc0000083, 0xc0000084, 0xc0000102,
                                        0x10,       0x1a0,      0x2ff,      0xc0000080};
  auto msrs = petrel::boot_msrs(all);
  CHECK(msrs.size() == 11);  // EFER (0xc0000080) is not a boot MSR: sregs set it
  for (const auto& m : msrs) {
    INFO("MSR " << std::hex << m.index);
    CHECK(std::count_if(msrs.begin(), msrs.end(),
                        [&](const MsrValue& o) { return o.index == m.index; }) == 1);
    CHECK(m.value == (m.index == 0x1a0 ? 1u : m.index == 0x2ff ? 0x806u : 0u));
  }
}

TEST_CASE("write_cmdline takes exactly max_len bytes and writes the NUL", "[cmdline]") {
  std::array specs{GuestRegionSpec{GuestAddress(0), 1ull << 20}};
  auto mem_r = GuestMemory::create_anonymous(specs);
  REQUIRE(mem_r.ok());
  const GuestMemory& mem = *mem_r;
  auto all = mem.slice(GuestAddress(0), 1ull << 20);
  REQUIRE(all.ok());
  std::memset(all->data(), 0xaa, all->size());

  auto read_back = [&](size_t len) {
    std::string s(len, '\0');
    REQUIRE(mem.read(layout::kCmdline, std::as_writable_bytes(std::span(s))).ok());
    return s;
  };

  SECTION("exactly max_len") {
    const std::string line(100, 'x');
    REQUIRE(petrel::write_cmdline(mem, line, 100).ok());
    CHECK(read_back(102) == line + '\0' + '\xaa');
  }
  SECTION("one byte more than max_len") {
    auto r = petrel::write_cmdline(mem, std::string(101, 'x'), 100);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code() == ErrorCode::kInvalidArgument);
    CHECK_THAT(r.error().message(),
               Contains("the kernel command line is 101 bytes; this kernel takes at most 100"));
    CHECK(read_back(4) == "\xaa\xaa\xaa\xaa");  // nothing written
  }
  SECTION("an empty line is just the NUL") {
    REQUIRE(petrel::write_cmdline(mem, "", 255).ok());
    CHECK(read_back(2) == std::string("\0\xaa", 2));
  }
  SECTION("a bzImage's 2047") {
    REQUIRE(petrel::write_cmdline(mem, std::string(2047, 'c'), 2047).ok());
    CHECK(petrel::write_cmdline(mem, std::string(2048, 'c'), 2047).error().message() ==
          "the kernel command line is 2048 bytes; this kernel takes at most 2047");
  }
  SECTION("never more than petrel's own 4 KiB slot") {
    REQUIRE(petrel::write_cmdline(mem, std::string(4095, 'c'), 100000).ok());
    CHECK(read_back(4096) == std::string(4095, 'c') + '\0');
    auto r = petrel::write_cmdline(mem, std::string(4096, 'c'), 100000);
    REQUIRE_FALSE(r.ok());
    CHECK_THAT(r.error().message(), Contains("is 4096 bytes; this kernel takes at most 4095"));
  }
}
