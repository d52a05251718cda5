/* virtio_blk: drives the first virtio block device (virtio 1.2 section 5.2) over whichever
 * transport it is found on and checks what petrel's device does.
 *
 * Command line (all optional):
 *   mode=rw        (default) write a pattern to sectors 0-7 (one 4 KiB request), 8-11 (one
 *                  request split over two 1 KiB descriptors) and the last sector, FLUSH,
 *                  read everything back and compare;
 *   mode=flushwait as rw up to the FLUSH, then prints "virtio_blk flushed" and halts for good
 *                  (the host kills petrel with SIGKILL and checks the file);
 *   mode=readonly  the device must offer VIRTIO_BLK_F_RO, sectors 0-7 must already hold
 *                  the pattern (the host wrote it), and a write must fail with IOERR;
 *   transport=mmio|pci   fail unless the disk was found on that transport;
 *   index=N        drive the N-th virtio block device (default 0, the first);
 *   serial=S       fail unless GET_ID returns S.
 * Both modes then check refusals: a read at the capacity and one straddling it give IOERR,
 * a read whose data length is not a multiple of 512 gives IOERR, an unknown request type
 * gives UNSUPP, and a good read still works afterwards.
 *
 * The pattern byte i of sector s is ((s * 157 + i * 59 + 23) ^ (i >> 8)) & 0xff
 * (tests/kvm/test_virtio.cc checks the file with the same formula).
 * Success prints "virtio_blk ok transport=<t> capacity=<sectors> serial=<s>" and exits 0;
 * a failure prints "virtio_blk FAIL: <reason>" and exits 1. */
#include "kit/kit.h"
#include "kit/virtio.h"

/* 5.2.3 feature bits. */
#define VIRTIO_BLK_F_SIZE_MAX 1u
#define VIRTIO_BLK_F_SEG_MAX 2u
#define VIRTIO_BLK_F_RO 5u
#define VIRTIO_BLK_F_BLK_SIZE 6u
#define VIRTIO_BLK_F_FLUSH 9u
/* 5.2.4 struct virtio_blk_config offsets. */
#define VIRTIO_BLK_CFG_CAPACITY 0u
/* 5.2.6 request types and status values. */
#define VIRTIO_BLK_T_IN 0u
#define VIRTIO_BLK_T_OUT 1u
#define VIRTIO_BLK_T_FLUSH 4u
#define VIRTIO_BLK_T_GET_ID 8u
#define VIRTIO_BLK_T_UNKNOWN 0x7fu /* no such type */
#define VIRTIO_BLK_S_OK 0u
#define VIRTIO_BLK_S_IOERR 1u
#define VIRTIO_BLK_S_UNSUPP 2u
#define VIRTIO_BLK_ID_BYTES 20u

#define SECTOR 512u
#define TIMEOUT_MS 10000u
#define EXIT_FAIL 1u

struct virtio_blk_req_hdr {
  uint32_t type;
  uint32_t reserved;
  uint64_t sector;
};

static struct virtio_dev dev;
static struct virtq vq;
static struct virtio_blk_req_hdr* hdr;
static volatile uint8_t* status;
static uint8_t* buf; /* 8 KiB of data */
static bool flush_then_halt;

__attribute__((noreturn)) static void failf(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  kit_printf("virtio_blk FAIL: ");
  kit_vprintf(fmt, ap);
  kit_printf("\n");
  va_end(ap);
  exit_guest(EXIT_FAIL);
}

static uint8_t pattern(uint64_t sector, uint32_t i) {
  return (uint8_t)((sector * 157u + i * 59u + 23u) ^ (i >> 8));
}

static void fill(uint8_t* p, uint64_t first_sector, uint32_t sectors) {
  for (uint32_t s = 0; s < sectors; s++) {
    for (uint32_t i = 0; i < SECTOR; i++) {
      p[s * SECTOR + i] = pattern(first_sector + s, i);
    }
  }
}

static void check(const uint8_t* p, uint64_t first_sector, uint32_t sectors, const char* what) {
  for (uint32_t s = 0; s < sectors; s++) {
    for (uint32_t i = 0; i < SECTOR; i++) {
      uint8_t want = pattern(first_sector + s, i);
      if (p[s * SECTOR + i] != want) {
        failf("%s: sector %lu byte %u is 0x%x, expected 0x%x", what, first_sector + s, i,
              p[s * SECTOR + i], want);
      }
    }
  }
}

/* Sends one request: header, then the data buffers (device-readable for OUT, writable
 * otherwise), then the status byte. Returns the status; *used_len gets the written length. */
