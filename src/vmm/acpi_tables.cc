#include "vmm/acpi_tables.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cstddef>
#include <cstring>
#include <span>
#include <vector>

#include <fmt/format.h>

#include "vmm/acpi_dsdt.h"
#include "vmm/firmware_common.h"
#include "vmm/guest_abi.h"
#include "vmm/layout.h"

namespace petrel {

namespace {

static_assert(std::endian::native == std::endian::little, "ACPI tables are little-endian");

using firmware::append_struct;
using firmware::chars;
using Bytes = std::vector<uint8_t>;

constexpr auto kOemId = chars("PETREL");
constexpr auto kOemTableId = chars("PETRELVM");
constexpr uint32_t kOemRevision = 1;
constexpr auto kCreatorId = chars("PTRL");
constexpr uint32_t kCreatorRevision = 1;

// ACPI 6.4 §5.2.5.3, Table 5.3: Root System Description Pointer, revision 2 (ACPI 2.0+).
struct [[gnu::packed]] Rsdp {
  std::array<char, 8> signature;
  uint8_t checksum;  // over the first 20 bytes (the ACPI 1.0 part)
  std::array<char, 6> oem_id;
  uint8_t revision;
  uint32_t rsdt_address;  // 0: no RSDT, the XSDT describes everything
  uint32_t length;
  uint64_t xsdt_address;
  uint8_t extended_checksum;  // over all of it
  std::array<uint8_t, 3> reserved;
};
static_assert(sizeof(Rsdp) == 36);
constexpr size_t kRsdpV1Size = 20;

// ACPI 6.4 §5.2.6, Table 5.4: the header of every System Description Table.
struct [[gnu::packed]] SdtHeader {
  std::array<char, 4> signature;
  uint32_t length;  // of the whole table, header included
  uint8_t revision;
  uint8_t checksum;  // the whole table sums to 0
  std::array<char, 6> oem_id;
  std::array<char, 8> oem_table_id;
  uint32_t oem_revision;
  std::array<char, 4> creator_id;
  uint32_t creator_revision;
};
static_assert(sizeof(SdtHeader) == 36);
constexpr size_t kLengthOffset = offsetof(SdtHeader, length);
constexpr size_t kChecksumOffset = offsetof(SdtHeader, checksum);

// ACPI 6.4 §5.2.3.2, Table 5.1: Generic Address Structure.
struct [[gnu::packed]] GenericAddress {
  uint8_t space_id;  // 0 system memory, 1 system I/O
  uint8_t bit_width;
  uint8_t bit_offset;
  uint8_t access_size;  // 1 byte, 2 word, 3 dword, 4 qword
  uint64_t address;
};
static_assert(sizeof(GenericAddress) == 12);

// ACPI 6.4 §5.2.9, Table 5.9: Fixed ACPI Description Table, revision 6 (276 bytes).
struct [[gnu::packed]] Fadt {
  SdtHeader header;
  uint32_t firmware_ctrl;
  uint32_t dsdt;
  uint8_t reserved0;
  uint8_t preferred_pm_profile;
  uint16_t sci_int;
  uint32_t smi_cmd;
  uint8_t acpi_enable;
  uint8_t acpi_disable;
  uint8_t s4bios_req;
  uint8_t pstate_cnt;
  uint32_t pm1a_evt_blk;
  uint32_t pm1b_evt_blk;
  uint32_t pm1a_cnt_blk;
  uint32_t pm1b_cnt_blk;
  uint32_t pm2_cnt_blk;
  uint32_t pm_tmr_blk;
  uint32_t gpe0_blk;
  uint32_t gpe1_blk;
  uint8_t pm1_evt_len;
  uint8_t pm1_cnt_len;
  uint8_t pm2_cnt_len;
  uint8_t pm_tmr_len;
  uint8_t gpe0_blk_len;
  uint8_t gpe1_blk_len;
  uint8_t gpe1_base;
  uint8_t cst_cnt;
  uint16_t p_lvl2_lat;
  uint16_t p_lvl3_lat;
  uint16_t flush_size;
  uint16_t flush_stride;
  uint8_t duty_offset;
  uint8_t duty_width;
  uint8_t day_alrm;
  uint8_t mon_alrm;
  uint8_t century;
  uint16_t iapc_boot_arch;
  uint8_t reserved1;
  uint32_t flags;
  GenericAddress reset_reg;
  uint8_t reset_value;
  uint16_t arm_boot_arch;
  uint8_t fadt_minor_version;
  uint64_t x_firmware_ctrl;
  uint64_t x_dsdt;
  GenericAddress x_pm1a_evt_blk;
  GenericAddress x_pm1b_evt_blk;
  GenericAddress x_pm1a_cnt_blk;
  GenericAddress x_pm1b_cnt_blk;
  GenericAddress x_pm2_cnt_blk;
  GenericAddress x_pm_tmr_blk;
  GenericAddress x_gpe0_blk;
  GenericAddress x_gpe1_blk;
  GenericAddress sleep_control_reg;
  GenericAddress sleep_status_reg;
  std::array<char, 8> hypervisor_vendor_id;
};
static_assert(sizeof(Fadt) == 276);
static_assert(offsetof(Fadt, iapc_boot_arch) == 109 && offsetof(Fadt, flags) == 112);
static_assert(offsetof(Fadt, fadt_minor_version) == 131 && offsetof(Fadt, x_dsdt) == 140);
static_assert(offsetof(Fadt, sleep_control_reg) == 244);

// FADT Fixed Feature Flags (ACPI 6.4 §5.2.9, Table 5.10).
constexpr uint32_t kFadtWbinvd = 1u << 0;
constexpr uint32_t kFadtProcC1 = 1u << 2;
constexpr uint32_t kFadtPwrButton = 1u << 4;  // set: no fixed-feature power button
constexpr uint32_t kFadtSlpButton = 1u << 5;  // set: no fixed-feature sleep button
constexpr uint32_t kFadtResetRegSup = 1u << 10;
constexpr uint32_t kFadtHwReducedAcpi = 1u << 20;

// IA-PC Boot Architecture Flags (ACPI 6.4 §5.2.9.3, Table 5.11).
constexpr uint16_t kBootArchLegacyDevices = 1u << 0;
constexpr uint16_t kBootArch8042 = 1u << 1;
constexpr uint16_t kBootArchVgaNotPresent = 1u << 2;
constexpr uint16_t kBootArchCmosRtcNotPresent = 1u << 5;

constexpr uint8_t kGasSystemIo = 1;
constexpr uint8_t kGasAccessByte = 1;
constexpr uint8_t kI8042ResetCommand = 0xfe;  // pulses the CPU reset line (devices/i8042.h)

// ACPI 6.4 §5.2.12, Table 5.19: the MADT's fields after the header.
struct [[gnu::packed]] MadtHeader {
  SdtHeader header;
  uint32_t local_apic_address;
  uint32_t flags;
};
static_assert(sizeof(MadtHeader) == 44);
constexpr uint32_t kMadtPcatCompat = 1u << 0;  // dual 8259s present (§5.2.12.4)

// ACPI 6.4 §5.2.12.2, Table 5.22: Processor Local APIC Structure.
struct [[gnu::packed]] MadtLocalApic {
  uint8_t type = 0;
  uint8_t length = sizeof(MadtLocalApic);
  uint8_t processor_uid;
  uint8_t apic_id;
  uint32_t flags;
};
static_assert(sizeof(MadtLocalApic) == 8);
constexpr uint32_t kLocalApicEnabled = 1u << 0;

// ACPI 6.4 §5.2.12.3, Table 5.24: I/O APIC Structure.
struct [[gnu::packed]] MadtIoApic {
  uint8_t type = 1;
  uint8_t length = sizeof(MadtIoApic);
  uint8_t io_apic_id;
  uint8_t reserved = 0;
  uint32_t address;
  uint32_t gsi_base;
};
static_assert(sizeof(MadtIoApic) == 12);

// ACPI 6.4 §5.2.12.5, Table 5.25: Interrupt Source Override Structure.
struct [[gnu::packed]] MadtInterruptSourceOverride {
  uint8_t type = 2;
  uint8_t length = sizeof(MadtInterruptSourceOverride);
  uint8_t bus = 0;  // ISA
  uint8_t source;
  uint32_t gsi;
  uint16_t flags;  // MPS INTI flags (Table 5.26); 0: conforms to the bus
};
static_assert(sizeof(MadtInterruptSourceOverride) == 10);

// ACPI 6.4 §5.2.12.7, Table 5.28: Local APIC NMI Structure.
struct [[gnu::packed]] MadtLocalApicNmi {
  uint8_t type = 4;
  uint8_t length = sizeof(MadtLocalApicNmi);
  uint8_t processor_uid;  // 0xff: all processors
  uint16_t flags;
  uint8_t lint;
};
static_assert(sizeof(MadtLocalApicNmi) == 6);

// PCI Firmware Specification 3.0 §4.1.2, Table 4-3: the MCFG table's fields after the header,
// then one Table 4-4 entry per ECAM region.
struct [[gnu::packed]] McfgHeader {
  SdtHeader header;
  uint64_t reserved;
};
static_assert(sizeof(McfgHeader) == 44);

struct [[gnu::packed]] McfgAllocation {
  uint64_t base_address;  // ECAM of bus 0 of the range, even when start_bus is not 0
  uint16_t segment;
  uint8_t start_bus;
  uint8_t end_bus;
  uint32_t reserved;
};
static_assert(sizeof(McfgAllocation) == 16);

// ECAM (PCI Express Base 4.0 §7.2.2): 1 MiB per bus (32 devices x 8 functions x 4 KiB).
constexpr uint64_t kEcamBytesPerBus = uint64_t{1} << 20;

SdtHeader sdt_header(const char (&signature)[5], uint8_t revision) {
  SdtHeader h{};
  h.signature = chars(signature);
  h.revision = revision;
  h.oem_id = kOemId;
  h.oem_table_id = kOemTableId;
  h.oem_revision = kOemRevision;
  h.creator_id = kCreatorId;
  h.creator_revision = kCreatorRevision;
  return h;
}

// Sets the header's length and checksum once the table is complete.
void seal_table(Bytes& table) {
  const auto length = static_cast<uint32_t>(table.size());
  std::memcpy(table.data() + kLengthOffset, &length, sizeof(length));
  table[kChecksumOffset] = 0;
  table[kChecksumOffset] = firmware::checksum_byte(table);
}

// DSDT (ACPI 6.4 §5.2.11.1): a Definition Block, the header and acpi_dsdt.h's AML.
Result<Bytes> build_dsdt(const AcpiConfig& cfg) {
  PETREL_TRY_ASSIGN(Bytes aml, build_dsdt_aml(cfg));
  Bytes table;
  append_struct(table, sdt_header("DSDT", 2));  // revision 2: 64-bit AML integers
  table.insert(table.end(), aml.begin(), aml.end());
  seal_table(table);
  return table;
}

// FADT for a hardware-reduced platform (ACPI 6.4 §4.1, §5.2.9): no SCI, SMI command port,
// PM1/PM2/PM timer/GPE blocks, FACS or sleep registers; buttons, if any, come later as
// control-method devices. The reset register is the i8042's command port.
Bytes build_fadt(uint64_t dsdt, const AcpiConfig& cfg) {
  Fadt fadt{};
  fadt.header = sdt_header("FACP", 6);
  fadt.dsdt = static_cast<uint32_t>(dsdt);  // below 1 MiB; equal to X_DSDT
  fadt.x_dsdt = dsdt;
  fadt.flags = kFadtWbinvd | kFadtProcC1 | kFadtPwrButton | kFadtSlpButton | kFadtResetRegSup |
               kFadtHwReducedAcpi;
  // An 8042 and ISA-style legacy devices (COM1) are present, no VGA; MSI is supported (the
  // flag stays clear) for the PCI devices to come.
  fadt.iapc_boot_arch = kBootArchLegacyDevices | kBootArch8042 | kBootArchVgaNotPresent;
  if (!cfg.cmos_rtc) {
    fadt.iapc_boot_arch |= kBootArchCmosRtcNotPresent;
  }
  fadt.reset_reg = GenericAddress{kGasSystemIo, 8, 0, kGasAccessByte, PETREL_PORT_I8042_CMD};
  fadt.reset_value = kI8042ResetCommand;
  fadt.fadt_minor_version = 4;  // FADT 6.4
  fadt.hypervisor_vendor_id = chars("PETRELVM");
  Bytes table;
  append_struct(table, fadt);
  seal_table(table);
  return table;
}

// MADT (ACPI 6.4 §5.2.12): the LAPICs in APIC ID order, the IOAPIC, the ISA IRQs that do not
// reach the pin of their own number, and NMI on every LAPIC's LINT1.
Bytes build_madt(uint32_t vcpus) {
  Bytes table;
  MadtHeader header{};
  header.header = sdt_header("APIC", 5);
  header.local_apic_address = static_cast<uint32_t>(layout::kLocalApic.value());
  header.flags = kMadtPcatCompat;
  append_struct(table, header);
  for (uint32_t id = 0; id < vcpus; ++id) {
    MadtLocalApic lapic{};
    lapic.processor_uid = static_cast<uint8_t>(id);
    lapic.apic_id = static_cast<uint8_t>(id);
    lapic.flags = kLocalApicEnabled;
    append_struct(table, lapic);
  }
  MadtIoApic ioapic{};
  ioapic.io_apic_id = firmware::ioapic_id(vcpus);
  ioapic.address = static_cast<uint32_t>(layout::kIoApic.value());
  ioapic.gsi_base = 0;
  append_struct(table, ioapic);
  for (uint8_t irq = 0; irq < firmware::kIsaIrqs; ++irq) {
    if (firmware::isa_irq_pin(irq) != irq) {
      MadtInterruptSourceOverride iso{};
      iso.source = irq;
      iso.gsi = firmware::isa_irq_pin(irq);
      iso.flags = 0;
      append_struct(table, iso);
    }
  }
  MadtLocalApicNmi nmi{};
  nmi.processor_uid = 0xff;
  nmi.flags = 0;
  nmi.lint = 1;
  append_struct(table, nmi);
  seal_table(table);
  return table;
}

// MCFG: segment 0's ECAM at layout::kPciEcam, for the buses it covers (bus 0 only today).
Bytes build_mcfg() {
  static_assert(layout::kPciEcamSize % kEcamBytesPerBus == 0 &&
                layout::kPciEcamSize / kEcamBytesPerBus <= 256);
  Bytes table;
  McfgHeader header{};
  header.header = sdt_header("MCFG", 1);
  append_struct(table, header);
  McfgAllocation ecam{};
  ecam.base_address = layout::kPciEcam.value();
  ecam.segment = 0;
  ecam.start_bus = 0;
  ecam.end_bus = static_cast<uint8_t>(layout::kPciEcamSize / kEcamBytesPerBus - 1);
  append_struct(table, ecam);
  seal_table(table);
  return table;
}

// XSDT (ACPI 6.4 §5.2.8): the header and the 64-bit addresses of the other tables.
Bytes build_xsdt(std::span<const uint64_t> tables) {
  Bytes table;
  append_struct(table, sdt_header("XSDT", 1));
  for (uint64_t address : tables) {
    append_struct(table, address);
  }
  seal_table(table);
  return table;
}

Rsdp build_rsdp(uint64_t xsdt) {
  Rsdp rsdp{};
  rsdp.signature = chars("RSD PTR ");
  rsdp.oem_id = kOemId;
  rsdp.revision = 2;
  rsdp.length = sizeof(Rsdp);
  rsdp.xsdt_address = xsdt;
  auto bytes = std::as_bytes(std::span(&rsdp, 1));
  std::span<const uint8_t> all(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  rsdp.checksum = firmware::checksum_byte(all.first(kRsdpV1Size));
  rsdp.extended_checksum = firmware::checksum_byte(all);
  return rsdp;
}

constexpr uint64_t align16(uint64_t offset) {
  return (offset + 15) & ~uint64_t{15};
}

}  // namespace

Result<GuestAddress> write_acpi_tables(const GuestMemory& mem, const AcpiConfig& cfg) {
  PETREL_TRY(firmware::check_vcpu_count(cfg.vcpus));
  PETREL_TRY_ASSIGN(Bytes dsdt, build_dsdt(cfg));
  const Bytes madt = build_madt(cfg.vcpus);
  const Bytes mcfg = cfg.pci ? build_mcfg() : Bytes{};

  // The area: RSDP, XSDT, FADT, MADT, MCFG (with PCI), DSDT, each 16-byte aligned.
  static_assert(layout::kRsdp == layout::kAcpiTablesStart);
  const uint64_t base = layout::kAcpiTablesStart.value();
  const size_t xsdt_entries = cfg.pci ? 3 : 2;
  const uint64_t xsdt_at = align16(sizeof(Rsdp));
  const uint64_t fadt_at = align16(xsdt_at + sizeof(SdtHeader) + xsdt_entries * sizeof(uint64_t));
  const uint64_t madt_at = align16(fadt_at + sizeof(Fadt));
  const uint64_t mcfg_at = align16(madt_at + madt.size());
  const uint64_t dsdt_at = align16(mcfg_at + mcfg.size());
  const uint64_t end = dsdt_at + dsdt.size();
  if (end > layout::kAcpiTablesSize) {
    return Error(ErrorCode::kOutOfRange,
                 fmt::format("ACPI tables need {} bytes; the area at {:#x} holds {}", end, base,
                             layout::kAcpiTablesSize));
  }
  const Bytes fadt = build_fadt(base + dsdt_at, cfg);
  std::vector<uint64_t> entries = {base + fadt_at, base + madt_at};
  if (cfg.pci) {
    entries.push_back(base + mcfg_at);
  }
  const Bytes xsdt = build_xsdt(entries);
  const Rsdp rsdp = build_rsdp(base + xsdt_at);

  Bytes image(end, 0);
  std::memcpy(image.data(), &rsdp, sizeof(rsdp));
  std::memcpy(image.data() + xsdt_at, xsdt.data(), xsdt.size());
  std::memcpy(image.data() + fadt_at, fadt.data(), fadt.size());
  std::memcpy(image.data() + madt_at, madt.data(), madt.size());
  std::copy(mcfg.begin(), mcfg.end(), image.begin() + static_cast<ptrdiff_t>(mcfg_at));
  std::memcpy(image.data() + dsdt_at, dsdt.data(), dsdt.size());
  auto written = mem.write(layout::kAcpiTablesStart, std::as_bytes(std::span(image)));
  if (!written) {
    return std::move(written).error().context("writing the ACPI tables");
  }
  return layout::kRsdp;
}

}  // namespace petrel
