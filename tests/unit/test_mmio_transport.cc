// virtio-MMIO transport (virtio 1.2 section 4.2) and the transport core it is built on, driven
// through its registers as a guest driver would, with a real event loop on its own thread.
#include <poll.h>

#include <array>
#include <chrono>
#include <cstring>
#include <functional>
#include <future>
#include <optional>
#include <thread>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <catch2/catch.hpp>

#include "fake_virtio_device.h"
#include "virtio/mmio_transport.h"
#include "virtio/virtio_spec.h"
#include "virtq_builder.h"

namespace {

using petrel::EventFd;
using petrel::GuestAddress;
using petrel::testing::FakeVirtioDevice;
using petrel::testing::VirtqBuilder;
using namespace petrel::virtio;
using namespace std::chrono_literals;

constexpr uint64_t kDeviceBits = feature_bit(0) | feature_bit(5);
constexpr uint32_t kAck = kStatusAcknowledge;
constexpr uint32_t kDrv = kStatusAcknowledge | kStatusDriver;
constexpr uint32_t kFeat = kDrv | kStatusFeaturesOk;
constexpr uint32_t kOk = kFeat | kStatusDriverOk;

class LoopThread {
 public:
  LoopThread() : thread_([this] { io_.run(); }) {}
  ~LoopThread() {
    work_.reset();
    io_.stop();
  }
  boost::asio::io_context& io() { return io_; }
  // Runs `fn` on the loop thread and waits for it.
  void run(const std::function<void()>& fn) {
    std::promise<void> done;
    boost::asio::post(io_, [&] {
      fn();
      done.set_value();
    });
    done.get_future().wait();
  }

 private:
  boost::asio::io_context io_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_ =
      boost::asio::make_work_guard(io_);
  std::jthread thread_;
};

// Waits for the eventfd to be signalled and consumes it.
bool signalled(const EventFd& fd, std::chrono::milliseconds timeout = 2s) {
  pollfd p{fd.fd(), POLLIN, 0};
  if (::poll(&p, 1, static_cast<int>(timeout.count())) != 1) {
    return false;
  }
  auto n = fd.consume();
  return n.ok() && *n > 0;
}

struct Fixture {
  explicit Fixture(std::vector<uint16_t> sizes = {16, 16})
      : dev(std::make_shared<FakeVirtioDevice>(kDeviceRng, std::move(sizes), kDeviceBits)) {
    auto created = MmioTransport::create(loop.io(), q.memory(), dev);
    REQUIRE(created.ok());
    t = std::move(created).value();
  }
  ~Fixture() { t->stop(); }

  uint32_t r32(uint64_t off) {
    std::array<std::byte, 4> b{};
    t->read(off, b);
    uint32_t v = 0;
    std::memcpy(&v, b.data(), 4);
    return v;
  }
  void w32(uint64_t off, uint32_t v) {
    std::array<std::byte, 4> b{};
    std::memcpy(b.data(), &v, 4);
    t->write(off, b);
  }
  void write_features(uint64_t features) {
    w32(mmio::kDriverFeaturesSel, 0);
    w32(mmio::kDriverFeatures, static_cast<uint32_t>(features));
    w32(mmio::kDriverFeaturesSel, 1);
    w32(mmio::kDriverFeatures, static_cast<uint32_t>(features >> 32));
  }
  // ACKNOWLEDGE, DRIVER, features, FEATURES_OK (3.1.1 steps 1-6).
  void negotiate(uint64_t features) {
    w32(mmio::kStatus, kAck);
    w32(mmio::kStatus, kDrv);
    write_features(features);
    w32(mmio::kStatus, kFeat);
  }
  void setup_queue(uint32_t index, const QueueLayout& l, bool ready = true) {
    w32(mmio::kQueueSel, index);
    w32(mmio::kQueueNum, l.size);
    w32(mmio::kQueueDescLow, static_cast<uint32_t>(l.desc.value()));
    w32(mmio::kQueueDescHigh, static_cast<uint32_t>(l.desc.value() >> 32));
    w32(mmio::kQueueDriverLow, static_cast<uint32_t>(l.avail.value()));
    w32(mmio::kQueueDriverHigh, static_cast<uint32_t>(l.avail.value() >> 32));
    w32(mmio::kQueueDeviceLow, static_cast<uint32_t>(l.used.value()));
    w32(mmio::kQueueDeviceHigh, static_cast<uint32_t>(l.used.value() >> 32));
    if (ready) {
      w32(mmio::kQueueReady, 1);
    }
  }
  // Full handshake with queue 0 at the builder's layout; waits for the activation.
  void bring_up(uint64_t features = feature_bit(kFVersion1)) {
    negotiate(features);
    REQUIRE(r32(mmio::kStatus) == kFeat);
    setup_queue(0, q.layout());
    w32(mmio::kStatus, kOk);
    REQUIRE(dev->wait_for([](const FakeVirtioDevice& d) { return d.active(); }));
  }