static uint8_t request(uint32_t type, uint64_t sector, const struct virtq_buf* data,
                       unsigned n_data, uint32_t* used_len) {
  hdr->type = type;
  hdr->reserved = 0;
  hdr->sector = sector;
  *status = 0xa5; /* not a valid status: shows whether the device wrote it */
  struct virtq_buf bufs[4];
  unsigned n = 0;
  bufs[n++] = (struct virtq_buf){(uint64_t)(uintptr_t)hdr, sizeof(*hdr)};
  for (unsigned k = 0; k < n_data; k++) {
    bufs[n++] = data[k];
  }
  bufs[n++] = (struct virtq_buf){(uint64_t)(uintptr_t)status, 1};
  bool out = type == VIRTIO_BLK_T_OUT;
  unsigned n_out = out ? 1 + n_data : 1;
  uint32_t len = 0;
  if (!virtq_transfer(&vq, bufs, n_out, n - n_out, &len, TIMEOUT_MS)) {
    failf("request type %u sector %lu got no completion (device status 0x%x)", type, sector,
          virtio_get_status(&dev));
  }
  if (used_len != NULL) {
    *used_len = len;
  }
  return *status;
}

static struct virtq_buf data_buf(uint32_t offset, uint32_t len) {
  return (struct virtq_buf){(uint64_t)(uintptr_t)(buf + offset), len};
}

static void expect_status(uint8_t got, uint8_t want, const char* what) {
  if (got != want) {
    failf("%s: status %u, expected %u", what, got, want);
  }
}

static void do_read(uint64_t sector, uint32_t sectors, const char* what) {
  memset(buf, 0, sectors * SECTOR);
  struct virtq_buf d = data_buf(0, sectors * SECTOR);
  uint32_t len;
  expect_status(request(VIRTIO_BLK_T_IN, sector, &d, 1, &len), VIRTIO_BLK_S_OK, what);
  /* 2.7.8.2: len counts every byte written, the status byte included. */
  if (len != sectors * SECTOR + 1) {
    failf("%s: used length %u, expected %u", what, len, sectors * SECTOR + 1);
  }
  check(buf, sector, sectors, what);
}

static void read_write_checks(uint64_t capacity) {
  uint64_t last = capacity - 1;
  /* Sectors 0-7 in one descriptor. */
  fill(buf, 0, 8);
  struct virtq_buf d = data_buf(0, 8 * SECTOR);
  expect_status(request(VIRTIO_BLK_T_OUT, 0, &d, 1, NULL), VIRTIO_BLK_S_OK, "write 0-7");
  /* Sectors 8-11 split over two descriptors. */
  fill(buf, 8, 4);
  struct virtq_buf two[2] = {data_buf(0, 2 * SECTOR), data_buf(2 * SECTOR, 2 * SECTOR)};
  expect_status(request(VIRTIO_BLK_T_OUT, 8, two, 2, NULL), VIRTIO_BLK_S_OK, "write 8-11");
  fill(buf, last, 1);
  d = data_buf(0, SECTOR);
  expect_status(request(VIRTIO_BLK_T_OUT, last, &d, 1, NULL), VIRTIO_BLK_S_OK, "write last sector");
  if (virtio_has(&dev, VIRTIO_BLK_F_FLUSH)) {
    expect_status(request(VIRTIO_BLK_T_FLUSH, 0, NULL, 0, NULL), VIRTIO_BLK_S_OK, "flush");
    kit_printf("virtio_blk flushed\n");
    while (flush_then_halt) {
      kit_hlt();
    }
  } else if (flush_then_halt) {
    failf("mode=flushwait but the device does not offer VIRTIO_BLK_F_FLUSH");
  }
  do_read(0, 8, "read 0-7");
  /* Read 8-11 back through two writable descriptors. */
  memset(buf, 0, 4 * SECTOR);
  expect_status(request(VIRTIO_BLK_T_IN, 8, two, 2, NULL), VIRTIO_BLK_S_OK, "read 8-11");
  check(buf, 8, 4, "read 8-11");
  do_read(last, 1, "read last sector");
  kit_printf("virtio_blk rw ok\n");
}

static void readonly_checks(void) {
  if (!virtio_has(&dev, VIRTIO_BLK_F_RO)) {
    failf("read-only disk does not offer VIRTIO_BLK_F_RO");
  }
  do_read(0, 8, "read-only read 0-7");
  fill(buf, 1000, 1);
  struct virtq_buf d = data_buf(0, SECTOR);
  expect_status(request(VIRTIO_BLK_T_OUT, 0, &d, 1, NULL), VIRTIO_BLK_S_IOERR,
                "write to a read-only disk");
  do_read(0, 8, "read-only read after refused write");
  kit_printf("virtio_blk readonly ok\n");
}

