/* Transport-independent part of the kit's virtio driver: discovery order, the
 * initialisation sequence (virtio 1.2 section 3.1.1), config reads (2.5) and the split
 * virtqueue (2.7) polled through its used ring. */
#include "virtio.h"

#include "kit.h"
#include "virtio_transport.h"

#define RESET_POLL_LIMIT 1000000u
/* TSC ticks per millisecond assumed by virtio_deadline(): 4 GHz, so a time limit is at
 * least as long as asked on any slower TSC. */
#define TSC_TICKS_PER_MS 4000000ull

const char* virtio_transport_name(const struct virtio_dev* dev) {
  return dev->transport == VIRTIO_TRANSPORT_PCI ? "pci" : "mmio";
}

bool virtio_find(uint32_t device_type, unsigned index, struct virtio_dev* dev) {
  unsigned left = index;
  return virtio_mmio_find(device_type, &left, dev) || virtio_pci_find(device_type, &left, dev);
}

uint64_t virtio_deadline(uint32_t ms) {
  return kit_rdtsc() + (uint64_t)ms * TSC_TICKS_PER_MS;
}

bool virtio_expired(uint64_t deadline) {
  return kit_rdtsc() > deadline;
}

static inline void cpu_relax(void) {
  __asm__ volatile("pause" : : : "memory");
}

uint8_t virtio_get_status(struct virtio_dev* dev) {
  return dev->ops->get_status(dev);
}

void virtio_set_status(struct virtio_dev* dev, uint8_t status) {
  dev->ops->set_status(dev, status);
}

bool virtio_reset(struct virtio_dev* dev) {
  virtio_set_status(dev, 0);
  /* 4.1.4.3.2 / 4.2.3.1: the reset is complete once status reads 0. */
  for (unsigned i = 0; i < RESET_POLL_LIMIT; i++) {
    if (virtio_get_status(dev) == 0) {
      return true;
    }
    cpu_relax();
  }
  kit_printf("virtio: reset did not complete (status 0x%x)\n", virtio_get_status(dev));
  return false;
}

static bool fail(struct virtio_dev* dev, const char* why) {
  kit_printf("virtio: init failed: %s\n", why);
  virtio_set_status(dev, (uint8_t)(virtio_get_status(dev) | VIRTIO_STATUS_FAILED));
  return false;
}

