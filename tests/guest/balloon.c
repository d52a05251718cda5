/* balloon: a polling driver for the traditional memory balloon (virtio 1.2 section 5.5).
 * It keeps a pool of guest pages, writes a pattern into all of them at start (so the host
 * has them resident), then follows the device's target forever: it inflates (gives pool
 * pages to the device) while actual < num_pages and deflates (takes them back) while
 * actual > num_pages, and answers the device's statistics requests.
 *
 * Command line (all optional):
 *   transport=mmio|pci  fail unless the device is found on that transport (default: either)
 *   pool=PAGES          pages the balloon may take (default: the allocator's RAM range less
 *                       16 MiB for everything else)
 *   touch=1             after a deflation, count the returned pages that do not read as zero
 *                       (petrel discards inflated pages; the spec only lets the device change
 *                       them, 5.5.6.2), then write a pattern into each and verify it
 *   evil=1              before following the target, send hostile requests: PFNs outside
 *                       RAM, a 2 MiB PFN array, an odd-length and an empty inflate buffer, a
 *                       deflate of PFNs outside RAM, a buffer running past the end of RAM, and
 *                       a stats buffer with unknown tags and a trailing partial entry; then
 *                       check the pool still holds its pattern
 *   oom=PAGES           the first time the balloon settles at a non-zero target, act as a
 *                       guest out of memory: with DEFLATE_ON_OOM negotiated take PAGES back
 *                       from the balloon unasked (5.5.6.1) and hold actual below the target
 *                       until the target changes; without it, refuse (the driver MUST NOT)
 *
 * Memory: the pool is one run of pages from kit_alloc; the balloon holds pool pages
 * [0, actual), so inflating hands out the next pages and deflating takes back the last ones.
 *
 * Output:
 *   balloon ready transport=<t> pool=<pages> features=0x<negotiated> ram_end_pfn=0x<pfn>
 *   balloon actual=<N> target=<T> config_irqs=<K>  (each time actual settles; K: config
 *                                               changes seen in the interrupt status)
 *   balloon pool exhausted actual=<N> target=<T>  (target beyond the pool; once per target)
 *   balloon returned pages=<N> nonzero=<Z> verified=<V>   (after a deflation, touch=1)
 *   balloon stats refills=<N>                    (first refill, then every 16th)
 *   balloon evil case=<name> bad=<N> used        (evil=1: the device used the buffer; N: its
 *                                               PFNs outside RAM, a partial one included)
 *   balloon evil case=<name> bad=<N> device needs reset; set up again  (or it refused it)
 *   balloon evil done bad_pfns=<N> intact=1     (evil=1; N: bad PFNs in the used buffers)
 *   balloon oom deflated=<N> actual=<A> target=<T>      (oom=, DEFLATE_ON_OOM negotiated)
 *   balloon oom not negotiated actual=<A> target=<T>    (oom=, without it: nothing taken)
 * Exit status (protocol errors; otherwise it runs until stopped), see EXIT_* below. */
#include "kit/kit.h"
#include "kit/virtio.h"

#define PAGE_SIZE 4096ull
#define PFN_SHIFT 12u /* 5.5.6: PFNs are in 4 KiB units whatever the guest's page size */

/* 5.5.3 Feature bits. */
#define BALLOON_F_MUST_TELL_HOST 0u
#define BALLOON_F_STATS_VQ 1u
#define BALLOON_F_DEFLATE_ON_OOM 2u

/* 5.5.4 Device configuration layout (le32 each). */
#define CFG_NUM_PAGES 0u
#define CFG_ACTUAL 4u

/* 5.5.2 Virtqueues. */
#define Q_INFLATE 0u
#define Q_DEFLATE 1u
#define Q_STATS 2u

/* 5.5.6.4 Memory Statistics Tags. */
#define TAG_MAJFLT 2u
#define TAG_MINFLT 3u
#define TAG_MEMFREE 4u
#define TAG_MEMTOT 5u
#define TAG_AVAIL 6u
#define TAG_UNKNOWN 0x77u /* no such tag: the device must ignore it */

#define BATCH_PFNS 256u
#define QUEUE_SIZE 16u
#define TIMEOUT_MS 10000u
#define IDLE_POLL_MS 2u
#define RESERVE_BYTES (16ull << 20)
#define HUGE_PFNS 524288u /* 2 MiB of PFNs: more than a device may look at */
#define STATS_KNOWN 5u
#define STATS_EVIL_UNKNOWN 4u
#define STATS_EVIL_TAIL 5u /* bytes of a partial entry after the last whole one */

