// virtio-net constants and wire structures (virtio 1.2 section 5.1).
#pragma once

#include <bit>
#include <cstdint>

namespace petrel::virtio::net {

static_assert(std::endian::native == std::endian::little,
              "virtio 1.x structures are little-endian; petrel runs on x86-64 only");

// 5.1.2 Virtqueues: receiveq1 and transmitq1 (no multiqueue, no control queue).
inline constexpr uint16_t kRxQueue = 0;
inline constexpr uint16_t kTxQueue = 1;
inline constexpr uint16_t kQueueSize = 256;

// 5.1.3 Feature bits (bit numbers).
inline constexpr unsigned kFCsum = 0;
inline constexpr unsigned kFGuestCsum = 1;
inline constexpr unsigned kFMtu = 3;
inline constexpr unsigned kFMac = 5;
inline constexpr unsigned kFGuestTso4 = 7;
inline constexpr unsigned kFGuestTso6 = 8;
inline constexpr unsigned kFGuestEcn = 9;
inline constexpr unsigned kFGuestUfo = 10;
inline constexpr unsigned kFHostTso4 = 11;
inline constexpr unsigned kFHostTso6 = 12;
inline constexpr unsigned kFHostEcn = 13;
inline constexpr unsigned kFHostUfo = 14;
inline constexpr unsigned kFMrgRxbuf = 15;
inline constexpr unsigned kFStatus = 16;

// 5.1.4 Device configuration layout (offsets into struct virtio_net_config).
inline constexpr uint64_t kConfigMac = 0;
inline constexpr uint64_t kConfigStatus = 6;
inline constexpr uint64_t kConfigMaxVirtqueuePairs = 8;
inline constexpr uint64_t kConfigMtu = 10;
inline constexpr uint64_t kConfigSize = 12;
inline constexpr uint16_t kStatusLinkUp = 1;

// 5.1.6 struct virtio_net_hdr (the VERSION_1 layout, always with num_buffers: 12 bytes).
inline constexpr uint8_t kHdrFNeedsCsum = 1;
inline constexpr uint8_t kHdrFDataValid = 2;
inline constexpr uint8_t kHdrFRscInfo = 4;
inline constexpr uint8_t kGsoNone = 0;
inline constexpr uint8_t kGsoTcpv4 = 1;
inline constexpr uint8_t kGsoUdp = 3;
inline constexpr uint8_t kGsoTcpv6 = 4;
inline constexpr uint8_t kGsoEcn = 0x80;

struct VirtioNetHdr {
  uint8_t flags = 0;
  uint8_t gso_type = kGsoNone;
  uint16_t hdr_len = 0;
  uint16_t gso_size = 0;
  uint16_t csum_start = 0;
  uint16_t csum_offset = 0;
  uint16_t num_buffers = 0;  // RX with MRG_RXBUF: descriptor chains used for this frame
};
static_assert(sizeof(VirtioNetHdr) == 12);
inline constexpr uint32_t kHdrSize = sizeof(VirtioNetHdr);

// Frame size bounds, excluding the virtio_net_hdr. 14-byte Ethernet header at least; at most
// a 64 KiB GSO super-frame: 65535 bytes of IP datagram + Ethernet and VLAN headers (the
// bound QEMU and the Linux driver use).
inline constexpr uint32_t kMinFrameLen = 14;
inline constexpr uint32_t kMaxFrameLen = 65550;

}  // namespace petrel::virtio::net