bool virtio_init(struct virtio_dev* dev, uint64_t wanted) {
  if (!virtio_reset(dev)) {
    return false;
  }
  virtio_set_status(dev, VIRTIO_STATUS_ACKNOWLEDGE);
  virtio_set_status(dev, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
  uint64_t offered =
      (uint64_t)dev->ops->device_features(dev, 1) << 32 | dev->ops->device_features(dev, 0);
  if ((offered >> VIRTIO_F_VERSION_1 & 1u) == 0) {
    return fail(dev, "device does not offer VERSION_1");
  }
  uint64_t accepted = (offered & wanted) | 1ull << VIRTIO_F_VERSION_1;
  dev->ops->driver_features(dev, 0, (uint32_t)accepted);
  dev->ops->driver_features(dev, 1, (uint32_t)(accepted >> 32));
  virtio_set_status(dev,
                    VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK);
  if ((virtio_get_status(dev) & VIRTIO_STATUS_FEATURES_OK) == 0) {
    return fail(dev, "FEATURES_OK did not stick");
  }
  dev->features = accepted;
  kit_printf("virtio: features offered=0x%lx accepted=0x%lx\n", offered, accepted);
  return true;
}

void virtio_driver_ok(struct virtio_dev* dev) {
  virtio_set_status(dev, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
                             VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK);
}

uint8_t virtio_config_read8(struct virtio_dev* dev, uint32_t offset) {
  return (uint8_t)dev->ops->config_read(dev, offset, 1);
}

uint16_t virtio_config_read16(struct virtio_dev* dev, uint32_t offset) {
  return (uint16_t)dev->ops->config_read(dev, offset, 2);
}

uint32_t virtio_config_read32(struct virtio_dev* dev, uint32_t offset) {
  return dev->ops->config_read(dev, offset, 4);
}

uint64_t virtio_config_read64(struct virtio_dev* dev, uint32_t offset) {
  uint64_t v = 0;
  /* 2.5.1: retry while the generation changes under the two halves (bounded). */
  for (int tries = 0; tries < 100; tries++) {
    uint32_t before = dev->ops->config_generation(dev);
    v = (uint64_t)dev->ops->config_read(dev, offset + 4, 4) << 32 |
        dev->ops->config_read(dev, offset, 4);
    if (dev->ops->config_generation(dev) == before) {
      break;
    }
  }
  return v;
}

void virtio_config_write32(struct virtio_dev* dev, uint32_t offset, uint32_t value) {
  dev->ops->config_write32(dev, offset, value);
}

uint32_t virtio_isr_take(struct virtio_dev* dev) {
  return dev->ops->isr_take(dev);
}

/* ---- Split virtqueue ---- */

static void clear_rings(struct virtq* q) {
  memset(q->desc, 0, sizeof(struct virtq_desc) * q->size);
  memset(q->avail, 0, sizeof(struct virtq_avail) + sizeof(uint16_t) * (q->size + 1u));
  memset(q->used, 0,
         sizeof(struct virtq_used) + sizeof(struct virtq_used_elem) * q->size + sizeof(uint16_t));
  for (uint16_t i = 0; i < q->size; i++) {
    q->desc[i].next = (uint16_t)(i + 1u);
    q->chain_len[i] = 0;
  }
  q->free_head = 0;
  q->num_free = q->size;
  q->last_used = 0;
}

bool virtq_setup(struct virtio_dev* dev, struct virtq* q, uint16_t index, uint16_t max_size) {
  uint16_t device_max = dev->ops->queue_max(dev, index);
  if (device_max == 0) {
    kit_printf("virtio: queue %u is not available\n", index);
    return false;
  }
  uint16_t size = device_max < max_size ? device_max : max_size;
  while ((size & (size - 1u)) != 0) {
    size &= (uint16_t)(size - 1u); /* 2.7: a power of two */
  }
  /* 2.7 alignment: descriptors 16, available ring 2, used ring 4; a page each here. */
  *q = (struct virtq){.dev = dev, .index = index, .size = size};
  q->desc = kit_alloc(sizeof(struct virtq_desc) * size, 4096);
  q->avail = kit_alloc(sizeof(struct virtq_avail) + sizeof(uint16_t) * (size + 1u), 4096);
  q->used = kit_alloc(
      sizeof(struct virtq_used) + sizeof(struct virtq_used_elem) * size + sizeof(uint16_t), 4096);
  q->chain_len = kit_alloc(sizeof(uint16_t) * size, 8);
  if (q->desc == NULL || q->avail == NULL || q->used == NULL || q->chain_len == NULL) {
    kit_printf("virtio: out of memory for queue %u\n", index);
    return false;
  }
  return virtq_reinit(q);
}

bool virtq_reinit(struct virtq* q) {
  clear_rings(q);
  if (!q->dev->ops->queue_enable(q->dev, q)) {
    return false;
  }
  kit_printf("virtio: queue %u size %u desc=%p avail=%p used=%p\n", q->index, q->size,
             (void*)q->desc, (void*)q->avail, (void*)q->used);
  return true;
}

int virtq_add(struct virtq* q, const struct virtq_buf* bufs, unsigned n_out, unsigned n_in) {
  unsigned n = n_out + n_in;
  if (n == 0 || n > q->num_free) {
    return -1;
  }
  uint16_t head = q->free_head;
  uint16_t i = head;
  uint16_t last = head;
  for (unsigned k = 0; k < n; k++) {
    volatile struct virtq_desc* d = &q->desc[i];
    d->addr = bufs[k].addr;
    d->len = bufs[k].len;
    d->flags =
        (uint16_t)((k >= n_out ? VIRTQ_DESC_F_WRITE : 0u) | (k + 1 < n ? VIRTQ_DESC_F_NEXT : 0u));
    last = i;
    i = d->next;
  }
  q->free_head = q->desc[last].next;
  q->num_free = (uint16_t)(q->num_free - n);
  q->chain_len[head] = (uint16_t)n;
  volatile struct virtq_avail* avail = q->avail;
  avail->ring[avail->idx % q->size] = head;
  /* 2.7.13: the ring entry is visible before the index that publishes it. */
  __atomic_thread_fence(__ATOMIC_SEQ_CST);
  avail->idx = (uint16_t)(avail->idx + 1u);
  __atomic_thread_fence(__ATOMIC_SEQ_CST);
  return head;
}

void virtq_kick(struct virtq* q) {
  __atomic_thread_fence(__ATOMIC_SEQ_CST);
  q->dev->ops->notify(q);
}

bool virtq_poll(struct virtq* q, uint32_t* head, uint32_t* len) {
  volatile struct virtq_used* used = q->used;
  if (used->idx == q->last_used) {
    return false;
  }
  __atomic_thread_fence(__ATOMIC_SEQ_CST);
  volatile struct virtq_used_elem* e = &used->ring[q->last_used % q->size];
  uint32_t id = e->id;
  uint32_t n = id < q->size ? q->chain_len[id] : 0;
  if (n == 0) {
    kit_printf("virtio: queue %u: device returned bad head %u\n", q->index, id);
    return false;
  }
  *head = id;
  *len = e->len;
  q->last_used++;
  /* Give the chain back: its last descriptor points at the old free list. */
  uint16_t last = (uint16_t)id;
  for (uint32_t k = 1; k < n; k++) {
    last = q->desc[last].next;
  }
  q->desc[last].next = q->free_head;
  q->free_head = (uint16_t)id;
  q->num_free = (uint16_t)(q->num_free + n);
  q->chain_len[id] = 0;
  return true;
}

bool virtq_wait(struct virtq* q, uint32_t* head, uint32_t* len, uint32_t timeout_ms) {
  uint64_t deadline = virtio_deadline(timeout_ms);
  for (;;) {
    if (virtq_poll(q, head, len)) {
      return true;
    }
    if (virtio_expired(deadline)) {
      return false;
    }
    cpu_relax();
  }
}

bool virtq_transfer(struct virtq* q, const struct virtq_buf* bufs, unsigned n_out, unsigned n_in,
                    uint32_t* len, uint32_t timeout_ms) {
  int head = virtq_add(q, bufs, n_out, n_in);
  if (head < 0) {
    kit_printf("virtio: queue %u full\n", q->index);
    return false;
  }
  virtq_kick(q);
  uint32_t got;
  if (!virtq_wait(q, &got, len, timeout_ms)) {
    kit_printf("virtio: queue %u: no completion within %u ms\n", q->index, timeout_ms);
    return false;
  }
  if (got != (uint32_t)head) {
    kit_printf("virtio: queue %u: completed head %u, expected %d\n", q->index, got, head);
    return false;
  }
  return true;
}
