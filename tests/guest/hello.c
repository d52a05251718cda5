/* hello: prints "Hello from petrel guest" and exits with status 0. */
#include "kit/kit.h"

void guest_main(const struct petrel_boot_info* boot_info) {
  (void)boot_info;
  kit_printf("Hello from petrel guest\n");
}
