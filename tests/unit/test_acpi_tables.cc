// Parses the ACPI tables back out of guest memory the way an OS does (RSDP scan, XSDT walk),
// reading every field at its offset in the ACPI 6.4 tables rather than through petrel's
// structures.
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <catch2/catch.hpp>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "vmm/acpi_dsdt.h"
#include "vmm/acpi_tables.h"
#include "vmm/base/guest_memory.h"
#include "vmm/layout.h"

using petrel::AcpiConfig;
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

uint8_t sum(const Bytes& b, size_t len) {
  uint8_t s = 0;
  for (size_t i = 0; i < len; ++i) {
    s = static_cast<uint8_t>(s + b[i]);
  }
  return s;
}

// As Linux's acpi_find_root_pointer (drivers/acpi/acpica/tbxfroot.c): "RSD PTR " on a 16-byte
// boundary in 0xe0000-0xfffff, the ACPI 1.0 checksum (20 bytes) and, for revision >= 2, the
// extended checksum.
std::optional<uint64_t> scan_for_rsdp(const GuestMemory& mem) {
  const Bytes area = read(mem, 0xe0000, 0x20000);
  for (size_t off = 0; off + 36 <= area.size(); off += 16) {
    if (std::memcmp(area.data() + off, "RSD PTR ", 8) != 0) {
      continue;
    }
    Bytes rsdp(area.begin() + static_cast<long>(off), area.begin() + static_cast<long>(off) + 36);
    if (sum(rsdp, 20) != 0) {
      continue;
    }
    if (rsdp[15] >= 2 && sum(rsdp, le<uint32_t>(rsdp, 20)) != 0) {
      continue;
    }
    return 0xe0000 + off;
  }
  return std::nullopt;
}

struct Table {
  uint64_t address;
  Bytes bytes;
};

// Reads a System Description Table (ACPI 6.4 §5.2.6) and checks its length and checksum.
Table read_table(const GuestMemory& mem, uint64_t addr, const char* signature) {
  INFO("table " << signature << " at " << addr);
  REQUIRE(addr >= layout::kAcpiTablesStart.value());
  const Bytes header = read(mem, addr, 36);
  CHECK(text(header, 0, 4) == signature);
  const uint32_t length = le<uint32_t>(header, 4);
  REQUIRE(length >= 36);
  REQUIRE(addr + length <= layout::kAcpiTablesStart.value() + layout::kAcpiTablesSize);
  Table t{addr, read(mem, addr, length)};
  CHECK(sum(t.bytes, length) == 0);
  CHECK(text(t.bytes, 10, 6) == "PETREL");
  CHECK(text(t.bytes, 16, 8) == "PETRELVM");
  return t;
}

struct Tables {
  uint64_t rsdp;
  Table xsdt;
  std::map<std::string, Table> by_signature;  // what the XSDT lists
  Table dsdt;
};

Tables parse(const GuestMemory& mem) {
  auto rsdp_at = scan_for_rsdp(mem);
  REQUIRE(rsdp_at.has_value());
  const Bytes rsdp = read(mem, *rsdp_at, 36);
  CHECK(text(rsdp, 9, 6) == "PETREL");
  CHECK(rsdp[15] == 2);                 // revision
  CHECK(le<uint32_t>(rsdp, 16) == 0);   // no RSDT
  CHECK(le<uint32_t>(rsdp, 20) == 36);  // length
  Table xsdt = read_table(mem, le<uint64_t>(rsdp, 24), "XSDT");
  CHECK(xsdt.bytes[8] == 1);  // revision
  REQUIRE((xsdt.bytes.size() - 36) % 8 == 0);
  std::map<std::string, Table> tables;
  for (size_t off = 36; off < xsdt.bytes.size(); off += 8) {
    const uint64_t addr = le<uint64_t>(xsdt.bytes, off);
    const std::string sig = text(read(mem, addr, 4), 0, 4);
    CHECK(tables.count(sig) == 0);
    tables.emplace(sig, read_table(mem, addr, sig.c_str()));
  }
  REQUIRE(tables.count("FACP") == 1);
  const Bytes& fadt = tables.at("FACP").bytes;
  REQUIRE(fadt.size() == 276);
  const uint64_t x_dsdt = le<uint64_t>(fadt, 140);
  CHECK(le<uint32_t>(fadt, 40) == x_dsdt);  // DSDT, where a 32-bit OS looks
  Table dsdt = read_table(mem, x_dsdt, "DSDT");
  return {*rsdp_at, std::move(xsdt), std::move(tables), std::move(dsdt)};
}

