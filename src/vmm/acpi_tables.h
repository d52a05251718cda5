// The ACPI tables petrel writes for the guest (ACPI 6.4 §5.2): RSDP -> XSDT -> {FADT, MADT,
// MCFG when the VM has PCI}, FADT -> DSDT. A hardware-reduced ACPI platform (§4.1: no PM1
// blocks, PM timer, GPEs, SCI or FACS); the MADT describes the vCPUs' local APICs and KVM's
// in-kernel IOAPIC (firmware_common.h), the DSDT the devices the guest cannot enumerate
// (acpi_dsdt.h: COM1, the i8042, pvpanic, virtio-MMIO devices, the PCI host bridge), the MCFG the
// PCI Express enhanced configuration space (ECAM) of bus 0 (PCI Firmware 3.0 §4.1.2).
//
// Everything lies in [layout::kAcpiTablesStart, +kAcpiTablesSize), the RSDP at layout::kRsdp
// where Linux finds it by scanning 0xe0000-0xfffff (and it may also be handed the address,
// boot_params.acpi_rsdp_addr / hvm_start_info.rsdp_paddr).
#pragma once

#include <cstdint>
#include <vector>

#include "vmm/base/guest_address.h"
#include "vmm/base/guest_memory.h"
#include "vmm/base/result.h"

namespace petrel {

// A virtio-MMIO device (virtio 1.2 §4.2) as the DSDT describes it: Linux's virtio_mmio
// driver binds to its _HID LNRO0005.
struct AcpiVirtioMmio {
  uint64_t base;  // guest-physical address of its register block; below 4 GiB
  uint64_t size;  // bytes, > 0; base + size <= 4 GiB
  uint32_t gsi;   // its IOAPIC input (edge-triggered, active high); < firmware::kIoApicPins
};

struct AcpiConfig {
  uint32_t vcpus;  // APIC IDs 0..vcpus-1; 1..firmware::kMaxVcpus
  // Whether a CMOS RTC answers at ports 0x70/0x71. petrel has none yet, so the FADT says
  // "CMOS RTC Not Present" and Linux registers no rtc_cmos device.
  bool cmos_rtc = false;
  // In order: device n is \_SB.VRnn (two hex digits) with _UID n. At most
  // layout::kVirtioMmioMaxSlots.
  std::vector<AcpiVirtioMmio> virtio_mmio{};
  // A PCI host bridge for bus 0 (config ports 0xcf8-0xcff and ECAM at layout::kPciEcam,
  // 32-bit BARs in layout::kPciMmioWindow): DSDT device PCI0, the ECAM reserved as a
  // motherboard resource, and the MCFG table.
  bool pci = false;
  // A pvpanic device (devices/pvpanic.h) at I/O port 0x505: DSDT device PEVT, _HID
  // "QEMU0001", which Linux's pvpanic-mmio driver binds to.
  bool pvpanic = false;
};

// Writes the tables and returns the RSDP's address (layout::kRsdp). Fails for a vCPU count
// out of range, a virtio-MMIO device that cannot be described (see AcpiVirtioMmio), tables
// that outgrow the area, or guest memory that does not cover it.
Result<GuestAddress> write_acpi_tables(const GuestMemory& mem, const AcpiConfig& cfg);

}  // namespace petrel
