/* unemulated: prints "executing popcnt", runs POPCNT (raw bytes: the kit is built with
 * -mno-popcnt), prints "popcnt ran" and exits 0. KVM's instruction emulator (PVM emulated
 * mode) cannot execute it: the VMM sees an emulation failure and must report it.
 * Exits 0x40 after "popcnt wrong result=<n>" if POPCNT(0xff) is not 8. */
#include "kit/kit.h"

void guest_main(const struct petrel_boot_info* boot_info) {
  (void)boot_info;
  kit_printf("executing popcnt\n");
  uint64_t v = 0xff;
  __asm__ volatile(".byte 0xf3, 0x48, 0x0f, 0xb8, 0xc0" /* popcnt %rax, %rax */
                   : "+a"(v)
                   :
                   : "cc");
  kit_printf("popcnt ran\n");
  if (v != 8) {
    kit_printf("popcnt wrong result=%lu\n", v);
    exit_guest(0x40);
  }
}
