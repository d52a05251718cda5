/* virtio-MMIO transport, version 2 (virtio 1.2 section 4.2): petrel places device n at
 * VIRTIO_MMIO_BASE + n * 4 KiB; an empty slot reads all-ones (no magic). */
#include "kit.h"
#include "virtio_transport.h"

static uint32_t reg_read(struct virtio_dev* dev, uint32_t reg) {
  return mmio_read32(dev->mmio_base + reg);
}

static void reg_write(struct virtio_dev* dev, uint32_t reg, uint32_t v) {
  mmio_write32(dev->mmio_base + reg, v);
}

static uint8_t get_status(struct virtio_dev* dev) {
  return (uint8_t)reg_read(dev, VIRTIO_MMIO_STATUS);
}

static void set_status(struct virtio_dev* dev, uint8_t status) {
  reg_write(dev, VIRTIO_MMIO_STATUS, status);
}

static uint32_t device_features(struct virtio_dev* dev, uint32_t sel) {
  reg_write(dev, VIRTIO_MMIO_DEVICE_FEATURES_SEL, sel);
  return reg_read(dev, VIRTIO_MMIO_DEVICE_FEATURES);
}

static void driver_features(struct virtio_dev* dev, uint32_t sel, uint32_t bits) {
  reg_write(dev, VIRTIO_MMIO_DRIVER_FEATURES_SEL, sel);
  reg_write(dev, VIRTIO_MMIO_DRIVER_FEATURES, bits);
}

static uint16_t queue_max(struct virtio_dev* dev, uint16_t index) {
  reg_write(dev, VIRTIO_MMIO_QUEUE_SEL, index);
  /* 4.2.3.2: the queue must not be in use yet. */
  if (reg_read(dev, VIRTIO_MMIO_QUEUE_READY) != 0) {
    return 0;
  }
  uint32_t max = reg_read(dev, VIRTIO_MMIO_QUEUE_NUM_MAX);
  return max > 0xffffu ? 0 : (uint16_t)max;
}

static void write64(struct virtio_dev* dev, uint32_t low_reg, uint32_t high_reg, uint64_t v) {
  reg_write(dev, low_reg, (uint32_t)v);
  reg_write(dev, high_reg, (uint32_t)(v >> 32));
}

static bool queue_enable(struct virtio_dev* dev, struct virtq* q) {
  reg_write(dev, VIRTIO_MMIO_QUEUE_SEL, q->index);
  reg_write(dev, VIRTIO_MMIO_QUEUE_NUM, q->size);
  write64(dev, VIRTIO_MMIO_QUEUE_DESC_LOW, VIRTIO_MMIO_QUEUE_DESC_HIGH,
          (uint64_t)(uintptr_t)q->desc);
  write64(dev, VIRTIO_MMIO_QUEUE_DRIVER_LOW, VIRTIO_MMIO_QUEUE_DRIVER_HIGH,
          (uint64_t)(uintptr_t)q->avail);
  write64(dev, VIRTIO_MMIO_QUEUE_DEVICE_LOW, VIRTIO_MMIO_QUEUE_DEVICE_HIGH,
          (uint64_t)(uintptr_t)q->used);
  reg_write(dev, VIRTIO_MMIO_QUEUE_READY, 1);
  if (reg_read(dev, VIRTIO_MMIO_QUEUE_READY) != 1) {
    kit_printf("virtio-mmio: queue %u did not become ready\n", q->index);
    return false;
  }
  q->notify_addr = dev->mmio_base + VIRTIO_MMIO_QUEUE_NOTIFY;
  return true;
}

static void notify(struct virtq* q) {
  mmio_write32(q->notify_addr, q->index);
}

static uint32_t config_generation(struct virtio_dev* dev) {
  return reg_read(dev, VIRTIO_MMIO_CONFIG_GENERATION);
}

static uint32_t config_read(struct virtio_dev* dev, uint32_t offset, unsigned width) {
  if (offset >= VIRTIO_MMIO_SLOT_SIZE - VIRTIO_MMIO_CONFIG ||
      width > VIRTIO_MMIO_SLOT_SIZE - VIRTIO_MMIO_CONFIG - offset) {
    return 0xffffffffu;
  }
  uint64_t addr = dev->mmio_base + VIRTIO_MMIO_CONFIG + offset;
  switch (width) {
    case 1:
      return mmio_read8(addr);
    case 2:
      return mmio_read16(addr);
    default:
      return mmio_read32(addr);
  }
}

static void config_write32(struct virtio_dev* dev, uint32_t offset, uint32_t value) {
  if (offset >= VIRTIO_MMIO_SLOT_SIZE - VIRTIO_MMIO_CONFIG ||
      4u > VIRTIO_MMIO_SLOT_SIZE - VIRTIO_MMIO_CONFIG - offset) {
    return;
  }
  mmio_write32(dev->mmio_base + VIRTIO_MMIO_CONFIG + offset, value);
}

static uint32_t isr_take(struct virtio_dev* dev) {
  uint32_t isr = reg_read(dev, VIRTIO_MMIO_INTERRUPT_STATUS);
  if (isr != 0) {
    reg_write(dev, VIRTIO_MMIO_INTERRUPT_ACK, isr);
  }
  return isr;
}

static const struct virtio_transport_ops mmio_ops = {
    .get_status = get_status,
    .set_status = set_status,
    .device_features = device_features,
    .driver_features = driver_features,
    .queue_max = queue_max,
    .queue_enable = queue_enable,
    .notify = notify,
    .config_generation = config_generation,
    .config_read = config_read,
    .config_write32 = config_write32,
    .isr_take = isr_take,
};

bool virtio_mmio_find(uint32_t device_type, unsigned* index, struct virtio_dev* dev) {
  for (uint32_t slot = 0; slot < VIRTIO_MMIO_SLOTS; slot++) {
    uint64_t base = VIRTIO_MMIO_BASE + slot * VIRTIO_MMIO_SLOT_SIZE;
    if (mmio_read32(base + VIRTIO_MMIO_MAGIC_VALUE) != VIRTIO_MMIO_MAGIC) {
      continue;
    }
    uint32_t version = mmio_read32(base + VIRTIO_MMIO_VERSION);
    uint32_t id = mmio_read32(base + VIRTIO_MMIO_DEVICE_ID);
    if (version != VIRTIO_MMIO_VERSION_MODERN) {
      kit_printf("virtio-mmio: slot %u has version %u, skipped\n", slot, version);
      continue;
    }
    if (id != device_type) {
      continue;
    }
    if (*index > 0) {
      (*index)--;
      continue;
    }
    *dev = (struct virtio_dev){
        .transport = VIRTIO_TRANSPORT_MMIO,
        .ops = &mmio_ops,
        .device_type = device_type,
        .mmio_base = base,
    };
    kit_printf("virtio: device type %u on mmio slot %u at 0x%lx\n", device_type, slot, base);
    return true;
  }
  return false;
}