static void refusal_checks(uint64_t capacity) {
  struct virtq_buf d = data_buf(0, SECTOR);
  expect_status(request(VIRTIO_BLK_T_IN, capacity, &d, 1, NULL), VIRTIO_BLK_S_IOERR,
                "read at the capacity");
  d = data_buf(0, 2 * SECTOR);
  expect_status(request(VIRTIO_BLK_T_IN, capacity - 1, &d, 1, NULL), VIRTIO_BLK_S_IOERR,
                "read straddling the end");
  expect_status(request(VIRTIO_BLK_T_IN, ~0ull, &d, 1, NULL), VIRTIO_BLK_S_IOERR,
                "read at sector 2^64-1");
  d = data_buf(0, 100);
  expect_status(request(VIRTIO_BLK_T_IN, 0, &d, 1, NULL), VIRTIO_BLK_S_IOERR, "read of 100 bytes");
  d = data_buf(0, SECTOR);
  expect_status(request(VIRTIO_BLK_T_UNKNOWN, 0, &d, 1, NULL), VIRTIO_BLK_S_UNSUPP,
                "unknown request type");
  do_read(0, 8, "read after refusals");
  kit_printf("virtio_blk refusals ok\n");
}

/* GET_ID (5.2.6): up to 20 bytes, NUL-terminated only when shorter. */
static void get_serial(char out[VIRTIO_BLK_ID_BYTES + 1]) {
  memset(buf, 0, VIRTIO_BLK_ID_BYTES);
  struct virtq_buf d = data_buf(0, VIRTIO_BLK_ID_BYTES);
  expect_status(request(VIRTIO_BLK_T_GET_ID, 0, &d, 1, NULL), VIRTIO_BLK_S_OK, "GET_ID");
  memcpy(out, buf, VIRTIO_BLK_ID_BYTES);
  out[VIRTIO_BLK_ID_BYTES] = '\0';
}

/* Whether the command line value at v (ends at a space or NUL) equals s. */
static bool value_is(const char* v, const char* s) {
  size_t n = kit_strlen(s);
  return memcmp(v, s, n) == 0 && (v[n] == '\0' || v[n] == ' ');
}

void guest_main(const struct petrel_boot_info* boot_info) {
  (void)boot_info;
  uint64_t index = 0;
  (void)kit_cmdline_u64("index", &index);
  if (!virtio_find(VIRTIO_ID_BLOCK, (unsigned)index, &dev)) {
    failf("no virtio block device number %lu", index);
  }
  const char* v;
  if (kit_cmdline_find("transport", &v) && !value_is(v, virtio_transport_name(&dev))) {
    failf("disk found on %s, not on the transport asked for", virtio_transport_name(&dev));
  }
  uint64_t wanted = 1ull << VIRTIO_BLK_F_FLUSH | 1ull << VIRTIO_BLK_F_RO |
                    1ull << VIRTIO_BLK_F_BLK_SIZE | 1ull << VIRTIO_BLK_F_SEG_MAX |
                    1ull << VIRTIO_BLK_F_SIZE_MAX;
  if (!virtio_init(&dev, wanted) || !virtq_setup(&dev, &vq, 0, 64)) {
    failf("device initialisation");
  }
  virtio_driver_ok(&dev);
  hdr = kit_alloc(sizeof(*hdr), 16);
  status = kit_alloc(1, 1);
  buf = kit_alloc(8192, 4096);
  if (hdr == NULL || status == NULL || buf == NULL) {
    failf("out of memory");
  }
  uint64_t capacity = virtio_config_read64(&dev, VIRTIO_BLK_CFG_CAPACITY);
  kit_printf("virtio_blk capacity=%lu\n", capacity);
  if (capacity < 16 || capacity > (1ull << 40)) {
    failf("capacity %lu sectors out of the range this test handles", capacity);
  }
  char serial[VIRTIO_BLK_ID_BYTES + 1];
  get_serial(serial);
  if (kit_cmdline_find("serial", &v) && !value_is(v, serial)) {
    failf("serial \"%s\" differs from the one configured", serial);
  }
  flush_then_halt = kit_cmdline_find("mode", &v) && value_is(v, "flushwait");
  if (kit_cmdline_find("mode", &v) && value_is(v, "readonly")) {
    readonly_checks();
  } else {
    if (virtio_has(&dev, VIRTIO_BLK_F_RO)) {
      failf("writable disk offers VIRTIO_BLK_F_RO");
    }
    read_write_checks(capacity);
  }
  refusal_checks(capacity);
  if ((virtio_get_status(&dev) & VIRTIO_STATUS_DEVICE_NEEDS_RESET) != 0) {
    failf("device reports DEVICE_NEEDS_RESET after well-formed requests");
  }
  kit_printf("virtio_blk ok transport=%s capacity=%lu serial=%s\n", virtio_transport_name(&dev),
             capacity, serial);
}
