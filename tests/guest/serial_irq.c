/* serial_irq: interrupt-driven COM1 receive through the legacy 8259 PIC pair.
 *
 * Programs the PICs (master vectors 0x20-0x27, slave 0x28-0x2f, slave cascaded on IRQ2,
 * edge-triggered, 8086 mode, normal EOI) with every line masked but IRQ4 (COM1), installs a
 * handler for vector 0x24, enables the UART's "received data available" interrupt (IER bit
 * 0) and MCR.OUT2, prints "serial_irq ready\n", then loops: unmask interrupts (the VIF byte
 * in PVM native mode, sti otherwise), hlt, mask again, until a 'q' came. Only the handler
 * touches the UART's receive side: it reads IIR until no interrupt is pending, draining
 * RBR while LSR.DR is set, counts the bytes, and EOIs the master PIC. Received bytes are
 * not echoed.
 *
 * Once a 'q' has been received it prints "serial_irq done bytes=<n> irqs=<m>\n" (decimal;
 * n: bytes received including the 'q' and any byte drained in the same interrupt after it;
 * m: interrupts taken on vector 0x24, at least 1 since only the handler sets got_q) and
 * exits 0. It waits for input forever: whoever runs it must send a 'q'. Example: input
 * "hello q" gives "serial_irq ready\n" then "serial_irq done bytes=7 irqs=<m>\n" with
 * 1 <= m <= 7 depending on how the input was split. A spurious IRQ7 (vector 0x27, master
 * ISR bit 7 clear) is ignored; any other exception or interrupt exits KIT_EXIT_EXCEPTION
 * (the kit's default handler). */
#include "kit/kit.h"

#define COM1_RBR (PETREL_PORT_COM1 + 0u)
#define COM1_IER (PETREL_PORT_COM1 + 1u)
#define COM1_IIR (PETREL_PORT_COM1 + 2u)
#define COM1_MCR (PETREL_PORT_COM1 + 4u)
#define COM1_LSR (PETREL_PORT_COM1 + 5u)
#define COM1_MSR (PETREL_PORT_COM1 + 6u)
#define COM1_IRQ 4u

#define IER_ERBFI 0x01u    /* received data available interrupt */
#define IIR_NONE 0x01u     /* no interrupt pending */
#define IIR_ID_MASK 0x0eu  /* interrupt source */
#define IIR_ID_MODEM 0x00u /* cleared by reading MSR */
#define MCR_DTR_RTS 0x03u
#define MCR_OUT2 0x08u
#define LSR_DR 0x01u

#define PIC1_CMD 0x20u
#define PIC1_DATA 0x21u
#define PIC2_CMD 0xa0u
#define PIC2_DATA 0xa1u
#define PIC_ICW1_INIT_ICW4 0x11u /* init, edge-triggered, cascade, ICW4 follows */
#define PIC_ICW4_8086 0x01u
#define PIC_EOI 0x20u /* OCW2: non-specific EOI */
#define PIC_OCW3_READ_ISR 0x0bu
#define PIC1_VECTOR_BASE 0x20u
#define PIC2_VECTOR_BASE 0x28u
#define PIC_CASCADE_IRQ 2u

#define COM1_VECTOR (PIC1_VECTOR_BASE + COM1_IRQ)
#define SPURIOUS_VECTOR (PIC1_VECTOR_BASE + 7u)

/* Written by the handler, read by guest_main with interrupts masked. */
static volatile uint64_t rx_bytes;
static volatile uint64_t irqs;
static volatile bool got_q;

/* The hlt instructions of wait_for_interrupt(), defined in its asm. */
extern const char serial_irq_hlt_native[], serial_irq_hlt_emulated[];

/* Programs both PICs; afterwards only `unmasked_irq` (on the master) is unmasked. */
static void pic_init(uint8_t unmasked_irq) {
  outb(PIC1_CMD, PIC_ICW1_INIT_ICW4);
  outb(PIC2_CMD, PIC_ICW1_INIT_ICW4);
  outb(PIC1_DATA, PIC1_VECTOR_BASE);                /* ICW2 */
  outb(PIC2_DATA, PIC2_VECTOR_BASE);                /* ICW2 */
  outb(PIC1_DATA, 1u << PIC_CASCADE_IRQ);           /* ICW3: slave on IRQ2 */
  outb(PIC2_DATA, PIC_CASCADE_IRQ);                 /* ICW3: cascade identity */
  outb(PIC1_DATA, PIC_ICW4_8086);                   /* ICW4 */
  outb(PIC2_DATA, PIC_ICW4_8086);                   /* ICW4 */
  outb(PIC1_DATA, (uint8_t) ~(1u << unmasked_irq)); /* OCW1 */
  outb(PIC2_DATA, 0xff);                            /* OCW1 */
}

