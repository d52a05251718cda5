// Parses the MP table back out of guest memory as Linux's arch/x86/kernel/mpparse.c does
// (floating pointer scan, configuration table walk), reading fields at their MP spec 1.4
// offsets rather than through petrel's structures.
#include <array>
#include <catch2/catch.hpp>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "vmm/base/guest_memory.h"
#include "vmm/layout.h"
#include "vmm/mp_table.h"

using petrel::GuestAddress;
using petrel::GuestMemory;
using petrel::GuestRegionSpec;
namespace layout = petrel::layout;
using Bytes = std::vector<uint8_t>;

namespace {

GuestMemory make_memory(uint64_t bytes = 16ull << 20) {
  std::array specs{GuestRegionSpec{GuestAddress(0), bytes}};
  auto mem = GuestMemory::create_anonymous(specs);
  REQUIRE(mem.ok());
  return std::move(mem).value();
}

Bytes read(const GuestMemory& mem, uint64_t addr, uint64_t len) {
  Bytes out(len);
  REQUIRE(mem.read(GuestAddress(addr), std::as_writable_bytes(std::span(out))).ok());
  return out;
}

template <typename T>
T le(const Bytes& b, size_t offset) {
  REQUIRE(offset + sizeof(T) <= b.size());
  T v;
  std::memcpy(&v, b.data() + offset, sizeof(T));
  return v;
}

std::string text(const Bytes& b, size_t offset, size_t len) {
  REQUIRE(offset + len <= b.size());
  return std::string(reinterpret_cast<const char*>(b.data() + offset), len);
}

uint8_t sum(const Bytes& b) {
  uint8_t s = 0;
  for (uint8_t x : b) {
    s = static_cast<uint8_t>(s + x);
  }
  return s;
}

// As Linux's smp_scan_config: "_MP_" on a 16-byte boundary, length 1, a zero checksum over
// 16 bytes, spec revision 1 or 4; in the first KiB, the last KiB below 640 KiB, and the BIOS
// ROM 0xf0000-0xfffff.
std::optional<uint64_t> scan_for_floating_pointer(const GuestMemory& mem) {
  const std::array<std::pair<uint64_t, uint64_t>, 3> ranges{
      {{0x0, 0x400}, {639 * 0x400, 0x400}, {0xf0000, 0x10000}}};
  for (const auto& [start, len] : ranges) {
    const Bytes area = read(mem, start, len);
    for (size_t off = 0; off + 16 <= area.size(); off += 16) {
      Bytes mpf(area.begin() + static_cast<long>(off), area.begin() + static_cast<long>(off) + 16);
      if (text(mpf, 0, 4) == "_MP_" && mpf[8] == 1 && sum(mpf) == 0 &&
          (mpf[9] == 1 || mpf[9] == 4)) {
        return start + off;
      }
    }
  }
  return std::nullopt;
}

struct MpTable {
  Bytes floating;
  Bytes config;  // the base table
  std::vector<Bytes> processors, buses, ioapics, io_interrupts, local_interrupts;
};

MpTable parse(const GuestMemory& mem) {
  auto at = scan_for_floating_pointer(mem);
  REQUIRE(at.has_value());
  MpTable t;
  t.floating = read(mem, *at, 16);
  CHECK(t.floating[9] == 4);   // MP 1.4
  CHECK(t.floating[11] == 0);  // feature 1: a configuration table, no default configuration
  CHECK(t.floating[12] == 0);  // feature 2: IMCRP clear, virtual wire mode
  const uint32_t config_at = le<uint32_t>(t.floating, 4);
  REQUIRE(config_at >= layout::kMpTableStart.value());
  const Bytes header = read(mem, config_at, 44);
  CHECK(text(header, 0, 4) == "PCMP");
  const uint16_t length = le<uint16_t>(header, 4);
  REQUIRE(length >= 44);
  REQUIRE(config_at + length <= layout::kMpTableStart.value() + layout::kMpTableSize);
  t.config = read(mem, config_at, length);
  CHECK(sum(t.config) == 0);
  CHECK(t.config[6] == 4);  // spec revision
  CHECK(text(t.config, 8, 8) == "PETREL  ");
  CHECK(text(t.config, 16, 12) == "PETRELVM    ");
  CHECK(le<uint32_t>(t.config, 36) == 0xfee00000);  // local APIC address
  CHECK(le<uint16_t>(t.config, 40) == 0);           // no extended table
  size_t off = 44;
  uint16_t entries = 0;
  while (off < length) {
    const uint8_t type = t.config[off];
    const size_t size = type == 0 ? 20 : 8;
    REQUIRE(type <= 4);
    REQUIRE(off + size <= length);
    Bytes e(t.config.begin() + static_cast<long>(off),
            t.config.begin() + static_cast<long>(off + size));
    std::vector<Bytes>* lists[] = {&t.processors, &t.buses, &t.ioapics, &t.io_interrupts,
                                   &t.local_interrupts};
    lists[type]->push_back(e);
    off += size;
    ++entries;
  }
  CHECK(off == length);
  CHECK(le<uint16_t>(t.config, 34) == entries);
  return t;
}

}  // namespace

