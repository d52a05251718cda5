/* panic: reports a guest panic through pvpanic. Prints "panicking\n", writes 1 (PANICKED)
 * to the pvpanic port 0x505, then halts forever with interrupts masked, like a panicked
 * kernel. Never exits: whoever runs it must stop the VM. */
#include "kit/kit.h"

#define PVPANIC_PANICKED 0x01u

void guest_main(const struct petrel_boot_info* boot_info) {
  (void)boot_info;
  kit_printf("panicking\n");
  outb(PETREL_PORT_PVPANIC, PVPANIC_PANICKED);
  kit_irq_disable();
  for (;;) {
    kit_hlt();
  }
}