  LoopThread loop;
  VirtqBuilder q{16};
  std::shared_ptr<FakeVirtioDevice> dev;
  std::shared_ptr<MmioTransport> t;
};

bool processed_count(const std::shared_ptr<FakeVirtioDevice>& dev, size_t n,
                     std::chrono::milliseconds timeout = 5s) {
  return dev->wait_for([n](const FakeVirtioDevice& d) { return d.processed().size() >= n; },
                       timeout);
}

}  // namespace

TEST_CASE("virtio-mmio: identification registers") {
  Fixture f;
  CHECK(f.r32(mmio::kMagicValue) == 0x74726976);
  CHECK(f.r32(mmio::kVersion) == 2);
  CHECK(f.r32(mmio::kDeviceId) == kDeviceRng);
  CHECK(f.r32(mmio::kVendorId) == kMmioVendorId);
  CHECK(f.r32(mmio::kShmLenLow) == 0xffffffff);
  CHECK(f.r32(mmio::kShmLenHigh) == 0xffffffff);
  CHECK(f.r32(mmio::kQueueReset) == 0);
  CHECK(f.r32(mmio::kStatus) == 0);
  CHECK(f.t->num_queues() == 2);
  f.w32(mmio::kQueueSel, 1);
  CHECK(f.r32(mmio::kQueueNumMax) == 16);
  f.w32(mmio::kQueueSel, 2);
  CHECK(f.r32(mmio::kQueueNumMax) == 0);
  f.dev->set_config_generation(7);
  CHECK(f.r32(mmio::kConfigGeneration) == 7);
}

TEST_CASE("virtio-mmio: feature select windows") {
  Fixture f;
  f.w32(mmio::kDeviceFeaturesSel, 0);
  CHECK(f.r32(mmio::kDeviceFeatures) ==
        static_cast<uint32_t>(kDeviceBits | feature_bit(kFIndirectDesc) | feature_bit(kFEventIdx)));
  f.w32(mmio::kDeviceFeaturesSel, 1);
  CHECK(f.r32(mmio::kDeviceFeatures) == 1);  // VERSION_1 is bit 32
  f.w32(mmio::kDeviceFeaturesSel, 2);
  CHECK(f.r32(mmio::kDeviceFeatures) == 0);
  f.w32(mmio::kDeviceFeaturesSel, 0xffffffff);
  CHECK(f.r32(mmio::kDeviceFeatures) == 0);

  f.w32(mmio::kStatus, kDrv);
  f.write_features(feature_bit(kFVersion1) | feature_bit(5));
  CHECK(f.t->core().driver_features() == (feature_bit(kFVersion1) | feature_bit(5)));
  f.w32(mmio::kDriverFeaturesSel, 0);
  CHECK(f.t->core().driver_features_word() == (1u << 5));
}

