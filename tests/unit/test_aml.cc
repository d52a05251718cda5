#include <array>
#include <catch2/catch.hpp>
#include <cstdint>
#include <string>
#include <vector>

#include "vmm/aml.h"

namespace aml = petrel::aml;
using Bytes = std::vector<uint8_t>;

namespace {

Bytes pkg(size_t body_len) {
  auto r = aml::pkg_length(body_len);
  REQUIRE(r.ok());
  return *r;
}

template <typename T>
Bytes value_of(petrel::Result<T> r) {
  REQUIRE(r.ok());
  return std::move(r).value();
}

}  // namespace

// ACPI 6.4 §20.2.4: the value counts the PkgLength's own bytes; 1 byte holds up to 63, then
// 2 bytes up to 2^12-1, 3 bytes up to 2^20-1, 4 bytes up to 2^28-1.
TEST_CASE("aml: PkgLength one-byte form", "[aml]") {
  CHECK(pkg(0) == Bytes{0x01});
  CHECK(pkg(10) == Bytes{0x0b});
  CHECK(pkg(62) == Bytes{0x3f});
}

TEST_CASE("aml: PkgLength two-byte form", "[aml]") {
  // 63 + 2 = 65 = 0x041: lead byte 0x40 | 0x1, then 0x04.
  CHECK(pkg(63) == Bytes{0x41, 0x04});
  CHECK(pkg(97) == Bytes{0x43, 0x06});  // 99, the DSDT's \_SB scope below
  CHECK(pkg(0xfff - 2) == Bytes{0x4f, 0xff});
}

TEST_CASE("aml: PkgLength three- and four-byte forms", "[aml]") {
  CHECK(pkg(0xfff - 1) == Bytes{0x81, 0x00, 0x01});  // 0x1001
  CHECK(pkg(0xfffff - 3) == Bytes{0x8f, 0xff, 0xff});
  CHECK(pkg(0xfffff - 2) == Bytes{0xc1, 0x00, 0x00, 0x01});  // 0x100001
  CHECK(pkg(aml::kMaxPkgLength - 4) == Bytes{0xcf, 0xff, 0xff, 0xff});
}

TEST_CASE("aml: PkgLength beyond 2^28-1 is an error", "[aml]") {
  auto r = aml::pkg_length(aml::kMaxPkgLength - 3);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code() == petrel::ErrorCode::kOutOfRange);
  CHECK_FALSE(aml::pkg_length(SIZE_MAX).ok());
}

TEST_CASE("aml: integers use the shortest encoding", "[aml]") {
  CHECK(aml::integer(0) == Bytes{0x00});
  CHECK(aml::integer(1) == Bytes{0x01});
  CHECK(aml::integer(2) == Bytes{0x0a, 0x02});
  CHECK(aml::integer(0xff) == Bytes{0x0a, 0xff});
  CHECK(aml::integer(0x100) == Bytes{0x0b, 0x00, 0x01});
  CHECK(aml::integer(0x10000) == Bytes{0x0c, 0x00, 0x00, 0x01, 0x00});
  CHECK(aml::integer(0x100000000) == Bytes{0x0e, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00});
}

TEST_CASE("aml: name strings", "[aml]") {
  auto bytes = [](const aml::NameString& n) { return Bytes(n.bytes().begin(), n.bytes().end()); };
  CHECK(bytes("_SB") == Bytes{'_', 'S', 'B', '_'});
  CHECK(bytes("COM1") == Bytes{'C', 'O', 'M', '1'});
  CHECK(bytes("\\_SB") == Bytes{0x5c, '_', 'S', 'B', '_'});
  CHECK(bytes("\\_SB.COM1") == Bytes{0x5c, 0x2e, '_', 'S', 'B', '_', 'C', 'O', 'M', '1'});
  CHECK(bytes("A.B2.C") ==
        Bytes{0x2f, 3, 'A', '_', '_', '_', 'B', '2', '_', '_', 'C', '_', '_', '_'});
  CHECK(bytes("\\A.B.C.D.E.F.G.H").size() == 3 + 8 * 4);  // the most: root, 8 segments
  // Invalid names ("1ABC", "ABCDE", "a", "\\", "A..B") do not compile.
}

