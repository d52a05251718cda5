#include "vmm/acpi_dsdt.h"

#include <array>
#include <cstdint>

#include <fmt/format.h>

#include "vmm/aml.h"
#include "vmm/firmware_common.h"
#include "vmm/guest_abi.h"
#include "vmm/layout.h"

namespace petrel {

namespace {

using aml::Bytes;

constexpr uint16_t kCom1Irq = 4;   // as Vm::setup_devices wires it
constexpr uint16_t kI8042Irq = 1;  // the PC convention; the keyboard's (devices/i8042.h)

// QEMU's pvpanic ISA device (devices/pvpanic.h) at QEMU's default port.
constexpr uint16_t kPvPanicPort = PETREL_PORT_PVPANIC;

// PCI configuration mechanism #1 (PCI Local Bus 3.0 §3.2.2.3.2): CONFIG_ADDRESS at 0xcf8,
// CONFIG_DATA at 0xcfc.
constexpr uint16_t kPciConfigPorts = 0xcf8;
constexpr uint8_t kPciConfigPortsLength = 8;
// The I/O window forwarded to bus 0: above the legacy ISA range.
constexpr uint16_t kPciIoWindowMin = 0x1000;
constexpr uint16_t kPciIoWindowMax = 0xffff;

constexpr uint64_t kFourGiB = uint64_t{1} << 32;

Result<Bytes> legacy_devices() {
  PETREL_TRY_ASSIGN(Bytes com1_crs, aml::resource_template(std::array{
                                        aml::io_port(PETREL_PORT_COM1, PETREL_PORT_COM1, 0x00, 8),
                                        aml::irq_no_flags(1u << kCom1Irq),
                                    }));
  PETREL_TRY_ASSIGN(Bytes com1, aml::device("COM1", aml::concat(std::array{
                                                        aml::name("_HID", aml::eisa_id("PNP0501")),
                                                        aml::name("_UID", aml::integer(1)),
                                                        aml::name("_CRS", com1_crs),
                                                    })));
  PETREL_TRY_ASSIGN(Bytes kbd_crs,
                    aml::resource_template(std::array{
                        aml::io_port(PETREL_PORT_I8042_DATA, PETREL_PORT_I8042_DATA, 0x01, 1),
                        aml::io_port(PETREL_PORT_I8042_CMD, PETREL_PORT_I8042_CMD, 0x01, 1),
                        aml::irq_no_flags(1u << kI8042Irq),
                    }));
  PETREL_TRY_ASSIGN(Bytes kbd, aml::device("KBD", aml::concat(std::array{
                                                      aml::name("_HID", aml::eisa_id("PNP0303")),
                                                      aml::name("_CRS", kbd_crs),
                                                  })));
  return aml::concat(std::array{com1, kbd});
}

// The pvpanic device: Linux's pvpanic-mmio driver matches _HID QEMU0001 and takes its first
// I/O or memory resource.
Result<Bytes> pvpanic_device() {
  PETREL_TRY_ASSIGN(Bytes hid, aml::string("QEMU0001"));
  PETREL_TRY_ASSIGN(Bytes crs, aml::resource_template(std::array{
                                   aml::io_port(kPvPanicPort, kPvPanicPort, 0x01, 1),
                               }));
  return aml::device("PEVT", aml::concat(std::array{
                                 aml::name("_HID", hid),
                                 aml::name("_CRS", crs),
                             }));
}

// virtio-MMIO device `index` (virtio 1.2 §4.2.2 register block, one edge-triggered interrupt).
Result<Bytes> virtio_mmio_device(size_t index, const AcpiVirtioMmio& dev) {
  // Memory32Fixed holds a 32-bit base and length: base 0 with 4 GiB does not fit either.
  if (dev.size == 0 || dev.size > UINT32_MAX || dev.base >= kFourGiB ||
      dev.size > kFourGiB - dev.base) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("virtio-MMIO device {} at {:#x} ({:#x} bytes) is not a non-empty "
                             "range below 4 GiB",
                             index, dev.base, dev.size));
  }
  if (dev.gsi >= firmware::kIoApicPins) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("virtio-MMIO device {}: GSI {} is not an IOAPIC input (0-{})", index,
                             dev.gsi, firmware::kIoApicPins - 1));
  }
  PETREL_TRY_ASSIGN(aml::NameString name,
                    aml::NameString::from_runtime(fmt::format("VR{:02X}", index)));
  PETREL_TRY_ASSIGN(Bytes hid, aml::string("LNRO0005"));
  PETREL_TRY_ASSIGN(
      Bytes crs, aml::resource_template(std::array{
                     aml::memory32_fixed(aml::Access::kReadWrite, static_cast<uint32_t>(dev.base),
                                         static_cast<uint32_t>(dev.size)),
                     aml::interrupt(dev.gsi, aml::Trigger::kEdge, aml::Polarity::kActiveHigh,
                                    aml::Sharing::kExclusive),
                 }));
  return aml::device(name, aml::concat(std::array{
                               aml::name("_HID", hid),
                               aml::name("_UID", aml::integer(index)),
                               aml::name("_CRS", crs),
                           }));
}

