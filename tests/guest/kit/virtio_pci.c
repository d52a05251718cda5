/* Modern virtio-PCI transport (virtio 1.2 section 4.1): vendor 0x1af4, device 0x1040 +
 * type, the virtio structures found through vendor-specific capabilities (4.1.4) in the
 * memory BARs the VMM assigned. Config space through ports 0xCF8/0xCFC (pci.c). */
#include "kit.h"
#include "pci.h"
#include "virtio_transport.h"

#define CAP_WALK_LIMIT 48u       /* at most 48 capabilities fit in 192 bytes */
#define COMMON_CFG_MIN_LEN 0x38u /* up to queue_device (4.1.4.3) */

static uint8_t get_status(struct virtio_dev* dev) {
  return mmio_read8(dev->common_cfg + VIRTIO_PCI_COMMON_STATUS);
}

static void set_status(struct virtio_dev* dev, uint8_t status) {
  mmio_write8(dev->common_cfg + VIRTIO_PCI_COMMON_STATUS, status);
}

static uint32_t device_features(struct virtio_dev* dev, uint32_t sel) {
  mmio_write32(dev->common_cfg + VIRTIO_PCI_COMMON_DFSELECT, sel);
  return mmio_read32(dev->common_cfg + VIRTIO_PCI_COMMON_DF);
}

static void driver_features(struct virtio_dev* dev, uint32_t sel, uint32_t bits) {
  mmio_write32(dev->common_cfg + VIRTIO_PCI_COMMON_GFSELECT, sel);
  mmio_write32(dev->common_cfg + VIRTIO_PCI_COMMON_GF, bits);
}

static uint16_t queue_max(struct virtio_dev* dev, uint16_t index) {
  if (index >= mmio_read16(dev->common_cfg + VIRTIO_PCI_COMMON_NUMQ)) {
    return 0;
  }
  mmio_write16(dev->common_cfg + VIRTIO_PCI_COMMON_Q_SELECT, index);
  return mmio_read16(dev->common_cfg + VIRTIO_PCI_COMMON_Q_SIZE);
}

static void write64(struct virtio_dev* dev, uint32_t low, uint32_t high, uint64_t v) {
  mmio_write32(dev->common_cfg + low, (uint32_t)v);
  mmio_write32(dev->common_cfg + high, (uint32_t)(v >> 32));
}

static bool queue_enable(struct virtio_dev* dev, struct virtq* q) {
  uint64_t c = dev->common_cfg;
  mmio_write16(c + VIRTIO_PCI_COMMON_Q_SELECT, q->index);
  mmio_write16(c + VIRTIO_PCI_COMMON_Q_SIZE, q->size);
  if (mmio_read16(c + VIRTIO_PCI_COMMON_Q_SIZE) != q->size) {
    kit_printf("virtio-pci: queue %u refused size %u\n", q->index, q->size);
    return false;
  }
  mmio_write16(c + VIRTIO_PCI_COMMON_Q_MSIX, VIRTIO_MSI_NO_VECTOR);
  write64(dev, VIRTIO_PCI_COMMON_Q_DESCLO, VIRTIO_PCI_COMMON_Q_DESCHI,
          (uint64_t)(uintptr_t)q->desc);
  write64(dev, VIRTIO_PCI_COMMON_Q_AVAILLO, VIRTIO_PCI_COMMON_Q_AVAILHI,
          (uint64_t)(uintptr_t)q->avail);
  write64(dev, VIRTIO_PCI_COMMON_Q_USEDLO, VIRTIO_PCI_COMMON_Q_USEDHI,
          (uint64_t)(uintptr_t)q->used);
  uint64_t off = (uint64_t)mmio_read16(c + VIRTIO_PCI_COMMON_Q_NOFF) * dev->notify_off_multiplier;
  /* 4.1.4.4: the notify address must lie inside the notification structure. */
  if (dev->notify_len < 2 || off > dev->notify_len - 2) {
    kit_printf("virtio-pci: queue %u notify offset 0x%lx outside the %u-byte notify area\n",
               q->index, off, dev->notify_len);
    return false;
  }
  q->notify_addr = dev->notify_base + off;
  mmio_write16(c + VIRTIO_PCI_COMMON_Q_ENABLE, 1);
  if (mmio_read16(c + VIRTIO_PCI_COMMON_Q_ENABLE) != 1) {
    kit_printf("virtio-pci: queue %u did not become enabled\n", q->index);
    return false;
  }
  return true;
}

static void notify(struct virtq* q) {
  mmio_write16(q->notify_addr, q->index);
}

static uint32_t config_generation(struct virtio_dev* dev) {
  return mmio_read8(dev->common_cfg + VIRTIO_PCI_COMMON_CFGGENERATION);
}

static uint32_t config_read(struct virtio_dev* dev, uint32_t offset, unsigned width) {
  if (offset >= dev->device_cfg_len || width > dev->device_cfg_len - offset) {
    return 0xffffffffu;
  }
  uint64_t addr = dev->device_cfg + offset;
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
  if (offset >= dev->device_cfg_len || 4u > dev->device_cfg_len - offset) {
    return;
  }
  mmio_write32(dev->device_cfg + offset, value);
}