struct Madt {
  uint32_t local_apic_address = 0;
  uint32_t flags = 0;
  std::vector<std::array<uint8_t, 8>> lapics;  // raw entries
  std::vector<Bytes> ioapics;
  std::vector<Bytes> overrides;
  std::vector<Bytes> lapic_nmis;
  int others = 0;
};

Madt parse_madt(const Bytes& t) {
  Madt m;
  m.local_apic_address = le<uint32_t>(t, 36);
  m.flags = le<uint32_t>(t, 40);
  size_t off = 44;
  while (off < t.size()) {
    REQUIRE(off + 2 <= t.size());
    const uint8_t type = t[off];
    const uint8_t length = t[off + 1];
    REQUIRE(length >= 2);
    REQUIRE(off + length <= t.size());
    Bytes entry(t.begin() + static_cast<long>(off), t.begin() + static_cast<long>(off + length));
    switch (type) {
      case 0:
        REQUIRE(length == 8);
        m.lapics.push_back({});
        std::memcpy(m.lapics.back().data(), entry.data(), 8);
        break;
      case 1:
        REQUIRE(length == 12);
        m.ioapics.push_back(entry);
        break;
      case 2:
        REQUIRE(length == 10);
        m.overrides.push_back(entry);
        break;
      case 4:
        REQUIRE(length == 6);
        m.lapic_nmis.push_back(entry);
        break;
      default:
        ++m.others;
    }
    off += length;
  }
  CHECK(off == t.size());
  return m;
}

// What iasl 20200925 emits (iasl -oa, no name optimization) for this ASL, the DSDT's body:
//   Scope (\_SB) {
//     Device (COM1) {
//       Name (_HID, EisaId ("PNP0501"))
//       Name (_UID, One)
//       Name (_CRS, ResourceTemplate () {
//         IO (Decode16, 0x03F8, 0x03F8, 0x00, 0x08)
//         IRQNoFlags () {4}
//       })
//     }
//     Device (KBD) {
//       Name (_HID, EisaId ("PNP0303"))
//       Name (_CRS, ResourceTemplate () {
//         IO (Decode16, 0x0060, 0x0060, 0x01, 0x01)
//         IO (Decode16, 0x0064, 0x0064, 0x01, 0x01)
//         IRQNoFlags () {1}
//       })
//     }
//   }
const Bytes kDsdtAml = {
    0x10, 0x43, 0x06, 0x5c, 0x5f, 0x53, 0x42, 0x5f, 0x5b, 0x82, 0x2b, 0x43, 0x4f, 0x4d, 0x31,
    0x08, 0x5f, 0x48, 0x49, 0x44, 0x0c, 0x41, 0xd0, 0x05, 0x01, 0x08, 0x5f, 0x55, 0x49, 0x44,
    0x01, 0x08, 0x5f, 0x43, 0x52, 0x53, 0x11, 0x10, 0x0a, 0x0d, 0x47, 0x01, 0xf8, 0x03, 0xf8,
    0x03, 0x00, 0x08, 0x22, 0x10, 0x00, 0x79, 0x00, 0x5b, 0x82, 0x2d, 0x4b, 0x42, 0x44, 0x5f,
    0x08, 0x5f, 0x48, 0x49, 0x44, 0x0c, 0x41, 0xd0, 0x03, 0x03, 0x08, 0x5f, 0x43, 0x52, 0x53,
    0x11, 0x18, 0x0a, 0x15, 0x47, 0x01, 0x60, 0x00, 0x60, 0x00, 0x01, 0x01, 0x47, 0x01, 0x64,
    0x00, 0x64, 0x00, 0x01, 0x01, 0x22, 0x02, 0x00, 0x79, 0x00,
};

