// Fuzz target: virtio-net's request parsing (src/virtio/net_tx.h, net_rx.h) against hostile
// guest memory: every chain the guest makes available is validated as a transmit chain, and
// collected as receive buffers into which one frame is then placed and published.
//
// Input layout:
//   [0]     queue size = 1 << (b % 6)          (1..32)
//   [1]     negotiated features: bit 0 CSUM, 1 HOST_TSO4, 2 HOST_TSO6, 3 HOST_ECN,
//           4 MRG_RXBUF, 5 INDIRECT_DESC, 6 EVENT_IDX
//   [2..3]  length of the received frame (little-endian, taken modulo kMaxFrameLen + 1)
//   [4..]   guest memory image, copied to guest address 0 (the rest of RAM is zero)
// Guest RAM: [0, 128 KiB) and [132 KiB, 136 KiB), so buffers can cross into the hole. Rings at
// fixed addresses: descriptor table 0x0, avail ring 0x200, used ring 0x300.
//
// Besides "never crash or hang", the target checks what the parsers promise: an accepted
// transmit frame is within bounds, its segments add up to its length, its header is
// sanitised; a placed receive frame fills exactly header + frame bytes, over the number of
// chains rx_chains_needed() names, none beyond its chain's room, with num_buffers set.
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <span>
#include <vector>

#include "virtio/net_rx.h"
#include "virtio/net_spec.h"
#include "virtio/net_tx.h"
#include "virtio/virtio_spec.h"
#include "virtio/virtqueue.h"
#include "vmm/base/guest_memory.h"

namespace {

using petrel::GuestAddress;
using petrel::GuestMemory;
using petrel::GuestRegionSpec;
using petrel::virtio::DescriptorChain;
using petrel::virtio::feature_bit;
using petrel::virtio::QueueLayout;
using petrel::virtio::Virtqueue;
using namespace petrel::virtio::net;

constexpr size_t kHeader = 4;
constexpr GuestAddress kDesc{0x0};
constexpr GuestAddress kAvail{0x200};
constexpr GuestAddress kUsed{0x300};
constexpr uint64_t kLowSize = 0x20000;

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "fuzz_net_tx: invariant broken: %s\n", what);
  std::abort();
}

void expect(bool ok, const char* what) {
  if (!ok) {
    fail(what);
  }
}

const GuestMemory& memory() {
  static const GuestMemory mem = [] {
    std::array specs{GuestRegionSpec{GuestAddress(0), kLowSize},
                     GuestRegionSpec{GuestAddress(kLowSize + 0x1000), 0x1000}};
    auto made = GuestMemory::create_anonymous(specs);
    expect(made.ok(), "guest memory");
    return std::move(made).value();
  }();
  return mem;
}

void load_image(const GuestMemory& mem, std::span<const uint8_t> image) {
  for (const auto& region : mem.regions()) {
    std::memset(region.host_base(), 0, region.size());
  }
  std::memcpy(mem.regions()[0].host_base(), image.data(), std::min<size_t>(image.size(), kLowSize));
}

uint64_t features_of(uint8_t b) {
  uint64_t f = 0;
  f |= (b & 1) != 0 ? feature_bit(kFCsum) : 0;
  f |= (b & 2) != 0 ? feature_bit(kFHostTso4) : 0;
  f |= (b & 4) != 0 ? feature_bit(kFHostTso6) : 0;
  f |= (b & 8) != 0 ? feature_bit(kFHostEcn) : 0;
  f |= (b & 16) != 0 ? feature_bit(kFMrgRxbuf) : 0;
  return f;
}