/* Exit statuses. */
#define EXIT_NO_DEVICE 0x40u   /* no balloon device (on the transport asked for) */
#define EXIT_INIT 0x41u        /* feature negotiation or queue set-up failed */
#define EXIT_INFLATE 0x42u     /* an inflate buffer was not used within TIMEOUT_MS */
#define EXIT_DEFLATE 0x43u     /* a deflate buffer was not used within TIMEOUT_MS */
#define EXIT_BAD_USED 0x44u    /* the device used a buffer we did not give it */
#define EXIT_TOUCH 0x45u       /* a returned page did not keep what was written */
#define EXIT_BAD_ARGS 0x46u    /* bad command line */
#define EXIT_NO_MEMORY 0x47u   /* the pool does not fit in RAM */
#define EXIT_CLOBBERED 0x48u   /* evil=1: the device changed pool pages it must not touch */
#define EXIT_NEEDS_RESET 0x49u /* DEVICE_NEEDS_RESET in normal operation */
#define EXIT_EVIL_STUCK 0x4au  /* evil=1: a hostile buffer neither used nor refused */
#define EXIT_MUST_TELL 0x4bu   /* the device insisted on MUST_TELL_HOST */

/* 5.5.6.3: one statistic, 10 bytes, packed. */
struct balloon_stat {
  uint16_t tag;
  uint64_t val;
} __attribute__((packed));
_Static_assert(sizeof(struct balloon_stat) == 10, "5.5.6.3: a statistic is 10 bytes");

static struct virtio_dev dev;
static struct virtq inflate_q, deflate_q, stats_q;
static bool have_stats;
static bool evil;
static bool touch;
static uint64_t oom_pages;
static uint64_t pool_pages;
static uint8_t* pool;
static uint32_t* pfns; /* BATCH_PFNS entries */
static uint8_t* stats_buf;
static uint32_t stats_len;
static uint64_t stats_refills;
static uint64_t config_irqs;
static uint32_t actual;
static uint64_t ram_end_pfn; /* first PFN above every RAM range */

__attribute__((noreturn)) static void die(uint8_t status, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  kit_printf("balloon FAIL 0x%x: ", status);
  kit_vprintf(fmt, ap);
  kit_printf("\n");
  va_end(ap);
  exit_guest(status);
}

static bool value_is(const char* v, const char* s) {
  size_t n = kit_strlen(s);
  return memcmp(v, s, n) == 0 && (v[n] == '\0' || v[n] == ' ');
}

static uint64_t arg_or(const char* key, uint64_t fallback) {
  uint64_t v = fallback;
  const char* raw;
  if (kit_cmdline_find(key, &raw) && !kit_cmdline_u64(key, &v)) {
    die(EXIT_BAD_ARGS, "bad %s", key);
  }
  return v;
}

static uint64_t pool_pfn(uint64_t i) {
  return ((uint64_t)(uintptr_t)pool >> PFN_SHIFT) + i;
}

/* The pattern of pool page i: a word per 8 bytes, derived from the index. */
static uint64_t pattern(uint64_t i, uint64_t w) {
  return (i * 0x9e3779b97f4a7c15ull) ^ (w * 0xd6e8feb86659fd93ull) ^ 0x42414c4c4f4f4eull;
}

static void write_page(uint64_t i) {
  volatile uint64_t* p = (volatile uint64_t*)(pool + i * PAGE_SIZE);
  for (uint64_t w = 0; w < PAGE_SIZE / 8; w++) {
    p[w] = pattern(i, w);
  }
}

static bool page_ok(uint64_t i) {
  const volatile uint64_t* p = (const volatile uint64_t*)(pool + i * PAGE_SIZE);
  uint64_t diff = 0;
  for (uint64_t w = 0; w < PAGE_SIZE / 8; w++) {
    diff |= p[w] ^ pattern(i, w);
  }
  return diff == 0;
}

static bool page_zero(uint64_t i) {
  const volatile uint64_t* p = (const volatile uint64_t*)(pool + i * PAGE_SIZE);
  uint64_t any = 0;
  for (uint64_t w = 0; w < PAGE_SIZE / 8; w++) {
    any |= p[w];
  }
  return any == 0;
}