TEST_CASE("virtio-mmio: status handshake activates with the negotiated features") {
  Fixture f;
  f.w32(mmio::kStatus, kAck);
  CHECK(f.r32(mmio::kStatus) == kAck);
  f.w32(mmio::kStatus, kDrv);
  CHECK(f.r32(mmio::kStatus) == kDrv);
  const uint64_t features = feature_bit(kFVersion1) | feature_bit(kFEventIdx) | feature_bit(0);
  f.write_features(features);
  f.w32(mmio::kStatus, kFeat);
  CHECK(f.r32(mmio::kStatus) == kFeat);
  // Features are frozen after FEATURES_OK.
  f.w32(mmio::kDriverFeaturesSel, 0);
  f.w32(mmio::kDriverFeatures, 0xffffffff);
  CHECK(f.t->core().driver_features() == features);

  f.setup_queue(0, f.q.layout());
  CHECK(f.r32(mmio::kQueueReady) == 1);
  f.w32(mmio::kStatus, kOk);
  CHECK(f.r32(mmio::kStatus) == kOk);
  REQUIRE(f.dev->wait_for([](const FakeVirtioDevice& d) { return d.active(); }));
  auto acts = f.dev->activations();
  REQUIRE(acts.size() == 1);
  CHECK(acts[0].features == features);
  CHECK(acts[0].memory == &f.q.memory());
}

TEST_CASE("virtio-mmio: FEATURES_OK refused for unoffered bits or without VERSION_1") {
  Fixture f;
  SECTION("unoffered device bit") {
    f.negotiate(feature_bit(kFVersion1) | feature_bit(7));
  }
  SECTION("bit in a word past 63") {
    f.w32(mmio::kStatus, kAck);
    f.w32(mmio::kStatus, kDrv);
    f.write_features(feature_bit(kFVersion1));
    f.w32(mmio::kDriverFeaturesSel, 2);
    f.w32(mmio::kDriverFeatures, 1);
    f.w32(mmio::kStatus, kFeat);
  }
  SECTION("no VERSION_1 (legacy driver)") {
    f.negotiate(feature_bit(0));
  }
  CHECK(f.r32(mmio::kStatus) == kDrv);
  // DRIVER_OK cannot follow a refused FEATURES_OK.
  f.w32(mmio::kStatus, kOk);
  CHECK(f.r32(mmio::kStatus) == kDrv);
  CHECK_FALSE(
      f.dev->wait_for([](const FakeVirtioDevice& d) { return !d.activations().empty(); }, 100ms));
}

TEST_CASE("virtio-mmio: status bits only in legal order; FAILED; clearing refused") {
  Fixture f;
  f.w32(mmio::kStatus, kStatusDriver);  // DRIVER before ACKNOWLEDGE
  CHECK(f.r32(mmio::kStatus) == 0);
  f.w32(mmio::kStatus, kAck | kStatusFeaturesOk);  // ACK accepted, FEATURES_OK skips DRIVER
  CHECK(f.r32(mmio::kStatus) == kAck);
  f.w32(mmio::kStatus, kDrv);
  f.write_features(feature_bit(kFVersion1));
  f.w32(mmio::kStatus, kDrv | kStatusDriverOk);  // DRIVER_OK before FEATURES_OK
  CHECK(f.r32(mmio::kStatus) == kDrv);
  f.w32(mmio::kStatus, kAck);  // the driver may not clear DRIVER
  CHECK(f.r32(mmio::kStatus) == kDrv);
  f.w32(mmio::kStatus, kDrv | kStatusDeviceNeedsReset);  // nor set the device's bit
  CHECK(f.r32(mmio::kStatus) == kDrv);
  f.w32(mmio::kStatus, kDrv | kStatusFailed);
  CHECK(f.r32(mmio::kStatus) == (kDrv | kStatusFailed));
  f.w32(mmio::kStatus, kFeat | kStatusFailed);
  CHECK(f.r32(mmio::kStatus) == (kDrv | kStatusFailed));
  f.w32(mmio::kStatus, 0);
  CHECK(f.r32(mmio::kStatus) == 0);
  f.negotiate(feature_bit(kFVersion1));
  CHECK(f.r32(mmio::kStatus) == kFeat);
}