TEST_CASE("aml: name strings built at run time", "[aml]") {
  auto bytes = [](const aml::NameString& n) { return Bytes(n.bytes().begin(), n.bytes().end()); };
  auto vr = aml::NameString::from_runtime("VR0A");
  REQUIRE(vr.ok());
  CHECK(bytes(*vr) == Bytes{'V', 'R', '0', 'A'});
  auto path = aml::NameString::from_runtime("\\_SB.PCI0");
  REQUIRE(path.ok());
  CHECK(bytes(*path) == bytes("\\_SB.PCI0"));
  for (const char* bad : {"", "1ABC", "ABCDE", "a", "\\", "A..B", "A.", "A.B.C.D.E.F.G.H.I"}) {
    INFO("name \"" << bad << "\"");
    auto r = aml::NameString::from_runtime(bad);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code() == petrel::ErrorCode::kInvalidArgument);
  }
}

TEST_CASE("aml: strings", "[aml]") {
  // Name (STR, "LNRO0005"), as iasl emits it.
  CHECK(value_of(aml::string("LNRO0005")) ==
        Bytes{0x0d, 0x4c, 0x4e, 0x52, 0x4f, 0x30, 0x30, 0x30, 0x35, 0x00});
  CHECK(value_of(aml::string("")) == Bytes{0x0d, 0x00});
  CHECK_FALSE(aml::string(std::string("A\0B", 3)).ok());
  CHECK_FALSE(aml::string("\xc3\xa9").ok());
}

TEST_CASE("aml: EISA IDs", "[aml]") {
  STATIC_REQUIRE(aml::EisaId("PNP0501").value() == 0x0105d041);
  STATIC_REQUIRE(aml::EisaId("PNP0303").value() == 0x0303d041);
  STATIC_REQUIRE(aml::EisaId("QEM0A0F").value() == 0x0f0aad44);  // hex digits A-F
  CHECK(aml::eisa_id("PNP0501") == Bytes{0x0c, 0x41, 0xd0, 0x05, 0x01});
}

TEST_CASE("aml: Name", "[aml]") {
  CHECK(aml::name("_UID", aml::integer(1)) == Bytes{0x08, '_', 'U', 'I', 'D', 0x01});
  CHECK(aml::name("_HID", aml::eisa_id("PNP0501")) ==
        Bytes{0x08, '_', 'H', 'I', 'D', 0x0c, 0x41, 0xd0, 0x05, 0x01});
}

TEST_CASE("aml: Scope and Device wrap their terms in a PkgLength", "[aml]") {
  const Bytes body{0xaa, 0xbb};
  CHECK(value_of(aml::scope("\\_SB", body)) ==
        Bytes{0x10, 0x08, 0x5c, '_', 'S', 'B', '_', 0xaa, 0xbb});
  CHECK(value_of(aml::device("COM1", body)) ==
        Bytes{0x5b, 0x82, 0x07, 'C', 'O', 'M', '1', 0xaa, 0xbb});

  // A body that needs the two-byte PkgLength: 4 (name) + 100 + 2 (PkgLength) = 106 = 0x6a.
  const Bytes big(100, 0x01);
  Bytes dev = value_of(aml::device("DEV0", big));
  REQUIRE(dev.size() == 2 + 2 + 4 + 100);
  CHECK(dev[2] == 0x4a);
  CHECK(dev[3] == 0x06);
}

TEST_CASE("aml: Buffer holds its size as an Integer", "[aml]") {
  CHECK(value_of(aml::buffer(Bytes{})) == Bytes{0x11, 0x02, 0x00});
  CHECK(value_of(aml::buffer(Bytes{7, 8, 9})) == Bytes{0x11, 0x06, 0x0a, 0x03, 7, 8, 9});
}

// ACPI 6.4 §6.4.2: resource descriptors, against what iasl emits for the same ASL.
TEST_CASE("aml: small resource descriptors", "[aml]") {
  // IO (Decode16, 0x03F8, 0x03F8, 0x00, 0x08)
  CHECK(aml::io_port(0x3f8, 0x3f8, 0x00, 8) ==
        Bytes{0x47, 0x01, 0xf8, 0x03, 0xf8, 0x03, 0x00, 0x08});
  // IRQNoFlags () {4}
  CHECK(aml::irq_no_flags(1u << 4) == Bytes{0x22, 0x10, 0x00});
  // IRQNoFlags () {1, 12}
  CHECK(aml::irq_no_flags((1u << 1) | (1u << 12)) == Bytes{0x22, 0x02, 0x10});
}

