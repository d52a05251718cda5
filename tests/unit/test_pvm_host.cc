#include <algorithm>
#include <catch2/catch.hpp>
#include <vector>

#include "vmm/pvm_host.h"

using petrel::ExecMode;
using petrel::PvmHost;

namespace {

constexpr uint32_t bit(int n) {
  return 1u << n;
}

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

// A host CPUID that advertises everything, as far as the tests look.
std::vector<kvm_cpuid_entry2> full_cpuid() {
  return {
      leaf(0x0, 0, 0x1f, 0x756e6547, 0x6c65746e, 0x49656e69),  // "GenuineIntel"
      leaf(0x1, 0, 0x000906ea, 0x00100800, 0xffffffff, 0xffffffff),
      leaf(0x7, 0, 0, 0xffffffff, 0xffffffff, 0xffffffff),
      leaf(0x7, 1, 0, 0xffffffff, 0xffffffff, 0xffffffff),
      leaf(0xd, 0, 0x7, 0x340, 0x340, 0),
      leaf(0xd, 1, 0xf, 0, 0, 0),
      leaf(0xd, 2, 0x100, 0x240, 0, 0),
      leaf(0x80000000, 0, 0x80000008, 0, 0, 0),
      leaf(0x80000001, 0, 0, 0, 0xffffffff, 0xffffffff),
  };
}

const kvm_cpuid_entry2* find(const std::vector<kvm_cpuid_entry2>& entries, uint32_t function,
                             uint32_t index = 0) {
  auto it = std::find_if(entries.begin(), entries.end(), [&](const kvm_cpuid_entry2& e) {
    return e.function == function && e.index == index;
  });
  return it == entries.end() ? nullptr : &*it;
}

bool same(const kvm_cpuid_entry2& a, const kvm_cpuid_entry2& b) {
  return a.function == b.function && a.index == b.index && a.flags == b.flags && a.eax == b.eax &&
         a.ebx == b.ebx && a.ecx == b.ecx && a.edx == b.edx;
}

bool same(const std::vector<kvm_cpuid_entry2>& a, const std::vector<kvm_cpuid_entry2>& b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end(),
                    [](const auto& x, const auto& y) { return same(x, y); });
}

}  // namespace

TEST_CASE("a standard KVM host always runs guests on hardware", "[pvm]") {
  const PvmHost host = PvmHost::standard();
  CHECK_FALSE(host.is_pvm());
  const bool native_capable = GENERATE(false, true);
  const bool force_emulated = GENERATE(false, true);
  CAPTURE(native_capable, force_emulated);
  CHECK(host.choose_mode(native_capable, force_emulated) == ExecMode::kHardware);
}

TEST_CASE("a standard KVM host never changes CPUID", "[pvm]") {
  const PvmHost host = PvmHost::standard();
  const bool native_capable = GENERATE(false, true);
  const bool force_emulated = GENERATE(false, true);
  CAPTURE(native_capable, force_emulated);
  auto entries = full_cpuid();
  host.adjust_cpuid(entries, host.choose_mode(native_capable, force_emulated));
  CHECK(same(entries, full_cpuid()));
}

TEST_CASE("assume_pvm gives a PVM host without probing", "[pvm]") {
  const PvmHost host = PvmHost::assume_pvm(0x5);
  CHECK(host.is_pvm());
  CHECK(host.features() == 0x5);
}

TEST_CASE("a PVM host runs native-capable guests natively unless emulation is forced", "[pvm]") {
  const PvmHost host = PvmHost::assume_pvm(0);
  CHECK(host.choose_mode(true, false) == ExecMode::kPvmNative);
  CHECK(host.choose_mode(true, true) == ExecMode::kPvmEmulated);
  CHECK(host.choose_mode(false, false) == ExecMode::kPvmEmulated);
  CHECK(host.choose_mode(false, true) == ExecMode::kPvmEmulated);
}

TEST_CASE("PVM emulated mode hides what the emulator cannot run", "[pvm]") {
  const PvmHost host = PvmHost::assume_pvm(0);
  auto entries = full_cpuid();
  host.adjust_cpuid(entries, ExecMode::kPvmEmulated);
  const auto original = full_cpuid();

  SECTION("leaf 0xd (XSAVE state) is removed entirely") {
    CHECK(find(entries, 0xd, 0) == nullptr);
    CHECK(find(entries, 0xd, 1) == nullptr);
    CHECK(find(entries, 0xd, 2) == nullptr);
    CHECK(entries.size() == original.size() - 3);
  }
  SECTION("leaf 1 ecx: POPCNT, XSAVE, AVX cleared; edx and eax untouched") {
    const auto* l1 = find(entries, 0x1);
    REQUIRE(l1 != nullptr);
    CHECK((l1->ecx & bit(23)) == 0);  // POPCNT
    CHECK((l1->ecx & bit(26)) == 0);  // XSAVE
    CHECK((l1->ecx & bit(27)) == 0);  // OSXSAVE
    CHECK((l1->ecx & bit(28)) == 0);  // AVX
    CHECK((l1->ecx & bit(0)) != 0);   // SSE3 stays
    CHECK((l1->ecx & bit(31)) != 0);  // hypervisor stays
    CHECK(l1->edx == 0xffffffff);
    CHECK(l1->eax == find(original, 0x1)->eax);
    CHECK(l1->ebx == find(original, 0x1)->ebx);
  }
  SECTION("leaf 7.0 ebx: SMEP and SMAP cleared, others kept") {
    const auto* l7 = find(entries, 0x7, 0);
    REQUIRE(l7 != nullptr);
    CHECK((l7->ebx & bit(7)) == 0);   // SMEP
    CHECK((l7->ebx & bit(20)) == 0);  // SMAP
    CHECK((l7->ebx & bit(3)) == 0);   // BMI1
    CHECK((l7->ebx & bit(9)) != 0);   // ERMS stays
    CHECK((l7->ecx & bit(2)) != 0);   // UMIP stays
  }
  SECTION("leaf 7 subleaf 1 is not leaf 7 subleaf 0") {
    const auto* l71 = find(entries, 0x7, 1);
    REQUIRE(l71 != nullptr);
    CHECK(same(*l71, *find(original, 0x7, 1)));
  }
  SECTION("leaf 0x80000001 ecx: LZCNT cleared; other leaves untouched") {
    const auto* ext = find(entries, 0x80000001);
    REQUIRE(ext != nullptr);
    CHECK((ext->ecx & bit(5)) == 0);   // LZCNT (ABM)
    CHECK((ext->ecx & bit(0)) != 0);   // LAHF/SAHF stays
    CHECK((ext->edx & bit(29)) != 0);  // LM stays
    CHECK(same(*find(entries, 0x0), *find(original, 0x0)));
    CHECK(same(*find(entries, 0x80000000), *find(original, 0x80000000)));
  }
}

TEST_CASE("PVM native and hardware modes leave CPUID alone", "[pvm]") {
  const PvmHost host = PvmHost::assume_pvm(0);
  const auto mode = GENERATE(ExecMode::kPvmNative, ExecMode::kHardware);
  CAPTURE(static_cast<int>(mode));
  auto entries = full_cpuid();
  host.adjust_cpuid(entries, mode);
  CHECK(same(entries, full_cpuid()));
}