/* Vector 0x24. Runs with interrupts masked; drains the UART, then EOIs the PIC. */
static void on_com1(struct kit_intr_frame* frame) {
  irqs++;
  for (;;) {
    uint8_t iir = inb(COM1_IIR);
    if ((iir & IIR_NONE) != 0) {
      break;
    }
    if ((iir & IIR_ID_MASK) == IIR_ID_MODEM) {
      (void)inb(COM1_MSR); /* not enabled in IER; cleared in case it ever shows up */
    }
    /* Reading LSR also clears a line-status (overrun) interrupt. */
    while ((inb(COM1_LSR) & LSR_DR) != 0) {
      if (inb(COM1_RBR) == 'q') {
        got_q = true;
      }
      rx_bytes++;
    }
  }
  outb(PIC1_CMD, PIC_EOI);
  /* Taken just before the hlt of wait_for_interrupt(): skip that hlt, so the main loop
   * looks at got_q again instead of sleeping until an interrupt that may never come. */
  if (frame->rip == (uint64_t)(uintptr_t)serial_irq_hlt_native ||
      frame->rip == (uint64_t)(uintptr_t)serial_irq_hlt_emulated) {
    frame->rip++;
  }
}

/* Vector 0x27. The 8259 gives IRQ7 when the interrupt it signalled went away before the
 * acknowledge; such a spurious IRQ7 has no ISR bit set and must not be EOId. */
static void on_spurious(struct kit_intr_frame* frame) {
  (void)frame;
  outb(PIC1_CMD, PIC_OCW3_READ_ISR);
  uint8_t isr = inb(PIC1_CMD);
  if ((isr & 0x80u) != 0) {
    kit_printf("unexpected IRQ7\n");
    exit_guest(KIT_EXIT_EXCEPTION);
  }
}

/* The VIF page in PVM native mode (as the kit decides it), else NULL. */
static volatile uint8_t* vif_page(void) {
  const struct petrel_boot_info* bi = kit_boot_info();
  if (bi == NULL || (bi->flags & PETREL_BOOT_INFO_FLAG_PVM_NATIVE) == 0 || bi->vif_page == 0) {
    return NULL;
  }
  return (volatile uint8_t*)(uintptr_t)bi->vif_page;
}

/* Unmasks interrupts and halts until one has been taken (a wake-up without one is possible:
 * in native mode the first hlt was seen to return at once); returns with interrupts masked.
 * In native mode, taking the interrupt clears the VIF byte, and iretq leaves it clear.
 * The unmasking is the instruction just before the hlt (sti, or the VIF byte write whose
 * pending interrupt the trapping hlt lets in), so an interrupt is taken either in the hlt
 * or with RIP at the hlt, which the handler then skips. kit_irq_enable() is not used: the
 * port 0x80 write it may do would let the interrupt in before the hlt, where no RIP check
 * can see it. noinline: the asm defines global labels. */
__attribute__((noinline)) static void wait_for_interrupt(volatile uint8_t* vif) {
  if (vif != NULL) {
    __asm__ volatile(
        "movb $1, (%0)\n"
        ".globl serial_irq_hlt_native\n"
        "serial_irq_hlt_native:\n\t"
        "hlt"
        :
        : "r"(vif)
        : "memory");
  } else {
    __asm__ volatile(
        "sti\n"
        ".globl serial_irq_hlt_emulated\n"
        "serial_irq_hlt_emulated:\n\t"
        "hlt" ::
            : "memory");
  }
  kit_irq_disable();
}

void guest_main(const struct petrel_boot_info* boot_info) {
  (void)boot_info;
  kit_idt_set_handler(COM1_VECTOR, on_com1);
  kit_idt_set_handler(SPURIOUS_VECTOR, on_spurious);
  kit_idt_init();
  pic_init(COM1_IRQ);
  outb(COM1_IER, IER_ERBFI);
  outb(COM1_MCR, MCR_DTR_RTS | MCR_OUT2);
  kit_printf("serial_irq ready\n");
  volatile uint8_t* vif = vif_page();
  while (!got_q) {
    wait_for_interrupt(vif);
  }
  kit_printf("serial_irq done bytes=%lu irqs=%lu\n", rx_bytes, irqs);
}
