/* echo: polled COM1 receive. Prints "echo ready\n", then polls LSR.DR and, for every byte
 * read from RBR, writes it back with a-z upper-cased (every other byte, "\n" included, is
 * written unchanged), until it receives 'q' (echoed as "Q"). Then prints
 * "\necho done bytes=<n>\n", n being the bytes received including the 'q', in decimal, and
 * exits 0. It waits for input forever: whoever runs it must send a 'q'.
 *
 * Example: input "hello q" gives exactly "echo ready\nHELLO Q\necho done bytes=7\n".
 * The UART keeps the kit's set-up (8N1, FIFO on, no interrupts). */
#include "kit/kit.h"

#define COM1_RBR (PETREL_PORT_COM1 + 0u)
#define COM1_LSR (PETREL_PORT_COM1 + 5u)
#define LSR_DR 0x01u /* data ready: RBR holds a received byte */

/* Blocks (polling LSR) until a byte is received and returns it. */
static uint8_t serial_getc(void) {
  while ((inb(COM1_LSR) & LSR_DR) == 0) {
    __asm__ volatile("pause");
  }
  return inb(COM1_RBR);
}

void guest_main(const struct petrel_boot_info* boot_info) {
  (void)boot_info;
  kit_printf("echo ready\n");
  uint64_t bytes = 0;
  for (;;) {
    uint8_t c = serial_getc();
    bytes++;
    serial_putc((char)(c >= 'a' && c <= 'z' ? c - 'a' + 'A' : c));
    if (c == 'q') {
      break;
    }
  }
  kit_printf("\necho done bytes=%lu\n", bytes);
}
