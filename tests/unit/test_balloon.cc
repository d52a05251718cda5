// BalloonDevice (virtio 1.2 section 5.5) against a fake driver with several queues in one
// guest memory, and GuestMemory::discard on anonymous and file-backed private memory. Host
// memory is checked with mincore(2): inflated pages must leave the process, not only read
// as zeros.
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstring>
#include <fstream>
#include <map>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <catch2/catch.hpp>

#include "scratch_dir.h"
#include "virtio/balloon_device.h"
#include "virtio/virtio_spec.h"
#include "vmm/base/guest_memory.h"
#include "vmm/base/state_codec.h"
#include "vmm/memory_file.h"

using petrel::GuestAddress;
using petrel::GuestMemory;
using petrel::GuestRegionSpec;
using petrel::virtio::ActivateContext;
using petrel::virtio::BalloonDevice;
using petrel::virtio::BalloonOptions;
using petrel::virtio::BalloonStats;
using petrel::virtio::feature_bit;

namespace {

constexpr uint64_t kMiB = 1 << 20;
constexpr uint64_t kPage = 4096;
constexpr GuestAddress kHighStart{4ULL << 30};  // a second region, 1 MiB at 4 GiB

class FakeInterrupt : public petrel::virtio::VirtioInterrupt {
 public:
  void notify_queue(uint16_t index) override { ++queue[index]; }
  void notify_config() override { ++config; }
  void set_needs_reset() override { needs_reset = true; }
  std::map<uint16_t, int> queue;
  int config = 0;
  bool needs_reset = false;
};

struct Seg {
  uint64_t addr;
  uint32_t len;
  bool writable = false;
};

// The driver side of one split queue of size 16 at a fixed place in the memory.
struct DriverQueue {
  petrel::virtio::QueueLayout layout;
  uint16_t next_desc = 0;
  uint16_t avail = 0;
};

// A fake virtio-balloon driver: 128 MiB at 0 and 1 MiB at 4 GiB; queue i at 0x10000*(i+1);
// buffers allocated from 2 MiB up.
class Driver {
 public:
  explicit Driver(BalloonOptions options = {}) : mem_(make_memory()) {
    for (uint16_t i = 0; i < 5; ++i) {
      DriverQueue q;
      q.layout.size = 16;
      q.layout.desc = GuestAddress(0x10000 * (i + 1));
      q.layout.avail = q.layout.desc + 0x1000;
      q.layout.used = q.layout.desc + 0x2000;
      queues_.push_back(q);
    }
    auto dev = BalloonDevice::create(mem_, options, io);
    REQUIRE(dev.ok());
    device = *dev;
  }

  static GuestMemory make_memory() {
    std::array specs{GuestRegionSpec{GuestAddress(0), 128 * kMiB},
                     GuestRegionSpec{kHighStart, kMiB}};
    auto mem = GuestMemory::create_anonymous(specs);
    REQUIRE(mem.ok());
    return std::move(mem).value();
  }

  const GuestMemory& memory() const { return mem_; }

  std::optional<petrel::virtio::Virtqueue> make_queue(uint16_t i, uint16_t next_avail = 0,
                                                      uint16_t next_used = 0) {
    auto vq = petrel::virtio::Virtqueue::create(mem_, queues_[i].layout, 256, false, false);
    REQUIRE(vq.ok());
    vq->set_indices(next_avail, next_used);
    return std::move(vq).value();
  }
  // Activates with `features` and queues 0..n-1 enabled (n = the device's queue count, or
  // only those in `enabled` when given).
  void activate(uint64_t features, std::vector<uint16_t> enabled = {}) {
    const size_t n = device->queue_max_sizes().size();
    if (enabled.empty()) {
      for (uint16_t i = 0; i < n; ++i) {
        enabled.push_back(i);
      }
    }
    ActivateContext ctx;
    ctx.memory = &mem_;
    ctx.features = features;
    ctx.queues.resize(n);
    for (uint16_t i : enabled) {
      ctx.queues[i] = make_queue(i);
    }
    ctx.interrupt = &irq;
    ctx.io = &io;
    REQUIRE(device->activate(std::move(ctx)).ok());
  }

