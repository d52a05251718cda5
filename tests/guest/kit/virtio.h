/* The guest kit's virtio driver: device discovery over virtio-MMIO (virtio 1.2 section 4.2)
 * and modern virtio-PCI (section 4.1), the device initialisation sequence (3.1.1), config
 * space reads and split virtqueues (2.7) driven by polling the used ring.
 *
 * Guest physical == virtual (identity map), so buffer addresses are pointers cast to
 * uint64_t. Nothing here takes interrupts: MSI-X stays disabled on PCI and the MMIO
 * interrupt is never acknowledged, so completion is found by polling with a TSC time limit.
 * Single-threaded: one caller at a time. Every value read from the device is checked
 * before use (a broken device makes a call fail, never hang). */
#ifndef PETREL_TESTS_GUEST_KIT_VIRTIO_H_
#define PETREL_TESTS_GUEST_KIT_VIRTIO_H_

#include <stdbool.h>
#include <stdint.h>

/* ---- virtio 1.2 constants (C mirror of src/virtio/virtio_spec.h plus device parts) ---- */

/* 2.1 Device Status Field. */
#define VIRTIO_STATUS_ACKNOWLEDGE 1u
#define VIRTIO_STATUS_DRIVER 2u
#define VIRTIO_STATUS_DRIVER_OK 4u
#define VIRTIO_STATUS_FEATURES_OK 8u
#define VIRTIO_STATUS_DEVICE_NEEDS_RESET 64u
#define VIRTIO_STATUS_FAILED 128u

/* 6 Reserved Feature Bits (bit numbers). */
#define VIRTIO_F_VERSION_1 32u

/* 5 Device Types. */
#define VIRTIO_ID_NET 1u
#define VIRTIO_ID_BLOCK 2u
#define VIRTIO_ID_RNG 4u
#define VIRTIO_ID_BALLOON 5u

/* 2.7.5 descriptor flags. */
#define VIRTQ_DESC_F_NEXT 1u
#define VIRTQ_DESC_F_WRITE 2u

/* 4.2.2 virtio-MMIO register layout (version 2). */
#define VIRTIO_MMIO_MAGIC 0x74726976u /* "virt" */
#define VIRTIO_MMIO_VERSION_MODERN 2u
#define VIRTIO_MMIO_BASE 0xd0000000ull /* petrel: slot n at base + n * 4 KiB */
#define VIRTIO_MMIO_SLOT_SIZE 0x1000ull
#define VIRTIO_MMIO_SLOTS 32u
#define VIRTIO_MMIO_MAGIC_VALUE 0x000u
#define VIRTIO_MMIO_VERSION 0x004u
#define VIRTIO_MMIO_DEVICE_ID 0x008u
#define VIRTIO_MMIO_DEVICE_FEATURES 0x010u
#define VIRTIO_MMIO_DEVICE_FEATURES_SEL 0x014u
#define VIRTIO_MMIO_DRIVER_FEATURES 0x020u
#define VIRTIO_MMIO_DRIVER_FEATURES_SEL 0x024u
#define VIRTIO_MMIO_QUEUE_SEL 0x030u
#define VIRTIO_MMIO_QUEUE_NUM_MAX 0x034u
#define VIRTIO_MMIO_QUEUE_NUM 0x038u
#define VIRTIO_MMIO_QUEUE_READY 0x044u
#define VIRTIO_MMIO_QUEUE_NOTIFY 0x050u
#define VIRTIO_MMIO_INTERRUPT_STATUS 0x060u
#define VIRTIO_MMIO_INTERRUPT_ACK 0x064u
#define VIRTIO_MMIO_STATUS 0x070u
#define VIRTIO_MMIO_QUEUE_DESC_LOW 0x080u
#define VIRTIO_MMIO_QUEUE_DESC_HIGH 0x084u
#define VIRTIO_MMIO_QUEUE_DRIVER_LOW 0x090u
#define VIRTIO_MMIO_QUEUE_DRIVER_HIGH 0x094u
#define VIRTIO_MMIO_QUEUE_DEVICE_LOW 0x0a0u
#define VIRTIO_MMIO_QUEUE_DEVICE_HIGH 0x0a4u
#define VIRTIO_MMIO_CONFIG_GENERATION 0x0fcu
#define VIRTIO_MMIO_CONFIG 0x100u

/* 4.1.4.5 ISR status / 4.2.2 InterruptStatus bits. */
#define VIRTIO_ISR_QUEUE 1u
#define VIRTIO_ISR_CONFIG 2u