// iasl's output for acpi_dsdt.h's ASL with two virtio-MMIO devices (0xd0000000 GSI 5,
// 0xd0001000 GSI 16) and PCI (VR00, VR01, PCI0, MRES after COM1 and KBD).
const Bytes kDsdtVirtioPciAml = {
    0x10, 0x45, 0x18, 0x5c, 0x5f, 0x53, 0x42, 0x5f, 0x5b, 0x82, 0x2b, 0x43, 0x4f, 0x4d, 0x31, 0x08,
    0x5f, 0x48, 0x49, 0x44, 0x0c, 0x41, 0xd0, 0x05, 0x01, 0x08, 0x5f, 0x55, 0x49, 0x44, 0x01, 0x08,
    0x5f, 0x43, 0x52, 0x53, 0x11, 0x10, 0x0a, 0x0d, 0x47, 0x01, 0xf8, 0x03, 0xf8, 0x03, 0x00, 0x08,
    0x22, 0x10, 0x00, 0x79, 0x00, 0x5b, 0x82, 0x2d, 0x4b, 0x42, 0x44, 0x5f, 0x08, 0x5f, 0x48, 0x49,
    0x44, 0x0c, 0x41, 0xd0, 0x03, 0x03, 0x08, 0x5f, 0x43, 0x52, 0x53, 0x11, 0x18, 0x0a, 0x15, 0x47,
    0x01, 0x60, 0x00, 0x60, 0x00, 0x01, 0x01, 0x47, 0x01, 0x64, 0x00, 0x64, 0x00, 0x01, 0x01, 0x22,
    0x02, 0x00, 0x79, 0x00, 0x5b, 0x82, 0x3a, 0x56, 0x52, 0x30, 0x30, 0x08, 0x5f, 0x48, 0x49, 0x44,
    0x0d, 0x4c, 0x4e, 0x52, 0x4f, 0x30, 0x30, 0x30, 0x35, 0x00, 0x08, 0x5f, 0x55, 0x49, 0x44, 0x00,
    0x08, 0x5f, 0x43, 0x52, 0x53, 0x11, 0x1a, 0x0a, 0x17, 0x86, 0x09, 0x00, 0x01, 0x00, 0x00, 0x00,
    0xd0, 0x00, 0x10, 0x00, 0x00, 0x89, 0x06, 0x00, 0x03, 0x01, 0x05, 0x00, 0x00, 0x00, 0x79, 0x00,
    0x5b, 0x82, 0x3a, 0x56, 0x52, 0x30, 0x31, 0x08, 0x5f, 0x48, 0x49, 0x44, 0x0d, 0x4c, 0x4e, 0x52,
    0x4f, 0x30, 0x30, 0x30, 0x35, 0x00, 0x08, 0x5f, 0x55, 0x49, 0x44, 0x01, 0x08, 0x5f, 0x43, 0x52,
    0x53, 0x11, 0x1a, 0x0a, 0x17, 0x86, 0x09, 0x00, 0x01, 0x00, 0x10, 0x00, 0xd0, 0x00, 0x10, 0x00,
    0x00, 0x89, 0x06, 0x00, 0x03, 0x01, 0x10, 0x00, 0x00, 0x00, 0x79, 0x00, 0x5b, 0x82, 0x4a, 0x07,
    0x50, 0x43, 0x49, 0x30, 0x08, 0x5f, 0x48, 0x49, 0x44, 0x0c, 0x41, 0xd0, 0x0a, 0x08, 0x08, 0x5f,
    0x43, 0x49, 0x44, 0x0c, 0x41, 0xd0, 0x0a, 0x03, 0x08, 0x5f, 0x53, 0x45, 0x47, 0x00, 0x08, 0x5f,
    0x42, 0x42, 0x4e, 0x00, 0x08, 0x5f, 0x55, 0x49, 0x44, 0x00, 0x08, 0x5f, 0x43, 0x52, 0x53, 0x11,
    0x48, 0x04, 0x0a, 0x44, 0x88, 0x0d, 0x00, 0x02, 0x0c, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x01, 0x00, 0x47, 0x01, 0xf8, 0x0c, 0xf8, 0x0c, 0x01, 0x08, 0x88, 0x0d, 0x00, 0x01,
    0x0c, 0x03, 0x00, 0x00, 0x00, 0x10, 0xff, 0xff, 0x00, 0x00, 0x00, 0xf0, 0x87, 0x17, 0x00, 0x00,
    0x0c, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xc0, 0xff, 0xff, 0xff, 0xcf, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x79, 0x00, 0x5b, 0x82, 0x2c, 0x4d, 0x52, 0x45, 0x53, 0x08,
    0x5f, 0x48, 0x49, 0x44, 0x0c, 0x41, 0xd0, 0x0c, 0x02, 0x08, 0x5f, 0x55, 0x49, 0x44, 0x00, 0x08,
    0x5f, 0x43, 0x52, 0x53, 0x11, 0x11, 0x0a, 0x0e, 0x86, 0x09, 0x00, 0x01, 0x00, 0x00, 0x00, 0xe0,
    0x00, 0x00, 0x10, 0x00, 0x79, 0x00,
};