  uint64_t alloc(uint64_t len) {
    const uint64_t at = next_data_;
    next_data_ = (next_data_ + len + 15) / 16 * 16;
    REQUIRE(next_data_ <= 128 * kMiB);
    return at;
  }
  // Puts the PFNs in a fresh buffer; returns its address.
  uint64_t pfn_buffer(const std::vector<uint32_t>& pfns) {
    const uint64_t at = alloc(pfns.size() * 4);
    REQUIRE(mem_.write(GuestAddress(at), std::as_bytes(std::span(pfns))).ok());
    return at;
  }
  // Adds a chain and makes it available (no kick).
  uint16_t push(uint16_t q, const std::vector<Seg>& segs) {
    auto& dq = queues_[q];
    const uint16_t head = dq.next_desc;
    for (size_t i = 0; i < segs.size(); ++i) {
      const uint16_t index = dq.next_desc;
      dq.next_desc = static_cast<uint16_t>((dq.next_desc + 1) % 16);
      const bool last = i + 1 == segs.size();
      uint16_t flags = segs[i].writable ? petrel::virtio::kDescFWrite : 0;
      if (!last) {
        flags |= petrel::virtio::kDescFNext;
      }
      put(dq.layout.desc + 16 * uint64_t{index}, segs[i].addr);
      put(dq.layout.desc + 16 * uint64_t{index} + 8, segs[i].len);
      put(dq.layout.desc + 16 * uint64_t{index} + 12, flags);
      put(dq.layout.desc + 16 * uint64_t{index} + 14, last ? uint16_t{0} : dq.next_desc);
    }
    put(dq.layout.avail + 4 + 2 * uint64_t{static_cast<uint16_t>(dq.avail % 16)}, head);
    ++dq.avail;
    put(dq.layout.avail + 2, dq.avail);
    return head;
  }
  uint16_t used_idx(uint16_t q) const { return get<uint16_t>(queues_[q].layout.used + 2); }
  uint32_t used_id(uint16_t q, uint16_t i) const {
    return get<uint32_t>(queues_[q].layout.used + 4 + 8 * uint64_t{i % 16u});
  }
  uint32_t used_len(uint16_t q, uint16_t i) const {
    return get<uint32_t>(queues_[q].layout.used + 8 + 8 * uint64_t{i % 16u});
  }

  template <typename T>
  void put(GuestAddress at, T v) {
    REQUIRE(mem_.write_obj(at, v).ok());
  }
  template <typename T>
  T get(GuestAddress at) const {
    auto v = mem_.read_obj<T>(at);
    REQUIRE(v.ok());
    return *v;
  }
  void fill(uint64_t addr, uint64_t len, uint8_t byte) {
    std::vector<std::byte> bytes(len, std::byte{byte});
    REQUIRE(mem_.write(GuestAddress(addr), bytes).ok());
  }
  bool all(uint64_t addr, uint64_t len, uint8_t byte) const {
    std::vector<std::byte> bytes(len);
    REQUIRE(mem_.read(GuestAddress(addr), bytes).ok());
    return std::all_of(bytes.begin(), bytes.end(),
                       [&](std::byte b) { return b == std::byte{byte}; });
  }
  // Host pages of [addr, addr+len) resident in this process (mincore).
  size_t resident(uint64_t addr, uint64_t len) const {
    auto host = mem_.slice(GuestAddress(addr), len);
    REQUIRE(host.ok());
    std::vector<unsigned char> vec(len / kPage);
    REQUIRE(::mincore(host->data(), len, vec.data()) == 0);
    return static_cast<size_t>(
        std::count_if(vec.begin(), vec.end(), [](unsigned char c) { return c & 1; }));
  }
  void run_loop(std::chrono::milliseconds d) {
    io.restart();
    io.run_for(d);
  }

  boost::asio::io_context io;
  FakeInterrupt irq;
  std::shared_ptr<BalloonDevice> device;

