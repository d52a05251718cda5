/* The contract between petrel and the guests the project builds itself (tests/guest/).
 * C-compatible: the freestanding guest kit includes it too.
 *
 * A guest declares itself with an ELF note (name "petrel", type PETREL_NOTE_GUEST_KIT,
 * 4-byte descriptor of PETREL_GUEST_* flags). petrel then enters it in 64-bit mode at the
 * ELF entry with RSI = guest-physical address of struct petrel_boot_info, every RAM byte
 * and the low 4 GiB identity-mapped with 2 MiB pages, and interrupts masked. */
#ifndef PETREL_VMM_GUEST_ABI_H_
#define PETREL_VMM_GUEST_ABI_H_

#include <stdint.h>

#define PETREL_NOTE_NAME "petrel"
#define PETREL_NOTE_GUEST_KIT 1u
/* The guest can run in PVM native mode: it never relies on CPL0 and masks interrupts
 * with the VIF byte (see petrel_boot_info.vif_page) instead of cli/sti. */
#define PETREL_GUEST_PVM_NATIVE 0x1u

#define PETREL_BOOT_INFO_MAGIC 0x4f464e494c525450ull /* "PTRLINFO" little-endian */
#define PETREL_BOOT_INFO_VERSION 1u
#define PETREL_BOOT_INFO_FLAG_PVM_NATIVE 0x1u /* running natively on a PVM host */
#define PETREL_BOOT_INFO_MAX_RANGES 8u

/* Fixed I/O ports of the machine petrel builds. */
#define PETREL_PORT_COM1 0x3f8u /* 16550A UART, IRQ 4 */
#define PETREL_PORT_I8042_DATA 0x60u
#define PETREL_PORT_I8042_CMD 0x64u /* write 0xfe: system reset */
#define PETREL_PORT_EXIT 0xf4u      /* write a byte: the VM stops, petrel exits with it */
#define PETREL_PORT_PVPANIC 0x505u  /* pvpanic (QEMU0001): write 1 = the guest panicked */

struct petrel_mem_range {
  uint64_t start; /* guest-physical, bytes */
  uint64_t size;  /* bytes */
};

struct petrel_boot_info {
  uint64_t magic;   /* PETREL_BOOT_INFO_MAGIC */
  uint32_t version; /* PETREL_BOOT_INFO_VERSION */
  uint32_t flags;   /* PETREL_BOOT_INFO_FLAG_* */
  uint32_t vcpus;
  uint32_t nr_mem_ranges;
  uint64_t mem_size;     /* total RAM, bytes */
  uint64_t vif_page;     /* guest-physical address of the PVM VIF page, 0 if none */
  uint64_t cmdline_addr; /* guest-physical address of the NUL-terminated command line */
  uint32_t cmdline_len;  /* bytes, without the NUL */
  uint32_t reserved;
  struct petrel_mem_range mem[PETREL_BOOT_INFO_MAX_RANGES];
};

#endif /* PETREL_VMM_GUEST_ABI_H_ */