static bool pfn_in_ram(uint64_t pfn) {
  const struct petrel_boot_info* bi = kit_boot_info();
  uint32_t n = bi->nr_mem_ranges < PETREL_BOOT_INFO_MAX_RANGES ? bi->nr_mem_ranges
                                                               : PETREL_BOOT_INFO_MAX_RANGES;
  for (uint32_t r = 0; r < n; r++) {
    if (pfn >= bi->mem[r].start >> PFN_SHIFT &&
        pfn < (bi->mem[r].start + bi->mem[r].size) >> PFN_SHIFT) {
      return true;
    }
  }
  return false;
}

/* ---- Statistics (5.5.6.3) ---- */

static void put_stat(uint32_t k, uint16_t tag, uint64_t val) {
  volatile struct balloon_stat* s = (volatile struct balloon_stat*)(stats_buf + k * 10u);
  s->tag = tag;
  s->val = val;
}

/* Fills the stats buffer with current values and makes it available to the device. */
static void offer_stats(void) {
  const struct petrel_boot_info* bi = kit_boot_info();
  uint64_t free_bytes = (pool_pages - actual) * PAGE_SIZE;
  uint32_t k = 0;
  put_stat(k++, TAG_MEMTOT, bi->mem_size);
  put_stat(k++, TAG_MEMFREE, free_bytes);
  put_stat(k++, TAG_AVAIL, free_bytes + RESERVE_BYTES / 2);
  put_stat(k++, TAG_MAJFLT, 0);
  put_stat(k++, TAG_MINFLT, stats_refills);
  put_stat(k++, TAG_UNKNOWN, 0x1234);
  if (evil) {
    static const uint16_t more[STATS_EVIL_UNKNOWN] = {0x78, 0x100, 0x7fff, 0xffff};
    for (uint32_t u = 0; u < STATS_EVIL_UNKNOWN; u++) {
      put_stat(k++, more[u], ~0ull);
    }
    memset(stats_buf + k * 10u, 0xee, STATS_EVIL_TAIL);
  }
  struct virtq_buf b = {(uint64_t)(uintptr_t)stats_buf, stats_len};
  if (virtq_add(&stats_q, &b, 1, 0) < 0) {
    die(EXIT_BAD_USED, "stats queue full: the device kept a stats buffer it returned");
  }
  virtq_kick(&stats_q);
}

/* 5.5.6.3: the device requests new statistics by using the buffer; refill and re-add it. */
static void service_stats(void) {
  uint32_t head, len;
  if (!have_stats || !virtq_poll(&stats_q, &head, &len)) {
    return;
  }
  stats_refills++;
  if (stats_refills == 1 || stats_refills % 16 == 0) {
    kit_printf("balloon stats refills=%lu\n", stats_refills);
  }
  offer_stats();
}

/* ---- Inflate and deflate (5.5.6.1) ---- */

static bool needs_reset(void) {
  return (virtio_get_status(&dev) & VIRTIO_STATUS_DEVICE_NEEDS_RESET) != 0;
}

/* Sends one buffer of `bytes` at `addr` on q and waits for it; false when the device set
 * DEVICE_NEEDS_RESET instead or after TIMEOUT_MS. A used element for another head is a
 * protocol error. */
static bool send(struct virtq* q, uint64_t addr, uint32_t bytes) {
  struct virtq_buf b = {addr, bytes};
  int head = virtq_add(q, &b, 1, 0);
  if (head < 0) {
    die(EXIT_BAD_USED, "queue %u full: the device holds buffers it never used", q->index);
  }
  virtq_kick(q);
  uint64_t deadline = virtio_deadline(TIMEOUT_MS);
  uint64_t next_status = virtio_deadline(1);
  for (;;) {
    uint32_t got, len;
    if (virtq_poll(q, &got, &len)) {
      if (got != (uint32_t)head) {
        die(EXIT_BAD_USED, "queue %u used head %u, expected %d", q->index, got, head);
      }
      return true;
    }
    service_stats();
    if (virtio_expired(deadline)) {
      return false;
    }
    if (virtio_expired(next_status)) {
      if (needs_reset()) {
        return false;
      }
      next_status = virtio_deadline(1);
    }
  }
}

static void check_status(const char* when) {
  if (needs_reset()) {
    die(EXIT_NEEDS_RESET, "DEVICE_NEEDS_RESET %s", when);
  }
}

