/* The kit IDT: 256 interrupt gates to the stubs of isr.S, dispatched to per-vector
 * handlers; vectors without one report themselves and exit with KIT_EXIT_EXCEPTION. */
#include "kit.h"

struct idt_gate {
  uint16_t offset_lo;
  uint16_t selector;
  uint8_t ist;
  uint8_t type_attr; /* P | DPL | type */
  uint16_t offset_mid;
  uint32_t offset_hi;
  uint32_t reserved;
};
_Static_assert(sizeof(struct idt_gate) == 16, "64-bit IDT gates are 16 bytes");

struct idt_pointer {
  uint16_t limit;
  uint64_t base;
} __attribute__((packed));

#define IDT_ENTRIES 256
#define ISR_STUB_SIZE 16    /* isr.S */
#define GATE_INTR_DPL0 0x8e /* present, DPL 0, 64-bit interrupt gate */
#define GATE_INTR_DPL3 0xee /* same, reachable by int3/into from DPL 3 */

extern const char kit_isr_stubs[]; /* isr.S */

static struct idt_gate idt[IDT_ENTRIES] __attribute__((aligned(16)));
static kit_intr_handler handlers[IDT_ENTRIES];

static const char* const exception_names[32] = {
    "#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM", "#DF", "CSO", "#TS",
    "#NP", "#SS", "#GP", "#PF", "-",   "#MF", "#AC", "#MC", "#XM", "#VE", "#CP",
    "-",   "-",   "-",   "-",   "-",   "-",   "#HV", "#VC", "#SX", "-",
};

/* Called by isr.S with interrupts masked. */
void kit_isr_dispatch(struct kit_intr_frame* frame);
void kit_isr_dispatch(struct kit_intr_frame* frame) {
  uint8_t vector = (uint8_t)frame->vector;
  if (handlers[vector] != NULL) {
    handlers[vector](frame);
    return;
  }
  if (vector < 32) {
    kit_printf("exception vector=%u (%s) error=0x%lx rip=0x%lx", vector, exception_names[vector],
               frame->error_code, frame->rip);
    if (vector == 14) {
      kit_printf(" cr2=0x%lx", kit_read_cr2());
    }
    kit_printf("\n");
  } else {
    kit_printf("unexpected interrupt vector=%u rip=0x%lx\n", vector, frame->rip);
  }
  exit_guest(KIT_EXIT_EXCEPTION);
}

void kit_lidt(uint64_t base, uint16_t limit) {
  struct idt_pointer p = {limit, base};
  __asm__ volatile("lidt %0" : : "m"(p) : "memory");
}

/* Whether GDT entry sel (RPL ignored) is a present 64-bit DPL 0 code segment. */
static bool is_kernel_code64(const struct idt_pointer* gdt, uint16_t sel) {
  uint16_t index = sel & ~7u;
  if (index == 0 || (uint32_t)index + 7 > gdt->limit) {
    return false;
  }
  uint64_t d = *(const volatile uint64_t*)(uintptr_t)(gdt->base + index);
  const uint64_t present = 1ull << 47, dpl = 3ull << 45, s = 1ull << 44, code = 1ull << 43,
                 l = 1ull << 53;
  return (d & (present | dpl | s | code | l)) == (present | s | code | l);
}

/* The selector of the 64-bit code segment for the gates. In PVM native mode the guest runs
 * at hardware CPL 3 and %cs reads as the host's user selector, which is meaningless in the
 * guest's GDT; sgdt does return the guest's GDT there, so prefer %cs when the GDT agrees,
 * else the first 64-bit DPL 0 code segment of the GDT, else %cs. */
static uint16_t code_selector(void) {
  uint16_t cs;
  __asm__ volatile("movw %%cs, %0" : "=r"(cs));
  struct idt_pointer gdt;
  __asm__ volatile("sgdt %0" : "=m"(gdt));
  if (is_kernel_code64(&gdt, cs)) {
    return cs & ~3u;
  }
  for (uint32_t sel = 8; sel + 7 <= gdt.limit; sel += 8) {
    if (is_kernel_code64(&gdt, (uint16_t)sel)) {
      return (uint16_t)sel;
    }
  }
  return cs;
}

void kit_idt_init(void) {
  uint16_t cs = code_selector();
  for (int v = 0; v < IDT_ENTRIES; v++) {
    uint64_t stub = (uint64_t)(uintptr_t)kit_isr_stubs + (uint64_t)v * ISR_STUB_SIZE;
    idt[v] = (struct idt_gate){
        .offset_lo = (uint16_t)stub,
        .selector = cs,
        .ist = 0,
        .type_attr = (v == 3 || v == 4) ? GATE_INTR_DPL3 : GATE_INTR_DPL0,
        .offset_mid = (uint16_t)(stub >> 16),
        .offset_hi = (uint32_t)(stub >> 32),
        .reserved = 0,
    };
  }
  kit_lidt((uint64_t)(uintptr_t)idt, sizeof(idt) - 1);
}

void kit_idt_set_handler(uint8_t vector, kit_intr_handler handler) {
  handlers[vector] = handler;
}
