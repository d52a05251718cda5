// virtio-PCI modern transport (virtio 1.2 section 4.1) behind a real PciRoot: the guest's
// view through ECAM and the BAR window, with a real event loop on its own thread, a fake
// device and a recording MSI controller.
#include <array>
#include <chrono>
#include <cstring>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <catch2/catch.hpp>

#include "devices/msi_controller.h"
#include "devices/pci_root.h"
#include "fake_virtio_device.h"
#include "virtio/pci_transport.h"
#include "virtio/virtio_spec.h"
#include "virtq_builder.h"

namespace {

using petrel::BusDevice;
using petrel::EventFd;
using petrel::GuestAddress;
using petrel::MsiController;
using petrel::MsiMessage;
using petrel::MsiVector;
using petrel::PciRoot;
using petrel::Result;
using petrel::testing::FakeVirtioDevice;
using petrel::testing::VirtqBuilder;
using namespace petrel::virtio;
using namespace std::chrono_literals;

constexpr uint64_t kWindow = 0xc0000000;
constexpr uint64_t kWindowSize = 0x10000000;
constexpr uint8_t kAck = kStatusAcknowledge;
constexpr uint8_t kDrv = kAck | kStatusDriver;
constexpr uint8_t kFeat = kDrv | kStatusFeaturesOk;
constexpr uint8_t kOk = kFeat | kStatusDriverOk;

class LoopThread {
 public:
  LoopThread() : thread_([this] { io_.run(); }) {}
  ~LoopThread() {
    work_.reset();
    io_.stop();
  }
  boost::asio::io_context& io() { return io_; }
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

// Vectors that count their deliveries (thread-safe: fired on the loop thread).
class CountingController : public MsiController {
 public:
  struct Log {
    std::mutex mu;
    std::vector<MsiMessage> routes;
    int fired = 0;
  };
  class Vector : public MsiVector {
   public:
    explicit Vector(Log& log) : log_(log) {}
    Result<void> set_route(const MsiMessage& m) override {
      std::lock_guard lock(log_.mu);
      log_.routes.push_back(m);
      return {};
    }
    Result<void> trigger() override {
      std::lock_guard lock(log_.mu);
      ++log_.fired;
      return {};
    }

   private:
    Log& log_;
  };
  Result<std::unique_ptr<MsiVector>> allocate_vector() override {
    logs.push_back(std::make_unique<Log>());
    return std::unique_ptr<MsiVector>(std::make_unique<Vector>(*logs.back()));
  }
  int fired(size_t v) {
    std::lock_guard lock(logs.at(v)->mu);
    return logs[v]->fired;
  }
  std::vector<std::unique_ptr<Log>> logs;
};

struct Binding {
  int fd;
  uint64_t addr;
  bool add;
};

uint64_t get(BusDevice& dev, uint64_t offset, size_t width) {
  std::array<std::byte, 8> buf{};
  dev.read(offset, std::span(buf).first(width));
  uint64_t value = 0;
  std::memcpy(&value, buf.data(), width);
  return value;
}

void put(BusDevice& dev, uint64_t offset, size_t width, uint64_t value) {
  std::array<std::byte, 8> buf{};
  std::memcpy(buf.data(), &value, width);
  dev.write(offset, std::span<const std::byte>(buf).first(width));
}

struct Fixture {
  explicit Fixture(uint32_t type = kDeviceRng, std::vector<uint16_t> sizes = {16, 16})
      : dev(std::make_shared<FakeVirtioDevice>(type, std::move(sizes),
                                               petrel::virtio::feature_bit(0))) {
    auto created = PciTransport::create(
        loop.io(), q.memory(), dev, msi,
        [this](const EventFd& fd, GuestAddress addr, bool add) -> Result<void> {
          std::lock_guard lock(bind_mu);
          bindings.push_back({fd.fd(), addr.value(), add});
          return {};
        });
    REQUIRE(created);
    t = std::move(created).value();
    auto slot = root->add_device(t);
    REQUIRE(slot);
    REQUIRE(*slot == 1);
  }
  ~Fixture() { t->stop(); }

