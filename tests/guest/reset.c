/* reset: prints "resetting" and asks the i8042 for a system reset (0xfe to port 0x64).
 * If the write returns and the guest keeps running, exits 0x22. */
#include "kit/kit.h"

void guest_main(const struct petrel_boot_info* boot_info) {
  (void)boot_info;
  kit_printf("resetting\n");
  outb(PETREL_PORT_I8042_CMD, 0xfe);
  exit_guest(0x22);
}
