/* kbd_ignore: a guest that ignores Ctrl-Alt-Del. Prints "ignoring ctrl-alt-del\n", then
 * spins forever reading and discarding whatever the i8042 output buffer holds (so the
 * keyboard never backs up). Never exits: whoever runs it must stop the VM. */
#include "kit/kit.h"

#define STATUS_OUTPUT_FULL 0x01u

void guest_main(const struct petrel_boot_info* boot_info) {
  (void)boot_info;
  kit_printf("ignoring ctrl-alt-del\n");
  for (;;) {
    if ((inb(PETREL_PORT_I8042_CMD) & STATUS_OUTPUT_FULL) != 0) {
      (void)inb(PETREL_PORT_I8042_DATA);
    } else {
      __asm__ volatile("pause");
    }
  }
}