// iasl's output for acpi_dsdt.h's ASL with pvpanic only (COM1, KBD, PEVT).
const Bytes kDsdtPvPanicAml = {
    0x10, 0x4c, 0x08, 0x5c, 0x5f, 0x53, 0x42, 0x5f, 0x5b, 0x82, 0x2b, 0x43, 0x4f, 0x4d, 0x31, 0x08,
    0x5f, 0x48, 0x49, 0x44, 0x0c, 0x41, 0xd0, 0x05, 0x01, 0x08, 0x5f, 0x55, 0x49, 0x44, 0x01, 0x08,
    0x5f, 0x43, 0x52, 0x53, 0x11, 0x10, 0x0a, 0x0d, 0x47, 0x01, 0xf8, 0x03, 0xf8, 0x03, 0x00, 0x08,
    0x22, 0x10, 0x00, 0x79, 0x00, 0x5b, 0x82, 0x2d, 0x4b, 0x42, 0x44, 0x5f, 0x08, 0x5f, 0x48, 0x49,
    0x44, 0x0c, 0x41, 0xd0, 0x03, 0x03, 0x08, 0x5f, 0x43, 0x52, 0x53, 0x11, 0x18, 0x0a, 0x15, 0x47,
    0x01, 0x60, 0x00, 0x60, 0x00, 0x01, 0x01, 0x47, 0x01, 0x64, 0x00, 0x64, 0x00, 0x01, 0x01, 0x22,
    0x02, 0x00, 0x79, 0x00, 0x5b, 0x82, 0x27, 0x50, 0x45, 0x56, 0x54, 0x08, 0x5f, 0x48, 0x49, 0x44,
    0x0d, 0x51, 0x45, 0x4d, 0x55, 0x30, 0x30, 0x30, 0x31, 0x00, 0x08, 0x5f, 0x43, 0x52, 0x53, 0x11,
    0x0d, 0x0a, 0x0a, 0x47, 0x01, 0x05, 0x05, 0x05, 0x05, 0x01, 0x01, 0x79, 0x00,
};

AcpiConfig virtio_pci_config() {
  AcpiConfig cfg{1};
  cfg.virtio_mmio = {{0xd0000000, 0x1000, 5}, {0xd0001000, 0x1000, 16}};
  cfg.pci = true;
  return cfg;
}

// Runs `command` through the shell; its exit status.
int shell(const std::string& command) {
  const int status = std::system(command.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

void write_file(const std::string& path, const Bytes& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
  REQUIRE(out.good());
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string squash(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c != ' ' && c != '\n' && c != '\t') {
      out.push_back(c);
    }
  }
  return out;
}

}  // namespace

TEST_CASE("acpi: the RSDP is found by scanning, at the returned address", "[acpi]") {
  auto mem = make_memory();
  auto rsdp = petrel::write_acpi_tables(mem, AcpiConfig{2});
  REQUIRE(rsdp.ok());
  CHECK(*rsdp == layout::kRsdp);
  auto found = scan_for_rsdp(mem);
  REQUIRE(found.has_value());
  CHECK(*found == rsdp->value());
}

TEST_CASE("acpi: XSDT lists the FADT and MADT; the FADT points at the DSDT", "[acpi]") {
  auto mem = make_memory();
  REQUIRE(petrel::write_acpi_tables(mem, AcpiConfig{1}).ok());
  Tables t = parse(mem);
  CHECK(t.by_signature.size() == 2);
  CHECK(t.by_signature.count("APIC") == 1);
  CHECK(t.dsdt.bytes[8] == 2);  // revision 2: 64-bit integers
}

