// Fuzz target: the split virtqueue walker (src/virtio/virtqueue.cc) against hostile guest
// memory.
//
// Input layout:
//   [0]     queue size = 1 << (b % 6)          (1..32)
//   [1]     bit 0: EVENT_IDX, bit 1: INDIRECT_DESC negotiated, bit 2: dirty logging on
//   [2..3]  initial next_avail, [4..5] initial next_used (little-endian)
//   [6..7]  seed of the operation sequence (pops, reads, writes, add_used, notify, ...)
//   [8..]   guest memory image, copied to guest address 0 (the rest of RAM is zero)
// Guest RAM is two regions, [0, 32 KiB) and [36 KiB, 40 KiB), so that region holes and
// region-crossing buffers are reachable. The rings sit at fixed addresses inside the image:
// descriptor table 0x0, avail ring 0x200, used ring 0x300.
//
// Besides "never crash or hang", the target checks the walker's promises: every segment of a
// popped chain lies inside RAM, readable segments come first, no more segments than the queue
// size, the reader/writer byte counts agree with the chain, and add_used publishes the index.
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <span>
#include <vector>

#include "virtio/virtio_spec.h"
#include "virtio/virtqueue.h"
#include "vmm/base/guest_memory.h"

namespace {

using petrel::GuestAddress;
using petrel::GuestMemory;
using petrel::GuestRegionSpec;
using petrel::virtio::ChainReader;
using petrel::virtio::ChainWriter;
using petrel::virtio::DescriptorChain;
using petrel::virtio::QueueLayout;
using petrel::virtio::Virtqueue;

constexpr size_t kHeader = 8;
constexpr GuestAddress kDesc{0x0};
constexpr GuestAddress kAvail{0x200};
constexpr GuestAddress kUsed{0x300};
constexpr uint64_t kLowSize = 0x8000;
constexpr int kMaxOps = 96;

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "fuzz_virtqueue: invariant broken: %s\n", what);
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

const GuestMemory& memory() {
  // One mapping reused for every input (created on first use, refilled per input).
  static const GuestMemory mem = [] {
    std::array specs{GuestRegionSpec{GuestAddress(0), kLowSize},
                     GuestRegionSpec{GuestAddress(0x9000), 0x1000}};
    auto made = GuestMemory::create_anonymous(specs);
    expect(made.ok(), "guest memory");
    return std::move(made).value();
  }();
  return mem;
}

void load_image(const GuestMemory& mem, std::span<const uint8_t> image) {
  for (const auto& region : mem.regions()) {
    std::memset(region.host_base(), 0, region.size());
    region.dirty().take();
  }
  size_t n = std::min<size_t>(image.size(), kLowSize);
  std::memcpy(mem.regions()[0].host_base(), image.data(), n);
}

void check_chain(const GuestMemory& mem, const DescriptorChain& chain, uint16_t size) {
  expect(chain.head() < size, "head < queue size");
  expect(chain.segments().size() <= size, "segments <= queue size");
  bool seen_writable = false;
  for (const auto& seg : chain.segments()) {
    expect(seg.len > 0, "no empty segments");
    expect(mem.slice(seg.addr, seg.len).ok(), "segment inside RAM");
    if (seg.device_writable) {
      seen_writable = true;
    } else {
      expect(!seen_writable, "readable before writable");
    }
  }
  expect(chain.readable().size() + chain.writable().size() == chain.segments().size(),
         "readable + writable == segments");
}