static void inflate(uint32_t n) {
  for (uint32_t k = 0; k < n; k++) {
    pfns[k] = (uint32_t)pool_pfn(actual + k);
  }
  if (!send(&inflate_q, (uint64_t)(uintptr_t)pfns, n * 4u)) {
    check_status("after an inflate");
    die(EXIT_INFLATE, "inflate of %u pages not used within %u ms", n, TIMEOUT_MS);
  }
  actual += n;
  virtio_config_write32(&dev, CFG_ACTUAL, actual);
}

static void deflate(uint32_t n) {
  uint32_t first = actual - n;
  for (uint32_t k = 0; k < n; k++) {
    pfns[k] = (uint32_t)pool_pfn(first + k);
  }
  if (!send(&deflate_q, (uint64_t)(uintptr_t)pfns, n * 4u)) {
    check_status("after a deflate");
    die(EXIT_DEFLATE, "deflate of %u pages not used within %u ms", n, TIMEOUT_MS);
  }
  actual = first;
  virtio_config_write32(&dev, CFG_ACTUAL, actual);
}

/* touch=1 after a deflation: pool pages [from, to) came back. */
static void touch_returned(uint32_t from, uint32_t to) {
  uint64_t nonzero = 0;
  for (uint64_t i = from; i < to; i++) {
    if (!page_zero(i)) {
      nonzero++;
    }
    write_page(i);
  }
  for (uint64_t i = from; i < to; i++) {
    if (!page_ok(i)) {
      die(EXIT_TOUCH, "returned pool page %lu (pfn 0x%lx) lost what was written", i, pool_pfn(i));
    }
  }
  kit_printf("balloon returned pages=%u nonzero=%lu verified=%u\n", to - from, nonzero, to - from);
}

/* ---- Set-up ---- */

static void bring_up(bool first) {
  /* 5.5.5 / 3.1.1: never MUST_TELL_HOST (we may reuse pages only after the deflate anyway,
   * but must not depend on it); DEFLATE_ON_OOM accepted when offered. */
  uint64_t wanted = 1ull << BALLOON_F_STATS_VQ | 1ull << BALLOON_F_DEFLATE_ON_OOM;
  if (!virtio_init(&dev, wanted)) {
    die(EXIT_INIT, "device initialisation");
  }
  if (virtio_has(&dev, BALLOON_F_MUST_TELL_HOST)) {
    die(EXIT_MUST_TELL, "MUST_TELL_HOST negotiated without being asked for");
  }
  have_stats = virtio_has(&dev, BALLOON_F_STATS_VQ);
  bool ok = first ? virtq_setup(&dev, &inflate_q, Q_INFLATE, QUEUE_SIZE) &&
                        virtq_setup(&dev, &deflate_q, Q_DEFLATE, QUEUE_SIZE) &&
                        (!have_stats || virtq_setup(&dev, &stats_q, Q_STATS, 2))
                  : virtq_reinit(&inflate_q) && virtq_reinit(&deflate_q) &&
                        (!have_stats || virtq_reinit(&stats_q));
  if (!ok) {
    die(EXIT_INIT, "queue set-up");
  }
  virtio_driver_ok(&dev);
  check_status("right after set-up");
  /* 5.5.6.3: the driver supplies the first statistics right away. */
  if (have_stats) {
    offer_stats();
  }
}

static void setup_pool(void) {
  const struct petrel_boot_info* bi = kit_boot_info();
  if (bi == NULL) {
    die(EXIT_NO_MEMORY, "no boot info");
  }
  uint32_t n = bi->nr_mem_ranges < PETREL_BOOT_INFO_MAX_RANGES ? bi->nr_mem_ranges
                                                               : PETREL_BOOT_INFO_MAX_RANGES;
  uint64_t range_end = 0;
  for (uint32_t r = 0; r < n; r++) {
    uint64_t start = bi->mem[r].start, end = start + bi->mem[r].size;
    if (start <= kit_image_end() && kit_image_end() < end) {
      range_end = end;
    }
    if (end >> PFN_SHIFT > ram_end_pfn) {
      ram_end_pfn = end >> PFN_SHIFT;
    }
  }
  uint8_t* next = kit_alloc(PAGE_SIZE, PAGE_SIZE);
  uint64_t next_addr = (uint64_t)(uintptr_t)next;
  uint64_t fallback = 0;
  if (next != NULL && range_end > next_addr + RESERVE_BYTES) {
    fallback = (range_end - next_addr - RESERVE_BYTES) / PAGE_SIZE;
  }
  pool_pages = arg_or("pool", fallback);
  if (pool_pages == 0 || pool_pages > 0xffffffffull ||
      (pool = kit_alloc(pool_pages * PAGE_SIZE, PAGE_SIZE)) == NULL) {
    die(EXIT_NO_MEMORY, "a pool of %lu pages does not fit", pool_pages);
  }
  for (uint64_t i = 0; i < pool_pages; i++) {
    write_page(i);
  }
}