TEST_CASE("acpi: the FADT describes a hardware-reduced PC", "[acpi]") {
  auto mem = make_memory();
  REQUIRE(petrel::write_acpi_tables(mem, AcpiConfig{1}).ok());
  const Tables t = parse(mem);
  const Bytes& f = t.by_signature.at("FACP").bytes;
  CHECK(f[8] == 6);    // revision
  CHECK(f[131] == 4);  // FADT minor version: 6.4
  const uint32_t flags = le<uint32_t>(f, 112);
  CHECK((flags & (1u << 20)) != 0);  // HW_REDUCED_ACPI
  CHECK((flags & (1u << 4)) != 0);   // PWR_BUTTON: no fixed-feature power button
  CHECK((flags & (1u << 10)) != 0);  // RESET_REG_SUP
  // No SCI, SMI port, PM1/PM2/PM timer/GPE blocks, FACS.
  CHECK(le<uint16_t>(f, 46) == 0);
  CHECK(le<uint32_t>(f, 48) == 0);
  for (size_t off = 56; off < 88; off += 4) {
    CHECK(le<uint32_t>(f, off) == 0);
  }
  CHECK(le<uint32_t>(f, 36) == 0);
  CHECK(le<uint64_t>(f, 132) == 0);
  for (size_t off = 148; off < 268; ++off) {  // X_ blocks and the sleep registers
    CHECK(f[off] == 0);
  }
  const uint16_t boot_arch = le<uint16_t>(f, 109);
  CHECK(boot_arch == ((1u << 0) | (1u << 1) | (1u << 2) | (1u << 5)));  // +8042 +VGA absent, no RTC
  // RESET_REG: system I/O, 8 bits at port 0x64; RESET_VALUE 0xfe (the i8042 reset).
  CHECK(f[116] == 1);
  CHECK(f[117] == 8);
  CHECK(f[118] == 0);
  CHECK(le<uint64_t>(f, 120) == 0x64);
  CHECK(f[128] == 0xfe);
  CHECK(text(f, 268, 8) == "PETRELVM");
}

TEST_CASE("acpi: cmos_rtc clears CMOS RTC Not Present", "[acpi]") {
  auto mem = make_memory();
  REQUIRE(petrel::write_acpi_tables(mem, AcpiConfig{1, true}).ok());
  const Tables t = parse(mem);
  const Bytes& f = t.by_signature.at("FACP").bytes;
  CHECK((le<uint16_t>(f, 109) & (1u << 5)) == 0);
}

TEST_CASE("acpi: the MADT has a LAPIC per vCPU and the IOAPIC", "[acpi]") {
  for (uint32_t vcpus : {1u, 2u, 7u, 64u, 254u}) {
    INFO("vcpus " << vcpus);
    auto mem = make_memory();
    REQUIRE(petrel::write_acpi_tables(mem, AcpiConfig{vcpus}).ok());
    Tables t = parse(mem);
    const Bytes& table = t.by_signature.at("APIC").bytes;
    CHECK(table[8] == 5);  // revision
    Madt m = parse_madt(table);
    CHECK(m.local_apic_address == 0xfee00000);
    CHECK(m.flags == 1);  // PCAT_COMPAT
    REQUIRE(m.lapics.size() == vcpus);
    for (uint32_t i = 0; i < vcpus; ++i) {
      CHECK(m.lapics[i][2] == i);  // ACPI processor UID
      CHECK(m.lapics[i][3] == i);  // APIC ID
      CHECK(m.lapics[i][4] == 1);  // enabled
      CHECK(m.lapics[i][5] + m.lapics[i][6] + m.lapics[i][7] == 0);
    }
    REQUIRE(m.ioapics.size() == 1);
    CHECK(m.ioapics[0][2] == vcpus);  // IOAPIC ID after the LAPICs'
    CHECK(le<uint32_t>(m.ioapics[0], 4) == 0xfec00000);
    CHECK(le<uint32_t>(m.ioapics[0], 8) == 0);  // GSI base
    // KVM's default routing puts ISA IRQ n on pin n (the PIT on pin 0): no overrides.
    CHECK(m.overrides.empty());
    REQUIRE(m.lapic_nmis.size() == 1);
    CHECK(m.lapic_nmis[0][2] == 0xff);  // all processors
    CHECK(le<uint16_t>(m.lapic_nmis[0], 3) == 0);
    CHECK(m.lapic_nmis[0][5] == 1);  // LINT1
    CHECK(m.others == 0);
  }
}

TEST_CASE("acpi: the DSDT's AML is what iasl makes of the ASL", "[acpi]") {
  auto mem = make_memory();
  REQUIRE(petrel::write_acpi_tables(mem, AcpiConfig{1}).ok());
  Tables t = parse(mem);
  const Bytes aml(t.dsdt.bytes.begin() + 36, t.dsdt.bytes.end());
  CHECK(aml == kDsdtAml);
  auto built = petrel::build_dsdt_aml(AcpiConfig{1});
  REQUIRE(built.ok());
  CHECK(*built == kDsdtAml);
  // "PNP0501" as EISAID: DWordPrefix, 0x0105D041.
  const Bytes hid{0x0c, 0x41, 0xd0, 0x05, 0x01};
  CHECK(std::search(aml.begin(), aml.end(), hid.begin(), hid.end()) != aml.end());
}

