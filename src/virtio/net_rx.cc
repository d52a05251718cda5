#include "virtio/net_rx.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <cstring>

#include <fmt/format.h>

namespace petrel::virtio::net {

namespace {

// 2.7.8 struct virtq_used layout.
constexpr uint64_t kUsedIdx = 2;
constexpr uint64_t kUsedRing = 4;
struct UsedElem {
  uint32_t id;
  uint32_t len;
};
static_assert(sizeof(UsedElem) == 8);

}  // namespace

size_t rx_chains_needed(std::span<const DescriptorChain> chains, uint64_t packet_len,
                        bool mergeable) {
  if (chains.empty()) {
    return 0;
  }
  if (!mergeable) {
    return chains[0].writable_bytes() >= packet_len ? 1 : 0;
  }
  uint64_t room = 0;
  for (size_t i = 0; i < chains.size(); ++i) {
    room += chains[i].writable_bytes();
    if (room >= packet_len) {
      return i + 1;
    }
  }
  return 0;
}

Result<std::vector<UsedEntry>> write_rx_frame(const GuestMemory& mem,
                                              std::span<const DescriptorChain> chains,
                                              VirtioNetHdr hdr, std::span<const std::byte> frame,
                                              bool mergeable) {
  const uint64_t packet_len = kHdrSize + frame.size();
  const size_t n = rx_chains_needed(chains, packet_len, mergeable);
  if (n == 0) {
    return Error(ErrorCode::kOutOfRange,
                 fmt::format("receive buffers too small for a {}-byte packet", packet_len));
  }
  for (size_t i = 0; i < n; ++i) {
    if (chains[i].writable_bytes() < kHdrSize) {
      return Error(ErrorCode::kGuest,
                   fmt::format("receive chain {} has {} writable bytes, less than a header",
                               chains[i].head(), chains[i].writable_bytes()));
    }
  }
  hdr.num_buffers = static_cast<uint16_t>(n);
  std::array<std::byte, kHdrSize> hdr_bytes;
  std::memcpy(hdr_bytes.data(), &hdr, kHdrSize);

  std::vector<UsedEntry> used;
  used.reserve(n);
  std::span<const std::byte> rest = frame;
  for (size_t i = 0; i < n; ++i) {
    ChainWriter writer(mem, chains[i]);
    if (i == 0) {
      PETREL_TRY(writer.write(hdr_bytes));
    }
    const size_t chunk = static_cast<size_t>(std::min<uint64_t>(writer.remaining(), rest.size()));
    PETREL_TRY(writer.write(rest.first(chunk)));
    rest = rest.subspan(chunk);
    used.push_back(UsedEntry{chains[i].head(), static_cast<uint32_t>(writer.written())});
  }
  return used;
}

Result<void> publish_used(Virtqueue& queue, const GuestMemory& mem,
                          std::span<const UsedEntry> entries) {
  if (entries.empty()) {
    return {};
  }
  const QueueLayout& layout = queue.layout();
  if (entries.size() > layout.size) {
    return Error(ErrorCode::kInternal,
                 fmt::format("{} used entries for a queue of {}", entries.size(), layout.size));
  }
  for (const auto& e : entries) {
    if (e.head >= layout.size) {
      return Error(ErrorCode::kInternal,
                   fmt::format("used head {} >= queue size {}", e.head, layout.size));
    }
  }
  uint16_t next = queue.next_used();
  for (const auto& e : entries) {
    const uint64_t slot = next % layout.size;
    PETREL_TRY(mem.write_obj(layout.used + kUsedRing + 8 * slot, UsedElem{e.head, e.len}));
    next = static_cast<uint16_t>(next + 1);
  }
  // 2.7.8.2 / 2.7.13: elements and buffer contents before the index that publishes them.
  std::atomic_thread_fence(std::memory_order_release);
  PETREL_TRY(mem.write_obj<uint16_t>(layout.used + kUsedIdx, next));
  queue.set_indices(queue.next_avail(), next);
  return {};
}

}  // namespace petrel::virtio::net