Result<Bytes> pci_host_bridge() {
  constexpr uint64_t kWindowMax = layout::kPciMmioWindow.value() + layout::kPciMmioWindowSize - 1;
  static_assert(kWindowMax < kFourGiB, "DWordMemory describes a 32-bit window");
  PETREL_TRY_ASSIGN(Bytes crs,
                    aml::resource_template(std::array{
                        aml::word_bus_number(0, 0),
                        aml::io_port(kPciConfigPorts, kPciConfigPorts, 0x01, kPciConfigPortsLength),
                        aml::word_io(kPciIoWindowMin, kPciIoWindowMax),
                        aml::dword_memory(static_cast<uint32_t>(layout::kPciMmioWindow.value()),
                                          static_cast<uint32_t>(kWindowMax)),
                    }));
  return aml::device("PCI0", aml::concat(std::array{
                                 aml::name("_HID", aml::eisa_id("PNP0A08")),
                                 aml::name("_CID", aml::eisa_id("PNP0A03")),
                                 aml::name("_SEG", aml::integer(0)),
                                 aml::name("_BBN", aml::integer(0)),
                                 aml::name("_UID", aml::integer(0)),
                                 aml::name("_CRS", crs),
                             }));
}

Result<Bytes> motherboard_resources() {
  static_assert(layout::kPciEcam.value() + layout::kPciEcamSize <= kFourGiB);
  PETREL_TRY_ASSIGN(Bytes crs,
                    aml::resource_template(std::array{aml::memory32_fixed(
                        aml::Access::kReadWrite, static_cast<uint32_t>(layout::kPciEcam.value()),
                        static_cast<uint32_t>(layout::kPciEcamSize))}));
  return aml::device("MRES", aml::concat(std::array{
                                 aml::name("_HID", aml::eisa_id("PNP0C02")),
                                 aml::name("_UID", aml::integer(0)),
                                 aml::name("_CRS", crs),
                             }));
}

}  // namespace

Result<std::vector<uint8_t>> build_dsdt_aml(const AcpiConfig& cfg) {
  if (cfg.virtio_mmio.size() > layout::kVirtioMmioMaxSlots) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("{} virtio-MMIO devices; at most {}", cfg.virtio_mmio.size(),
                             layout::kVirtioMmioMaxSlots));
  }
  PETREL_TRY_ASSIGN(Bytes body, legacy_devices());
  if (cfg.pvpanic) {
    PETREL_TRY_ASSIGN(Bytes pevt, pvpanic_device());
    body.insert(body.end(), pevt.begin(), pevt.end());
  }
  for (size_t i = 0; i < cfg.virtio_mmio.size(); ++i) {
    PETREL_TRY_ASSIGN(Bytes dev, virtio_mmio_device(i, cfg.virtio_mmio[i]));
    body.insert(body.end(), dev.begin(), dev.end());
  }
  if (cfg.pci) {
    PETREL_TRY_ASSIGN(Bytes pci0, pci_host_bridge());
    PETREL_TRY_ASSIGN(Bytes mres, motherboard_resources());
    body.insert(body.end(), pci0.begin(), pci0.end());
    body.insert(body.end(), mres.begin(), mres.end());
  }
  return aml::scope("\\_SB", body);
}

}  // namespace petrel
