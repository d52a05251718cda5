#include "virtio/balloon_stats.h"

#include <cstring>

#include "vmm/base/state_codec.h"

namespace petrel::virtio {

std::string_view BalloonStats::tag_name(uint16_t tag) {
  static constexpr std::array<std::string_view, kTagCount> kNames{
      "SWAP_IN", "SWAP_OUT", "MAJFLT", "MINFLT",       "MEMFREE",
      "MEMTOT",  "AVAIL",    "CACHES", "HTLB_PGALLOC", "HTLB_PGFAIL"};
  return tag < kTagCount ? kNames[tag] : std::string_view{};
}

BalloonStats BalloonStats::parse(std::span<const std::byte> buffer) {
  BalloonStats stats;
  stats.received = true;
  const size_t entries = buffer.size() / kEntrySize;
  stats.trailing_bytes = static_cast<uint32_t>(buffer.size() % kEntrySize);
  for (size_t i = 0; i < entries; ++i) {
    const std::byte* entry = buffer.data() + i * kEntrySize;
    const auto tag = static_cast<uint16_t>(get_le(entry, 2));
    const uint64_t value = get_le(entry + 2, 8);
    if (tag < kTagCount) {
      stats.values[tag] = value;
    } else {
      ++stats.unknown_tags;
    }
  }
  return stats;
}

}  // namespace petrel::virtio
