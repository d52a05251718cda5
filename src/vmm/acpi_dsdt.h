// The AML body of petrel's DSDT (ACPI 6.4 §5.2.11.1): the devices the guest cannot enumerate,
// in the ACPI namespace under \_SB, with the resources they decode. acpi_tables.cc puts the
// table header in front. Today the legacy devices Vm::setup_devices puts on the port I/O bus:
// COM1 and the i8042.
#pragma once

#include <cstdint>
#include <vector>

#include "vmm/base/result.h"

namespace petrel {

// In ASL:
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
//   }
// On a hardware-reduced platform Linux sets up no legacy PIC IRQs: a device's IRQ reaches
// its driver through _CRS, so every device with an interrupt must be here.
Result<std::vector<uint8_t>> build_dsdt_aml();

}  // namespace petrel
