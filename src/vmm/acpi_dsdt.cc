#include "vmm/acpi_dsdt.h"

#include <array>

#include "vmm/aml.h"
#include "vmm/guest_abi.h"

namespace petrel {

namespace {

constexpr uint16_t kCom1Irq = 4;   // as Vm::setup_devices wires it
constexpr uint16_t kI8042Irq = 1;  // the PC convention; petrel's i8042 raises none yet

}  // namespace

Result<std::vector<uint8_t>> build_dsdt_aml() {
  using aml::Bytes;
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
  return aml::scope("\\_SB", aml::concat(std::array{com1, kbd}));
}

}  // namespace petrel
