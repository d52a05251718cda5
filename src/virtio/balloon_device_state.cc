// BalloonDevice: quiesce, queue indices and the saved state (balloon_device.h).
//
// State blob (StateWriter): header kMagic / kVersion, then a u32 record count and records:
//   1 target     u32 num_pages
//   2 actual     u32 the driver's actual
//   3 rewound    u8  the stats chain was given back at quiesce and is not to be parsed again
//   4 stats      u8 received, u64 received_at (ns since the Unix epoch), u64 unknown tags,
//                u32 trailing bytes, u16 mask of present tags, then 10 x u64 values
//   5 pages      u32 region count, per region: u32 word count and the u64 words
#include <spdlog/spdlog.h>

#include "virtio/balloon_device.h"
#include "vmm/base/state_codec.h"

namespace petrel::virtio {

namespace {

constexpr uint32_t kMagic = 0x4e4c4142;  // "BALN"
constexpr uint32_t kVersion = 1;
constexpr uint32_t kTagTarget = 1;
constexpr uint32_t kTagActual = 2;
constexpr uint32_t kTagRewound = 3;
constexpr uint32_t kTagStats = 4;
constexpr uint32_t kTagPages = 5;
constexpr size_t kMaxPagesRecord = size_t{1} << 30;  // 1 GiB of bitmap = 32 TiB of RAM

std::vector<std::byte> encode_stats(const BalloonStats& stats) {
  StateWriter w;
  w.u8(stats.received ? 1 : 0);
  w.u64(static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(stats.received_at.time_since_epoch())
          .count()));
  w.u64(stats.unknown_tags);
  w.u32(stats.trailing_bytes);
  uint16_t mask = 0;
  for (size_t i = 0; i < BalloonStats::kTagCount; ++i) {
    mask = static_cast<uint16_t>(mask | (stats.values[i] ? 1u << i : 0u));
  }
  std::vector<std::byte> out = std::move(w).take();
  put_le(out, mask, 2);
  for (const auto& v : stats.values) {
    put_le(out, v.value_or(0), 8);
  }
  return out;
}

Result<BalloonStats> decode_stats(std::span<const std::byte> bytes) {
  StateReader r(bytes, "virtio-balloon stats");
  BalloonStats stats;
  PETREL_TRY_ASSIGN(uint8_t received, r.u8());
  PETREL_TRY_ASSIGN(uint64_t ns, r.u64());
  PETREL_TRY_ASSIGN(stats.unknown_tags, r.u64());
  PETREL_TRY_ASSIGN(stats.trailing_bytes, r.u32());
  if (received > 1 || stats.trailing_bytes >= BalloonStats::kEntrySize) {
    return r.fail("bad received flag or trailing byte count");
  }
  stats.received = received != 0;
  stats.received_at = std::chrono::system_clock::time_point(
      std::chrono::duration_cast<std::chrono::system_clock::duration>(
          std::chrono::nanoseconds(static_cast<int64_t>(ns))));
  if (r.remaining() != 2 + 8 * BalloonStats::kTagCount) {
    return r.fail("stats values have the wrong size");
  }
  const std::byte* p = bytes.data() + r.offset();
  const auto mask = static_cast<uint16_t>(get_le(p, 2));
  if ((mask >> BalloonStats::kTagCount) != 0) {
    return r.fail("stats mask names unknown tags");
  }
  for (size_t i = 0; i < BalloonStats::kTagCount; ++i) {
    if ((mask >> i & 1) != 0) {
      stats.values[i] = get_le(p + 2 + 8 * i, 8);
    }
  }
  return stats;
}

std::vector<std::byte> encode_pages(const std::vector<std::vector<uint64_t>>& regions) {
  std::vector<std::byte> out;
  put_le(out, regions.size(), 4);
  for (const auto& words : regions) {
    put_le(out, words.size(), 4);
    for (uint64_t w : words) {
      put_le(out, w, 8);
    }
  }
  return out;
}

Result<std::vector<std::vector<uint64_t>>> decode_pages(std::span<const std::byte> bytes) {
  StateReader r(bytes, "virtio-balloon page map");
  PETREL_TRY_ASSIGN(uint32_t regions, r.u32());
  if (regions > r.remaining() / 4) {
    return r.fail("region count exceeds the record");
  }
  std::vector<std::vector<uint64_t>> out(regions);
  for (auto& words : out) {
    PETREL_TRY_ASSIGN(uint32_t count, r.u32());
    if (count > r.remaining() / 8) {
      return r.fail("word count exceeds the record");
    }
    words.resize(count);
    for (auto& w : words) {
      PETREL_TRY_ASSIGN(w, r.u64());
    }
  }
  PETREL_TRY(r.expect_end());
  return out;
}

}  // namespace

