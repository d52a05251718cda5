/* PCI configuration mechanism #1 on bus 0 function 0 (PCI Local Bus spec 3.0 3.2.2.3.2). */
#include "pci.h"

#include "kit.h"

#define PCI_CONFIG_ADDRESS 0xcf8u
#define PCI_CONFIG_DATA 0xcfcu
#define PCI_CONFIG_ENABLE 0x80000000u

static void select_reg(uint8_t slot, uint8_t offset) {
  outl(PCI_CONFIG_ADDRESS,
       PCI_CONFIG_ENABLE | (uint32_t)(slot & 0x1fu) << 11 | (uint32_t)(offset & 0xfcu));
}

uint32_t pci_read32(uint8_t slot, uint8_t offset) {
  select_reg(slot, offset);
  return inl(PCI_CONFIG_DATA);
}

uint16_t pci_read16(uint8_t slot, uint8_t offset) {
  select_reg(slot, offset);
  return inw((uint16_t)(PCI_CONFIG_DATA + (offset & 2u)));
}

uint8_t pci_read8(uint8_t slot, uint8_t offset) {
  select_reg(slot, offset);
  return inb((uint16_t)(PCI_CONFIG_DATA + (offset & 3u)));
}

void pci_write32(uint8_t slot, uint8_t offset, uint32_t v) {
  select_reg(slot, offset);
  outl(PCI_CONFIG_DATA, v);
}

void pci_write16(uint8_t slot, uint8_t offset, uint16_t v) {
  select_reg(slot, offset);
  outw((uint16_t)(PCI_CONFIG_DATA + (offset & 2u)), v);
}

uint64_t pci_bar_address(uint8_t slot, uint8_t bar) {
  if (bar > 5) {
    return 0;
  }
  uint8_t reg = (uint8_t)(PCI_BAR0 + bar * 4u);
  uint32_t low = pci_read32(slot, reg);
  if ((low & PCI_BAR_IO) != 0) {
    return 0;
  }
  uint64_t addr = low & PCI_BAR_MEM_ADDR_MASK;
  if ((low & PCI_BAR_MEM_TYPE_MASK) == PCI_BAR_MEM_TYPE_64) {
    if (bar == 5) {
      return 0;
    }
    addr |= (uint64_t)pci_read32(slot, (uint8_t)(reg + 4)) << 32;
  }
  return addr;
}