  // Config space of slot 1 through ECAM.
  uint64_t cfg(uint16_t reg, size_t width) { return get(*ecam, (1u << 15) | reg, width); }
  void set_cfg(uint16_t reg, size_t width, uint64_t v) { put(*ecam, (1u << 15) | reg, width, v); }
  uint64_t bar() { return cfg(0x10, 4) & ~uint64_t{0xf}; }
  void enable_memory() { set_cfg(0x04, 2, 0x6); }
  // BAR 0 through the window.
  uint64_t rd(uint64_t off, size_t width) { return get(*window, bar() - kWindow + off, width); }
  void wr(uint64_t off, size_t width, uint64_t v) { put(*window, bar() - kWindow + off, width, v); }

  // Vendor capabilities by cfg_type: their config-space offsets.
  std::map<uint8_t, uint16_t> virtio_caps() {
    std::map<uint8_t, uint16_t> caps;
    uint16_t at = static_cast<uint16_t>(cfg(0x34, 1));
    for (int guard = 0; at != 0 && guard < 48; ++guard) {
      if (cfg(at, 1) == 0x09) {
        caps[static_cast<uint8_t>(cfg(at + 3, 1))] = at;
      } else if (cfg(at, 1) == 0x11) {
        msix_cap = at;
      }
      at = static_cast<uint16_t>(cfg(at + 1, 1));
    }
    return caps;
  }

  void setup_queue(uint16_t index, const QueueLayout& l, uint16_t vector) {
    wr(0x16, 2, index);
    wr(0x18, 2, l.size);
    wr(0x20, 4, l.desc.value());
    wr(0x24, 4, l.desc.value() >> 32);
    wr(0x28, 8, l.avail.value());
    wr(0x30, 4, l.used.value());
    wr(0x34, 4, l.used.value() >> 32);
    wr(0x1a, 2, vector);
    wr(0x1c, 2, 1);
  }

  void bring_up(uint16_t q0_vector = PciTransport::kNoVector,
                uint16_t q1_vector = PciTransport::kNoVector) {
    enable_memory();
    wr(0x14, 1, kAck);
    wr(0x14, 1, kDrv);
    wr(0x08, 4, 0);
    wr(0x0c, 4, 1);
    wr(0x08, 4, 1);
    wr(0x0c, 4, 1);  // VERSION_1
    wr(0x14, 1, kFeat);
    REQUIRE(rd(0x14, 1) == kFeat);
    setup_queue(0, q.layout(), q0_vector);
    setup_queue(1, q1_layout, q1_vector);
    wr(0x14, 1, kOk);
    REQUIRE(dev->wait_for([](const FakeVirtioDevice& d) { return d.active(); }));
    loop.run([] {});  // the activation handler has finished
  }

  void enable_msix(bool function_mask = false) {
    virtio_caps();
    REQUIRE(msix_cap != 0);
    set_cfg(msix_cap + 2, 2, 0x8000 | (function_mask ? 0x4000 : 0));
  }
  void program_vector(uint16_t v, uint32_t data) {
    wr(0x4000 + 16 * v, 4, 0xfee00000);
    wr(0x4000 + 16 * v + 4, 4, 0);
    wr(0x4000 + 16 * v + 8, 4, data);
    wr(0x4000 + 16 * v + 12, 4, 0);
  }
  // Raises an interrupt from the device, on the loop thread as the contract wants.
  void device_irq(const std::function<void(VirtioInterrupt*)>& fn) {
    loop.run([&] {
      dev->with_interrupt([&](VirtioInterrupt* irq) {
        REQUIRE(irq != nullptr);
        fn(irq);
      });
    });
  }
  std::vector<Binding> binding_log() {
    std::lock_guard lock(bind_mu);
    return bindings;
  }