// ACPI 6.4 §6.4.3: large resource descriptors, against what iasl 20200925 emits.
TEST_CASE("aml: Memory32Fixed", "[aml]") {
  // Memory32Fixed (ReadWrite, 0xD0000000, 0x00001000)
  CHECK(aml::memory32_fixed(aml::Access::kReadWrite, 0xd0000000, 0x1000) ==
        Bytes{0x86, 0x09, 0x00, 0x01, 0x00, 0x00, 0x00, 0xd0, 0x00, 0x10, 0x00, 0x00});
  // Memory32Fixed (ReadOnly, 0x12345678, 0x00000010)
  CHECK(aml::memory32_fixed(aml::Access::kReadOnly, 0x12345678, 0x10) ==
        Bytes{0x86, 0x09, 0x00, 0x00, 0x78, 0x56, 0x34, 0x12, 0x10, 0x00, 0x00, 0x00});
}

TEST_CASE("aml: extended Interrupt", "[aml]") {
  // Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive) {5}
  CHECK(aml::interrupt(5, aml::Trigger::kEdge, aml::Polarity::kActiveHigh,
                       aml::Sharing::kExclusive) ==
        Bytes{0x89, 0x06, 0x00, 0x03, 0x01, 0x05, 0x00, 0x00, 0x00});
  // Interrupt (ResourceConsumer, Level, ActiveLow, Shared) {9}
  CHECK(aml::interrupt(9, aml::Trigger::kLevel, aml::Polarity::kActiveLow, aml::Sharing::kShared) ==
        Bytes{0x89, 0x06, 0x00, 0x0d, 0x01, 0x09, 0x00, 0x00, 0x00});
}

TEST_CASE("aml: address space descriptors of a bridge", "[aml]") {
  // WordBusNumber (ResourceProducer, MinFixed, MaxFixed, PosDecode, 0, 0, 0, 0, 1)
  CHECK(aml::word_bus_number(0, 0) == Bytes{0x88, 0x0d, 0x00, 0x02, 0x0c, 0x00, 0x00, 0x00, 0x00,
                                            0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00});
  // WordIO (ResourceProducer, MinFixed, MaxFixed, PosDecode, EntireRange,
  //         0x0000, 0x1000, 0xFFFF, 0x0000, 0xF000)
  CHECK(aml::word_io(0x1000, 0xffff) == Bytes{0x88, 0x0d, 0x00, 0x01, 0x0c, 0x03, 0x00, 0x00, 0x00,
                                              0x10, 0xff, 0xff, 0x00, 0x00, 0x00, 0xf0});
  // DWordMemory (ResourceProducer, PosDecode, MinFixed, MaxFixed, NonCacheable, ReadWrite,
  //              0x00000000, 0xC0000000, 0xCFFFFFFF, 0x00000000, 0x10000000)
  CHECK(aml::dword_memory(0xc0000000, 0xcfffffff) ==
        Bytes{0x87, 0x17, 0x00, 0x00, 0x0c, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
              0xc0, 0xff, 0xff, 0xff, 0xcf, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10});
}

TEST_CASE("aml: ResourceTemplate ends with an End Tag", "[aml]") {
  const std::array descriptors{aml::io_port(0x3f8, 0x3f8, 0x00, 8), aml::irq_no_flags(1u << 4)};
  CHECK(value_of(aml::resource_template(descriptors)) == Bytes{0x11, 0x10, 0x0a, 0x0d, 0x47, 0x01,
                                                               0xf8, 0x03, 0xf8, 0x03, 0x00, 0x08,
                                                               0x22, 0x10, 0x00, 0x79, 0x00});
  CHECK(value_of(aml::resource_template({})) == Bytes{0x11, 0x05, 0x0a, 0x02, 0x79, 0x00});
}

TEST_CASE("aml: concat", "[aml]") {
  const std::array parts{Bytes{1}, Bytes{}, Bytes{2, 3}};
  CHECK(aml::concat(parts) == Bytes{1, 2, 3});
}