TEST_CASE("acpi: tables stay inside the ACPI area and do not overlap", "[acpi]") {
  auto mem = make_memory();
  REQUIRE(petrel::write_acpi_tables(mem, AcpiConfig{254}).ok());
  Tables t = parse(mem);
  std::vector<std::pair<uint64_t, uint64_t>> spans{
      {t.rsdp, t.rsdp + 36},
      {t.xsdt.address, t.xsdt.address + t.xsdt.bytes.size()},
      {t.dsdt.address, t.dsdt.address + t.dsdt.bytes.size()}};
  for (const auto& [sig, table] : t.by_signature) {
    spans.emplace_back(table.address, table.address + table.bytes.size());
  }
  std::sort(spans.begin(), spans.end());
  for (size_t i = 0; i < spans.size(); ++i) {
    CHECK(spans[i].first >= layout::kAcpiTablesStart.value());
    CHECK(spans[i].second <= layout::kAcpiTablesStart.value() + layout::kAcpiTablesSize);
    if (i > 0) {
      CHECK(spans[i].first >= spans[i - 1].second);
    }
  }
}

TEST_CASE("acpi: vCPU counts out of range are refused", "[acpi]") {
  auto mem = make_memory();
  for (uint32_t vcpus : {0u, 255u, 1000u}) {
    auto r = petrel::write_acpi_tables(mem, AcpiConfig{vcpus});
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code() == petrel::ErrorCode::kInvalidArgument);
  }
  CHECK_FALSE(scan_for_rsdp(mem).has_value());  // nothing written
}

TEST_CASE("acpi: guest memory that does not reach the ACPI area is an error", "[acpi]") {
  auto mem = make_memory(512ull << 10);
  auto r = petrel::write_acpi_tables(mem, AcpiConfig{1});
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().to_string().find("ACPI") != std::string::npos);
}

TEST_CASE("acpi: virtio-MMIO devices and the PCI host bridge in the DSDT", "[acpi]") {
  auto mem = make_memory();
  REQUIRE(petrel::write_acpi_tables(mem, virtio_pci_config()).ok());
  Tables t = parse(mem);
  const Bytes aml(t.dsdt.bytes.begin() + 36, t.dsdt.bytes.end());
  CHECK(aml == kDsdtVirtioPciAml);
}

TEST_CASE("acpi: the MCFG describes bus 0's ECAM only with PCI", "[acpi]") {
  auto mem = make_memory();
  REQUIRE(petrel::write_acpi_tables(mem, virtio_pci_config()).ok());
  Tables t = parse(mem);
  CHECK(t.by_signature.size() == 3);
  REQUIRE(t.by_signature.count("MCFG") == 1);
  const Bytes& m = t.by_signature.at("MCFG").bytes;  // read_table checked the checksum
  REQUIRE(m.size() == 44 + 16);
  CHECK(m[8] == 1);                          // revision
  CHECK(le<uint64_t>(m, 36) == 0);           // reserved
  CHECK(le<uint64_t>(m, 44) == 0xe0000000);  // ECAM base
  CHECK(le<uint16_t>(m, 52) == 0);           // PCI segment group
  CHECK(m[54] == 0);                         // start bus
  CHECK(m[55] == 0);                         // end bus: 1 MiB is one bus
  CHECK(le<uint32_t>(m, 56) == 0);           // reserved
  CHECK(layout::kPciEcam.value() == 0xe0000000);

  // Without PCI: no MCFG, no PCI0 (and virtio-MMIO devices alone are fine).
  auto plain = make_memory();
  AcpiConfig cfg{1};
  cfg.virtio_mmio = {{0xd0000000, 0x1000, 5}};
  REQUIRE(petrel::write_acpi_tables(plain, cfg).ok());
  Tables p = parse(plain);
  CHECK(p.by_signature.count("MCFG") == 0);
  const Bytes pci0{'P', 'C', 'I', '0'};
  const Bytes vr00{'V', 'R', '0', '0'};
  CHECK(std::search(p.dsdt.bytes.begin(), p.dsdt.bytes.end(), pci0.begin(), pci0.end()) ==
        p.dsdt.bytes.end());
  CHECK(std::search(p.dsdt.bytes.begin(), p.dsdt.bytes.end(), vr00.begin(), vr00.end()) !=
        p.dsdt.bytes.end());
}

