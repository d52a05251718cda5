/* dirtier: keeps dirtying guest memory in a way that can be checked, for snapshot/restore
 * and live-migration tests. Everything it knows lives in guest RAM (no device state), so a
 * restored or migrated copy simply continues where the original was stopped.
 *
 * Command line (all optional):
 *   pages=N     data pages to use (default 1024, at most 262144 = 1 GiB)
 *   rate=N      pages rewritten per pass (default 64)
 *   every=K     verify every page and report after each K passes (default 2000)
 *   selftest=corrupt  after set-up, flip one word of one page (its checksum no longer holds)
 *   selftest=stale    after set-up, make one page look like a lost write: the page stays
 *                     self-consistent at its old generation while the table expects the next
 *
 * Memory: 32 MiB above the image (kit_alloc), one control area (counters, the expected
 * generation of every page) followed by the data pages. A data page holds a header
 * {index, generation, checksum of the rest, 0} and a pattern derived from (index,
 * generation). A pass rewrites `rate` pseudo-randomly chosen pages with generation + 1 and
 * adds `rate` to the counter; every K passes (and once right after set-up, at pass 0) every
 * page is checked against its header, its checksum, its pattern and the expected generation
 * in the control area (which catches a page a migration failed to resend).
 *
 * Output:
 *   dirtier ready pages=N rate=R every=K base=0x<data pages' guest-physical address>
 *   dirtier pass=P counter=C verified=N bad=B      (after each verification)
 *   dirtier MISMATCH page=I gen=G                   (before that line, for the first 8 bad)
 * Exit status (only on failure; otherwise it runs until stopped): 0x30 after a verification
 * with bad > 0; 0x31 on a bad command line; 0x32 when the pages do not fit in RAM. */
#include "kit/kit.h"

#define PAGE_SIZE 4096ull
#define GAP_BYTES (32ull << 20)
#define DEFAULT_PAGES 1024ull
#define MAX_PAGES 262144ull
#define DEFAULT_RATE 64ull
#define DEFAULT_EVERY 2000ull
#define MAX_MISMATCH_LINES 8u
#define EXIT_MISMATCH 0x30u
#define EXIT_BAD_ARGS 0x31u
#define EXIT_NO_MEMORY 0x32u
#define CONTROL_MAGIC 0x5245495452494444ull /* "DDIRTIER" */

struct page_header {
  uint64_t index;
  uint64_t gen;
  uint64_t checksum; /* of the pattern words */
  uint64_t zero;
};
#define PATTERN_WORDS ((PAGE_SIZE - sizeof(struct page_header)) / sizeof(uint64_t))

struct page {
  struct page_header h;
  uint64_t w[PATTERN_WORDS];
};
_Static_assert(sizeof(struct page) == PAGE_SIZE, "a data page is one 4 KiB page");

/* The control area; gens[] (one per page) follows it in the same allocation. */
struct control {
  uint64_t magic;
  uint64_t pages;
  uint64_t rate;
  uint64_t every;
  uint64_t pass;
  uint64_t counter;
  uint64_t rng;
  uint64_t gens[];
};

static struct control* ctl;
static struct page* data;