/* 4.1.2 PCI device discovery. */
#define VIRTIO_PCI_VENDOR 0x1af4u
#define VIRTIO_PCI_DEVICE_MODERN_BASE 0x1040u /* + device type */
/* 4.1.4 virtio structure PCI capabilities: struct virtio_pci_cap field offsets. */
#define VIRTIO_PCI_CAP_CFG_TYPE 3u
#define VIRTIO_PCI_CAP_BAR 4u
#define VIRTIO_PCI_CAP_OFFSET 8u
#define VIRTIO_PCI_CAP_LENGTH 12u
#define VIRTIO_PCI_CAP_NOTIFY_MULTIPLIER 16u /* 4.1.4.4 struct virtio_pci_notify_cap */
#define VIRTIO_PCI_CAP_COMMON_CFG 1u
#define VIRTIO_PCI_CAP_NOTIFY_CFG 2u
#define VIRTIO_PCI_CAP_ISR_CFG 3u
#define VIRTIO_PCI_CAP_DEVICE_CFG 4u
/* 4.1.4.3 struct virtio_pci_common_cfg field offsets. */
#define VIRTIO_PCI_COMMON_DFSELECT 0x00u
#define VIRTIO_PCI_COMMON_DF 0x04u
#define VIRTIO_PCI_COMMON_GFSELECT 0x08u
#define VIRTIO_PCI_COMMON_GF 0x0cu
#define VIRTIO_PCI_COMMON_MSIX 0x10u
#define VIRTIO_PCI_COMMON_NUMQ 0x12u
#define VIRTIO_PCI_COMMON_STATUS 0x14u
#define VIRTIO_PCI_COMMON_CFGGENERATION 0x15u
#define VIRTIO_PCI_COMMON_Q_SELECT 0x16u
#define VIRTIO_PCI_COMMON_Q_SIZE 0x18u
#define VIRTIO_PCI_COMMON_Q_MSIX 0x1au
#define VIRTIO_PCI_COMMON_Q_ENABLE 0x1cu
#define VIRTIO_PCI_COMMON_Q_NOFF 0x1eu
#define VIRTIO_PCI_COMMON_Q_DESCLO 0x20u
#define VIRTIO_PCI_COMMON_Q_DESCHI 0x24u
#define VIRTIO_PCI_COMMON_Q_AVAILLO 0x28u
#define VIRTIO_PCI_COMMON_Q_AVAILHI 0x2cu
#define VIRTIO_PCI_COMMON_Q_USEDLO 0x30u
#define VIRTIO_PCI_COMMON_Q_USEDHI 0x34u
#define VIRTIO_MSI_NO_VECTOR 0xffffu

/* ---- Split virtqueue layout (2.7) ---- */
struct virtq_desc {
  uint64_t addr;
  uint32_t len;
  uint16_t flags;
  uint16_t next;
};
struct virtq_avail {
  uint16_t flags;
  uint16_t idx;
  uint16_t ring[]; /* queue size entries, then used_event (unused: no EVENT_IDX) */
};
struct virtq_used_elem {
  uint32_t id;
  uint32_t len;
};
struct virtq_used {
  uint16_t flags;
  uint16_t idx;
  struct virtq_used_elem ring[];
};

/* ---- Devices ---- */
enum virtio_transport { VIRTIO_TRANSPORT_MMIO, VIRTIO_TRANSPORT_PCI };

struct virtio_transport_ops; /* virtio_transport.h */

struct virtio_dev {
  enum virtio_transport transport;
  const struct virtio_transport_ops* ops;
  uint32_t device_type;
  uint64_t features; /* negotiated by virtio_init() */
  /* MMIO: the register page. */
  uint64_t mmio_base;
  /* PCI: bus 0 slot, and the virtio structures located through the capabilities. */
  uint8_t pci_slot;
  uint64_t common_cfg, notify_base, isr_cfg, device_cfg;
  uint32_t notify_off_multiplier, notify_len, device_cfg_len;
};

/* "mmio" or "pci". */
const char* virtio_transport_name(const struct virtio_dev* dev);

/* Finds the index-th device (0-based) of the given type, looking at the virtio-MMIO slots
 * first, then at PCI bus 0; prints where it was found. false if there is none. */
bool virtio_find(uint32_t device_type, unsigned index, struct virtio_dev* dev);

/* Device status (2.1) and reset: virtio_reset() writes 0 and waits (bounded) until the
 * device reads back 0; false on timeout. */
uint8_t virtio_get_status(struct virtio_dev* dev);
void virtio_set_status(struct virtio_dev* dev, uint8_t status);
bool virtio_reset(struct virtio_dev* dev);

