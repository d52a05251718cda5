// NetBackend: where a virtio-net device sends and receives frames. The production backend is
// a TAP interface (tap.h); tests use a socket pair. Every frame crossing the backend is
// prefixed by a 12-byte virtio_net_hdr (net_spec.h: VirtioNetHdr, the layout TUNSETVNETHDRSZ
// 12 gives a TAP), one frame per read or write.
//
// Thread affinity: the device uses its backend on the VMM event-loop thread only.
#pragma once

#include <sys/uio.h>

#include <cstddef>
#include <optional>
#include <span>

#include "vmm/base/result.h"

namespace petrel::virtio {

// Offloads a backend can take in both directions: frames with a partial checksum or GSO
// super-frames written to it, and (once enabled with set_offloads) handed to us on read.
struct NetOffloads {
  bool csum = false;     // TUN_F_CSUM: partial checksums (csum_start/csum_offset)
  bool tso4 = false;     // TUN_F_TSO4
  bool tso6 = false;     // TUN_F_TSO6
  bool tso_ecn = false;  // TUN_F_TSO_ECN
  bool ufo = false;      // TUN_F_UFO (probed only; petrel does not offer UFO to guests)

  friend bool operator==(const NetOffloads&, const NetOffloads&) = default;
};

class NetBackend {
 public:
  virtual ~NetBackend() = default;

  // A non-blocking descriptor the device polls for readability (a frame can be read) and
  // writability (after write_frame reported it would block). Owned by the backend.
  virtual int fd() const = 0;
  // What the backend accepts; constant for its life.
  virtual NetOffloads supported_offloads() const = 0;
  // Which offloads frames read from the backend may carry (the guest's negotiated
  // VIRTIO_NET_F_GUEST_* features). Must be a subset of supported_offloads().
  virtual Result<void> set_offloads(const NetOffloads& offloads) = 0;

  // Reads one frame (header + Ethernet frame) into `iov`. Returns its full length (which
  // exceeds the iovecs' total when the frame was truncated), or nullopt when none is waiting.
  virtual Result<std::optional<size_t>> read_frame(std::span<const iovec> iov) = 0;
  // Writes one frame (header + Ethernet frame) gathered from `iov`. nullopt: the backend is
  // full; retry once fd() is writable. An error means this frame was refused (dropped).
  virtual Result<std::optional<size_t>> write_frame(std::span<const iovec> iov) = 0;
};

}  // namespace petrel::virtio