void check_tx(const GuestMemory& mem, const DescriptorChain& chain, uint64_t features) {
  auto frame = parse_tx_chain(mem, chain, features);
  if (!frame.ok()) {
    return;
  }
  expect(chain.writable().empty(), "TX chain without writable buffers");
  expect(frame->frame_len >= kMinFrameLen && frame->frame_len <= kMaxFrameLen, "frame bounds");
  expect(chain.readable_bytes() == kHdrSize + frame->frame_len, "header + frame = chain");
  uint64_t total = 0;
  for (const auto& seg : frame->frame) {
    expect(mem.slice(seg.addr, seg.len).ok(), "frame segment inside RAM");
    total += seg.len;
  }
  expect(total == frame->frame_len, "frame segments add up");
  const VirtioNetHdr& h = frame->hdr;
  expect((h.flags & ~kHdrFNeedsCsum) == 0, "only NEEDS_CSUM passes");
  expect(h.num_buffers == 0, "num_buffers cleared");
  expect(h.hdr_len <= frame->frame_len, "hdr_len clamped");
  if ((h.flags & kHdrFNeedsCsum) != 0) {
    expect((features & feature_bit(kFCsum)) != 0, "NEEDS_CSUM only with F_CSUM");
    expect(uint32_t{h.csum_start} + h.csum_offset + 2 <= frame->frame_len, "csum inside frame");
  }
  const uint8_t gso = h.gso_type & static_cast<uint8_t>(~kGsoEcn);
  expect(gso == kGsoNone || gso == kGsoTcpv4 || gso == kGsoTcpv6, "known GSO type");
  expect(gso != kGsoTcpv4 || (features & feature_bit(kFHostTso4)) != 0, "TSO4 negotiated");
  expect(gso != kGsoTcpv6 || (features & feature_bit(kFHostTso6)) != 0, "TSO6 negotiated");
  expect(gso == kGsoNone || h.gso_size != 0, "GSO with a segment size");
}

void check_rx(const GuestMemory& mem, Virtqueue& vq, std::span<const DescriptorChain> chains,
              uint32_t frame_len, bool mergeable) {
  std::vector<std::byte> frame(frame_len, std::byte{0x5a});
  const size_t needed = rx_chains_needed(chains, kHdrSize + frame_len, mergeable);
  auto used = write_rx_frame(mem, chains, VirtioNetHdr{}, frame, mergeable);
  if (!used.ok()) {
    return;
  }
  expect(needed > 0 && used->size() == needed, "chains used = chains needed");
  expect(mergeable || needed == 1, "one chain without MRG_RXBUF");
  uint64_t total = 0;
  for (size_t i = 0; i < used->size(); ++i) {
    expect((*used)[i].head == chains[i].head(), "used in order");
    expect((*used)[i].len <= chains[i].writable_bytes(), "len within the chain");
    total += (*used)[i].len;
  }
  expect(total == kHdrSize + frame_len, "header + frame written");
  // The header, unless the guest aliased it with a buffer written after it.
  const auto& first = chains[0].writable()[0];
  bool aliased = false;
  for (size_t i = 0; i < used->size(); ++i) {
    for (const auto& seg : chains[i].writable()) {
      uint64_t start = seg.addr.value(), end = start + seg.len;
      if (i == 0 && &seg == &first) {
        start += kHdrSize;
      }
      aliased |= start < first.addr.value() + kHdrSize && first.addr.value() < end;
    }
  }
  if (first.len >= kHdrSize && !aliased) {
    auto hdr = mem.read_obj<VirtioNetHdr>(first.addr);
    expect(hdr.ok() && hdr->num_buffers == needed, "num_buffers");
  }
  const uint16_t before = vq.next_used();
  expect(publish_used(vq, mem, *used).ok(), "publish used");
  expect(vq.next_used() == static_cast<uint16_t>(before + used->size()), "used idx advances");
  auto idx = mem.read_obj<uint16_t>(kUsed + 2);
  expect(idx.ok() && *idx == vq.next_used(), "used idx published");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < kHeader) {
    return 0;
  }
  const GuestMemory& mem = memory();
  load_image(mem, std::span(data + kHeader, size - kHeader));

  QueueLayout layout;
  layout.size = static_cast<uint16_t>(1u << (data[0] % 6));
  layout.desc = kDesc;
  layout.avail = kAvail;
  layout.used = kUsed;
  const uint64_t features = features_of(data[1]);
  const bool indirect = (data[1] & 32) != 0;
  const bool event_idx = (data[1] & 64) != 0;
  auto created = Virtqueue::create(mem, layout, petrel::virtio::kMaxQueueSize, event_idx, indirect);
  expect(created.ok(), "create with a valid layout");
  Virtqueue vq = std::move(created).value();

  std::vector<DescriptorChain> chains;
  for (int i = 0; i < 2 * layout.size; ++i) {
    auto popped = vq.pop(mem);
    if (!popped.ok() || !*popped) {
      break;
    }
    check_tx(mem, **popped, features);
    if ((*popped)->writable_bytes() >= kHdrSize) {
      chains.push_back(std::move(**popped));
    }
  }
  const uint32_t frame_len = static_cast<uint32_t>(data[2] | data[3] << 8) % (kMaxFrameLen + 1);
  if (!chains.empty()) {
    check_rx(mem, vq, chains, frame_len, (features & feature_bit(kFMrgRxbuf)) != 0);
  }
  return 0;
}