TEST_CASE("virtio-mmio: activation gets exactly the queues the driver readied") {
  Fixture f;
  f.negotiate(feature_bit(kFVersion1));
  QueueLayout q1{.size = 8,
                 .desc = f.q.alloc(16 * 8, 16),
                 .avail = f.q.alloc(6 + 2 * 8, 2),
                 .used = f.q.alloc(6 + 8 * 8, 4)};
  f.setup_queue(0, f.q.layout(), /*ready=*/false);
  f.setup_queue(1, q1);
  f.w32(mmio::kStatus, kOk);
  REQUIRE(f.dev->wait_for([](const FakeVirtioDevice& d) { return d.active(); }));
  auto act = f.dev->activations().at(0);
  REQUIRE(act.queues.size() == 2);
  CHECK_FALSE(act.queues[0].has_value());
  REQUIRE(act.queues[1].has_value());
  CHECK(act.queues[1]->size == 8);
  CHECK(act.queues[1]->desc == q1.desc);
  CHECK(act.queues[1]->avail == q1.avail);
  CHECK(act.queues[1]->used == q1.used);
}

TEST_CASE("virtio-mmio: queue registers") {
  Fixture f;
  f.negotiate(feature_bit(kFVersion1));
  auto& core = f.t->core();
  SECTION("size above the maximum is refused and makes DRIVER_OK fail") {
    f.setup_queue(0, f.q.layout());
    f.w32(mmio::kQueueNum, 32);
    CHECK(core.queue_size() == 16);
    f.w32(mmio::kStatus, kOk);
    CHECK(f.r32(mmio::kStatus) == (kOk | kStatusDeviceNeedsReset));
    CHECK(f.r32(mmio::kInterruptStatus) == kInterruptConfigChange);
    CHECK(signalled(f.t->irq_fd()));
    CHECK(f.dev->activations().empty());
  }
  SECTION("a later valid size clears the refusal") {
    f.setup_queue(0, f.q.layout());
    f.w32(mmio::kQueueNum, 0);
    f.w32(mmio::kQueueNum, 16);
    f.w32(mmio::kStatus, kOk);
    CHECK(f.r32(mmio::kStatus) == kOk);
    CHECK(f.dev->wait_for([](const FakeVirtioDevice& d) { return d.active(); }));
  }
  SECTION("frozen while DRIVER_OK") {
    f.setup_queue(0, f.q.layout());
    f.w32(mmio::kStatus, kOk);
    REQUIRE(f.dev->wait_for([](const FakeVirtioDevice& d) { return d.active(); }));
    f.w32(mmio::kQueueSel, 0);
    f.w32(mmio::kQueueDescLow, 0x5000);
    f.w32(mmio::kQueueNum, 8);
    f.w32(mmio::kQueueReady, 0);
    CHECK(core.queue_address(QueueArea::kDesc) == f.q.layout().desc.value());
    CHECK(core.queue_size() == 16);
    CHECK(f.r32(mmio::kQueueReady) == 1);
  }
  SECTION("writes to a queue that does not exist are ignored") {
    f.w32(mmio::kQueueSel, 9);
    f.w32(mmio::kQueueNum, 4);
    f.w32(mmio::kQueueReady, 1);
    CHECK(f.r32(mmio::kQueueReady) == 0);
    CHECK(core.queue_size() == 0);
  }
  SECTION("64-bit addresses from two halves") {
    f.w32(mmio::kQueueSel, 1);
    f.w32(mmio::kQueueDeviceLow, 0x89abc000);
    f.w32(mmio::kQueueDeviceHigh, 0x1);
    CHECK(core.queue_address(QueueArea::kDevice) == 0x189abc000);
  }
}

TEST_CASE("virtio-mmio: a ring outside RAM sets DEVICE_NEEDS_RESET") {
  Fixture f;
  f.negotiate(feature_bit(kFVersion1));
  QueueLayout bad = f.q.layout();
  bad.used = GuestAddress(0x7fff0000);  // RAM is 1 MiB
  f.setup_queue(0, bad);
  f.w32(mmio::kStatus, kOk);
  CHECK((f.r32(mmio::kStatus) & kStatusDeviceNeedsReset) != 0);
  CHECK(f.r32(mmio::kInterruptStatus) == kInterruptConfigChange);
  CHECK(signalled(f.t->irq_fd()));
  CHECK_FALSE(
      f.dev->wait_for([](const FakeVirtioDevice& d) { return !d.activations().empty(); }, 100ms));
  // The driver recovers by resetting.
  f.w32(mmio::kStatus, 0);
  CHECK(f.r32(mmio::kStatus) == 0);
  f.bring_up();
}