TEST_CASE("mp table: the floating pointer is found in the BIOS area", "[mp]") {
  auto mem = make_memory();
  REQUIRE(petrel::write_mp_table(mem, 2).ok());
  auto at = scan_for_floating_pointer(mem);
  REQUIRE(at.has_value());
  CHECK(*at == layout::kMpTableStart.value());
}

TEST_CASE("mp table: processors, bus, IOAPIC and interrupts", "[mp]") {
  for (uint32_t vcpus : {1u, 4u, 254u}) {
    INFO("vcpus " << vcpus);
    auto mem = make_memory();
    REQUIRE(petrel::write_mp_table(mem, vcpus).ok());
    MpTable t = parse(mem);

    REQUIRE(t.processors.size() == vcpus);
    for (uint32_t i = 0; i < vcpus; ++i) {
      const Bytes& p = t.processors[i];
      CHECK(p[1] == i);                     // local APIC ID
      CHECK(p[2] == 0x14);                  // local APIC version
      CHECK(p[3] == (i == 0 ? 0x3 : 0x1));  // EN, and BP on CPU 0 only
    }

    REQUIRE(t.buses.size() == 1);
    CHECK(t.buses[0][1] == 0);
    CHECK(text(t.buses[0], 2, 6) == "ISA   ");

    REQUIRE(t.ioapics.size() == 1);
    const uint8_t ioapic_id = t.ioapics[0][1];
    CHECK(ioapic_id == vcpus);
    CHECK(t.ioapics[0][3] == 1);  // EN
    CHECK(le<uint32_t>(t.ioapics[0], 4) == 0xfec00000);

    // ISA IRQs 0-15 but the cascade (2), each on the IOAPIC pin of its number (KVM's default
    // GSI routing), INT type, conforming polarity and trigger.
    REQUIRE(t.io_interrupts.size() == 15);
    std::vector<int> irqs;
    for (const Bytes& e : t.io_interrupts) {
      CHECK(e[1] == 0);
      CHECK(le<uint16_t>(e, 2) == 0);
      CHECK(e[4] == 0);  // ISA bus
      CHECK(e[6] == ioapic_id);
      CHECK(e[7] == e[5]);
      irqs.push_back(e[5]);
    }
    CHECK(irqs == std::vector<int>{0, 1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15});

    REQUIRE(t.local_interrupts.size() == 2);
    CHECK(t.local_interrupts[0][1] == 3);     // ExtINT
    CHECK(t.local_interrupts[0][6] == 0);     // the BSP
    CHECK(t.local_interrupts[0][7] == 0);     // LINT0
    CHECK(t.local_interrupts[1][1] == 1);     // NMI
    CHECK(t.local_interrupts[1][6] == 0xff);  // every local APIC
    CHECK(t.local_interrupts[1][7] == 1);     // LINT1
  }
}

TEST_CASE("mp table: vCPU counts out of range are refused", "[mp]") {
  auto mem = make_memory();
  for (uint32_t vcpus : {0u, 255u, 4096u}) {
    auto r = petrel::write_mp_table(mem, vcpus);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code() == petrel::ErrorCode::kInvalidArgument);
  }
  CHECK_FALSE(scan_for_floating_pointer(mem).has_value());
}

TEST_CASE("mp table: guest memory that does not reach the area is an error", "[mp]") {
  auto mem = make_memory(512ull << 10);
  auto r = petrel::write_mp_table(mem, 1);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().to_string().find("MP table") != std::string::npos);
}
