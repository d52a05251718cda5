/* int3: installs a #BP handler, executes int3, and exits 0 once the handler returned.
 * Prints "breakpoint handled" (in the handler) then "after int3". The handler checks
 * that the saved RIP is just after the int3 (a trap): otherwise it prints
 * "breakpoint at rip=0x<rip>, expected 0x<rip>" and exits 0x33. In PVM emulated mode
 * the emulator cannot run int3: the VMM must inject #BP itself (RIP past the 0xcc). */
#include "kit/kit.h"

static volatile uint64_t int3_site; /* address of the int3 instruction */
static volatile int breakpoints;

static void on_breakpoint(struct kit_intr_frame* frame) {
  if (frame->rip != int3_site + 1) {
    kit_printf("breakpoint at rip=0x%lx, expected 0x%lx\n", frame->rip, int3_site + 1);
    exit_guest(0x33);
  }
  breakpoints++;
  kit_printf("breakpoint handled\n");
}

void guest_main(const struct petrel_boot_info* boot_info) {
  (void)boot_info;
  kit_idt_set_handler(3, on_breakpoint);
  kit_idt_init();
  __asm__ volatile(
      "leaq 1f(%%rip), %%rax\n\t"
      "movq %%rax, %0\n"
      "1:\n\t"
      "int3"
      : "=m"(int3_site)
      :
      : "rax", "memory");
  if (breakpoints != 1) {
    kit_printf("breakpoint handler did not run\n");
    exit_guest(0x34);
  }
  kit_printf("after int3\n");
}
