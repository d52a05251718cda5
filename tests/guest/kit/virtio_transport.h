/* Internal to the kit's virtio driver: what virtio.c needs from a transport
 * (virtio_mmio.c: virtio 1.2 section 4.2; virtio_pci.c: section 4.1). */
#ifndef PETREL_TESTS_GUEST_KIT_VIRTIO_TRANSPORT_H_
#define PETREL_TESTS_GUEST_KIT_VIRTIO_TRANSPORT_H_

#include "virtio.h"

struct virtio_transport_ops {
  uint8_t (*get_status)(struct virtio_dev* dev);
  void (*set_status)(struct virtio_dev* dev, uint8_t status);
  /* 32 feature bits of word `sel` (0: bits 0-31, 1: bits 32-63). */
  uint32_t (*device_features)(struct virtio_dev* dev, uint32_t sel);
  void (*driver_features)(struct virtio_dev* dev, uint32_t sel, uint32_t bits);
  /* The maximum size of queue `index`, 0 when it does not exist. */
  uint16_t (*queue_max)(struct virtio_dev* dev, uint16_t index);
  /* Declares q's size and ring addresses and enables it; sets q->notify_addr. */
  bool (*queue_enable)(struct virtio_dev* dev, struct virtq* q);
  void (*notify)(struct virtq* q);
  uint32_t (*config_generation)(struct virtio_dev* dev);
  /* Reads `width` (1, 2 or 4) bytes of device config at offset; all-ones when outside the
   * device config structure. */
  uint32_t (*config_read)(struct virtio_dev* dev, uint32_t offset, unsigned width);
  /* Writes 4 bytes of device config at offset; ignored when outside the structure. */
  void (*config_write32)(struct virtio_dev* dev, uint32_t offset, uint32_t value);
  /* Reads the interrupt status and acknowledges what it read. */
  uint32_t (*isr_take)(struct virtio_dev* dev);
};

/* Each looks for devices of device_type; *index counts down the matches to skip, so a
 * search continues on the next transport with what is left. */
bool virtio_mmio_find(uint32_t device_type, unsigned* index, struct virtio_dev* dev);
bool virtio_pci_find(uint32_t device_type, unsigned* index, struct virtio_dev* dev);

#endif /* PETREL_TESTS_GUEST_KIT_VIRTIO_TRANSPORT_H_ */
