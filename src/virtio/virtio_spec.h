// Constants of the virtio 1.2 specification (OASIS virtio-v1.2-cs01) shared by the
// transports and devices. Section numbers refer to that document.
#pragma once

#include <cstdint>

namespace petrel::virtio {

// 2.1 Device Status Field.
inline constexpr uint8_t kStatusAcknowledge = 1;
inline constexpr uint8_t kStatusDriver = 2;
inline constexpr uint8_t kStatusDriverOk = 4;
inline constexpr uint8_t kStatusFeaturesOk = 8;
inline constexpr uint8_t kStatusDeviceNeedsReset = 64;
inline constexpr uint8_t kStatusFailed = 128;

// 6 Reserved Feature Bits (bit numbers).
inline constexpr unsigned kFIndirectDesc = 28;
inline constexpr unsigned kFEventIdx = 29;
inline constexpr unsigned kFVersion1 = 32;
inline constexpr unsigned kFAccessPlatform = 33;
inline constexpr unsigned kFRingPacked = 34;

constexpr uint64_t feature_bit(unsigned bit) {
  return uint64_t{1} << bit;
}

// 5 Device Types.
inline constexpr uint32_t kDeviceNet = 1;
inline constexpr uint32_t kDeviceBlock = 2;
inline constexpr uint32_t kDeviceConsole = 3;
inline constexpr uint32_t kDeviceRng = 4;
inline constexpr uint32_t kDeviceBalloon = 5;

// 2.7.5 The Virtqueue Descriptor Table: flags.
inline constexpr uint16_t kDescFNext = 1;
inline constexpr uint16_t kDescFWrite = 2;
inline constexpr uint16_t kDescFIndirect = 4;
// 2.7.6 / 2.7.8: ring flags.
inline constexpr uint16_t kAvailFNoInterrupt = 1;
inline constexpr uint16_t kUsedFNoNotify = 1;

// 2.7: queue size is a power of 2, at most 32768.
inline constexpr uint16_t kMaxQueueSize = 32768;

// 4.2.2 virtio-MMIO (version 2) register offsets.
inline constexpr uint32_t kMmioMagic = 0x74726976;  // "virt"
inline constexpr uint32_t kMmioVersion = 2;
inline constexpr uint32_t kMmioVendorId = 0x4c525450;  // "PTRL"
namespace mmio {
inline constexpr uint64_t kMagicValue = 0x000;
inline constexpr uint64_t kVersion = 0x004;
inline constexpr uint64_t kDeviceId = 0x008;
inline constexpr uint64_t kVendorId = 0x00c;
inline constexpr uint64_t kDeviceFeatures = 0x010;
inline constexpr uint64_t kDeviceFeaturesSel = 0x014;
inline constexpr uint64_t kDriverFeatures = 0x020;
inline constexpr uint64_t kDriverFeaturesSel = 0x024;
inline constexpr uint64_t kQueueSel = 0x030;
inline constexpr uint64_t kQueueNumMax = 0x034;
inline constexpr uint64_t kQueueNum = 0x038;
inline constexpr uint64_t kQueueReady = 0x044;
inline constexpr uint64_t kQueueNotify = 0x050;
inline constexpr uint64_t kInterruptStatus = 0x060;
inline constexpr uint64_t kInterruptAck = 0x064;
inline constexpr uint64_t kStatus = 0x070;
inline constexpr uint64_t kQueueDescLow = 0x080;
inline constexpr uint64_t kQueueDescHigh = 0x084;
inline constexpr uint64_t kQueueDriverLow = 0x090;
inline constexpr uint64_t kQueueDriverHigh = 0x094;
inline constexpr uint64_t kQueueDeviceLow = 0x0a0;
inline constexpr uint64_t kQueueDeviceHigh = 0x0a4;
inline constexpr uint64_t kShmSel = 0x0ac;
inline constexpr uint64_t kShmLenLow = 0x0b0;
inline constexpr uint64_t kShmLenHigh = 0x0b4;
inline constexpr uint64_t kShmBaseLow = 0x0b8;
inline constexpr uint64_t kShmBaseHigh = 0x0bc;
inline constexpr uint64_t kQueueReset = 0x0c0;
inline constexpr uint64_t kConfigGeneration = 0x0fc;
inline constexpr uint64_t kConfig = 0x100;
inline constexpr uint64_t kSize = 0x1000;  // one page per device
}  // namespace mmio

// 4.2.2: InterruptStatus bits (also the PCI ISR status, 4.1.4.5).
inline constexpr uint32_t kInterruptUsedBuffer = 1;
inline constexpr uint32_t kInterruptConfigChange = 2;

}  // namespace petrel::virtio
