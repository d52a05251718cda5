/* virtio_evil: a hostile driver. For each of several broken descriptor chains it sets up
 * the device, publishes the chain, kicks, and expects the device to set
 * DEVICE_NEEDS_RESET in its status (virtio 1.2 section 2.1.1: the device entered an error
 * state) without completing the chain; then it resets the device, sets it up again and
 * checks that a well-formed request works. The chains:
 *   loop       two descriptors whose NEXT fields point at each other (2.7.5.1: a chain
 *              must end; the device caps the walk);
 *   next-range a NEXT index beyond the queue size;
 *   head-range an available-ring head beyond the queue size;
 *   outside    a buffer at 0xf0000000, in the MMIO hole where there is no RAM;
 *   wrap       a buffer whose end wraps past 2^64.
 * Command line: device=rng (default) or device=blk (the first entropy or block device),
 * transport=mmio|pci (fail unless found there).
 * Success prints "virtio_evil ok transport=<t> device=<d> cases=5" and exits 0; a failure
 * prints "virtio_evil FAIL: <reason>" and exits 1. */
#include "kit/kit.h"
#include "kit/virtio.h"

#define QUEUE_SIZE 16u
#define TIMEOUT_MS 10000u
#define EXIT_FAIL 1u
#define NO_RAM_ADDR 0xf0000000ull /* inside petrel's MMIO hole, below the IOAPIC */
#define BLK_T_IN 0u
#define BLK_S_OK 0u

struct blk_req_hdr {
  uint32_t type;
  uint32_t reserved;
  uint64_t sector;
};

static struct virtio_dev dev;
static struct virtq vq;
static bool is_blk;
static uint8_t* data; /* 512 bytes */
static struct blk_req_hdr* hdr;
static volatile uint8_t* blk_status;

__attribute__((noreturn)) static void failf(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  kit_printf("virtio_evil FAIL: ");
  kit_vprintf(fmt, ap);
  kit_printf("\n");
  va_end(ap);
  exit_guest(EXIT_FAIL);
}

/* Reset, features, the queue (same memory every time, rings cleared), DRIVER_OK. */
static void bring_up(bool first) {
  if (!virtio_init(&dev, 0)) {
    failf("device initialisation");
  }
  if (first ? !virtq_setup(&dev, &vq, 0, QUEUE_SIZE) : !virtq_reinit(&vq)) {
    failf("queue set-up");
  }
  virtio_driver_ok(&dev);
  if ((virtio_get_status(&dev) & VIRTIO_STATUS_DEVICE_NEEDS_RESET) != 0) {
    failf("DEVICE_NEEDS_RESET right after set-up");
  }
}

/* A well-formed request through the kit's queue code: one sector read (blk) or 64 bytes
 * of entropy (rng). */
static void good_request(const char* after) {
  uint32_t len;
  if (is_blk) {
    *hdr = (struct blk_req_hdr){.type = BLK_T_IN, .sector = 0};
    *blk_status = 0xa5;
    struct virtq_buf b[3] = {{(uint64_t)(uintptr_t)hdr, sizeof(*hdr)},
                             {(uint64_t)(uintptr_t)data, 512},
                             {(uint64_t)(uintptr_t)blk_status, 1}};
    if (!virtq_transfer(&vq, b, 1, 2, &len, TIMEOUT_MS) || *blk_status != BLK_S_OK) {
      failf("read after %s failed (status %u)", after, *blk_status);
    }
  } else {
    struct virtq_buf b = {(uint64_t)(uintptr_t)data, 64};
    if (!virtq_transfer(&vq, &b, 0, 1, &len, TIMEOUT_MS) || len == 0 || len > 64) {
      failf("entropy request after %s failed (len %u)", after, len);
    }
  }
}

/* Writes descriptor i of the raw table. */
static void set_desc(uint16_t i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next) {
  volatile struct virtq_desc* d = &vq.desc[i];
  d->addr = addr;
  d->len = len;
  d->flags = flags;
  d->next = next;
}

/* Publishes `head` in the available ring by hand and kicks. */
static void publish(uint16_t head) {
  volatile struct virtq_avail* avail = vq.avail;
  avail->ring[avail->idx % vq.size] = head;
  __atomic_thread_fence(__ATOMIC_SEQ_CST);
  avail->idx = (uint16_t)(avail->idx + 1u);
  virtq_kick(&vq);
}

