#include "vmm/mp_table.h"

#include <array>
#include <bit>
#include <cstring>
#include <span>
#include <vector>

#include <fmt/format.h>

#include "vmm/firmware_common.h"
#include "vmm/layout.h"

namespace petrel {

namespace {

static_assert(std::endian::native == std::endian::little, "MP tables are little-endian");

using firmware::append_struct;
using firmware::chars;
using Bytes = std::vector<uint8_t>;

constexpr uint8_t kSpecRev = 4;  // MP spec 1.4

// MP 1.4 §4.1, Table 4-1: MP Floating Pointer Structure.
struct [[gnu::packed]] MpFloatingPointer {
  std::array<char, 4> signature;  // "_MP_"
  uint32_t config_table;          // physical address of the configuration table
  uint8_t length;                 // in 16-byte paragraphs: 1
  uint8_t spec_rev;
  uint8_t checksum;
  // Feature byte 1 = 0: a configuration table is present (no default configuration).
  // Feature byte 2 bit 7 (IMCRP) = 0: virtual wire mode, no IMCR to program.
  std::array<uint8_t, 5> features;
};
static_assert(sizeof(MpFloatingPointer) == 16);

// MP 1.4 §4.2, Table 4-2: MP Configuration Table Header.
struct [[gnu::packed]] MpConfigHeader {
  std::array<char, 4> signature;  // "PCMP"
  uint16_t base_table_length;     // header + base entries
  uint8_t spec_rev;
  uint8_t checksum;  // the base table sums to 0
  std::array<char, 8> oem_id;
  std::array<char, 12> product_id;
  uint32_t oem_table;
  uint16_t oem_table_size;
  uint16_t entry_count;
  uint32_t local_apic_address;
  uint16_t extended_table_length;
  uint8_t extended_table_checksum;
  uint8_t reserved;
};
static_assert(sizeof(MpConfigHeader) == 44);

// Entry types (MP 1.4 §4.3, Table 4-3).
constexpr uint8_t kEntryProcessor = 0;
constexpr uint8_t kEntryBus = 1;
constexpr uint8_t kEntryIoApic = 2;
constexpr uint8_t kEntryIoInterrupt = 3;
constexpr uint8_t kEntryLocalInterrupt = 4;

// MP 1.4 §4.3.1, Table 4-4: Processor Entry.
struct [[gnu::packed]] MpProcessor {
  uint8_t type = kEntryProcessor;
  uint8_t local_apic_id;
  uint8_t local_apic_version;
  uint8_t cpu_flags;  // bit 0 EN (usable), bit 1 BP (the bootstrap processor)
  uint32_t cpu_signature;
  uint32_t feature_flags;
  std::array<uint32_t, 2> reserved;
};
static_assert(sizeof(MpProcessor) == 20);
constexpr uint8_t kCpuEnabled = 1u << 0;
constexpr uint8_t kCpuBootstrap = 1u << 1;
// Nominal, as CPUID leaf 1 would give them (Table 4-5, 4-6): family 6; FPU and APIC present.
// Linux reads neither from the table.
constexpr uint32_t kCpuSignature = 0x600;
constexpr uint32_t kCpuFeatures = (1u << 0) | (1u << 9);

// MP 1.4 §4.3.2, Table 4-7: Bus Entry.
struct [[gnu::packed]] MpBus {
  uint8_t type = kEntryBus;
  uint8_t bus_id;
  std::array<char, 6> bus_type;  // "ISA   " (Table 4-8), blank-padded
};
static_assert(sizeof(MpBus) == 8);
constexpr uint8_t kIsaBusId = 0;

// MP 1.4 §4.3.3, Table 4-9: I/O APIC Entry.
struct [[gnu::packed]] MpIoApic {
  uint8_t type = kEntryIoApic;
  uint8_t id;
  uint8_t version;
  uint8_t flags;  // bit 0 EN
  uint32_t address;
};
static_assert(sizeof(MpIoApic) == 8);
constexpr uint8_t kIoApicEnabled = 1u << 0;

// MP 1.4 §4.3.4, Table 4-10 (I/O Interrupt Assignment Entry) and §4.3.5, Table 4-12 (Local
// Interrupt Assignment Entry) share one layout.
struct [[gnu::packed]] MpInterrupt {
  uint8_t type;
  uint8_t interrupt_type;  // Table 4-11: 0 INT, 1 NMI, 2 SMI, 3 ExtINT
  uint16_t flags;          // PO and EL; 0: conforms to the bus (ISA: edge, active high)
  uint8_t source_bus_id;
  uint8_t source_bus_irq;
  uint8_t destination_id;   // I/O APIC ID, or local APIC ID (0xff: all)
  uint8_t destination_pin;  // INTIN#, or LINTIN#
};
static_assert(sizeof(MpInterrupt) == 8);
constexpr uint8_t kIntInt = 0;
constexpr uint8_t kIntNmi = 1;
constexpr uint8_t kIntExtInt = 3;
constexpr uint8_t kAllLocalApics = 0xff;

// The configuration table (MP 1.4 §4.2 header + §4.3 base entries) for `vcpus`.
Bytes build_config_table(uint32_t vcpus) {
  Bytes entries;
  uint16_t count = 0;
  for (uint32_t id = 0; id < vcpus; ++id) {
    MpProcessor cpu{};
    cpu.local_apic_id = static_cast<uint8_t>(id);
    cpu.local_apic_version = firmware::kLocalApicVersion;
    cpu.cpu_flags = kCpuEnabled | (id == 0 ? kCpuBootstrap : 0);
    cpu.cpu_signature = kCpuSignature;
    cpu.feature_flags = kCpuFeatures;
    append_struct(entries, cpu);
    ++count;
  }
  MpBus bus{};
  bus.bus_id = kIsaBusId;
  bus.bus_type = chars("ISA   ");
  append_struct(entries, bus);
  ++count;
  const uint8_t ioapic_id = firmware::ioapic_id(vcpus);
  MpIoApic ioapic{};
  ioapic.id = ioapic_id;
  ioapic.version = firmware::kIoApicVersion;
  ioapic.flags = kIoApicEnabled;
  ioapic.address = static_cast<uint32_t>(layout::kIoApic.value());
  append_struct(entries, ioapic);
  ++count;
  // The ISA IRQs, each on its IOAPIC pin; IRQ 2 is the 8259 cascade and raises nothing.
  for (uint8_t irq = 0; irq < firmware::kIsaIrqs; ++irq) {
    if (irq == firmware::kIsaCascadeIrq) {
      continue;
    }
    append_struct(entries, MpInterrupt{kEntryIoInterrupt, kIntInt, 0, kIsaBusId, irq, ioapic_id,
                                       firmware::isa_irq_pin(irq)});
    ++count;
  }
  // The 8259's INTR reaches the BSP's LINT0 (virtual wire mode, §3.6.2.2); NMI every LINT1.
  append_struct(entries, MpInterrupt{kEntryLocalInterrupt, kIntExtInt, 0, kIsaBusId, 0, 0, 0});
  append_struct(entries,
                MpInterrupt{kEntryLocalInterrupt, kIntNmi, 0, kIsaBusId, 0, kAllLocalApics, 1});
  count += 2;

  MpConfigHeader header{};
  header.signature = chars("PCMP");
  header.base_table_length = static_cast<uint16_t>(sizeof(header) + entries.size());
  header.spec_rev = kSpecRev;
  header.oem_id = chars("PETREL  ");
  header.product_id = chars("PETRELVM    ");
  header.entry_count = count;
  header.local_apic_address = static_cast<uint32_t>(layout::kLocalApic.value());
  Bytes table;
  append_struct(table, header);
  table.insert(table.end(), entries.begin(), entries.end());
  table[offsetof(MpConfigHeader, checksum)] = firmware::checksum_byte(table);
  return table;
}

}  // namespace

Result<void> write_mp_table(const GuestMemory& mem, uint32_t vcpus) {
  PETREL_TRY(firmware::check_vcpu_count(vcpus));
  const Bytes config = build_config_table(vcpus);
  const uint64_t base = layout::kMpTableStart.value();
  const uint64_t config_at = sizeof(MpFloatingPointer);  // 16: stays 16-byte aligned
  const uint64_t end = config_at + config.size();
  if (end > layout::kMpTableSize) {
    return Error(ErrorCode::kOutOfRange,
                 fmt::format("the MP table needs {} bytes; the area at {:#x} holds {}", end, base,
                             layout::kMpTableSize));
  }

  MpFloatingPointer pointer{};
  pointer.signature = chars("_MP_");
  pointer.config_table = static_cast<uint32_t>(base + config_at);
  pointer.length = 1;
  pointer.spec_rev = kSpecRev;
  Bytes image;
  append_struct(image, pointer);
  image[offsetof(MpFloatingPointer, checksum)] = firmware::checksum_byte(image);
  image.insert(image.end(), config.begin(), config.end());
  auto written = mem.write(layout::kMpTableStart, std::as_bytes(std::span(image)));
  if (!written) {
    return std::move(written).error().context("writing the MP table");
  }
  return {};
}

}  // namespace petrel