void exercise_chain(const GuestMemory& mem, Virtqueue& vq, const DescriptorChain& chain, Rng& rng) {
  ChainReader reader(mem, chain);
  expect(reader.remaining() == chain.readable_bytes(), "reader sees every readable byte");
  std::vector<std::byte> buf(rng.below(300));
  for (int i = 0; i < 8 && reader.remaining() > 0; ++i) {
    uint64_t before = reader.remaining();
    switch (rng.below(3)) {
      case 0: {
        auto r = reader.read(buf);
        expect(r.ok() == (buf.size() <= before), "read succeeds iff enough bytes");
        expect(reader.remaining() == (r.ok() ? before - buf.size() : before), "read consumes");
        break;
      }
      case 1: {
        uint64_t n = rng.below(5000);
        auto r = reader.skip(n);
        expect(r.ok() == (n <= before), "skip succeeds iff enough bytes");
        expect(reader.remaining() == (r.ok() ? before - n : before), "skip consumes");
        break;
      }
      default: {
        uint64_t want = rng.below(5000);
        uint64_t got = 0;
        for (const auto& seg : reader.take(want)) {
          expect(mem.slice(seg.addr, seg.len).ok(), "taken range inside RAM");
          got += seg.len;
        }
        expect(got == std::min(want, before), "take length");
        expect(reader.remaining() == before - got, "take consumes");
        break;
      }
    }
  }

  ChainWriter writer(mem, chain);
  expect(writer.remaining() == chain.writable_bytes(), "writer sees every writable byte");
  std::vector<std::byte> data(rng.below(300), std::byte{0xa5});
  for (int i = 0; i < 4 && writer.remaining() > 0; ++i) {
    uint64_t before = writer.remaining();
    if (rng.below(2) == 0) {
      auto r = writer.write(data);
      expect(r.ok() == (data.size() <= before), "write succeeds iff enough room");
    } else {
      uint64_t want = rng.below(5000);
      uint64_t got = 0;
      for (const auto& seg : writer.peek(want)) {
        expect(mem.slice(seg.addr, seg.len).ok(), "peeked range inside RAM");
        got += seg.len;
      }
      expect(got == std::min(want, before), "peek length");
      expect(writer.advance(got).ok(), "advance over peeked ranges");
    }
  }
  expect(writer.written() <= chain.writable_bytes(), "written <= writable");

  uint16_t used_before = vq.next_used();
  auto len = static_cast<uint32_t>(writer.written());
  expect(vq.add_used(mem, chain.head(), len).ok(), "add_used of a popped head");
  expect(vq.next_used() == static_cast<uint16_t>(used_before + 1), "used idx advances");
  auto published = mem.read_obj<uint16_t>(kUsed + 2);
  expect(published.ok() && *published == vq.next_used(), "used idx published");
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
  bool event_idx = (data[1] & 1) != 0;
  bool indirect = (data[1] & 2) != 0;
  auto created = Virtqueue::create(mem, layout, petrel::virtio::kMaxQueueSize, event_idx, indirect);
  expect(created.ok(), "create with a valid layout");
  Virtqueue vq = std::move(created).value();
  vq.set_indices(static_cast<uint16_t>(data[2] | data[3] << 8),
                 static_cast<uint16_t>(data[4] | data[5] << 8));
  Rng rng(static_cast<uint32_t>(data[6] | data[7] << 8));
  mem.set_dirty_logging((data[1] & 4) != 0);

  for (int op = 0; op < kMaxOps; ++op) {
    switch (rng.below(8)) {
      case 0:  // the driver makes one more chain available
        (void)mem.write_obj<uint16_t>(
            kAvail + 2, static_cast<uint16_t>(*mem.read_obj<uint16_t>(kAvail + 2) + 1));
        break;
      case 1:
        (void)vq.should_notify(mem);
        break;
      case 2:
        expect(vq.update_avail_event(mem).ok(), "update_avail_event");
        break;
      default: {
        auto popped = vq.pop(mem);
        if (!popped.ok()) {
          return 0;  // a broken ring: the device would set DEVICE_NEEDS_RESET
        }
        if (!popped->has_value()) {
          break;
        }
        const DescriptorChain& chain = **popped;
        check_chain(mem, chain, layout.size);
        if (rng.below(8) == 0) {
          vq.undo_pop();
          auto again = vq.pop(mem);
          expect(again.ok() && again->has_value() && (*again)->head() == chain.head(),
                 "undo_pop returns the same chain");
        }
        exercise_chain(mem, vq, chain, rng);
        break;
      }
    }
  }
  return 0;
}
