/* Interrupt entry stubs of the kit IDT (idt.c). Stub v lives at kit_isr_stubs + 16 * v:
 * it pushes a zero error code unless the CPU pushed one, pushes v, and jumps to the common
 * path, which saves the GPRs as struct kit_intr_frame (kit.h), calls
 * kit_isr_dispatch(frame) on a 16-byte aligned stack, restores the GPRs and irets. */

#define KIT_ISR_STUB_SIZE 16

  .text
  .balign KIT_ISR_STUB_SIZE
  .globl kit_isr_stubs
kit_isr_stubs:
  vector = 0
  .rept 256
0:
  /* Vectors with a CPU error code: #DF #TS #NP #SS #GP #PF #AC #CP #VC #SX. */
  .if !(vector == 8 || (vector >= 10 && vector <= 14) || vector == 17 || vector == 21 || vector == 29 || vector == 30)
  pushq $0
  .endif
  pushq $vector
  jmp kit_isr_common
  .fill 0b + KIT_ISR_STUB_SIZE - ., 1, 0xcc
  vector = vector + 1
  .endr

kit_isr_common:
  pushq %rax
  pushq %rbx
  pushq %rcx
  pushq %rdx
  pushq %rsi
  pushq %rdi
  pushq %rbp
  pushq %r8
  pushq %r9
  pushq %r10
  pushq %r11
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  cld
  movq %rsp, %rdi
  movq %rsp, %rbx
  andq $-16, %rsp
  call kit_isr_dispatch
  movq %rbx, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %r11
  popq %r10
  popq %r9
  popq %r8
  popq %rbp
  popq %rdi
  popq %rsi
  popq %rdx
  popq %rcx
  popq %rbx
  popq %rax
  addq $16, %rsp /* vector and error code */
  iretq

  .section .note.GNU-stack, "", @progbits
