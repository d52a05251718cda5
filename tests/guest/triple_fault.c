/* triple_fault: prints "about to triple fault", loads an IDT with limit 0 and executes ud2:
 * #UD cannot be delivered, nor can #GP or #DF, so the vCPU shuts down (triple fault).
 * Prints "still running after ud2" and exits 0x30 if execution somehow continues. */
#include "kit/kit.h"

void guest_main(const struct petrel_boot_info* boot_info) {
  (void)boot_info;
  kit_printf("about to triple fault\n");
  kit_lidt(0, 0);
  __asm__ volatile("ud2" : : : "memory");
  kit_printf("still running after ud2\n");
  exit_guest(0x30);
}
