// Placement of one received frame into the guest's receive buffers (virtio 1.2 section
// 5.1.6.3/5.1.6.4), and publication of several used entries at once. Pure functions over
// guest memory so that they can be unit-tested and fuzzed without a backend.
//
// The receive chains are guest-controlled: their number and sizes decide where a frame
// goes. Without VIRTIO_NET_F_MRG_RXBUF one chain holds the header and the whole frame; with
// it the frame is spread over as many chains as it takes, each filled before the next, and
// the header's num_buffers says how many (5.1.6.4). Every chain must have room for at least
// the header (5.1.6.3.1); the device returns smaller ones empty.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "virtio/net_spec.h"
#include "virtio/virtqueue.h"
#include "vmm/base/guest_memory.h"
#include "vmm/base/result.h"

namespace petrel::virtio::net {

using UsedEntry = Virtqueue::UsedElement;

// How many of `chains` (in order) a packet of `packet_len` bytes (header included) needs, or
// 0 when they do not suffice (without `mergeable`: when the first does not).
size_t rx_chains_needed(std::span<const DescriptorChain> chains, uint64_t packet_len,
                        bool mergeable);

// Writes `hdr` (num_buffers set here) and `frame` into the first rx_chains_needed() chains
// and returns their used entries. Fails, writing nothing into the used ring, when the chains
// do not suffice.
Result<std::vector<UsedEntry>> write_rx_frame(const GuestMemory& mem,
                                              std::span<const DescriptorChain> chains,
                                              VirtioNetHdr hdr, std::span<const std::byte> frame,
                                              bool mergeable);

// Publishes `entries` in the used ring (2.7.8) with one used-index update
// (Virtqueue::add_used_batch), so that the driver sees all buffers of a merged frame at once
// (a Linux driver that finds fewer than num_buffers used entries drops the frame).
Result<void> publish_used(Virtqueue& queue, const GuestMemory& mem,
                          std::span<const UsedEntry> entries);

}  // namespace petrel::virtio::net
