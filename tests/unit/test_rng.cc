#include <algorithm>
#include <set>

#include <boost/asio/io_context.hpp>
#include <catch2/catch.hpp>

#include "virtio/rng_device.h"
#include "virtio/virtio_spec.h"
#include "virtq_builder.h"

using petrel::testing::VirtqBuilder;
using petrel::virtio::ActivateContext;
using petrel::virtio::RngDevice;

namespace {

class FakeInterrupt : public petrel::virtio::VirtioInterrupt {
 public:
  void notify_queue(uint16_t index) override { notified += index == 0 ? 1 : 1000; }
  void notify_config() override {}
  void set_needs_reset() override { needs_reset = true; }
  int notified = 0;
  bool needs_reset = false;
};

struct Harness {
  explicit Harness(uint16_t size = 16, uint64_t mem = 1 << 20) : q(size, mem) {
    auto dev = RngDevice::create();
    REQUIRE(dev.ok());
    device = *dev;
  }
  void activate(bool event_idx = false) {
    ActivateContext ctx;
    ctx.memory = &q.memory();
    ctx.queues.push_back(q.make_queue(event_idx));
    ctx.interrupt = &irq;
    ctx.io = &io;
    REQUIRE(device->activate(std::move(ctx)).ok());
  }
  boost::asio::io_context io;
  VirtqBuilder q;
  FakeInterrupt irq;
  std::shared_ptr<RngDevice> device;
};

bool looks_random(const std::vector<std::byte>& bytes) {
  std::set<std::byte> distinct(bytes.begin(), bytes.end());
  return distinct.size() > std::min<size_t>(bytes.size() / 4, 128);
}

}  // namespace

TEST_CASE("rng: fills writable buffers", "[rng]") {
  Harness h;
  CHECK(h.device->device_type() == petrel::virtio::kDeviceRng);
  CHECK(h.device->device_features() == 0);
  CHECK(h.device->queue_max_sizes() == std::vector<uint16_t>{256});
  auto one = h.q.push({VirtqBuilder::writable(64)});
  auto two = h.q.push({VirtqBuilder::writable(1000), VirtqBuilder::writable(3000)});
  h.activate();
  REQUIRE(h.q.used_idx() == 2);
  CHECK(h.q.used(0).id == one.head);
  CHECK(h.q.used(0).len == 64);
  CHECK(h.q.used(1).id == two.head);
  CHECK(h.q.used(1).len == 4000);
  CHECK(looks_random(h.q.read_bytes(one.buffers[0].addr, 64)));
  CHECK(looks_random(h.q.read_bytes(two.buffers[0].addr, 1000)));
  CHECK(looks_random(h.q.read_bytes(two.buffers[1].addr, 3000)));
  CHECK(h.q.read_bytes(two.buffers[0].addr, 1000) != h.q.read_bytes(two.buffers[1].addr, 1000));
  CHECK(h.irq.notified == 1);
  CHECK(h.device->bytes_served() == 4064);

  auto three = h.q.push({VirtqBuilder::writable(16)});
  h.device->process_queue(0);
  CHECK(h.q.used_idx() == 3);
  CHECK(h.q.used(2).len == 16);
  CHECK_FALSE(h.irq.needs_reset);
}

TEST_CASE("rng: readable-only chains, a readable prefix and the per-request cap", "[rng]") {
  Harness h(16, 4 << 20);
  auto readable = h.q.push({VirtqBuilder::readable(64)});
  auto mixed = h.q.push({VirtqBuilder::readable(8), VirtqBuilder::writable(32)});
  auto huge = h.q.push({VirtqBuilder::writable(RngDevice::kMaxRequestBytes + 4096)});
  auto empty = h.q.push({VirtqBuilder::at(petrel::GuestAddress(0x2000), 0, true)});
  h.activate();
  REQUIRE(h.q.used_idx() == 4);
  CHECK(h.q.used(0).id == readable.head);
  CHECK(h.q.used(0).len == 0);
  CHECK(h.q.read_bytes(readable.buffers[0].addr, 64) == std::vector<std::byte>(64));
  CHECK(h.q.used(1).id == mixed.head);
  CHECK(h.q.used(1).len == 32);
  CHECK(h.q.read_bytes(mixed.buffers[0].addr, 8) == std::vector<std::byte>(8));
  CHECK(h.q.used(2).id == huge.head);
  CHECK(h.q.used(2).len == RngDevice::kMaxRequestBytes);
  CHECK(h.q.read_bytes(huge.buffers[0].addr + RngDevice::kMaxRequestBytes, 4096) ==
        std::vector<std::byte>(4096));
  CHECK(h.q.used(3).id == empty.head);
  CHECK(h.q.used(3).len == 0);
  CHECK_FALSE(h.irq.needs_reset);
}

TEST_CASE("rng: dirty log records the bytes written", "[rng]") {
  Harness h;
  const auto buffer = h.q.alloc(4096 * 2, 4096);
  auto chain = h.q.push({VirtqBuilder::at(buffer, 4096 * 2, true)});
  h.q.memory().set_dirty_logging(true);
  h.activate();
  REQUIRE(h.q.used_idx() == 1);
  const auto& region = h.q.memory().regions()[0];
  const uint64_t page = chain.buffers[0].addr.value() / 4096;
  CHECK(region.dirty().test(page));
  CHECK(region.dirty().test(page + 1));
  CHECK_FALSE(region.dirty().test(page + 2));
}

TEST_CASE("rng: notifications follow EVENT_IDX and NO_INTERRUPT", "[rng]") {
  SECTION("NO_INTERRUPT") {
    Harness h;
    h.q.set_avail_flags(petrel::virtio::kAvailFNoInterrupt);
    h.q.push({VirtqBuilder::writable(8)});
    h.activate();
    CHECK(h.q.used_idx() == 1);
    CHECK(h.irq.notified == 0);
  }
  SECTION("EVENT_IDX: avail_event published for the next kick") {
    Harness h;
    h.q.push({VirtqBuilder::writable(8)});
    h.q.push({VirtqBuilder::writable(8)});
    h.activate(true);
    CHECK(h.q.used_idx() == 2);
    CHECK(h.q.avail_event() == 2);
  }
}

TEST_CASE("rng: a full ring is served; the posted continuation is harmless", "[rng]") {
  Harness h(256, 4 << 20);
  for (int i = 0; i < 256; ++i) {
    h.q.push({VirtqBuilder::writable(16)});
  }
  h.activate();
  CHECK(h.q.used_idx() == 256);
  h.io.restart();
  h.io.poll();
  CHECK_FALSE(h.irq.needs_reset);
}

TEST_CASE("rng: a broken ring needs a reset; reset and re-activate", "[rng]") {
  Harness h;
  h.q.push({VirtqBuilder::writable(8)});
  h.q.write_desc(0, VirtqBuilder::RawDesc{0, 8, petrel::virtio::kDescFNext, 0});  // a loop
  h.activate();
  CHECK(h.irq.needs_reset);
  CHECK(h.q.used_idx() == 0);
  h.device->process_queue(0);
  h.device->reset();

  VirtqBuilder q2(16);
  auto chain = q2.push({VirtqBuilder::writable(32)});
  ActivateContext ctx;
  ctx.memory = &q2.memory();
  ctx.queues.push_back(q2.make_queue());
  ctx.interrupt = &h.irq;
  ctx.io = &h.io;
  REQUIRE(h.device->activate(std::move(ctx)).ok());
  CHECK(q2.used_idx() == 1);
  CHECK(q2.used(0).id == chain.head);
  CHECK(q2.used(0).len == 32);
}