/* Lays out the broken chain of case c (0-4) at descriptor 0; returns the head to publish. */
static uint16_t craft(int c) {
  uint64_t buf = (uint64_t)(uintptr_t)data;
  /* For blk the request header comes first (device-readable); rng wants a writable one. */
  uint16_t w = is_blk ? 0 : VIRTQ_DESC_F_WRITE;
  uint64_t first = is_blk ? (uint64_t)(uintptr_t)hdr : buf;
  uint32_t first_len = is_blk ? sizeof(*hdr) : 64;
  if (is_blk) {
    *hdr = (struct blk_req_hdr){.type = BLK_T_IN, .sector = 0};
  }
  switch (c) {
    case 0: /* loop */
      set_desc(0, first, first_len, (uint16_t)(w | VIRTQ_DESC_F_NEXT), 1);
      set_desc(1, buf, 64, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 0);
      return 0;
    case 1: /* next-range */
      set_desc(0, first, first_len, (uint16_t)(w | VIRTQ_DESC_F_NEXT), (uint16_t)(vq.size + 5u));
      return 0;
    case 2: /* head-range */
      set_desc(0, first, first_len, w, 0);
      return (uint16_t)(vq.size + 3u);
    case 3: /* outside */
      set_desc(0, first, first_len, (uint16_t)(w | VIRTQ_DESC_F_NEXT), 1);
      set_desc(1, NO_RAM_ADDR, 512, VIRTQ_DESC_F_WRITE, 0);
      return 0;
    default: /* wrap */
      set_desc(0, first, first_len, (uint16_t)(w | VIRTQ_DESC_F_NEXT), 1);
      set_desc(1, 0xfffffffffffff000ull, 0x2000, VIRTQ_DESC_F_WRITE, 0);
      return 0;
  }
}

static const char* const kCaseNames[] = {"loop", "next-range", "head-range", "outside", "wrap"};
#define CASES 5

static bool value_is(const char* v, const char* s) {
  size_t n = kit_strlen(s);
  return memcmp(v, s, n) == 0 && (v[n] == '\0' || v[n] == ' ');
}

void guest_main(const struct petrel_boot_info* boot_info) {
  (void)boot_info;
  const char* v;
  is_blk = kit_cmdline_find("device", &v) && value_is(v, "blk");
  if (!virtio_find(is_blk ? VIRTIO_ID_BLOCK : VIRTIO_ID_RNG, 0, &dev)) {
    failf("no virtio %s device", is_blk ? "block" : "entropy");
  }
  if (kit_cmdline_find("transport", &v) && !value_is(v, virtio_transport_name(&dev))) {
    failf("device found on %s, not on the transport asked for", virtio_transport_name(&dev));
  }
  data = kit_alloc(512, 512);
  hdr = kit_alloc(sizeof(*hdr), 16);
  blk_status = kit_alloc(1, 1);
  if (data == NULL || hdr == NULL || blk_status == NULL) {
    failf("out of memory");
  }
  bring_up(true);
  good_request("set-up");
  for (int c = 0; c < CASES; c++) {
    uint16_t used_before = ((volatile struct virtq_used*)vq.used)->idx;
    publish(craft(c));
    uint64_t deadline = virtio_deadline(TIMEOUT_MS);
    while ((virtio_get_status(&dev) & VIRTIO_STATUS_DEVICE_NEEDS_RESET) == 0) {
      if (virtio_expired(deadline)) {
        failf("case %s: no DEVICE_NEEDS_RESET (status 0x%x)", kCaseNames[c],
              virtio_get_status(&dev));
      }
      __asm__ volatile("pause" : : : "memory");
    }
    uint16_t used_after = ((volatile struct virtq_used*)vq.used)->idx;
    if (used_after != used_before) {
      failf("case %s: the device completed the broken chain", kCaseNames[c]);
    }
    kit_printf("virtio_evil case %s: DEVICE_NEEDS_RESET (status 0x%x)\n", kCaseNames[c],
               virtio_get_status(&dev));
    bring_up(false);
    good_request(kCaseNames[c]);
  }
  kit_printf("virtio_evil ok transport=%s device=%s cases=%d\n", virtio_transport_name(&dev),
             is_blk ? "blk" : "rng", CASES);
}