 private:
  GuestMemory mem_;
  std::vector<DriverQueue> queues_;
  uint64_t next_data_ = 2 * kMiB;
};

constexpr uint64_t kStats = feature_bit(BalloonDevice::kFStatsVq);
constexpr uint64_t kReporting = feature_bit(BalloonDevice::kFPageReporting);

std::vector<uint32_t> pfn_range(uint32_t first, uint32_t count) {
  std::vector<uint32_t> out(count);
  for (uint32_t i = 0; i < count; ++i) {
    out[i] = first + i;
  }
  return out;
}

std::vector<std::byte> stats_entry(uint16_t tag, uint64_t value) {
  std::vector<std::byte> out(10);
  std::memcpy(out.data(), &tag, 2);
  std::memcpy(out.data() + 2, &value, 8);
  return out;
}

}  // namespace

TEST_CASE("balloon: identity, features, queues and config space", "[balloon]") {
  Driver plain;
  CHECK(plain.device->device_type() == petrel::virtio::kDeviceBalloon);
  CHECK(plain.device->device_features() == kStats);
  CHECK(plain.device->queue_max_sizes() == std::vector<uint16_t>(3, 256));

  Driver full(BalloonOptions{100, true, true, {}});
  CHECK(full.device->device_features() ==
        (kStats | kReporting | feature_bit(BalloonDevice::kFDeflateOnOom)));
  CHECK((full.device->device_features() & feature_bit(BalloonDevice::kFMustTellHost)) == 0);
  CHECK(full.device->queue_max_sizes().size() == 5);

  std::array<std::byte, 12> cfg{};
  full.device->read_config(0, cfg);
  CHECK(petrel::get_le(cfg.data(), 4) == 100);
  CHECK(petrel::get_le(cfg.data() + 4, 4) == 0);
  CHECK(petrel::get_le(cfg.data() + 8, 4) == 0);  // no hint cmd id / poison_val
  const std::array<std::byte, 4> actual{std::byte{0x34}, std::byte{0x12}, std::byte{0},
                                        std::byte{0}};
  full.device->write_config(4, actual);
  full.device->write_config(0, actual);  // num_pages is read-only for the driver
  full.device->write_config(7, std::array{std::byte{0x01}});  // byte-wise, the top byte
  full.device->write_config(8, actual);                       // past the config: ignored
  CHECK(full.device->actual_pages() == 0x01001234);
  CHECK(full.device->target_pages() == 100);
}

TEST_CASE("balloon: a target change raises the config interrupt", "[balloon]") {
  Driver d;
  const uint32_t gen = d.device->config_generation();
  d.device->set_target_pages(10);  // not active yet: no interrupt
  d.run_loop(std::chrono::milliseconds(5));
  CHECK(d.irq.config == 0);
  CHECK(d.device->config_generation() != gen);
  d.activate(kStats);
  d.device->set_target_pages(20);
  d.device->set_target_pages(20);  // unchanged: nothing more
  d.run_loop(std::chrono::milliseconds(5));
  CHECK(d.irq.config == 1);
  CHECK(d.device->target_pages() == 20);
  bool idle = false;
  d.device->quiesce([&] { idle = true; });
  CHECK(idle);
  d.device->set_target_pages(30);
  d.run_loop(std::chrono::milliseconds(5));
  CHECK(d.irq.config == 1);  // held while quiesced ...
  d.device->unquiesce();
  CHECK(d.irq.config == 2);  // ... and delivered after
}

