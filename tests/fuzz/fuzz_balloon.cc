// Fuzz target: the virtio-balloon device (src/virtio/balloon_device.cc) fed hostile queues:
// PFN arrays, free page reports, stats buffers, broken rings, and host-side calls (target
// changes, quiesce, save/restore, reset) in between.
//
// Input layout:
//   [0]     bit 0: STATS_VQ, bit 1: PAGE_REPORTING negotiated (bit 2 of the options: offer
//           reporting), bit 3: EVENT_IDX, bit 4: DEFLATE_ON_OOM offered
//   [1]     queue size = 1 << (b % 5)          (1..16)
//   [2..3]  seed of the operation sequence
//   [4..]   guest memory image, copied to guest address 0 (the rest of RAM is zero)
// Guest RAM is two regions, [0, 256 KiB) and [1 MiB, 1 MiB + 64 KiB), so PFNs land in RAM,
// in the hole and past the end. Queue i sits at 0x800 * i: descriptors +0, avail +0x100,
// used +0x200.
//
// Besides "never crash, hang or hit UB", the target checks: the ballooned map only marks
// pages inside RAM and its count matches its bits; a saved state restores into a fresh
// device with the same map, target and stats; the device never reports more queues than it
// declared.
#include <algorithm>
#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <span>

#include <spdlog/spdlog.h>
#include <boost/asio/io_context.hpp>

#include "virtio/balloon_device.h"
#include "virtio/virtio_spec.h"
#include "vmm/base/guest_memory.h"

namespace {

using petrel::GuestAddress;
using petrel::GuestMemory;
using petrel::GuestRegionSpec;
using petrel::virtio::BalloonDevice;
using petrel::virtio::BalloonOptions;
using petrel::virtio::feature_bit;

constexpr size_t kHeader = 4;
constexpr uint64_t kLowSize = 256 * 1024;
constexpr GuestAddress kHigh{1 << 20};
constexpr uint64_t kHighSize = 64 * 1024;
constexpr int kMaxOps = 64;

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "fuzz_balloon: invariant broken: %s\n", what);
  std::abort();
}

void expect(bool ok, const char* what) {
  if (!ok) {
    fail(what);
  }
}

class Rng {
 public:
  explicit Rng(uint32_t seed) : state_(seed | 0x9e3779b97f4a7c15ULL) {}
  uint32_t next() {
    state_ ^= state_ << 13;
    state_ ^= state_ >> 7;
    state_ ^= state_ << 17;
    return static_cast<uint32_t>(state_ >> 16);
  }
  uint32_t below(uint32_t n) { return next() % n; }

 private:
  uint64_t state_;
};

class Interrupt : public petrel::virtio::VirtioInterrupt {
 public:
  void notify_queue(uint16_t index) override { expect(index < 5, "notified queue exists"); }
  void notify_config() override {}
  void set_needs_reset() override { needs_reset = true; }
  bool needs_reset = false;
};

const GuestMemory& memory() {
  static const GuestMemory mem = [] {
    spdlog::set_level(spdlog::level::off);
    std::array specs{GuestRegionSpec{GuestAddress(0), kLowSize}, GuestRegionSpec{kHigh, kHighSize}};
    auto made = GuestMemory::create_anonymous(specs);
    expect(made.ok(), "guest memory");
    return std::move(made).value();
  }();
  return mem;
}

void check_map(const BalloonDevice& dev, const GuestMemory& mem) {
  auto words = dev.ballooned_pages();
  expect(words.size() == mem.regions().size(), "one bitmap per region");
  uint64_t count = 0;
  for (size_t r = 0; r < words.size(); ++r) {
    const uint64_t pages = mem.regions()[r].size() / 4096;
    expect(words[r].size() == (pages + 63) / 64, "bitmap size");
    for (size_t w = 0; w < words[r].size(); ++w) {
      count += static_cast<uint64_t>(std::popcount(words[r][w]));
      if (w + 1 == words[r].size() && pages % 64 != 0) {
        expect((words[r][w] >> (pages % 64)) == 0, "no mark past the region");
      }
    }
  }
  expect(count == dev.ballooned_page_count(), "count matches the bits");
}

struct Run {
  boost::asio::io_context io;
  Interrupt irq;
  std::shared_ptr<BalloonDevice> dev;
};