void BalloonDevice::quiesce(std::function<void()> idle) {
  quiesced_ = true;
  ++generation_;  // posted continuations and the stats timer become no-ops
  if (stats_timer_) {
    stats_timer_->cancel();
  }
  if (held_stats_ && queues_[stats_queue_]) {
    // The held chain is the last one popped from the stats queue (older ones were returned
    // when it arrived), so rewinding by one makes the next pop return it again.
    Virtqueue& q = *queues_[stats_queue_];
    q.set_indices(static_cast<uint16_t>(q.next_avail() - 1), q.next_used());
    held_stats_.reset();
    stats_rewound_ = true;
  }
  idle();
}

void BalloonDevice::unquiesce() {
  if (!quiesced_) {
    return;
  }
  quiesced_ = false;
  if (!active_) {
    return;
  }
  for (uint16_t i = 0; i < queues_.size() && active_; ++i) {
    process_queue(i);
  }
  if (active_ && config_notify_pending_) {
    config_notify_pending_ = false;
    irq_->notify_config();
  }
}

std::vector<std::optional<QueueIndices>> BalloonDevice::queue_indices() const {
  std::vector<std::optional<QueueIndices>> out(num_queues_);
  for (size_t i = 0; i < queues_.size() && i < out.size(); ++i) {
    if (queues_[i]) {
      out[i] = QueueIndices{queues_[i]->next_avail(), queues_[i]->next_used()};
    }
  }
  return out;
}

std::vector<std::byte> BalloonDevice::save_state() const {
  StateWriter w;
  w.header(kMagic, kVersion);
  w.u32(5);
  std::vector<std::byte> u32buf;
  put_le(u32buf, target_pages(), 4);
  w.record(kTagTarget, u32buf);
  u32buf.clear();
  put_le(u32buf, actual_pages(), 4);
  w.record(kTagActual, u32buf);
  const std::byte rewound{static_cast<uint8_t>(stats_rewound_ ? 1 : 0)};
  w.record(kTagRewound, std::span(&rewound, 1));
  w.record(kTagStats, encode_stats(stats()));
  w.record(kTagPages, encode_pages(pages_.words()));
  return std::move(w).take();
}

Result<void> BalloonDevice::restore_state(std::span<const std::byte> state) {
  if (active_) {
    return Error(ErrorCode::kState, "virtio-balloon: restore into an active device");
  }
  StateReader r(state, "virtio-balloon state");
  PETREL_TRY(r.expect_header(kMagic, kVersion));
  PETREL_TRY_ASSIGN(auto records, r.records(16, kMaxPagesRecord));
  PETREL_TRY(r.expect_end());
  std::optional<uint32_t> target, actual;
  std::optional<bool> rewound;
  std::optional<BalloonStats> stats;
  std::optional<std::vector<std::vector<uint64_t>>> pages;
  for (const StateRecord& rec : records) {
    switch (rec.tag) {
      case kTagTarget: {
        PETREL_TRY_ASSIGN(auto v, r.fixed<uint32_t>(rec, "target"));
        target = v;
        break;
      }
      case kTagActual: {
        PETREL_TRY_ASSIGN(auto v, r.fixed<uint32_t>(rec, "actual"));
        actual = v;
        break;
      }
      case kTagRewound: {
        PETREL_TRY_ASSIGN(auto v, r.fixed<uint8_t>(rec, "rewound"));
        if (v > 1) {
          return r.fail_at(rec.offset, "rewound flag is not 0 or 1");
        }
        rewound = v != 0;
        break;
      }
      case kTagStats: {
        PETREL_TRY_ASSIGN(auto v, decode_stats(rec.payload));
        stats = v;
        break;
      }
      case kTagPages: {
        PETREL_TRY_ASSIGN(auto v, decode_pages(rec.payload));
        pages = std::move(v);
        break;
      }
      default:
        return r.fail_at(rec.offset, "unknown record");
    }
  }
  if (!target || !actual || !rewound || !stats || !pages) {
    return r.fail("a record is missing");
  }
  // Fixed-size records are little-endian u32s; fixed<> copied host-order bytes.
  PETREL_TRY(pages_.assign(std::move(*pages)));
  {
    std::lock_guard lock(config_mutex_);
    target_ = static_cast<uint32_t>(get_le(reinterpret_cast<const std::byte*>(&*target), 4));
    actual_ = static_cast<uint32_t>(get_le(reinterpret_cast<const std::byte*>(&*actual), 4));
    ++generation_config_;
  }
  {
    std::lock_guard lock(stats_mutex_);
    stats_ = *stats;
  }
  stats_rewound_ = *rewound;
  return {};
}

}  // namespace petrel::virtio