  LoopThread loop;
  VirtqBuilder q{16};
  QueueLayout q1_layout{16, q.alloc(16 * 16), q.alloc(6 + 2 * 16), q.alloc(6 + 8 * 16)};
  CountingController msi;
  std::shared_ptr<FakeVirtioDevice> dev;
  std::mutex bind_mu;
  std::vector<Binding> bindings;
  std::shared_ptr<PciTransport> t;
  std::shared_ptr<PciRoot> root = PciRoot::create(GuestAddress(kWindow), kWindowSize);
  std::shared_ptr<BusDevice> ecam = root->ecam_device();
  std::shared_ptr<BusDevice> window = root->bar_window_device();
  uint16_t msix_cap = 0;
};

}  // namespace

TEST_CASE("virtio-pci: identity and capabilities", "[pci][virtio]") {
  Fixture f;
  CHECK(f.cfg(0x00, 2) == 0x1af4);
  CHECK(f.cfg(0x02, 2) == 0x1040 + kDeviceRng);
  CHECK(f.cfg(0x08, 1) == 1);
  CHECK(f.cfg(0x08, 4) >> 8 == 0xff0000);
  CHECK(f.cfg(0x2c, 2) == 0x1af4);
  CHECK(f.cfg(0x2e, 2) >= 0x40);
  CHECK(f.cfg(0x3d, 1) == 0);
  // BAR 0: 32 KiB memory BAR.
  f.set_cfg(0x10, 4, 0xffffffff);
  CHECK(f.cfg(0x10, 4) == (~uint64_t{PciTransport::kBarSize - 1} & 0xffffffff));

  Fixture g;
  auto caps = g.virtio_caps();
  REQUIRE(caps.size() == 5);
  struct Want {
    uint8_t type;
    uint32_t offset;
    uint8_t len;
  };
  for (const Want& w : {Want{1, 0x0000, 16}, Want{2, 0x3000, 20}, Want{3, 0x1000, 16},
                        Want{4, 0x2000, 16}, Want{5, 0, 20}}) {
    INFO("cfg_type " << int(w.type));
    REQUIRE(caps.count(w.type) == 1);
    const uint16_t at = caps[w.type];
    CHECK(g.cfg(at + 2, 1) == w.len);
    CHECK(g.cfg(at + 4, 1) == 0);  // BAR 0
    CHECK(g.cfg(at + 8, 4) == w.offset);
  }
  CHECK(g.cfg(caps[2] + 12, 4) == 2 * 4);  // two queues, 4 bytes each
  CHECK(g.cfg(caps[2] + 16, 4) == 4);      // notify_off_multiplier
  REQUIRE(g.msix_cap != 0);
  CHECK(g.cfg(g.msix_cap + 2, 2) == 2);  // 3 vectors, disabled
  CHECK(g.cfg(g.msix_cap + 4, 4) == 0x4000);
  CHECK(g.cfg(g.msix_cap + 8, 4) == 0x5000);

  Fixture net(kDeviceNet, {16, 16, 16});
  CHECK(net.cfg(0x02, 2) == 0x1041);
  CHECK(net.cfg(0x08, 4) >> 8 == 0x020000);
  Fixture blk(kDeviceBlock, {16});
  CHECK(blk.cfg(0x08, 4) >> 8 == 0x018000);
}

TEST_CASE("virtio-pci: common cfg handshake activates the device", "[pci][virtio]") {
  Fixture f;
  f.enable_memory();
  CHECK(f.rd(0x12, 2) == 2);  // num_queues
  f.wr(0x00, 4, 1);
  CHECK((f.rd(0x04, 4) & 1) == 1);  // VERSION_1 is bit 32
  f.wr(0x00, 4, 0);
  CHECK((f.rd(0x04, 4) & 1) == 1);  // the device's bit 0
  CHECK(f.rd(0x10, 2) == PciTransport::kNoVector);
  f.wr(0x16, 2, 1);
  CHECK(f.rd(0x18, 2) == 16);
  CHECK(f.rd(0x1e, 2) == 1);  // queue_notify_off
  CHECK(f.rd(0x1a, 2) == PciTransport::kNoVector);
  f.wr(0x16, 2, 5);  // no such queue
  CHECK(f.rd(0x18, 2) == 0);
  CHECK(f.rd(0x1a, 2) == PciTransport::kNoVector);

  f.bring_up(1, 2);
  CHECK(f.rd(0x14, 1) == kOk);
  const auto acts = f.dev->activations();
  REQUIRE(acts.size() == 1);
  CHECK(acts[0].features == (feature_bit(0) | feature_bit(kFVersion1)));
  REQUIRE(acts[0].queues.size() == 2);
  REQUIRE(acts[0].queues[0]);
  CHECK(acts[0].queues[0]->desc == f.q.layout().desc);
  CHECK(acts[0].queues[0]->avail == f.q.layout().avail);
  CHECK(acts[0].queues[0]->used == f.q.layout().used);
  REQUIRE(acts[0].queues[1]);
  CHECK(acts[0].queues[1]->used == f.q1_layout.used);
  // Read back the queue registers (64-bit and halves).
  f.wr(0x16, 2, 0);
  CHECK(f.rd(0x20, 8) == f.q.layout().desc.value());
  CHECK(f.rd(0x28, 4) == f.q.layout().avail.value());
  CHECK(f.rd(0x1c, 2) == 1);
  CHECK(f.rd(0x1a, 2) == 1);
  // Queue registers are frozen while DRIVER_OK is set.
  f.wr(0x20, 8, 0x5000);
  CHECK(f.rd(0x20, 8) == f.q.layout().desc.value());
  // Device config is the device's.
  CHECK(f.rd(0x2000, 4) == 0xa3a2a1a0);
  f.wr(0x2004, 1, 0x11);
  CHECK(f.dev->config_bytes()[4] == std::byte{0x11});
  // Reset: the device is reset, vectors return to NO_VECTOR.
  f.wr(0x14, 1, 0);
  CHECK(f.dev->resets() == 1);
  CHECK(f.rd(0x14, 1) == 0);
  CHECK(f.rd(0x1a, 2) == PciTransport::kNoVector);
}

TEST_CASE("virtio-pci: feature refusal and out-of-range vectors", "[pci][virtio]") {
  Fixture f;
  f.enable_memory();
  f.wr(0x14, 1, kAck);
  f.wr(0x14, 1, kDrv);
  f.wr(0x08, 4, 0);
  f.wr(0x0c, 4, 1);  // no VERSION_1
  f.wr(0x14, 1, kFeat);
  CHECK(f.rd(0x14, 1) == kDrv);
  f.wr(0x10, 2, 2);
  CHECK(f.rd(0x10, 2) == 2);
  f.wr(0x10, 2, 3);  // 3 vectors: 0..2
  CHECK(f.rd(0x10, 2) == PciTransport::kNoVector);
  f.wr(0x16, 2, 0);
  f.wr(0x1a, 2, 1000);
  CHECK(f.rd(0x1a, 2) == PciTransport::kNoVector);
  // Writes that are not exactly a field are ignored; odd reads do not crash.
  f.wr(0x10, 4, 1);
  CHECK(f.rd(0x10, 2) == PciTransport::kNoVector);
  f.wr(0x15, 1, 0x77);
  f.wr(0x13, 2, 0xffff);
  CHECK(f.rd(0x12, 2) == 2);
  CHECK(f.rd(0x3c, 4) == 0);
  CHECK(f.rd(0x0ffe, 4) == 0);    // crosses into the ISR page: refused
  f.wr(0x7ffe, 8, 0);             // crosses the end of the BAR
  f.wr(0x5000, 8, ~uint64_t{0});  // PBA is read-only
  CHECK(f.rd(0x5000, 8) == 0);
  CHECK(f.rd(0x6000, 4) == 0);
}

TEST_CASE("virtio-pci: ioeventfds follow BAR 0, notify exits kick", "[pci][virtio]") {
  Fixture f;
  CHECK(f.binding_log().empty());  // decoding off
  f.enable_memory();
  const uint64_t base = f.bar();
  auto log = f.binding_log();
  REQUIRE(log.size() == 2);
  CHECK(log[0].add);
  CHECK(log[0].addr == base + 0x3000);
  CHECK(log[0].fd == f.t->kick_fd(0).fd());
  CHECK(log[1].addr == base + 0x3004);
  CHECK(log[1].fd == f.t->kick_fd(1).fd());

  // The guest moves BAR 0: unbind at the old place, bind at the new.
  const uint64_t moved = kWindow + 0x0400'0000;
  f.set_cfg(0x10, 4, moved);
  log = f.binding_log();
  REQUIRE(log.size() == 6);
  CHECK_FALSE(log[2].add);
  CHECK(log[2].addr == base + 0x3000);
  CHECK_FALSE(log[3].add);
  CHECK(log[4].add);
  CHECK(log[4].addr == moved + 0x3000);
  CHECK(log[5].addr == moved + 0x3004);

  f.bring_up();
  // The exit path: a 2-byte notify write that reached the transport.
  f.wr(0x3004, 2, 1);
  REQUIRE(f.dev->wait_for([](const FakeVirtioDevice& d) { return !d.processed().empty(); }));
  CHECK(f.dev->processed()[0] == 1);
  // What KVM does with an ioeventfd: signal the kick fd.
  REQUIRE(f.t->kick_fd(0).signal());
  REQUIRE(f.dev->wait_for([](const FakeVirtioDevice& d) { return d.processed().size() >= 2; }));
  CHECK(f.dev->processed()[1] == 0);
  // A misaligned or out-of-range notify is ignored.
  f.wr(0x3002, 2, 0);
  f.wr(0x3010, 2, 4);
  f.loop.run([] {});
  CHECK(f.dev->processed().size() == 2);

  // Decoding off unbinds; stop() leaves nothing bound.
  f.set_cfg(0x04, 2, 0);
  log = f.binding_log();
  REQUIRE(log.size() == 8);
  CHECK_FALSE(log[7].add);
  f.t->stop();
  CHECK(f.binding_log().size() == 8);
}

TEST_CASE("virtio-pci: ISR is read-to-clear, no MSI without MSI-X", "[pci][virtio]") {
  Fixture f;
  f.bring_up(1, 2);
  f.device_irq([](VirtioInterrupt* irq) { irq->notify_queue(0); });
  CHECK(f.rd(0x1000, 1) == kInterruptUsedBuffer);
  CHECK(f.rd(0x1000, 1) == 0);
  f.device_irq([](VirtioInterrupt* irq) { irq->notify_config(); });
  CHECK(f.rd(0x1001, 1) == 0);  // only offset 0 holds the ISR
  CHECK(f.rd(0x1000, 1) == kInterruptConfigChange);
  for (size_t v = 0; v < 3; ++v) {
    CHECK(f.msi.fired(v) == 0);
  }
}

TEST_CASE("virtio-pci: MSI-X vectors per queue and for config", "[pci][virtio]") {
  Fixture f;
  f.enable_memory();
  f.enable_msix();
  for (uint16_t v = 0; v < 3; ++v) {
    f.program_vector(v, 0x40 + v);
  }
  f.wr(0x10, 2, 0);  // config -> vector 0
  f.bring_up(2, 1);  // queue 0 -> vector 2, queue 1 -> vector 1
  CHECK(f.rd(0x10, 2) == 0);
  f.device_irq([](VirtioInterrupt* irq) { irq->notify_queue(0); });
  CHECK(f.msi.fired(2) == 1);
  CHECK(f.msi.fired(1) == 0);
  f.device_irq([](VirtioInterrupt* irq) { irq->notify_queue(1); });
  CHECK(f.msi.fired(1) == 1);
  f.device_irq([](VirtioInterrupt* irq) { irq->notify_config(); });
  CHECK(f.msi.fired(0) == 1);
  {
    std::lock_guard lock(f.msi.logs[2]->mu);
    REQUIRE_FALSE(f.msi.logs[2]->routes.empty());
    CHECK(f.msi.logs[2]->routes.back() == MsiMessage{0xfee00000, 0x42});
  }
  // A masked vector fires later, through the PBA, when the driver unmasks it.
  f.wr(0x4000 + 16 * 2 + 12, 4, 1);
  f.device_irq([](VirtioInterrupt* irq) { irq->notify_queue(0); });
  CHECK(f.msi.fired(2) == 1);
  CHECK(f.rd(0x5000, 8) == 0b100);
  f.wr(0x4000 + 16 * 2 + 12, 4, 0);
  CHECK(f.msi.fired(2) == 2);
  CHECK(f.rd(0x5000, 8) == 0);
  // Function mask through config space holds everything.
  f.enable_msix(/*function_mask=*/true);
  f.device_irq([](VirtioInterrupt* irq) { irq->notify_queue(1); });
  CHECK(f.msi.fired(1) == 1);
  f.enable_msix(false);
  CHECK(f.msi.fired(1) == 2);
  // The full path: a kick, the fake completes the chain, the queue's vector fires.
  f.dev->set_complete_on_process(true);
  f.q.push({VirtqBuilder::writable(32)});
  f.wr(0x3000, 2, 0);
  REQUIRE(f.dev->wait_for([](const FakeVirtioDevice& d) { return d.processed().size() >= 1; }));
  f.loop.run([] {});
  CHECK(f.q.used_idx() == 1);
  CHECK(f.msi.fired(2) == 3);
  // With NO_VECTOR a queue interrupt sets the ISR bit only.
  f.wr(0x16, 2, 0);
  f.wr(0x14, 1, 0);
  f.bring_up(PciTransport::kNoVector, 1);
  const int before = f.msi.fired(2) + f.msi.fired(0);
  f.device_irq([](VirtioInterrupt* irq) { irq->notify_queue(0); });
  CHECK(f.msi.fired(2) + f.msi.fired(0) == before);
  CHECK(f.rd(0x1000, 1) == kInterruptUsedBuffer);
}

TEST_CASE("virtio-pci: PCI configuration access capability", "[pci][virtio]") {
  Fixture f;
  auto caps = f.virtio_caps();
  const uint16_t cap = caps.at(5);
  // Reads through it work with memory decoding off.
  f.set_cfg(cap + 4, 1, 0);
  f.set_cfg(cap + 8, 4, 0x12);  // num_queues
  f.set_cfg(cap + 12, 4, 2);
  CHECK(f.cfg(cap + 16, 2) == 2);
  // A write: config_msix_vector = 1.
  f.set_cfg(cap + 8, 4, 0x10);
  f.set_cfg(cap + 16, 2, 1);
  f.enable_memory();
  CHECK(f.rd(0x10, 2) == 1);
  // The ISR through it is read-to-clear too.
  f.bring_up();
  f.device_irq([](VirtioInterrupt* irq) { irq->notify_config(); });
  f.set_cfg(cap + 8, 4, 0x1000);
  f.set_cfg(cap + 12, 4, 1);
  CHECK(f.cfg(cap + 16, 1) == kInterruptConfigChange);
  CHECK(f.cfg(cap + 16, 1) == 0);
  // Bad requests are ignored: misaligned, bad length, other BAR, past the end.
  f.set_cfg(cap + 12, 4, 4);
  f.set_cfg(cap + 8, 4, 0x12);
  f.set_cfg(cap + 16, 4, 0xdead);
  f.set_cfg(cap + 12, 4, 3);
  f.set_cfg(cap + 8, 4, 0x14);
  f.set_cfg(cap + 16, 4, 0);
  f.set_cfg(cap + 4, 1, 1);
  f.set_cfg(cap + 12, 4, 1);
  f.set_cfg(cap + 16, 1, 0);
  f.set_cfg(cap + 4, 1, 0);
  f.set_cfg(cap + 8, 4, 0xffffffff);
  f.set_cfg(cap + 16, 1, 0);
  CHECK(f.rd(0x14, 1) == kOk);
  // Only bar/offset/length/data are writable.
  f.set_cfg(cap + 3, 1, 1);
  CHECK(f.cfg(cap + 3, 1) == 5);
}