TEST_CASE("balloon: inflate gives pages back to the host, deflate forgets them", "[balloon]") {
  Driver d;
  d.activate(kStats);
  const uint64_t base = 64 * kMiB;  // pages 16384.. of region 0
  d.fill(base, 256 * kPage, 0xab);
  REQUIRE(d.resident(base, 256 * kPage) == 256);

  // Two chains: 200 PFNs in one buffer, 56 in a PFN array split across two descriptors, one
  // PFN straddling them.
  const uint64_t a = d.pfn_buffer(pfn_range(16384, 200));
  const uint64_t b = d.pfn_buffer(pfn_range(16384 + 200, 56));
  const uint16_t h1 = d.push(0, {{a, 200 * 4}});
  const uint16_t h2 = d.push(0, {{b, 2}, {b + 2, 56 * 4 - 2}});
  d.device->process_queue(0);
  REQUIRE(d.used_idx(0) == 2);
  CHECK(d.used_id(0, 0) == h1);
  CHECK(d.used_id(0, 1) == h2);
  CHECK(d.used_len(0, 0) == 0);
  CHECK(d.irq.queue[0] == 1);
  CHECK(d.resident(base, 256 * kPage) == 0);
  CHECK(d.all(base, 256 * kPage, 0));
  CHECK(d.device->ballooned_page_count() == 256);
  auto words = d.device->ballooned_pages();
  REQUIRE(words.size() == 2);
  CHECK(words[0][16384 / 64] == ~uint64_t{0});
  CHECK(words[0][16384 / 64 + 4] == 0);
  CHECK(d.device->counters().inflated_pages == 256);
  CHECK(d.device->counters().ignored_pfns == 0);

  // Deflate the first 100: the marks go, the memory is usable (and zero) again.
  d.push(1, {{d.pfn_buffer(pfn_range(16384, 100)), 400}});
  d.device->process_queue(1);
  CHECK(d.used_idx(1) == 1);
  CHECK(d.device->ballooned_page_count() == 156);
  CHECK(d.device->counters().deflated_pages == 100);
  d.fill(base + kPage, kPage, 0x5a);
  CHECK(d.all(base + kPage, kPage, 0x5a));
  CHECK(d.resident(base + kPage, kPage) == 1);
  CHECK_FALSE(d.irq.needs_reset);

  // A device reset returns everything to the guest.
  d.device->write_config(4, std::array{std::byte{9}, std::byte{0}, std::byte{0}, std::byte{0}});
  d.device->reset();
  CHECK(d.device->ballooned_page_count() == 0);
  CHECK(d.device->actual_pages() == 0);
}

TEST_CASE("balloon: hostile PFN arrays are ignored and counted", "[balloon]") {
  Driver d;
  d.activate(kStats);
  const uint32_t high = static_cast<uint32_t>(kHighStart.value() / kPage);
  d.fill(kHighStart.value(), kPage, 0x77);

  SECTION("PFNs outside RAM, in the hole, at the top; one inside the high region") {
    std::vector<uint32_t> pfns{32768, 0x80000, high - 1, high + 256, 0xffffffff, high};
    d.push(0, {{d.pfn_buffer(pfns), static_cast<uint32_t>(pfns.size() * 4)}});
    d.device->process_queue(0);
    CHECK(d.used_idx(0) == 1);
    CHECK(d.device->counters().ignored_pfns == 5);
    CHECK(d.device->counters().inflated_pages == 1);
    CHECK(d.device->ballooned_page_count() == 1);
    CHECK(d.device->ballooned_pages()[1][0] == 1);
    CHECK(d.all(kHighStart.value(), kPage, 0));
    // Deflating outside RAM is ignored too.
    d.push(1, {{d.pfn_buffer({0xfffffff0}), 4}});
    d.device->process_queue(1);
    CHECK(d.device->counters().ignored_pfns == 6);
    CHECK(d.device->ballooned_page_count() == 1);
  }
  SECTION("odd lengths: a trailing partial PFN is ignored, never acted on") {
    d.fill(20 * kMiB, 2 * kPage, 0x11);
    const uint64_t buf = d.pfn_buffer({20 * kMiB / kPage, 20 * kMiB / kPage + 1});
    d.push(0, {{buf, 7}});  // one PFN and 3 bytes of the next
    d.push(0, {{buf + 4, 3}});
    d.device->process_queue(0);
    CHECK(d.used_idx(0) == 2);
    CHECK(d.device->counters().inflated_pages == 1);
    CHECK(d.device->counters().ignored_pfns == 2);
    CHECK(d.all(20 * kMiB, kPage, 0));
    CHECK(d.all(20 * kMiB + kPage, kPage, 0x11));
  }
  SECTION("a 64 KiB PFN array, and one past the per-request limit") {
    const uint32_t first = 64 * kMiB / kPage;
    std::vector<uint32_t> pfns = pfn_range(first, 16384);
    std::reverse(pfns.begin(), pfns.end());  // no runs to merge
    d.push(0, {{d.pfn_buffer(pfns), 64 * 1024}});
    d.device->process_queue(0);
    CHECK(d.device->counters().inflated_pages == 16384);
    CHECK(d.device->ballooned_page_count() == 16384);

    std::vector<uint32_t> big(BalloonDevice::kMaxPfnBytesPerChain / 4 + 2, first);
    d.push(1, {{d.pfn_buffer(big), static_cast<uint32_t>(big.size() * 4)}});
    d.device->process_queue(1);
    CHECK(d.device->counters().deflated_pages == BalloonDevice::kMaxPfnBytesPerChain / 4);
    CHECK(d.device->counters().ignored_pfns == 2);
    CHECK(d.device->ballooned_page_count() == 16383);
  }
  CHECK_FALSE(d.irq.needs_reset);
}

