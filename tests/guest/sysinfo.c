/* sysinfo: checks and prints the boot info and CPUID, then tests RAM.
 *
 * Prints, in order:
 *   mem_size=<bytes> vcpus=<n> native=<0|1> ranges=<n>
 *   mem[<i>] start=0x<hex> size=0x<hex>              (one line per range)
 *   cmdline=<text>
 *   cpuid vendor=<12 chars> leaf1.ecx=<hex> leaf1.edx=<hex>
 *   cpuid leaf7.ebx=<hex> leaf7.ecx=<hex> leaf7.edx=<hex>
 *   cpuid ext1.ecx=<hex> ext1.edx=<hex>
 *   memcheck ok
 * memcheck writes a pattern to, and reads it back from, the first and the last 4 KiB page
 * of every memory range, above the image end and skipping reserved pages (boot info,
 * command line, VIF page).
 * Exit status: 0 on success; 0x12 on a bad boot info (magic, version, range count),
 * after "bad boot info ..."; 0x10 on a memcheck mismatch, after "memcheck mismatch ...";
 * 0x11 if the command line has expect_mem=<N> and mem_size != N, after
 * "expect_mem mismatch ...". */
#include "kit/kit.h"

#define PAGE_SIZE 4096ull
#define EXIT_MEMCHECK 0x10u
#define EXIT_EXPECT_MEM 0x11u
#define EXIT_BAD_BOOT_INFO 0x12u

static void check_boot_info(const struct petrel_boot_info* bi) {
  if (bi == NULL || bi->magic != PETREL_BOOT_INFO_MAGIC) {
    kit_printf("bad boot info magic at %p\n", (const void*)bi);
    exit_guest(EXIT_BAD_BOOT_INFO);
  }
  if (bi->version != PETREL_BOOT_INFO_VERSION) {
    kit_printf("bad boot info version=%u\n", bi->version);
    exit_guest(EXIT_BAD_BOOT_INFO);
  }
  if (bi->nr_mem_ranges == 0 || bi->nr_mem_ranges > PETREL_BOOT_INFO_MAX_RANGES) {
    kit_printf("bad boot info ranges=%u\n", bi->nr_mem_ranges);
    exit_guest(EXIT_BAD_BOOT_INFO);
  }
}

static void print_cpuid(void) {
  uint32_t a, b, c, d;
  kit_cpuid(0, 0, &a, &b, &c, &d);
  char vendor[13];
  memcpy(vendor, &b, 4);
  memcpy(vendor + 4, &d, 4);
  memcpy(vendor + 8, &c, 4);
  vendor[12] = '\0';
  kit_cpuid(1, 0, &a, &b, &c, &d);
  kit_printf("cpuid vendor=%s leaf1.ecx=%x leaf1.edx=%x\n", vendor, c, d);
  kit_cpuid(7, 0, &a, &b, &c, &d);
  kit_printf("cpuid leaf7.ebx=%x leaf7.ecx=%x leaf7.edx=%x\n", b, c, d);
  kit_cpuid(0x80000001u, 0, &a, &b, &c, &d);
  kit_printf("cpuid ext1.ecx=%x ext1.edx=%x\n", c, d);
}

/* Fills the page at addr with an address-dependent pattern and checks it; true if it held. */
static bool check_page(uint64_t addr) {
  volatile uint64_t* p = (volatile uint64_t*)(uintptr_t)addr;
  const uint64_t n = PAGE_SIZE / sizeof(uint64_t);
  for (uint64_t i = 0; i < n; i++) {
    p[i] = (addr + i * 8) ^ 0xa5a5a5a55a5a5a5aull;
  }
  for (uint64_t i = 0; i < n; i++) {
    uint64_t want = (addr + i * 8) ^ 0xa5a5a5a55a5a5a5aull;
    uint64_t got = p[i];
    if (got != want) {
      kit_printf("memcheck mismatch at 0x%lx: got 0x%lx want 0x%lx\n", addr + i * 8, got, want);
      return false;
    }
  }
  return true;
}

/* Checks the page at addr if it lies above the image end and is not reserved. */
static void maybe_check_page(uint64_t addr) {
  if (addr < kit_image_end() || kit_overlaps_reserved(addr, PAGE_SIZE)) {
    return;
  }
  if (!check_page(addr)) {
    exit_guest(EXIT_MEMCHECK);
  }
}

static void memcheck(const struct petrel_boot_info* bi) {
  for (uint32_t i = 0; i < bi->nr_mem_ranges; i++) {
    uint64_t first = (bi->mem[i].start + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1);
    uint64_t end = (bi->mem[i].start + bi->mem[i].size) & ~(PAGE_SIZE - 1);
    if (end < first + PAGE_SIZE) {
      continue; /* no whole page */
    }
    if (first < kit_image_end()) {
      first = kit_image_end(); /* page aligned */
    }
    if (first < end) {
      maybe_check_page(first);
    }
    if (end - PAGE_SIZE > first) {
      maybe_check_page(end - PAGE_SIZE);
    }
  }
  kit_printf("memcheck ok\n");
}

void guest_main(const struct petrel_boot_info* bi) {
  check_boot_info(bi);
  kit_idt_init(); /* report stray exceptions (e.g. a #PF in memcheck) */
  unsigned native = (bi->flags & PETREL_BOOT_INFO_FLAG_PVM_NATIVE) != 0;
  kit_printf("mem_size=%lu vcpus=%u native=%u ranges=%u\n", bi->mem_size, bi->vcpus, native,
             bi->nr_mem_ranges);
  for (uint32_t i = 0; i < bi->nr_mem_ranges; i++) {
    kit_printf("mem[%u] start=0x%lx size=0x%lx\n", i, bi->mem[i].start, bi->mem[i].size);
  }
  kit_printf("cmdline=%s\n", kit_cmdline());
  print_cpuid();
  memcheck(bi);

  uint64_t expect;
  if (kit_cmdline_u64("expect_mem", &expect) && expect != bi->mem_size) {
    kit_printf("expect_mem mismatch: expected %lu, mem_size=%lu\n", expect, bi->mem_size);
    exit_guest(EXIT_EXPECT_MEM);
  }
}