/* 3.1.1 steps 1-6: reset, ACKNOWLEDGE, DRIVER, read the device features, accept VERSION_1
 * plus `wanted & offered`, FEATURES_OK and check it stuck. dev->features holds the result.
 * Prints the reason and returns false on failure (after setting FAILED). Queues are set up
 * next with virtq_setup(), then virtio_driver_ok(). */
bool virtio_init(struct virtio_dev* dev, uint64_t wanted);
void virtio_driver_ok(struct virtio_dev* dev);
/* Whether feature bit was negotiated. */
static inline bool virtio_has(const struct virtio_dev* dev, unsigned bit) {
  return (dev->features >> bit & 1u) != 0;
}

/* Device configuration space (4.1.4.6 / 4.2.2), with accesses as wide as the field; the
 * 64-bit read is two 32-bit reads retried while the config generation changes (2.5.1). */
uint8_t virtio_config_read8(struct virtio_dev* dev, uint32_t offset);
uint16_t virtio_config_read16(struct virtio_dev* dev, uint32_t offset);
uint32_t virtio_config_read32(struct virtio_dev* dev, uint32_t offset);
uint64_t virtio_config_read64(struct virtio_dev* dev, uint32_t offset);
/* Writes a 32-bit field of the device configuration (e.g. the balloon's `actual`, 5.5.4);
 * ignored when outside the device config structure. */
void virtio_config_write32(struct virtio_dev* dev, uint32_t offset, uint32_t value);

/* Reads and acknowledges the interrupt status (VIRTIO_ISR_* bits): PCI reads the ISR byte,
 * which clears it (4.1.4.5); MMIO reads InterruptStatus and writes it to InterruptACK
 * (4.2.2). Lets a polling driver notice a configuration change without taking interrupts. */
uint32_t virtio_isr_take(struct virtio_dev* dev);

/* ---- Split virtqueue driven by polling ---- */
struct virtq {
  struct virtio_dev* dev;
  uint16_t index;
  uint16_t size;
  struct virtq_desc* desc;
  struct virtq_avail* avail;
  struct virtq_used* used;
  uint16_t free_head; /* free descriptors are chained through next */
  uint16_t num_free;
  uint16_t last_used;   /* next used ring index to consume */
  uint16_t* chain_len;  /* per head: descriptors in its chain, to free them */
  uint64_t notify_addr; /* PCI: where a kick is written */
};

/* One buffer of a chain: guest-physical address and length in bytes. */
struct virtq_buf {
  uint64_t addr;
  uint32_t len;
};

/* Sets up queue `index` with min(max_size, the device's maximum) entries (rounded down to a
 * power of two), allocates and zeroes its rings and enables it. Must run between
 * virtio_init() and virtio_driver_ok(). false (with a message) on failure. */
bool virtq_setup(struct virtio_dev* dev, struct virtq* q, uint16_t index, uint16_t max_size);
/* Re-declares an already allocated queue to the device after a reset (same memory, rings
 * cleared, all descriptors free). */
bool virtq_reinit(struct virtq* q);

/* Adds a chain of n_out device-readable buffers followed by n_in device-writable ones and
 * publishes it in the available ring (no kick). Returns the head index, or -1 when there
 * are not enough free descriptors. */
int virtq_add(struct virtq* q, const struct virtq_buf* bufs, unsigned n_out, unsigned n_in);
/* Notifies the device (4.2.3.3 QueueNotify / 4.1.4.4 notify address). */
void virtq_kick(struct virtq* q);
/* Takes the next used element if there is one: stores its head and written length, frees
 * its descriptors, returns true. A head outside the queue is reported and makes it fail. */
bool virtq_poll(struct virtq* q, uint32_t* head, uint32_t* len);
/* virtq_poll() until it succeeds or about timeout_ms milliseconds (TSC-based estimate)
 * passed; false on timeout. */
bool virtq_wait(struct virtq* q, uint32_t* head, uint32_t* len, uint32_t timeout_ms);
/* virtq_add + virtq_kick + virtq_wait for that head; the written length goes to *len. */
bool virtq_transfer(struct virtq* q, const struct virtq_buf* bufs, unsigned n_out, unsigned n_in,
                    uint32_t* len, uint32_t timeout_ms);

/* A busy-wait deadline in TSC ticks, about ms milliseconds from now. */
uint64_t virtio_deadline(uint32_t ms);
bool virtio_expired(uint64_t deadline);

#endif /* PETREL_TESTS_GUEST_KIT_VIRTIO_H_ */