TEST_CASE("balloon: stats are parsed, held and polled", "[balloon]") {
  Driver d(BalloonOptions{0, false, false, std::chrono::milliseconds(20)});
  std::vector<std::byte> buf;
  for (auto e : {stats_entry(BalloonStats::kMemFree, 1000), stats_entry(42, 7),
                 stats_entry(BalloonStats::kMemTotal, 4000),
                 stats_entry(BalloonStats::kMemFree, 900), stats_entry(0xffff, 1)}) {
    buf.insert(buf.end(), e.begin(), e.end());
  }
  buf.resize(buf.size() + 3);  // not a multiple of 10
  const uint64_t at = d.alloc(buf.size());
  REQUIRE(d.memory().write(GuestAddress(at), buf).ok());
  d.push(2, {{at, static_cast<uint32_t>(buf.size())}});
  const auto before = std::chrono::system_clock::now();
  d.activate(kStats);
  CHECK(d.used_idx(2) == 0);  // held
  auto stats = d.device->stats();
  CHECK(stats.received);
  CHECK(stats.value(BalloonStats::kMemFree) == 900);
  CHECK(stats.value(BalloonStats::kMemTotal) == 4000);
  CHECK_FALSE(stats.value(BalloonStats::kSwapIn).has_value());
  CHECK(stats.unknown_tags == 2);
  CHECK(stats.trailing_bytes == 3);
  CHECK(stats.received_at >= before);

  d.run_loop(std::chrono::milliseconds(60));
  CHECK(d.used_idx(2) == 1);  // returned: asks for fresh stats
  CHECK(d.irq.queue[2] == 1);

  // A buffer too short for one entry: stats without values.
  const uint64_t shorty = d.alloc(5);
  d.push(2, {{shorty, 5}});
  d.device->process_queue(2);
  stats = d.device->stats();
  CHECK(stats.received);
  CHECK(stats.trailing_bytes == 5);
  CHECK_FALSE(stats.value(BalloonStats::kMemFree).has_value());
  CHECK_FALSE(d.irq.needs_reset);
}

TEST_CASE("balloon: stats interval 0 keeps the first buffer", "[balloon]") {
  Driver d;
  auto e = stats_entry(BalloonStats::kCaches, 5);
  const uint64_t at = d.alloc(10);
  REQUIRE(d.memory().write(GuestAddress(at), e).ok());
  d.push(2, {{at, 10}});
  d.activate(kStats);
  d.run_loop(std::chrono::milliseconds(30));
  CHECK(d.used_idx(2) == 0);
  CHECK(d.device->stats().value(BalloonStats::kCaches) == 5);
}

