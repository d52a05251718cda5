// The AML body of petrel's DSDT (ACPI 6.4 §5.2.11.1): the devices the guest cannot enumerate,
// in the ACPI namespace under \_SB, with the resources they decode. acpi_tables.cc puts the
// table header in front. The legacy devices Vm::setup_devices puts on the port I/O bus (COM1,
// the i8042 and, when asked, pvpanic), the virtio-MMIO devices and, with PCI, the host bridge of
// bus 0.
#pragma once

#include <cstdint>
#include <vector>

#include "vmm/acpi_tables.h"
#include "vmm/base/result.h"

namespace petrel {

// In ASL (each part in this order; PEVT only with cfg.pvpanic, VRnn for each of
// cfg.virtio_mmio, PCI0 and MRES only with cfg.pci):
//   Scope (\_SB) {
//     Device (COM1) {
//       Name (_HID, EisaId ("PNP0501"))   // 16550A-compatible UART
//       Name (_UID, One)
//       Name (_CRS, ResourceTemplate () {
//         IO (Decode16, 0x03F8, 0x03F8, 0x00, 0x08)
//         IRQNoFlags () {4}
//       })
//     }
//     Device (KBD) {
//       Name (_HID, EisaId ("PNP0303"))   // PS/2 keyboard controller
//       Name (_CRS, ResourceTemplate () {
//         IO (Decode16, 0x0060, 0x0060, 0x01, 0x01)
//         IO (Decode16, 0x0064, 0x0064, 0x01, 0x01)
//         IRQNoFlags () {1}
//       })
//     }
//     Device (PEVT) {                      // pvpanic (devices/pvpanic.h)
//       Name (_HID, "QEMU0001")            // Linux's pvpanic-mmio ACPI match
//       Name (_CRS, ResourceTemplate () {
//         IO (Decode16, 0x0505, 0x0505, 0x01, 0x01)
//       })
//     }
//     Device (VR00) {                      // virtio-MMIO device n: VRnn, n in hex
//       Name (_HID, "LNRO0005")            // Linux's virtio_mmio ACPI match
//       Name (_UID, Zero)                  // n
//       Name (_CRS, ResourceTemplate () {
//         Memory32Fixed (ReadWrite, 0xD0000000, 0x00001000)
//         Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive) {5}
//       })
//     }
//     Device (PCI0) {                      // PCI Express host bridge of segment 0, bus 0
//       Name (_HID, EisaId ("PNP0A08"))
//       Name (_CID, EisaId ("PNP0A03"))
//       Name (_SEG, Zero)
//       Name (_BBN, Zero)
//       Name (_UID, Zero)
//       Name (_CRS, ResourceTemplate () {
//         WordBusNumber (ResourceProducer, MinFixed, MaxFixed, PosDecode,
//                        0x0000, 0x0000, 0x0000, 0x0000, 0x0001)
//         IO (Decode16, 0x0CF8, 0x0CF8, 0x01, 0x08)    // configuration mechanism #1
//         WordIO (ResourceProducer, MinFixed, MaxFixed, PosDecode, EntireRange,
//                 0x0000, 0x1000, 0xFFFF, 0x0000, 0xF000)
//         DWordMemory (ResourceProducer, PosDecode, MinFixed, MaxFixed, NonCacheable,
//                      ReadWrite, 0x00000000, 0xC0000000, 0xCFFFFFFF, 0x00000000, 0x10000000)
//       })
//     }
//     Device (MRES) {                      // motherboard resources: the ECAM of MCFG
//       Name (_HID, EisaId ("PNP0C02"))
//       Name (_UID, Zero)
//       Name (_CRS, ResourceTemplate () {
//         Memory32Fixed (ReadWrite, 0xE0000000, 0x00100000)
//       })
//     }
//   }
// On a hardware-reduced platform Linux sets up no legacy PIC IRQs: a device's IRQ reaches
// its driver through _CRS, so every device with an interrupt must be here. PCI devices use
// MSI-X only, so PCI0 has no _PRT. Linux uses an MCFG region only when it is reserved in the
// e820 map or by a PNP0C01/PNP0C02 device ("MMCONFIG ... reserved in ACPI motherboard
// resources", arch/x86/pci/mmconfig-shared.c): hence MRES. PCI0 decodes 0xcf8-0xcff itself
// (Linux drops that range from the bridge's windows) and forwards the I/O ports above
// 0x1000 and the 32-bit BAR window (layout::kPciMmioWindow) to bus 0.
//
// Fails (kInvalidArgument) for more than layout::kVirtioMmioMaxSlots virtio-MMIO devices or
// one whose range does not fit below 4 GiB or whose GSI is not an IOAPIC input.
Result<std::vector<uint8_t>> build_dsdt_aml(const AcpiConfig& cfg);

}  // namespace petrel