TEST_CASE("acpi: 32 virtio-MMIO devices fit; names and UIDs count in hex", "[acpi]") {
  AcpiConfig cfg{254};
  for (uint32_t i = 0; i < layout::kVirtioMmioMaxSlots; ++i) {
    cfg.virtio_mmio.push_back({layout::kVirtioMmioBase.value() + i * layout::kVirtioMmioSlotSize,
                               layout::kVirtioMmioSlotSize, 5 + i % 19});
  }
  cfg.pci = true;
  auto mem = make_memory();
  REQUIRE(petrel::write_acpi_tables(mem, cfg).ok());
  Tables t = parse(mem);
  const Bytes& d = t.dsdt.bytes;
  // Device (VR1F) { Name (_HID, "LNRO0005") Name (_UID, 0x1F) ...
  const Bytes last{'V', 'R', '1', 'F', 0x08, '_',  'H',  'I', 'D', 0x0d, 'L', 'N',  'R',
                   'O', '0', '0', '0', '5',  0x00, 0x08, '_', 'U', 'I',  'D', 0x0a, 0x1f};
  CHECK(std::search(d.begin(), d.end(), last.begin(), last.end()) != d.end());
}

TEST_CASE("acpi: virtio-MMIO devices that cannot be described are refused", "[acpi]") {
  const std::vector<petrel::AcpiVirtioMmio> bad = {
      {0xd0000000, 0x1000, 24},  // not an IOAPIC input
      {0xd0000000, 0, 5},        // empty
      {0x100000000, 0x1000, 5},  // above 4 GiB
      {0xfffff000, 0x2000, 5},   // crosses 4 GiB
      {0, 0x100000000, 5},       // 4 GiB does not fit a 32-bit length
      {UINT64_MAX, 0x1000, 5},   // wraps
  };
  for (const auto& dev : bad) {
    INFO("base " << dev.base << " size " << dev.size << " gsi " << dev.gsi);
    AcpiConfig cfg{1};
    cfg.virtio_mmio = {dev};
    auto mem = make_memory();
    auto r = petrel::write_acpi_tables(mem, cfg);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code() == petrel::ErrorCode::kInvalidArgument);
    CHECK_FALSE(scan_for_rsdp(mem).has_value());
  }
  AcpiConfig many{1};
  many.virtio_mmio.assign(layout::kVirtioMmioMaxSlots + 1, {0xd0000000, 0x1000, 5});
  auto mem = make_memory();
  auto r = petrel::write_acpi_tables(mem, many);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code() == petrel::ErrorCode::kInvalidArgument);
}

// A cross-check by another implementation: ACPICA's disassembler (Debian's acpica-tools,
// scripts/install-deps.sh) must read the tables back without errors and find the devices.
// Skipped, with a warning, where iasl is not installed.
TEST_CASE("acpi: iasl disassembles the DSDT and MCFG", "[acpi][iasl]") {
  if (shell("command -v iasl >/dev/null 2>&1") != 0) {
    WARN("iasl not installed (apt-get install acpica-tools): cross-check skipped");
    return;
  }
  auto mem = make_memory();
  REQUIRE(petrel::write_acpi_tables(mem, virtio_pci_config()).ok());
  Tables t = parse(mem);
  std::string dir = "/tmp/petrel-acpi-test-XXXXXX";
  REQUIRE(::mkdtemp(dir.data()) != nullptr);
  write_file(dir + "/dsdt.dat", t.dsdt.bytes);
  write_file(dir + "/mcfg.dat", t.by_signature.at("MCFG").bytes);
  const int rc = shell("cd '" + dir + "' && iasl -d dsdt.dat mcfg.dat >iasl.log 2>&1");
  const std::string log = read_text(dir + "/iasl.log");
  const std::string dsl = read_text(dir + "/dsdt.dsl");
  const std::string mcfg = read_text(dir + "/mcfg.dsl");
  shell("rm -rf '" + dir + "'");
  INFO("iasl log:\n" << log << "\ndsdt.dsl:\n" << dsl << "\nmcfg.dsl:\n" << mcfg);
  REQUIRE(rc == 0);
  // Compared without white space: the disassembler's layout is not the point.
  const std::string code = squash(dsl);
  CHECK_THAT(code, Catch::Matchers::Contains("Device(VR00)"));
  CHECK_THAT(code, Catch::Matchers::Contains("Name(_HID,\"LNRO0005\")"));
  CHECK_THAT(code, Catch::Matchers::Contains(
                       "Memory32Fixed(ReadWrite,0xD0001000,//AddressBase0x00001000,"));
  CHECK_THAT(code, Catch::Matchers::Contains(
                       "Interrupt(ResourceConsumer,Edge,ActiveHigh,Exclusive,,,){0x00000010,}"));
  CHECK_THAT(code, Catch::Matchers::Contains("Name(_HID,EisaId(\"PNP0A08\")"));
  CHECK_THAT(code, Catch::Matchers::Contains("Name(_CID,EisaId(\"PNP0A03\")"));
  CHECK_THAT(code, Catch::Matchers::Contains("Name(_HID,EisaId(\"PNP0C02\")"));
  CHECK_THAT(code, Catch::Matchers::Contains("0xCFFFFFFF,//RangeMaximum"));
  CHECK_THAT(mcfg, Catch::Matchers::Contains("Base Address : 00000000E0000000"));
  CHECK_THAT(mcfg, Catch::Matchers::Contains("End Bus Number : 00"));
  CHECK_THAT(log + mcfg + dsl, !Catch::Matchers::Contains("rror"));
}