static uint32_t isr_take(struct virtio_dev* dev) {
  return mmio_read8(dev->isr_cfg); /* the read clears it (4.1.4.5) */
}

static const struct virtio_transport_ops pci_ops = {
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

/* Walks the capability list (4.1.4) and fills in the virtio structures of dev; false with a
 * message if one it needs is missing or malformed. */
static bool locate_structures(uint8_t slot, struct virtio_dev* dev) {
  if ((pci_read16(slot, PCI_STATUS) & PCI_STATUS_CAP_LIST) == 0) {
    kit_printf("virtio-pci: slot %u has no capability list\n", slot);
    return false;
  }
  uint32_t common_len = 0, isr_len = 0;
  bool have_notify = false;
  uint8_t pos = pci_read8(slot, PCI_CAPABILITY_LIST) & 0xfcu;
  for (unsigned n = 0; pos >= 0x40 && n < CAP_WALK_LIMIT; n++) {
    uint8_t id = pci_read8(slot, pos);
    uint8_t next = pci_read8(slot, (uint8_t)(pos + 1)) & 0xfcu;
    if (id == PCI_CAP_ID_VNDR && pos <= 0x100 - 16) {
      uint8_t type = pci_read8(slot, (uint8_t)(pos + VIRTIO_PCI_CAP_CFG_TYPE));
      uint8_t bar = pci_read8(slot, (uint8_t)(pos + VIRTIO_PCI_CAP_BAR));
      uint32_t offset = pci_read32(slot, (uint8_t)(pos + VIRTIO_PCI_CAP_OFFSET));
      uint32_t length = pci_read32(slot, (uint8_t)(pos + VIRTIO_PCI_CAP_LENGTH));
      uint64_t base = pci_bar_address(slot, bar);
      uint64_t addr = base + offset;
      /* 4.1.4.1: the first capability of each type the driver can use wins. */
      if (base == 0 || length == 0) {
        /* unusable: an I/O or unassigned BAR */
      } else if (type == VIRTIO_PCI_CAP_COMMON_CFG && dev->common_cfg == 0) {
        dev->common_cfg = addr;
        common_len = length;
      } else if (type == VIRTIO_PCI_CAP_NOTIFY_CFG && !have_notify && pos <= 0x100 - 20) {
        dev->notify_base = addr;
        dev->notify_len = length;
        dev->notify_off_multiplier =
            pci_read32(slot, (uint8_t)(pos + VIRTIO_PCI_CAP_NOTIFY_MULTIPLIER));
        have_notify = true;
      } else if (type == VIRTIO_PCI_CAP_ISR_CFG && dev->isr_cfg == 0) {
        dev->isr_cfg = addr;
        isr_len = length;
      } else if (type == VIRTIO_PCI_CAP_DEVICE_CFG && dev->device_cfg == 0) {
        dev->device_cfg = addr;
        dev->device_cfg_len = length;
      }
    }
    pos = next;
  }
  if (dev->common_cfg == 0 || common_len < COMMON_CFG_MIN_LEN || !have_notify ||
      dev->isr_cfg == 0 || isr_len == 0) {
    kit_printf(
        "virtio-pci: slot %u lacks usable structures (common 0x%lx len %u, notify %d, "
        "isr 0x%lx)\n",
        slot, dev->common_cfg, common_len, have_notify, dev->isr_cfg);
    return false;
  }
  return true;
}

bool virtio_pci_find(uint32_t device_type, unsigned* index, struct virtio_dev* dev) {
  for (uint8_t slot = 0; slot < PCI_SLOTS; slot++) {
    uint32_t id = pci_read32(slot, PCI_VENDOR_ID);
    if ((id & 0xffffu) != VIRTIO_PCI_VENDOR ||
        (id >> 16) != VIRTIO_PCI_DEVICE_MODERN_BASE + device_type) {
      continue;
    }
    if (*index > 0) {
      (*index)--;
      continue;
    }
    *dev = (struct virtio_dev){
        .transport = VIRTIO_TRANSPORT_PCI,
        .ops = &pci_ops,
        .device_type = device_type,
        .pci_slot = slot,
    };
    /* Decode the BARs and allow the device to reach memory before touching them. */
    uint16_t cmd = pci_read16(slot, PCI_COMMAND);
    pci_write16(slot, PCI_COMMAND, (uint16_t)(cmd | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER));
    if (!locate_structures(slot, dev)) {
      return false;
    }
    kit_printf(
        "virtio: device type %u on pci 00:%02x.0 common=0x%lx notify=0x%lx mult=%u "
        "isr=0x%lx device=0x%lx\n",
        device_type, slot, dev->common_cfg, dev->notify_base, dev->notify_off_multiplier,
        dev->isr_cfg, dev->device_cfg);
    return true;
  }
  return false;
}