/* ---- Hostile requests (evil=1) ---- */

/* Sends one hostile buffer holding `bad` PFNs outside RAM (a partial one counted); the
 * device may use it (ignoring what is bad) or refuse the request with DEVICE_NEEDS_RESET,
 * after which the device is set up again. Returns `bad` if it was used, else 0. */
static uint64_t evil_case(const char* name, struct virtq* q, uint64_t addr, uint32_t bytes,
                          uint64_t bad) {
  if (send(q, addr, bytes)) {
    kit_printf("balloon evil case=%s bad=%lu used\n", name, bad);
    return bad;
  }
  if (!needs_reset()) {
    die(EXIT_EVIL_STUCK, "evil case %s: neither used nor DEVICE_NEEDS_RESET", name);
  }
  kit_printf("balloon evil case=%s bad=%lu device needs reset; set up again\n", name, bad);
  bring_up(false);
  return 0;
}

static void run_evil(void) {
  uint32_t bad[8];
  uint32_t n_bad = 0;
  const uint64_t candidates[] = {ram_end_pfn, ram_end_pfn + 1, 0xd0000,
                                 0xfee00,     0xfffff,         0xffffffffull};
  for (unsigned c = 0; c < sizeof(candidates) / sizeof(candidates[0]); c++) {
    if (candidates[c] <= 0xffffffffull && !pfn_in_ram(candidates[c])) {
      bad[n_bad++] = (uint32_t)candidates[c];
    }
  }
  uint64_t counted =
      evil_case("outside-ram", &inflate_q, (uint64_t)(uintptr_t)bad, n_bad * 4u, n_bad);

  uint32_t* huge = kit_alloc(HUGE_PFNS * 4u, PAGE_SIZE);
  if (huge == NULL) {
    die(EXIT_NO_MEMORY, "no room for the huge PFN array");
  }
  for (uint32_t k = 0; k < HUGE_PFNS; k++) {
    huge[k] = 0x80000000u + k; /* 8 TiB and up: never RAM here */
  }
  counted +=
      evil_case("huge-array", &inflate_q, (uint64_t)(uintptr_t)huge, HUGE_PFNS * 4u, HUGE_PFNS);

  /* One whole PFN outside RAM and half of another. */
  bad[0] = 0xfffffffeu;
  bad[1] = 0xaaaa5555u;
  counted += evil_case("odd-length", &inflate_q, (uint64_t)(uintptr_t)bad, 6, 2);

  counted += evil_case("empty", &inflate_q, (uint64_t)(uintptr_t)bad, 0, 0);

  bad[0] = (uint32_t)ram_end_pfn;
  bad[1] = 0xffffffffu;
  counted += evil_case("deflate-outside-ram", &deflate_q, (uint64_t)(uintptr_t)bad, 8, 2);

  /* A buffer starting on the last RAM page (filled with PFNs outside RAM; nothing of ours
   * lives there: the pool leaves RESERVE_BYTES free) and running 64 KiB past the end. */
  uint64_t last_page = (ram_end_pfn - 1) << PFN_SHIFT;
  if (kit_overlaps_reserved(last_page, PAGE_SIZE)) {
    die(EXIT_NO_MEMORY, "the last RAM page is in use");
  }
  memset((void*)(uintptr_t)last_page, 0xff, PAGE_SIZE);
  counted += evil_case("past-ram-end", &inflate_q, last_page, 16 * PAGE_SIZE, 16 * PAGE_SIZE / 4);

  check_status("after the hostile requests");
  for (uint64_t i = 0; i < pool_pages; i++) {
    if (!page_ok(i)) {
      die(EXIT_CLOBBERED, "pool page %lu (pfn 0x%lx) changed by hostile requests", i, pool_pfn(i));
    }
  }
  kit_printf("balloon evil done bad_pfns=%lu intact=1\n", counted);
}

/* ---- Deflate on OOM (oom=) ---- */

/* Called once the balloon settled at target == actual > 0. Returns true when it took pages
 * back (the caller then holds actual below this target until the target changes). */