static uint64_t mix64(uint64_t z) { /* splitmix64's finaliser */
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static uint64_t pattern_seed(uint64_t index, uint64_t gen) {
  return mix64(index * 0x9e3779b97f4a7c15ull ^ mix64(gen + 0x2545f4914f6cdd1dull));
}

static uint64_t pattern_word(uint64_t seed, uint64_t w) {
  return seed ^ (w * 0xd6e8feb86659fd93ull);
}

static uint64_t checksum_step(uint64_t sum, uint64_t word) {
  return (sum ^ word) * 0x100000001b3ull;
}

static void write_page(uint64_t i, uint64_t gen) {
  volatile struct page* p = &data[i];
  uint64_t seed = pattern_seed(i, gen);
  uint64_t sum = 0xcbf29ce484222325ull;
  for (uint64_t w = 0; w < PATTERN_WORDS; w++) {
    uint64_t v = pattern_word(seed, w);
    p->w[w] = v;
    sum = checksum_step(sum, v);
  }
  p->h.index = i;
  p->h.gen = gen;
  p->h.checksum = sum;
  p->h.zero = 0;
}

/* True if page i holds exactly what generation ctl->gens[i] wrote. */
static bool page_ok(uint64_t i) {
  const volatile struct page* p = &data[i];
  uint64_t gen = ctl->gens[i];
  if (p->h.index != i || p->h.gen != gen || p->h.zero != 0) {
    return false;
  }
  uint64_t seed = pattern_seed(i, gen);
  uint64_t sum = 0xcbf29ce484222325ull;
  uint64_t diff = 0;
  for (uint64_t w = 0; w < PATTERN_WORDS; w++) {
    uint64_t v = p->w[w];
    diff |= v ^ pattern_word(seed, w);
    sum = checksum_step(sum, v);
  }
  return diff == 0 && sum == p->h.checksum;
}

static void verify_and_report(void) {
  uint64_t bad = 0;
  for (uint64_t i = 0; i < ctl->pages; i++) {
    if (!page_ok(i)) {
      if (bad < MAX_MISMATCH_LINES) {
        kit_printf("dirtier MISMATCH page=%lu gen=%lu\n", i, ctl->gens[i]);
      }
      bad++;
    }
  }
  kit_printf("dirtier pass=%lu counter=%lu verified=%lu bad=%lu\n", ctl->pass, ctl->counter,
             ctl->pages - bad, bad);
  if (bad != 0) {
    exit_guest(EXIT_MISMATCH);
  }
}

static uint64_t next_random(void) { /* xorshift64* */
  uint64_t x = ctl->rng;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  ctl->rng = x;
  return x * 0x2545f4914f6cdd1dull;
}

static uint64_t arg_or(const char* key, uint64_t fallback, uint64_t min, uint64_t max) {
  uint64_t v = fallback;
  const char* raw;
  if (kit_cmdline_find(key, &raw) && !kit_cmdline_u64(key, &v)) {
    kit_printf("dirtier bad %s\n", key);
    exit_guest(EXIT_BAD_ARGS);
  }
  if (v < min || v > max) {
    kit_printf("dirtier %s=%lu out of range [%lu, %lu]\n", key, v, min, max);
    exit_guest(EXIT_BAD_ARGS);
  }
  return v;
}

static bool selftest_is(const char* mode) {
  const char* v;
  if (!kit_cmdline_find("selftest", &v)) {
    return false;
  }
  size_t n = kit_strlen(mode);
  return memcmp(v, mode, n) == 0 && (v[n] == '\0' || v[n] == ' ');
}

static void setup(void) {
  uint64_t pages = arg_or("pages", DEFAULT_PAGES, 1, MAX_PAGES);
  uint64_t rate = arg_or("rate", DEFAULT_RATE, 1, MAX_PAGES);
  uint64_t every = arg_or("every", DEFAULT_EVERY, 1, 1ull << 40);
  uint64_t control_bytes = sizeof(struct control) + pages * sizeof(uint64_t);
  control_bytes = (control_bytes + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1);
  if (kit_alloc(GAP_BYTES, PAGE_SIZE) == NULL ||
      (ctl = kit_alloc(control_bytes, PAGE_SIZE)) == NULL ||
      (data = kit_alloc(pages * PAGE_SIZE, PAGE_SIZE)) == NULL) {
    kit_printf("dirtier: %lu pages do not fit in RAM\n", pages);
    exit_guest(EXIT_NO_MEMORY);
  }
  ctl->magic = CONTROL_MAGIC;
  ctl->pages = pages;
  ctl->rate = rate;
  ctl->every = every;
  ctl->pass = 0;
  ctl->counter = 0;
  ctl->rng = 0x853c49e6748fea9bull;
  for (uint64_t i = 0; i < pages; i++) {
    ctl->gens[i] = 0;
    write_page(i, 0);
  }
  kit_printf("dirtier ready pages=%lu rate=%lu every=%lu base=0x%lx\n", pages, rate, every,
             (uint64_t)(uintptr_t)data);
  if (selftest_is("corrupt")) {
    volatile uint64_t* word = &data[pages / 2].w[PATTERN_WORDS / 2];
    *word ^= 1;
  } else if (selftest_is("stale")) {
    ctl->gens[pages / 2]++;
  }
}

void guest_main(const struct petrel_boot_info* boot_info) {
  (void)boot_info;
  kit_idt_init();
  setup();
  verify_and_report();
  for (;;) {
    for (uint64_t r = 0; r < ctl->rate; r++) {
      uint64_t i = next_random() % ctl->pages;
      write_page(i, ctl->gens[i] + 1);
      ctl->gens[i]++;
      ctl->counter++;
    }
    ctl->pass++;
    if (ctl->pass % ctl->every == 0) {
      verify_and_report();
    }
  }
}