TEST_CASE("virtio-mmio: a device that fails to activate sets DEVICE_NEEDS_RESET") {
  Fixture f;
  f.dev->set_fail_activate(true);
  f.negotiate(feature_bit(kFVersion1));
  f.setup_queue(0, f.q.layout());
  f.w32(mmio::kStatus, kOk);
  CHECK(signalled(f.t->irq_fd()));
  CHECK((f.r32(mmio::kStatus) & kStatusDeviceNeedsReset) != 0);
  f.w32(mmio::kStatus, 0);
  CHECK(f.dev->resets() == 1);  // the device may hold partial state: it is reset too
}

TEST_CASE("virtio-mmio: kicks reach process_queue only while active") {
  Fixture f;
  f.w32(mmio::kQueueNotify, 0);  // before DRIVER_OK: dropped
  CHECK_FALSE(processed_count(f.dev, 1, 100ms));
  f.bring_up();
  f.w32(mmio::kQueueNotify, 0);  // the exit path
  REQUIRE(processed_count(f.dev, 1));
  CHECK(f.dev->processed()[0] == 0);
  REQUIRE(f.t->kick_fd(1).signal().ok());  // what KVM's ioeventfd does
  REQUIRE(processed_count(f.dev, 2));
  CHECK(f.dev->processed()[1] == 1);
  f.w32(mmio::kQueueNotify, 7);  // no such queue
  f.w32(mmio::kQueueNotify, 0xffffffff);
  CHECK_FALSE(processed_count(f.dev, 3, 100ms));
}

TEST_CASE("virtio-mmio: used buffers raise InterruptStatus and the irqfd; ACK clears") {
  Fixture f;
  f.dev->set_complete_on_process(true);
  f.bring_up();
  auto chain = f.q.push({VirtqBuilder::writable(64)});
  f.w32(mmio::kQueueNotify, 0);
  REQUIRE(signalled(f.t->irq_fd()));
  CHECK(f.q.used_idx() == 1);
  CHECK(f.q.used(0).id == chain.head);
  CHECK(f.r32(mmio::kInterruptStatus) == kInterruptUsedBuffer);
  f.w32(mmio::kInterruptAck, kInterruptUsedBuffer);
  CHECK(f.r32(mmio::kInterruptStatus) == 0);

  f.loop.run([&] { f.dev->with_interrupt([](VirtioInterrupt* irq) { irq->notify_config(); }); });
  CHECK(signalled(f.t->irq_fd()));
  CHECK(f.r32(mmio::kInterruptStatus) == kInterruptConfigChange);

  f.loop.run([&] { f.dev->with_interrupt([](VirtioInterrupt* irq) { irq->set_needs_reset(); }); });
  CHECK(signalled(f.t->irq_fd()));
  CHECK(f.r32(mmio::kStatus) == (kOk | kStatusDeviceNeedsReset));
}

TEST_CASE("virtio-mmio: reset resets the device and the registers") {
  Fixture f;
  f.dev->set_complete_on_process(true);
  f.bring_up();
  f.q.push({VirtqBuilder::writable(8)});
  f.w32(mmio::kQueueNotify, 0);
  REQUIRE(signalled(f.t->irq_fd()));
  f.w32(mmio::kStatus, 0);
  // write_status(0) waits for the device reset: no polling needed.
  CHECK(f.dev->resets() == 1);
  CHECK_FALSE(f.dev->active());
  CHECK(f.r32(mmio::kStatus) == 0);
  CHECK(f.r32(mmio::kInterruptStatus) == 0);
  CHECK(f.r32(mmio::kQueueReady) == 0);
  CHECK(f.t->core().queue_address(QueueArea::kDesc) == 0);
  CHECK(f.t->core().queue_size() == 16);
  CHECK(f.t->core().driver_features() == 0);
  // Kicks after reset are not processed.
  size_t before = f.dev->processed().size();
  f.w32(mmio::kQueueNotify, 0);
  CHECK_FALSE(processed_count(f.dev, before + 1, 100ms));
  // A reset without an activation does not bother the device.
  f.w32(mmio::kStatus, 0);
  CHECK(f.dev->resets() == 1);
  // And the device comes up again.
  f.bring_up();
  CHECK(f.dev->activations().size() == 2);
}

