/* virtio_rng: reads entropy from the first virtio entropy device (virtio 1.2 section 5.4):
 * two 64-byte reads through its one request queue, each possibly completed in several
 * smaller pieces (the device may write fewer bytes than offered, 5.4.6.1). Checks that
 * each used length fits the buffer, that neither block is all zero and that they differ.
 * Command line: transport=mmio|pci (fail unless found there).
 * Success prints "virtio_rng ok transport=<t> bytes=128" and exits 0; a failure prints
 * "virtio_rng FAIL: <reason>" and exits 1. */
#include "kit/kit.h"
#include "kit/virtio.h"

#define BLOCK 64u
#define TIMEOUT_MS 10000u
#define MAX_REQUESTS 64u /* a device returning 0 bytes forever must not hang us */
#define EXIT_FAIL 1u

static struct virtio_dev dev;
static struct virtq vq;

__attribute__((noreturn)) static void failf(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  kit_printf("virtio_rng FAIL: ");
  kit_vprintf(fmt, ap);
  kit_printf("\n");
  va_end(ap);
  exit_guest(EXIT_FAIL);
}

/* Fills out[BLOCK] from the device. */
static void read_block(uint8_t* out) {
  uint32_t have = 0;
  for (unsigned n = 0; have < BLOCK; n++) {
    if (n == MAX_REQUESTS) {
      failf("only %u bytes after %u requests", have, n);
    }
    struct virtq_buf b = {(uint64_t)(uintptr_t)(out + have), BLOCK - have};
    uint32_t len;
    if (!virtq_transfer(&vq, &b, 0, 1, &len, TIMEOUT_MS)) {
      failf("request got no completion (device status 0x%x)", virtio_get_status(&dev));
    }
    if (len > BLOCK - have) {
      failf("device wrote %u bytes into a %u-byte buffer", len, BLOCK - have);
    }
    have += len;
  }
}

static bool all_zero(const uint8_t* p) {
  for (uint32_t i = 0; i < BLOCK; i++) {
    if (p[i] != 0) {
      return false;
    }
  }
  return true;
}

static bool value_is(const char* v, const char* s) {
  size_t n = kit_strlen(s);
  return memcmp(v, s, n) == 0 && (v[n] == '\0' || v[n] == ' ');
}

void guest_main(const struct petrel_boot_info* boot_info) {
  (void)boot_info;
  if (!virtio_find(VIRTIO_ID_RNG, 0, &dev)) {
    failf("no virtio entropy device");
  }
  const char* v;
  if (kit_cmdline_find("transport", &v) && !value_is(v, virtio_transport_name(&dev))) {
    failf("device found on %s, not on the transport asked for", virtio_transport_name(&dev));
  }
  if (!virtio_init(&dev, 0) || !virtq_setup(&dev, &vq, 0, 16)) {
    failf("device initialisation");
  }
  virtio_driver_ok(&dev);
  uint8_t* a = kit_alloc(BLOCK, 64);
  uint8_t* b = kit_alloc(BLOCK, 64);
  if (a == NULL || b == NULL) {
    failf("out of memory");
  }
  memset(a, 0, BLOCK);
  memset(b, 0, BLOCK);
  read_block(a);
  read_block(b);
  if (all_zero(a) || all_zero(b)) {
    failf("a 64-byte block is all zero");
  }
  if (memcmp(a, b, BLOCK) == 0) {
    failf("two reads returned the same 64 bytes");
  }
  kit_printf("virtio_rng first bytes %02x%02x%02x%02x %02x%02x%02x%02x\n", a[0], a[1], a[2], a[3],
             b[0], b[1], b[2], b[3]);
  kit_printf("virtio_rng ok transport=%s bytes=%u\n", virtio_transport_name(&dev), 2 * BLOCK);
}
