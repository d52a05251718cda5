// Validation of one virtio-net transmit chain (virtio 1.2 section 5.1.6.2). Pure functions
// over guest memory so that they can be unit-tested and fuzzed without a backend.
//
// Everything in the chain is guest-controlled: the descriptor layout, the header fields and
// the frame length. A chain that fails these checks is dropped by the device (returned with
// used length 0 and counted as a TX error); it never reaches the backend.
#pragma once

#include <cstdint>
#include <vector>

#include "virtio/net_spec.h"
#include "virtio/virtqueue.h"
#include "vmm/base/guest_memory.h"
#include "vmm/base/result.h"

namespace petrel::virtio::net {

struct TxFrame {
  VirtioNetHdr hdr;  // a checked copy: the backend gets this, not the guest's bytes again
  std::vector<DescriptorSegment> frame;  // guest ranges of the Ethernet frame, in order
  uint32_t frame_len = 0;                // kMinFrameLen..kMaxFrameLen
};

// Checks a header against the negotiated features (`features`: VIRTIO_NET_F_* bits) and the
// length of the frame that follows it, and returns the copy to hand to the backend: flags the
// device does not know, or that are for the receive path only, are cleared (5.1.6.2.2: the
// device ignores them), num_buffers is zeroed (unused on transmit) and hdr_len is clamped to
// the frame (5.1.6.2.2: the device must not rely on it). Refused: NEEDS_CSUM without
// VIRTIO_NET_F_CSUM or with csum_start + csum_offset + 2 beyond the frame; a GSO type that was
// not negotiated (HOST_TSO4/TSO6, HOST_ECN for the ECN bit; UFO is never offered) or with a
// gso_size of 0.
Result<VirtioNetHdr> check_tx_header(const VirtioNetHdr& hdr, uint64_t features,
                                     uint32_t frame_len);

// Checks one chain popped from the transmit queue: device-readable buffers only, at least a
// header and an Ethernet header, at most the header + kMaxFrameLen bytes, and a valid header.
Result<TxFrame> parse_tx_chain(const GuestMemory& mem, const DescriptorChain& chain,
                               uint64_t features);

}  // namespace petrel::virtio::net
