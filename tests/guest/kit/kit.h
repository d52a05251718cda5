/* The test guest kit: start-up, port and MMIO access, COM1 serial output, a printf
 * subset, exit, a bump allocator, interrupt masking, CPUID/TSC and a minimal IDT.
 *
 * start.S enters guest_main() with the stack set, .bss zeroed, COM1 initialised and
 * kit_boot_info() available; returning from guest_main() exits the guest with status 0.
 * Every helper works in both PVM modes (emulated ring 0 and native, see guest_abi.h):
 * none needs CPL0 except through instructions the host traps and emulates. */
#ifndef PETREL_TESTS_GUEST_KIT_KIT_H_
#define PETREL_TESTS_GUEST_KIT_KIT_H_

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmm/guest_abi.h"

/* Provided by each program. boot_info is RSI at entry, unchecked. */
void guest_main(const struct petrel_boot_info* boot_info);

/* Exit statuses shared by all programs. */
#define KIT_EXIT_OK 0x00u
#define KIT_EXIT_EXCEPTION 0xeeu /* an exception or interrupt nobody handles */

/* ---- Port I/O ---- */
static inline void outb(uint16_t port, uint8_t v) {
  __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port) : "memory");
}
static inline void outw(uint16_t port, uint16_t v) {
  __asm__ volatile("outw %0, %1" : : "a"(v), "Nd"(port) : "memory");
}
static inline void outl(uint16_t port, uint32_t v) {
  __asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port) : "memory");
}
static inline uint8_t inb(uint16_t port) {
  uint8_t v;
  __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port) : "memory");
  return v;
}
static inline uint16_t inw(uint16_t port) {
  uint16_t v;
  __asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port) : "memory");
  return v;
}
static inline uint32_t inl(uint16_t port) {
  uint32_t v;
  __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port) : "memory");
  return v;
}

/* ---- MMIO: one plain mov of exactly the given width (easy for an emulator to decode) ---- */
static inline uint8_t mmio_read8(uint64_t addr) {
  uint8_t v;
  __asm__ volatile("movb (%1), %0" : "=q"(v) : "r"(addr) : "memory");
  return v;
}
static inline uint16_t mmio_read16(uint64_t addr) {
  uint16_t v;
  __asm__ volatile("movw (%1), %0" : "=r"(v) : "r"(addr) : "memory");
  return v;
}
static inline uint32_t mmio_read32(uint64_t addr) {
  uint32_t v;
  __asm__ volatile("movl (%1), %0" : "=r"(v) : "r"(addr) : "memory");
  return v;
}
static inline uint64_t mmio_read64(uint64_t addr) {
  uint64_t v;
  __asm__ volatile("movq (%1), %0" : "=r"(v) : "r"(addr) : "memory");
  return v;
}
static inline void mmio_write8(uint64_t addr, uint8_t v) {
  __asm__ volatile("movb %0, (%1)" : : "q"(v), "r"(addr) : "memory");
}
static inline void mmio_write16(uint64_t addr, uint16_t v) {
  __asm__ volatile("movw %0, (%1)" : : "r"(v), "r"(addr) : "memory");
}
static inline void mmio_write32(uint64_t addr, uint32_t v) {
  __asm__ volatile("movl %0, (%1)" : : "r"(v), "r"(addr) : "memory");
}
static inline void mmio_write64(uint64_t addr, uint64_t v) {
  __asm__ volatile("movq %0, (%1)" : : "r"(v), "r"(addr) : "memory");
}

/* ---- CPU ---- */
static inline uint64_t kit_rdtsc(void) {
  uint32_t lo, hi;
  __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
  return ((uint64_t)hi << 32) | lo;
}
static inline void kit_cpuid(uint32_t leaf, uint32_t subleaf, uint32_t* a, uint32_t* b, uint32_t* c,
                             uint32_t* d) {
  __asm__ volatile("cpuid" : "=a"(*a), "=b"(*b), "=c"(*c), "=d"(*d) : "a"(leaf), "c"(subleaf));
}
static inline void kit_hlt(void) {
  __asm__ volatile("hlt" : : : "memory");
}