bool activate(Run& run, const GuestMemory& mem, uint64_t features, uint16_t size, bool event_idx) {
  petrel::virtio::ActivateContext ctx;
  ctx.memory = &mem;
  ctx.features = features;
  const size_t n = run.dev->queue_max_sizes().size();
  for (size_t i = 0; i < n; ++i) {
    petrel::virtio::QueueLayout layout;
    layout.size = size;
    layout.desc = GuestAddress(0x800 * i);
    layout.avail = layout.desc + 0x100;
    layout.used = layout.desc + 0x200;
    auto vq = petrel::virtio::Virtqueue::create(mem, layout, 256, event_idx, false);
    expect(vq.ok(), "queue layout");
    ctx.queues.push_back(std::move(vq).value());
  }
  ctx.interrupt = &run.irq;
  ctx.io = &run.io;
  return run.dev->activate(std::move(ctx)).ok();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < kHeader) {
    return 0;
  }
  const GuestMemory& mem = memory();
  for (const auto& region : mem.regions()) {
    std::memset(region.host_base(), 0, region.size());
  }
  std::memcpy(mem.regions()[0].host_base(), data + kHeader,
              std::min<size_t>(size - kHeader, kLowSize));

  BalloonOptions options;
  options.free_page_reporting = (data[0] & 4) != 0;
  options.deflate_on_oom = (data[0] & 16) != 0;
  options.initial_target_pages = data[1];
  uint64_t features = 0;
  if ((data[0] & 1) != 0) {
    features |= feature_bit(BalloonDevice::kFStatsVq);
  }
  if ((data[0] & 2) != 0 && options.free_page_reporting) {
    features |= feature_bit(BalloonDevice::kFPageReporting);
  }
  const auto qsize = static_cast<uint16_t>(1u << (data[1] % 5));
  const bool event_idx = (data[0] & 8) != 0;
  Rng rng(static_cast<uint32_t>(data[2] | data[3] << 8));

  Run run;
  auto made = BalloonDevice::create(mem, options, run.io);
  expect(made.ok(), "create");
  run.dev = *made;
  const auto nq = static_cast<uint16_t>(run.dev->queue_max_sizes().size());
  if (!activate(run, mem, features, qsize, event_idx)) {
    return 0;
  }
  bool quiesced = false;
  for (int op = 0; op < kMaxOps && !run.irq.needs_reset; ++op) {
    switch (rng.below(10)) {
      case 0: {  // the driver makes one more chain available on some queue
        const GuestAddress idx = GuestAddress(0x800 * rng.below(nq) + 0x100 + 2);
        (void)mem.write_obj<uint16_t>(idx, static_cast<uint16_t>(*mem.read_obj<uint16_t>(idx) + 1));
        break;
      }
      case 1:
        run.dev->set_target_pages(rng.next());
        break;
      case 2: {
        std::array<std::byte, 4> bytes{};
        for (auto& b : bytes) {
          b = static_cast<std::byte>(rng.next());
        }
        run.dev->write_config(rng.below(12), std::span(bytes).first(1 + rng.below(4)));
        break;
      }
      case 3:
        if (!quiesced) {
          bool idle = false;
          run.dev->quiesce([&] { idle = true; });
          expect(idle, "quiesce is immediate");
          quiesced = true;
          // Save and restore into a fresh device: the same balloon, target and stats.
          auto state = run.dev->save_state();
          auto fresh = BalloonDevice::create(mem, options, run.io);
          expect(fresh.ok(), "create");
          expect((*fresh)->restore_state(state).ok(), "own state restores");
          expect((*fresh)->ballooned_pages() == run.dev->ballooned_pages(), "map restored");
          expect((*fresh)->target_pages() == run.dev->target_pages(), "target restored");
          expect((*fresh)->stats() == run.dev->stats(), "stats restored");
        } else {
          run.dev->unquiesce();
          quiesced = false;
        }
        break;
      case 4:
        run.io.restart();
        run.io.poll();
        break;
      case 5:
        if (rng.below(4) == 0) {
          run.dev->reset();
          expect(run.dev->ballooned_page_count() == 0, "reset empties the balloon");
          quiesced = false;
          if (!activate(run, mem, features, qsize, event_idx)) {
            return 0;
          }
        }
        break;
      default:
        run.dev->process_queue(static_cast<uint16_t>(rng.below(nq + 1)));
        break;
    }
    check_map(*run.dev, mem);
  }
  run.dev->reset();
  return 0;
}
