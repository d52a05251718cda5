/* PCI configuration access for the guest kit: configuration mechanism #1 (ports 0xCF8 /
 * 0xCFC, PCI Local Bus spec 3.0 section 3.2.2.3.2), bus 0 function 0 only. */
#ifndef PETREL_TESTS_GUEST_KIT_PCI_H_
#define PETREL_TESTS_GUEST_KIT_PCI_H_

#include <stdint.h>

#define PCI_SLOTS 32u
/* Type 0 configuration header offsets (PCI 3.0 section 6.1). */
#define PCI_VENDOR_ID 0x00u
#define PCI_DEVICE_ID 0x02u
#define PCI_COMMAND 0x04u
#define PCI_STATUS 0x06u
#define PCI_BAR0 0x10u
#define PCI_CAPABILITY_LIST 0x34u
#define PCI_COMMAND_MEMORY 0x2u
#define PCI_COMMAND_MASTER 0x4u
#define PCI_STATUS_CAP_LIST 0x10u
#define PCI_CAP_ID_VNDR 0x09u
#define PCI_BAR_IO 0x1u
#define PCI_BAR_MEM_TYPE_MASK 0x6u
#define PCI_BAR_MEM_TYPE_64 0x4u
#define PCI_BAR_MEM_ADDR_MASK 0xfffffff0u

/* offset is a byte offset into the 256-byte configuration space; narrower accesses use the
 * matching byte lanes of 0xCFC. A missing device reads all-ones. */
uint32_t pci_read32(uint8_t slot, uint8_t offset);
uint16_t pci_read16(uint8_t slot, uint8_t offset);
uint8_t pci_read8(uint8_t slot, uint8_t offset);
void pci_write32(uint8_t slot, uint8_t offset, uint32_t v);
void pci_write16(uint8_t slot, uint8_t offset, uint16_t v);

/* The memory address BAR bar (0-5) decodes, from what it reads (the VMM assigned it);
 * 0 for an I/O BAR, an unset one or a 64-bit BAR whose high half the BAR after it lacks. */
uint64_t pci_bar_address(uint8_t slot, uint8_t bar);

#endif /* PETREL_TESTS_GUEST_KIT_PCI_H_ */
