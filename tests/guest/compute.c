/* compute: runs an LCG for "iterations=<N>" steps (command line; default 100,000,000),
 * then prints "compute result=<hex> tsc_cycles=<n>" and exits 0. Before the loop it
 * prints "compute iterations=<N>". Meant to show native vs emulated speed on PVM. */
#include "kit/kit.h"

#define DEFAULT_ITERATIONS 100000000ull

void guest_main(const struct petrel_boot_info* boot_info) {
  (void)boot_info;
  kit_idt_init();
  uint64_t iterations = DEFAULT_ITERATIONS;
  (void)kit_cmdline_u64("iterations", &iterations);
  kit_printf("compute iterations=%lu\n", iterations);

  uint64_t x = 1;
  uint64_t t0 = kit_rdtsc();
  for (uint64_t i = 0; i < iterations; i++) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    __asm__ volatile("" : "+r"(x)); /* keep every step */
  }
  uint64_t t1 = kit_rdtsc();
  kit_printf("compute result=%lx tsc_cycles=%lu\n", x, t1 - t0);
}