TEST_CASE("acpi: pvpanic puts PEVT (QEMU0001, port 0x505) after the i8042", "[acpi]") {
  AcpiConfig cfg{1};
  cfg.pvpanic = true;
  auto mem = make_memory();
  REQUIRE(petrel::write_acpi_tables(mem, cfg).ok());
  Tables t = parse(mem);  // checks the checksums
  const Bytes aml(t.dsdt.bytes.begin() + 36, t.dsdt.bytes.end());
  CHECK(aml == kDsdtPvPanicAml);
  // Without it the DSDT has no PEVT; with PCI and virtio-MMIO PEVT still precedes VR00.
  const Bytes pevt{'P', 'E', 'V', 'T'};
  auto plain = petrel::build_dsdt_aml(AcpiConfig{1});
  REQUIRE(plain.ok());
  CHECK(std::search(plain->begin(), plain->end(), pevt.begin(), pevt.end()) == plain->end());
  AcpiConfig full = virtio_pci_config();
  full.pvpanic = true;
  auto all = petrel::build_dsdt_aml(full);
  REQUIRE(all.ok());
  const Bytes vr00{'V', 'R', '0', '0'};
  auto at_pevt = std::search(all->begin(), all->end(), pevt.begin(), pevt.end());
  auto at_vr00 = std::search(all->begin(), all->end(), vr00.begin(), vr00.end());
  CHECK(at_pevt < at_vr00);
  CHECK(at_vr00 != all->end());
}

TEST_CASE("acpi: iasl reads the pvpanic device back", "[acpi][iasl]") {
  if (shell("command -v iasl >/dev/null 2>&1") != 0) {
    WARN("iasl not installed (apt-get install acpica-tools): cross-check skipped");
    return;
  }
  AcpiConfig cfg = virtio_pci_config();
  cfg.pvpanic = true;
  auto mem = make_memory();
  REQUIRE(petrel::write_acpi_tables(mem, cfg).ok());
  Tables t = parse(mem);
  std::string dir = "/tmp/petrel-acpi-test-XXXXXX";
  REQUIRE(::mkdtemp(dir.data()) != nullptr);
  write_file(dir + "/dsdt.dat", t.dsdt.bytes);
  const int rc = shell("cd '" + dir + "' && iasl -d dsdt.dat >iasl.log 2>&1");
  const std::string log = read_text(dir + "/iasl.log");
  const std::string dsl = read_text(dir + "/dsdt.dsl");
  shell("rm -rf '" + dir + "'");
  INFO("iasl log:\n" << log << "\ndsdt.dsl:\n" << dsl);
  REQUIRE(rc == 0);
  const std::string code = squash(dsl);
  CHECK_THAT(code, Catch::Matchers::Contains("Device(PEVT){Name(_HID,\"QEMU0001\")"));
  CHECK_THAT(code, Catch::Matchers::Contains("IO(Decode16,0x0505,//RangeMinimum0x0505,"));
  CHECK_THAT(code, Catch::Matchers::Contains("Name(_HID,EisaId(\"PNP0303\")"));
  CHECK_THAT(code, Catch::Matchers::Contains("IRQNoFlags(){1}"));
  CHECK_THAT(log + dsl, !Catch::Matchers::Contains("rror"));
}