TEST_CASE("balloon: free page reporting discards whole pages, leaves them owned", "[balloon]") {
  for (bool stats : {true, false}) {
    for (bool spec_index : {false, true}) {
      Driver d(BalloonOptions{0, false, true, {}});
      const uint16_t q = spec_index ? 4 : (stats ? 3 : 2);
      d.activate((stats ? kStats : 0) | kReporting, {0, 1, q});
      const uint64_t base = 40 * kMiB;
      d.fill(base, 8 * kPage, 0xcd);
      // [base+100, base+4*page+100): pages 1..3 whole; the edges stay.
      d.push(q, {{base + 100, static_cast<uint32_t>(4 * kPage), true},
                 {base + 6 * kPage, 2 * kPage, true}});
      d.device->process_queue(q);
      INFO("stats " << stats << " spec index " << spec_index);
      REQUIRE(d.used_idx(q) == 1);
      CHECK(d.resident(base + kPage, 3 * kPage) == 0);  // before any read faults them in
      CHECK(d.all(base, kPage, 0xcd));
      CHECK(d.all(base + kPage, 3 * kPage, 0));
      CHECK(d.all(base + 4 * kPage, 2 * kPage, 0xcd));
      CHECK(d.all(base + 6 * kPage, 2 * kPage, 0));
      CHECK(d.device->counters().reported_pages == 5);
      CHECK(d.device->ballooned_page_count() == 0);
      CHECK_FALSE(d.irq.needs_reset);
    }
  }
}

TEST_CASE("balloon: quiesce, save and restore keep the balloon and the held stats", "[balloon]") {
  Driver d(BalloonOptions{0, false, false, std::chrono::milliseconds(0)});
  const uint64_t stats_at = d.alloc(10);
  REQUIRE(d.memory().write(GuestAddress(stats_at), stats_entry(BalloonStats::kAvailable, 77)).ok());
  d.push(2, {{stats_at, 10}});
  d.activate(kStats);
  d.push(0, {{d.pfn_buffer(pfn_range(30000, 10)), 40}});
  d.device->process_queue(0);
  d.device->set_target_pages(12);
  d.device->write_config(4, std::array{std::byte{10}, std::byte{0}, std::byte{0}, std::byte{0}});

  bool idle = false;
  d.device->quiesce([&] { idle = true; });
  REQUIRE(idle);
  auto indices = d.device->queue_indices();
  REQUIRE(indices.size() == 3);
  CHECK(indices[0]->next_avail == 1);
  CHECK(indices[2]->next_avail == 0);  // the held stats chain went back to the ring
  CHECK(indices[2]->next_used == 0);
  const auto state = d.device->save_state();
  const auto stats_before = d.device->stats();

  // The driver scribbles over its buffer: the restored device must not parse it again.
  REQUIRE(d.memory().write(GuestAddress(stats_at), stats_entry(BalloonStats::kAvailable, 1)).ok());
  auto restored = BalloonDevice::create(d.memory(), BalloonOptions{}, d.io);
  REQUIRE(restored.ok());
  REQUIRE((*restored)->restore_state(state).ok());
  CHECK((*restored)->target_pages() == 12);
  CHECK((*restored)->actual_pages() == 10);
  CHECK((*restored)->ballooned_pages() == d.device->ballooned_pages());
  CHECK((*restored)->ballooned_page_count() == 10);
  CHECK((*restored)->stats() == stats_before);

  ActivateContext ctx;
  ctx.memory = &d.memory();
  ctx.features = kStats;
  for (uint16_t i = 0; i < 3; ++i) {
    ctx.queues.push_back(d.make_queue(i, indices[i]->next_avail, indices[i]->next_used));
  }
  ctx.interrupt = &d.irq;
  ctx.io = &d.io;
  REQUIRE((*restored)->activate(std::move(ctx)).ok());
  CHECK(d.used_idx(2) == 0);  // held again
  CHECK((*restored)->stats().value(BalloonStats::kAvailable) == 77);
  CHECK((*restored)->queue_indices()[2]->next_avail == 1);

  SECTION("bad states are refused and change nothing") {
    auto fresh = BalloonDevice::create(d.memory(), BalloonOptions{5, false, false, {}}, d.io);
    REQUIRE(fresh.ok());
    auto cut = state;
    cut.resize(cut.size() - 1);
    CHECK_FALSE((*fresh)->restore_state(cut).ok());
    auto flipped = state;
    flipped[0] ^= std::byte{1};
    CHECK_FALSE((*fresh)->restore_state(flipped).ok());
    CHECK_FALSE((*fresh)->restore_state(std::vector<std::byte>(40)).ok());
    CHECK((*fresh)->target_pages() == 5);
    CHECK((*fresh)->ballooned_page_count() == 0);
  }
}