/* Interrupt masking. In PVM native mode (boot info flag PVM_NATIVE with a VIF page) this
 * writes VIF byte 0 (0 = masked, 1 = accepted) and, when unmasking with an interrupt
 * pending (VIF byte 1), writes port 0x80 so the host delivers it; otherwise cli/sti. */
void kit_irq_disable(void);
void kit_irq_enable(void);
/* CR2 (the last page-fault address). mov from %cr2 traps and is emulated in PVM native
 * mode; the VIF page copy at offset 8 was seen to stay 0 there, so it is not used. */
uint64_t kit_read_cr2(void);

/* ---- Boot info, command line, memory ---- */
/* The boot info if its magic and version are right, else NULL. */
const struct petrel_boot_info* kit_boot_info(void);
/* The command line, "" if there is none. */
const char* kit_cmdline(void);
/* Finds "key=value" in the command line (key at the start or after a space); stores the
 * value's start (it ends at a space or the NUL) and returns true if present. */
bool kit_cmdline_find(const char* key, const char** value);
/* Like kit_cmdline_find, parsing the value as a decimal or 0x-prefixed hexadecimal number;
 * false if absent or malformed. */
bool kit_cmdline_u64(const char* key, uint64_t* out);
/* Whether [addr, addr + size) overlaps memory the guest must not clobber: the image
 * (stack included), the boot info, the command line and the VIF page. */
bool kit_overlaps_reserved(uint64_t addr, uint64_t size);
/* Guest-physical [start, end) of the loaded image, 4 KiB aligned. */
uint64_t kit_image_start(void);
uint64_t kit_image_end(void);
/* Bump allocator over the RAM range holding the image end, above the image and around
 * reserved areas; not zeroed. align: a power of two (0 means 1). NULL when out of memory.
 * Never freed. */
void* kit_alloc(size_t size, size_t align);

/* ---- Serial (COM1, polled, 8N1, no interrupts) and output ---- */
/* Called by start-up. Keeps bytes already received: the FIFOs are left as they are. */
void serial_init(void);
void serial_putc(char c); /* "\n" is sent as is, no "\r" */
void serial_write(const char* s);
/* printf subset: %s %c %d %i %u %x %X %p %%, length modifiers l ll z, flag 0, width. */
__attribute__((format(printf, 1, 2))) void kit_printf(const char* fmt, ...);
void kit_vprintf(const char* fmt, va_list ap);

/* Writes status to the exit port (petrel stops the VM and exits with it); if that
 * returns, halts forever. */
__attribute__((noreturn)) void exit_guest(uint8_t status);

/* ---- Strings (gcc may emit calls to the first three) ---- */
void* memset(void* dst, int c, size_t n);
void* memcpy(void* restrict dst, const void* restrict src, size_t n);
int memcmp(const void* a, const void* b, size_t n);
size_t kit_strlen(const char* s);

/* ---- IDT ---- */
/* What the interrupt stubs save; a handler may change it (e.g. rip) before iretq. */
struct kit_intr_frame {
  uint64_t r15, r14, r13, r12, r11, r10, r9, r8;
  uint64_t rbp, rdi, rsi, rdx, rcx, rbx, rax;
  uint64_t vector;
  uint64_t error_code; /* 0 for vectors without one */
  uint64_t rip, cs, rflags, rsp, ss;
};
typedef void (*kit_intr_handler)(struct kit_intr_frame* frame);

/* Builds the 256-entry IDT and loads it: interrupt gates with the GDT's 64-bit DPL 0 code
 * selector (normally %cs), vectors 3 and 4 callable from DPL 3. Vectors without a handler
 * print the vector, error code and RIP and exit with KIT_EXIT_EXCEPTION. */
void kit_idt_init(void);
/* Installs handler for vector (NULL restores the default); the IDT need not be loaded yet.
 * The handler runs with interrupts masked; returning resumes the frame with iretq. */
void kit_idt_set_handler(uint8_t vector, kit_intr_handler handler);
/* lidt of {limit, base}. */
void kit_lidt(uint64_t base, uint16_t limit);

#endif /* PETREL_TESTS_GUEST_KIT_KIT_H_ */