static bool run_oom(uint32_t target) {
  if (!virtio_has(&dev, BALLOON_F_DEFLATE_ON_OOM)) {
    kit_printf("balloon oom not negotiated actual=%u target=%u\n", actual, target);
    return false;
  }
  uint32_t n = oom_pages < actual ? (uint32_t)oom_pages : actual;
  uint32_t from = actual;
  while (actual > from - n) {
    uint32_t left = actual - (from - n);
    deflate(left < BATCH_PFNS ? left : BATCH_PFNS);
  }
  kit_printf("balloon oom deflated=%u actual=%u target=%u\n", n, actual, target);
  if (touch) {
    touch_returned(actual, from);
  }
  return true;
}

/* ---- Main loop ---- */

void guest_main(const struct petrel_boot_info* boot_info) {
  (void)boot_info;
  evil = arg_or("evil", 0) != 0;
  touch = arg_or("touch", 0) != 0;
  oom_pages = arg_or("oom", 0);
  if (!virtio_find(VIRTIO_ID_BALLOON, 0, &dev)) {
    die(EXIT_NO_DEVICE, "no virtio balloon device");
  }
  const char* v;
  if (kit_cmdline_find("transport", &v) && !value_is(v, virtio_transport_name(&dev))) {
    die(EXIT_NO_DEVICE, "device found on %s, not on the transport asked for",
        virtio_transport_name(&dev));
  }
  pfns = kit_alloc(BATCH_PFNS * 4u, PAGE_SIZE);
  stats_buf = kit_alloc(PAGE_SIZE, PAGE_SIZE);
  if (pfns == NULL || stats_buf == NULL) {
    die(EXIT_NO_MEMORY, "no room for buffers");
  }
  stats_len = (STATS_KNOWN + 1u) * 10u;
  if (evil) {
    stats_len += STATS_EVIL_UNKNOWN * 10u + STATS_EVIL_TAIL;
  }
  setup_pool();
  bring_up(true);
  kit_printf("balloon ready transport=%s pool=%lu features=0x%lx ram_end_pfn=0x%lx\n",
             virtio_transport_name(&dev), pool_pages, dev.features, ram_end_pfn);
  if (evil) {
    run_evil();
  }

  uint32_t shown_actual = 0, shown_target = 0, exhausted_target = 0;
  bool shown = false;
  uint32_t deflated_from = 0;
  bool oom_done = oom_pages == 0;
  bool oom_holding = false; /* actual held below oom_target after run_oom */
  uint32_t oom_target = 0;
  for (;;) {
    service_stats();
    if ((virtio_isr_take(&dev) & VIRTIO_ISR_CONFIG) != 0) {
      config_irqs++;
    }
    uint32_t target = virtio_config_read32(&dev, CFG_NUM_PAGES); /* device-written */
    if (oom_holding && target != oom_target) {
      oom_holding = false;
    }
    if (target > actual && actual < pool_pages && !oom_holding) {
      if (touch && deflated_from > actual) {
        touch_returned(actual, deflated_from); /* before some of them go back in */
      }
      deflated_from = 0;
      uint64_t room = pool_pages - actual;
      uint32_t n = target - actual;
      n = n < BATCH_PFNS ? n : BATCH_PFNS;
      inflate(n < room ? n : (uint32_t)room);
      continue;
    }
    if (target < actual) {
      if (deflated_from < actual) {
        deflated_from = actual;
      }
      uint32_t n = actual - target;
      deflate(n < BATCH_PFNS ? n : BATCH_PFNS);
      continue;
    }
    if (touch && deflated_from > actual) {
      touch_returned(actual, deflated_from);
    }
    deflated_from = 0;
    if (!oom_done && target > 0 && target == actual) {
      oom_done = true;
      oom_holding = run_oom(target);
      oom_target = target;
      continue;
    }
    if (target > actual && exhausted_target != target && !oom_holding) {
      kit_printf("balloon pool exhausted actual=%u target=%u\n", actual, target);
      exhausted_target = target;
    }
    if (!shown || shown_actual != actual || shown_target != target) {
      kit_printf("balloon actual=%u target=%u config_irqs=%lu\n", actual, target, config_irqs);
      shown = true;
      shown_actual = actual;
      shown_target = target;
    }
    uint64_t idle = virtio_deadline(IDLE_POLL_MS);
    while (!virtio_expired(idle)) {
      __asm__ volatile("pause" : : : "memory");
    }
  }
}
