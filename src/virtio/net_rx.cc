#include "virtio/net_rx.h"

#include <algorithm>
#include <array>
#include <cstring>

#include <fmt/format.h>

namespace petrel::virtio::net {

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
  return queue.add_used_batch(mem, entries);
}

}  // namespace petrel::virtio::net
