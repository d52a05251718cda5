// BalloonStats: the guest's memory statistics from the virtio-balloon stats queue (virtio 1.2
// section 5.5.6.3 "Memory Statistics", tags in 5.5.6.4).
//
// A stats buffer is the driver's (untrusted) bytes: an array of packed 10-byte entries, a
// le16 tag and a le64 value (the spec's "multiple of 6 bytes" is a known typo for the entry
// size of 10). parse() accepts any length: whole entries are read, a trailing partial entry
// is ignored and reported in `trailing_bytes`; unknown tags are ignored (5.5.6.3.2: the device
// MUST ignore tags it does not recognise) and counted; a tag given twice keeps the last value.
//
// A plain value type; no thread affinity.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

namespace petrel::virtio {

struct BalloonStats {
  // 5.5.6.4 tags, in tag order (the index into `values`).
  enum Tag : uint16_t {
    kSwapIn = 0,       // bytes swapped in
    kSwapOut = 1,      // bytes swapped out
    kMajorFaults = 2,  // count
    kMinorFaults = 3,  // count
    kMemFree = 4,      // bytes not used for any purpose
    kMemTotal = 5,     // bytes
    kAvailable = 6,    // bytes available for new applications without swapping
    kCaches = 7,       // bytes reclaimable without I/O
    kHugetlbAllocations = 8,
    kHugetlbFailures = 9,
    kTagCount = 10,
  };
  static constexpr size_t kEntrySize = 10;  // le16 tag + le64 value, packed

  // The spec's name of a tag ("MEMFREE", ...); empty for an unknown tag.
  static std::string_view tag_name(uint16_t tag);
  // Values from `buffer` (the whole readable part of a statsq chain).
  static BalloonStats parse(std::span<const std::byte> buffer);

  std::optional<uint64_t> value(Tag tag) const { return values[tag]; }

  std::array<std::optional<uint64_t>, kTagCount> values{};
  uint64_t unknown_tags = 0;    // entries with a tag this device does not know
  uint32_t trailing_bytes = 0;  // bytes after the last whole entry (0..9)
  // When the buffer reached the device (wall clock, so the age is meaningful after a
  // restore in another process); the epoch for stats never received.
  std::chrono::system_clock::time_point received_at{};
  bool received = false;  // false: the driver has not sent any stats yet

  bool operator==(const BalloonStats&) const = default;
};

}  // namespace petrel::virtio