TEST_CASE("virtio-mmio: config space is forwarded with its width") {
  Fixture f;
  std::array<std::byte, 8> b{};
  f.t->read(mmio::kConfig + 2, std::span(b).first(1));
  CHECK(b[0] == std::byte{0xa2});
  f.t->read(mmio::kConfig + 4, std::span(b).first(2));
  CHECK(b[0] == std::byte{0xa4});
  CHECK(b[1] == std::byte{0xa5});
  f.t->read(mmio::kConfig, std::span(b).first(4));
  CHECK(b[3] == std::byte{0xa3});
  f.t->read(mmio::kConfig + 8, std::span(b));
  CHECK(b[7] == std::byte{0xaf});
  std::array<std::byte, 2> w{std::byte{0x11}, std::byte{0x22}};
  f.t->write(mmio::kConfig + 6, w);
  CHECK(f.dev->config_bytes()[6] == std::byte{0x11});
  CHECK(f.dev->config_bytes()[7] == std::byte{0x22});
  auto acc = f.dev->config_accesses();
  REQUIRE(acc.size() == 5);
  CHECK(acc[1].offset == 4);
  CHECK(acc[1].size == 2);
  CHECK(acc[4].write);
  CHECK(acc[4].offset == 6);
  // The last bytes of the slot reach the device; past the slot nothing does.
  f.t->read(mmio::kSize - 4, std::span(b).first(4));
  f.t->read(mmio::kSize - 2, std::span(b).first(4));
  f.t->read(mmio::kSize + 0x100, std::span(b).first(4));
  f.t->write(UINT64_MAX - 1, std::span(w));
  CHECK(f.dev->config_accesses().size() == 6);
}

TEST_CASE("virtio-mmio: bad widths and offsets are ignored") {
  Fixture f;
  std::array<std::byte, 8> b{};
  b.fill(std::byte{0xee});
  f.t->read(mmio::kMagicValue, std::span(b).first(1));
  CHECK(b[0] == std::byte{0});
  b.fill(std::byte{0xee});
  f.t->read(mmio::kMagicValue, std::span(b).first(2));
  CHECK(b[1] == std::byte{0});
  f.t->read(mmio::kMagicValue, std::span(b));
  CHECK(b == std::array<std::byte, 8>{});
  f.t->read(mmio::kMagicValue + 1, std::span(b).first(4));  // unaligned
  CHECK(b == std::array<std::byte, 8>{});
  // Writes of the wrong width or alignment change nothing.
  std::array<std::byte, 1> one{std::byte{kAck}};
  f.t->write(mmio::kStatus, one);
  std::array<std::byte, 8> eight{std::byte{kAck}};
  f.t->write(mmio::kStatus, eight);
  f.w32(mmio::kStatus + 2, kAck);
  CHECK(f.r32(mmio::kStatus) == 0);
  // Reserved, write-only and read-only registers.
  CHECK(f.r32(0x028) == 0);
  CHECK(f.r32(mmio::kQueueDescLow) == 0);
  CHECK(f.r32(mmio::kInterruptAck) == 0);
  f.w32(mmio::kMagicValue, 0);
  f.w32(mmio::kShmSel, 3);
  f.w32(mmio::kQueueReset, 1);
  f.w32(0x0f0, 0xffffffff);
  CHECK(f.r32(mmio::kMagicValue) == kMmioMagic);
  CHECK(f.r32(mmio::kShmLenLow) == 0xffffffff);
  CHECK(f.r32(mmio::kQueueReset) == 0);
  // Status values with reserved high bits keep only the low byte.
  f.w32(mmio::kStatus, 0xffff0000 | kAck);
  CHECK(f.r32(mmio::kStatus) == kAck);
}

TEST_CASE("virtio-mmio: stop resets an active device and ends kick handling") {
  Fixture f;
  f.bring_up();
  f.loop.run([&] { f.t->stop(); });
  CHECK(f.dev->resets() == 1);
  f.t->stop();  // idempotent, from another thread
  REQUIRE(f.t->kick_fd(0).signal().ok());
  CHECK_FALSE(processed_count(f.dev, 1, 100ms));
}
