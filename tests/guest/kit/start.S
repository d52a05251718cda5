/* Entry of every test guest. petrel jumps to _start in 64-bit mode with RSI = the
 * guest-physical address of struct petrel_boot_info and interrupts masked.
 * _start: clears .bss, switches to the kit stack, saves the boot info pointer, initialises
 * the kit (COM1), calls guest_main(boot_info) and exits with status 0 if it returns.
 * (The PVM note is emitted from kit.c, where the guest_abi.h constants are usable.) */

#define KIT_STACK_SIZE 65536

  .section .text.start, "ax", @progbits
  .globl _start
  .type _start, @function
_start:
  cld
  movq %rsi, %r12              /* boot info: callee-saved, survives the calls below */

  leaq __bss_start(%rip), %rdi /* .bss is 16-byte aligned and sized (guest.ld) */
  leaq __bss_end(%rip), %rcx
  subq %rdi, %rcx
  shrq $3, %rcx
  xorl %eax, %eax
  rep stosq

  leaq kit_stack_top(%rip), %rsp
  xorl %ebp, %ebp
  movq %r12, kit_boot_info_raw(%rip)

  call kit_init
  movq %r12, %rdi
  call guest_main
  xorl %edi, %edi
  call exit_guest
1:
  hlt
  jmp 1b
  .size _start, . - _start

  .section .bss.kit_stack, "aw", @nobits
  .balign 16
kit_stack_bottom:
  .skip KIT_STACK_SIZE
kit_stack_top:

  .section .note.GNU-stack, "", @progbits