TEST_CASE("guest memory: discard on anonymous memory", "[balloon][guest_memory]") {
  std::array specs{GuestRegionSpec{GuestAddress(0), 4 * kMiB},
                   GuestRegionSpec{GuestAddress(8 * kMiB), kMiB}};
  auto mem = GuestMemory::create_anonymous(specs);
  REQUIRE(mem.ok());
  CHECK(mem->regions()[0].backing() == petrel::RegionBacking::kAnonymous);
  std::vector<std::byte> ones(4 * kMiB, std::byte{1});
  REQUIRE(mem->write(GuestAddress(0), ones).ok());
  CHECK_FALSE(mem->discard(GuestAddress(100), kPage).ok());                   // unaligned
  CHECK_FALSE(mem->discard(GuestAddress(0), 100).ok());                       // partial page
  CHECK_FALSE(mem->discard(GuestAddress(0), 0).ok());                         // empty
  CHECK_FALSE(mem->discard(GuestAddress(4 * kMiB - kPage), 2 * kPage).ok());  // leaves the region
  CHECK_FALSE(mem->discard(GuestAddress(5 * kMiB), kPage).ok());              // not RAM
  REQUIRE(mem->discard(GuestAddress(kMiB), kMiB).ok());
  std::vector<unsigned char> vec(kMiB / kPage);
  REQUIRE(::mincore(mem->regions()[0].host_base() + kMiB, kMiB, vec.data()) == 0);
  CHECK(std::none_of(vec.begin(), vec.end(), [](unsigned char c) { return c & 1; }));
  std::vector<std::byte> back(4 * kMiB);
  REQUIRE(mem->read(GuestAddress(0), back).ok());
  CHECK(std::all_of(back.begin(), back.begin() + kMiB,
                    [](std::byte b) { return b == std::byte{1}; }));
  CHECK(std::all_of(back.begin() + kMiB, back.begin() + 2 * kMiB,
                    [](std::byte b) { return b == std::byte{0}; }));
  CHECK(std::all_of(back.begin() + 2 * kMiB, back.end(),
                    [](std::byte b) { return b == std::byte{1}; }));
}

TEST_CASE("guest memory: discard on a private file mapping reads zeros, the file keeps its bytes",
          "[balloon][guest_memory]") {
  petrel::testing::ScratchDir dir;
  const auto path = dir.path() / "mem";
  {
    std::ofstream out(path, std::ios::binary);
    std::vector<char> bytes(kMiB, 0x42);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }
  auto mapping = petrel::map_memory_private(path, 0, kMiB);
  REQUIRE(mapping.ok());
  std::vector<petrel::GuestRegion> regions;
  regions.emplace_back(GuestAddress(0), std::move(mapping).value());
  auto mem = GuestMemory::create_from_mappings(std::move(regions));
  REQUIRE(mem.ok());
  CHECK(mem->regions()[0].backing() == petrel::RegionBacking::kPrivateMapping);
  std::vector<std::byte> dirty(kPage, std::byte{7});
  REQUIRE(mem->write(GuestAddress(2 * kPage), dirty).ok());  // a private copy, then discarded
  REQUIRE(mem->discard(GuestAddress(kPage), 4 * kPage).ok());
  std::vector<std::byte> back(kMiB);
  REQUIRE(mem->read(GuestAddress(0), back).ok());
  CHECK(std::all_of(back.begin(), back.begin() + kPage,
                    [](std::byte b) { return b == std::byte{0x42}; }));
  CHECK(std::all_of(back.begin() + kPage, back.begin() + 5 * kPage,
                    [](std::byte b) { return b == std::byte{0}; }));
  CHECK(std::all_of(back.begin() + 5 * kPage, back.end(),
                    [](std::byte b) { return b == std::byte{0x42}; }));
  // Writable afterwards, and the file is untouched.
  REQUIRE(mem->write(GuestAddress(kPage), dirty).ok());
  std::ifstream in(path, std::ios::binary);
  std::vector<char> file(kMiB);
  in.read(file.data(), static_cast<std::streamsize>(file.size()));
  CHECK(std::all_of(file.begin(), file.end(), [](char c) { return c == 0x42; }));
}
