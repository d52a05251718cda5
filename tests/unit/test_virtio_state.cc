// Quiesce and save/restore of virtio devices and transports (issue 6): a virtio-blk device on a
// slow backend behind the MMIO transport (quiesce drains, kicks wait), and whole VirtioDevices
// stacks on a real KVM VM (irqfd / ioeventfd registered) driven through the MMIO bus like a
// guest driver: save, restore into a fresh stack over a copy of guest memory, go on; and the
// refusals of corrupted or mismatched state.
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <functional>
#include <future>
#include <thread>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <catch2/catch.hpp>

#include "scratch_dir.h"
#include "virtio/block_device.h"
#include "virtio/block_request.h"
#include "virtio/disk_backend.h"
#include "virtio/mmio_transport.h"
#include "virtio/net_device.h"
#include "virtio/virtio_spec.h"
#include "virtq_builder.h"
#include "vmm/base/kvm_system.h"
#include "vmm/layout.h"
#include "vmm/virtio_devices.h"

namespace {

using namespace petrel;
using namespace std::chrono_literals;
using petrel::testing::ScratchDir;
using petrel::testing::VirtqBuilder;
namespace blk = petrel::virtio::blk;
namespace mmio = petrel::virtio::mmio;

constexpr uint32_t kOkStatus = virtio::kStatusAcknowledge | virtio::kStatusDriver |
                               virtio::kStatusFeaturesOk | virtio::kStatusDriverOk;

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

bool eventually(const std::function<bool()>& pred, std::chrono::milliseconds limit = 5s) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) {
      return false;
    }
    std::this_thread::sleep_for(2ms);
  }
  return true;
}

// A DiskBackend that holds every operation until the test releases it (on the loop thread).
class SlowBackend final : public virtio::DiskBackend {
 public:
  std::string_view engine_name() const override { return "slow"; }
  uint64_t size() const override { return 1 << 20; }
  bool read_only() const override { return false; }
  Result<void> attach(boost::asio::io_context& io, virtio::DiskCompletionHandler h) override {
    io_ = &io;
    handler_ = std::move(h);
    return {};
  }
  Result<void> submit(virtio::DiskOp /*op*/, uint64_t tag) override {
    pending_.push_back(tag);
    return {};
  }
  void commit() override {}
  void drain() override { complete(std::exchange(pending_, {})); }
  void detach() override { handler_ = nullptr; }
  size_t in_flight() const override { return pending_.size(); }
  // Loop thread: completes everything submitted so far, from a later loop turn.
  void release() {
    boost::asio::post(*io_, [this, tags = std::exchange(pending_, {})] { complete(tags); });
  }

 private:
  void complete(const std::vector<uint64_t>& tags) {
    std::vector<virtio::DiskCompletion> done;
    for (uint64_t tag : tags) {
      done.push_back({tag, 0});
    }
    if (handler_ && !done.empty()) {
      handler_(done);
    }
  }
  boost::asio::io_context* io_ = nullptr;
  virtio::DiskCompletionHandler handler_;
  std::vector<uint64_t> pending_;
};

struct Request {
  uint16_t head = 0;
  GuestAddress data;
  GuestAddress status;
};

// A 512-byte read of `sector` (header, data, status), published; not kicked.
Request push_read(VirtqBuilder& q, uint64_t sector) {
  GuestAddress hdr = q.alloc(16);
  q.put(hdr, blk::RequestHeader{blk::kTIn, 0, sector});
  GuestAddress data = q.alloc(512, 512);
  GuestAddress status = q.alloc(1);
  q.put<uint8_t>(status, 0xff);
  auto chain = q.push({VirtqBuilder::at(hdr, 16, false), VirtqBuilder::at(data, 512, true),
                       VirtqBuilder::at(status, 1, true)});
  return {chain.head, data, status};
}

// Register access to a virtio-MMIO slot, as the guest driver does it.
struct MmioDriver {
  std::function<void(uint64_t, std::span<std::byte>)> read;
  std::function<void(uint64_t, std::span<const std::byte>)> write;

  uint32_t r32(uint64_t off) const {
    std::array<std::byte, 4> b{};
    read(off, b);
    uint32_t v = 0;
    std::memcpy(&v, b.data(), 4);
    return v;
  }
  void w32(uint64_t off, uint32_t v) const {
    std::array<std::byte, 4> b{};
    std::memcpy(b.data(), &v, 4);
    write(off, b);
  }
  // 3.1.1 up to FEATURES_OK with `features`.
  void negotiate(uint64_t features) const {
    w32(mmio::kStatus, virtio::kStatusAcknowledge);
    w32(mmio::kStatus, virtio::kStatusAcknowledge | virtio::kStatusDriver);
    w32(mmio::kDriverFeaturesSel, 0);
    w32(mmio::kDriverFeatures, static_cast<uint32_t>(features));
    w32(mmio::kDriverFeaturesSel, 1);
    w32(mmio::kDriverFeatures, static_cast<uint32_t>(features >> 32));
    w32(mmio::kStatus, kOkStatus & ~virtio::kStatusDriverOk);
  }
  // Queue 0 at the builder's layout, then DRIVER_OK.
  void bring_up(const VirtqBuilder& q) const {
    negotiate(virtio::feature_bit(virtio::kFVersion1));
    const virtio::QueueLayout l = q.layout();
    w32(mmio::kQueueSel, 0);
    w32(mmio::kQueueNum, l.size);
    w32(mmio::kQueueDescLow, static_cast<uint32_t>(l.desc.value()));
    w32(mmio::kQueueDescHigh, static_cast<uint32_t>(l.desc.value() >> 32));
    w32(mmio::kQueueDriverLow, static_cast<uint32_t>(l.avail.value()));
    w32(mmio::kQueueDriverHigh, static_cast<uint32_t>(l.avail.value() >> 32));
    w32(mmio::kQueueDeviceLow, static_cast<uint32_t>(l.used.value()));
    w32(mmio::kQueueDeviceHigh, static_cast<uint32_t>(l.used.value() >> 32));
    w32(mmio::kQueueReady, 1);
    w32(mmio::kStatus, kOkStatus);
  }
  void kick(uint32_t queue) const { w32(mmio::kQueueNotify, queue); }
};

template <typename T>
T take(Result<T> r) {
  INFO((r.ok() ? std::string() : r.error().to_string()));
  REQUIRE(r.ok());
  return std::move(r).value();
}

// One VM's virtio devices (disk0 and rng0 on MMIO) on a real KVM VM with an in-kernel
// IOAPIC, over the builder's guest memory, with its own event loop.
struct Stack {
  Stack(const VmConfig& config, const VirtqBuilder& q) {
    REQUIRE(vm.create_irqchip().ok());
    devices = take(VirtioDevices::create(config, vm, q.memory(), loop.io(), pio, mmio_bus));
  }
  ~Stack() {
    loop.run([this] { devices->stop(); });
  }
  MmioDriver slot(unsigned n) {
    const uint64_t base = layout::kVirtioMmioBase.value() + n * layout::kVirtioMmioSlotSize;
    Bus* bus = &mmio_bus;
    return MmioDriver{
        [bus, base](uint64_t off, std::span<std::byte> d) { bus->read(base + off, d); },
        [bus, base](uint64_t off, std::span<const std::byte> d) { bus->write(base + off, d); }};
  }

  KvmSystem kvm = take(KvmSystem::open());
  KvmVm vm = take(kvm.create_vm());
  Bus pio{"pio"};
  Bus mmio_bus{"mmio"};
  LoopThread loop;
  std::unique_ptr<VirtioDevices> devices;
};

// An image whose sector k is filled with byte k + 1.
std::filesystem::path make_disk(const ScratchDir& dir) {
  auto path = dir.path() / "disk.img";
  int fd = ::open(path.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0600);
  REQUIRE(fd >= 0);
  for (int k = 0; k < 64; ++k) {
    std::vector<uint8_t> sector(512, static_cast<uint8_t>(k + 1));
    REQUIRE(::pwrite(fd, sector.data(), 512, k * 512) == 512);
  }
  ::close(fd);
  return path;
}

VmConfig make_config(const std::filesystem::path& disk, bool with_rng = true) {
  VmConfig config;
  DiskSpec spec;
  spec.path = disk;
  spec.engine = DiskEngine::kSync;
  config.disks.push_back(spec);
  if (with_rng) {
    config.rng = RngSpec{};
  }
  return config;
}

void copy_memory(const VirtqBuilder& from, VirtqBuilder& to, uint64_t size) {
  to.write_bytes(GuestAddress(0), from.read_bytes(GuestAddress(0), size));
  to.set_avail_idx(from.avail_idx());
}

bool first_byte_is(const VirtqBuilder& q, GuestAddress addr, uint8_t value) {
  return q.get<uint8_t>(addr) == value;
}

constexpr uint64_t kMem = 1 << 20;
constexpr uint16_t kQueue = 16;

// The saved blob of a stack with disk0 (3 reads done) and rng0 (features negotiated, no
// DRIVER_OK); `q` is the guest memory of that stack afterwards.
std::vector<std::byte> saved_stack(const VmConfig& config, VirtqBuilder& q,
                                   std::vector<Request>* done = nullptr) {
  Stack a(config, q);
  MmioDriver disk = a.slot(0);
  disk.bring_up(q);
  for (uint64_t s = 0; s < 3; ++s) {
    Request r = push_read(q, s);
    if (done != nullptr) {
      done->push_back(r);
    }
  }
  disk.kick(0);
  REQUIRE(eventually([&] { return q.used_idx() == 3; }));
  a.slot(1).negotiate(virtio::feature_bit(virtio::kFVersion1));
  REQUIRE(a.devices->quiesce(2s).ok());
  return take(a.devices->save_state());
}

}  // namespace

TEST_CASE("virtio-blk quiesce drains requests in flight; kicks wait for unquiesce",
          "[virtio-state]") {
  LoopThread loop;
  VirtqBuilder q(kQueue, kMem);
  auto backend_owned = std::make_unique<SlowBackend>();
  SlowBackend* backend = backend_owned.get();
  auto dev = virtio::BlockDevice::create(std::move(backend_owned), "slow");
  auto t = take(virtio::MmioTransport::create(loop.io(), q.memory(), dev));
  MmioDriver drv{[&](uint64_t off, std::span<std::byte> d) { t->read(off, d); },
                 [&](uint64_t off, std::span<const std::byte> d) { t->write(off, d); }};
  drv.bring_up(q);
  auto in_flight = [&] {
    size_t n = 0;
    loop.run([&] { n = backend->in_flight(); });
    return n;
  };
  std::vector<Request> reqs{push_read(q, 0), push_read(q, 1)};
  drv.kick(0);
  REQUIRE(eventually([&] { return in_flight() == 2; }));

  std::atomic<bool> idle = false;
  loop.run([&] { t->core().quiesce([&] { idle = true; }); });
  CHECK_FALSE(idle);
  // A request and its kick while quiesced: noted, not acted on.
  reqs.push_back(push_read(q, 2));
  drv.kick(0);
  std::this_thread::sleep_for(100ms);
  CHECK(in_flight() == 2);
  CHECK_FALSE(idle);
  CHECK(q.used_idx() == 0);

  // The backend completes: the device publishes both and reports idle.
  loop.run([&] { backend->release(); });
  REQUIRE(eventually([&] { return idle.load(); }));
  CHECK(q.used_idx() == 2);
  CHECK(q.get<uint8_t>(reqs[0].status) == blk::kSOk);
  CHECK(q.get<uint8_t>(reqs[1].status) == blk::kSOk);
  std::this_thread::sleep_for(50ms);
  CHECK(in_flight() == 0);
  CHECK(q.used_idx() == 2);

  // Unquiesce replays the kick.
  loop.run([&] { t->core().unquiesce(); });
  REQUIRE(eventually([&] { return in_flight() == 1; }));
  loop.run([&] { backend->release(); });
  REQUIRE(eventually([&] { return q.used_idx() == 3; }));
  CHECK(q.used(2).id == reqs[2].head);
  t->stop();
}

TEST_CASE("virtio quiesce of an idle VM, kicks during it, save refused when not quiesced",
          "[virtio-state]") {
  ScratchDir dir;
  VirtqBuilder q(kQueue, kMem);
  Stack s(make_config(make_disk(dir)), q);
  MmioDriver disk = s.slot(0);
  disk.bring_up(q);
  CHECK(s.devices->save_state().error().code() == ErrorCode::kState);
  REQUIRE(s.devices->quiesce(2s).ok());
  CHECK(s.devices->quiesce(2s).error().code() == ErrorCode::kState);
  Request r = push_read(q, 5);
  disk.kick(0);
  std::this_thread::sleep_for(100ms);
  CHECK(q.used_idx() == 0);
  s.devices->unquiesce();
  REQUIRE(eventually([&] { return q.used_idx() == 1; }));
  CHECK(q.get<uint8_t>(r.status) == blk::kSOk);
  CHECK(first_byte_is(q, r.data, 6));
}

TEST_CASE("virtio state: save, restore into a fresh stack, the driver goes on", "[virtio-state]") {
  ScratchDir dir;
  const VmConfig config = make_config(make_disk(dir));
  VirtqBuilder qa(kQueue, kMem);
  std::vector<Request> done;
  const std::vector<std::byte> blob = saved_stack(config, qa, &done);

  VirtqBuilder qb(kQueue, kMem);
  copy_memory(qa, qb, kMem);
  qb.set_next_desc(9);  // three chains of three descriptors
  qb.alloc(64 * 1024);  // qb's allocator starts afresh (zeroing): step over the old buffers
  // The driver has consumed these: a device that served them again would overwrite them.
  for (const Request& r : done) {
    qb.put<uint8_t>(r.status, 0xee);
  }
  Stack b(config, qb);
  REQUIRE(b.devices->restore_state(blob).ok());
  MmioDriver disk = b.slot(0);
  CHECK(disk.r32(mmio::kStatus) == kOkStatus);
  disk.w32(mmio::kQueueSel, 0);
  CHECK(disk.r32(mmio::kQueueReady) == 1);
  CHECK(b.slot(1).r32(mmio::kStatus) == (kOkStatus & ~virtio::kStatusDriverOk));
  // The restore notified every queue of the active device.
  REQUIRE(eventually([&] { return (disk.r32(mmio::kInterruptStatus) & 1) != 0; }));
  CHECK(qb.used_idx() == 3);

  Request r = push_read(qb, 7);
  disk.kick(0);
  REQUIRE(eventually([&] { return qb.used_idx() == 4; }));
  CHECK(qb.used(3).id == r.head);
  CHECK(qb.get<uint8_t>(r.status) == blk::kSOk);
  CHECK(first_byte_is(qb, r.data, 8));
  // The entries from before the save are untouched.
  for (uint16_t i = 0; i < 3; ++i) {
    CHECK(qb.used(i).id == qa.used(i).id);
    CHECK(qb.get<uint8_t>(done[i].status) == 0xee);
  }
}

TEST_CASE("virtio state: corrupted or mismatched state is refused, nothing changes",
          "[virtio-state]") {
  ScratchDir dir;
  const VmConfig config = make_config(make_disk(dir));
  VirtqBuilder qa(kQueue, kMem);
  const std::vector<std::byte> blob = saved_stack(config, qa);
  VirtqBuilder qb(kQueue, kMem);
  copy_memory(qa, qb, kMem);
  Stack b(config, qb);

  auto refused = [&](std::span<const std::byte> bytes, std::string_view needle) {
    auto r = b.devices->restore_state(bytes);
    REQUIRE_FALSE(r.ok());
    INFO(r.error().to_string());
    CHECK(r.error().code() == ErrorCode::kInvalidArgument);
    CHECK(r.error().to_string().find(needle) != std::string::npos);
    CHECK(b.slot(0).r32(mmio::kStatus) == 0);
    CHECK(b.slot(1).r32(mmio::kStatus) == 0);
  };

  SECTION("truncated at every length") {
    for (size_t n = 0; n < blob.size(); ++n) {
      auto r = b.devices->restore_state(std::span(blob).first(n));
      REQUIRE_FALSE(r.ok());
      CHECK(r.error().code() == ErrorCode::kInvalidArgument);
    }
    CHECK(b.slot(0).r32(mmio::kStatus) == 0);
    std::vector<std::byte> longer = blob;
    longer.push_back(std::byte{0});
    refused(longer, "offset");
  }

  // disk0's record: header 8, count 4, id 4 + 5, transport 4, type 4, queues 4, length 4.
  constexpr size_t kPayload = 8 + 4 + 9 + 4 + 4 + 4 + 4;
  constexpr size_t kQueue0 = kPayload + 30;  // status .. queue count
  auto patched = [&](size_t offset, uint64_t value, size_t bytes) {
    std::vector<std::byte> out = blob;
    REQUIRE(offset + bytes <= out.size());
    for (size_t i = 0; i < bytes; ++i) {
      out[offset + i] = static_cast<std::byte>(value >> (8 * i));
    }
    return out;
  };
  auto get32 = [&](size_t offset) {
    uint32_t v = 0;
    std::memcpy(&v, blob.data() + offset, 4);
    return v;
  };
  REQUIRE(get32(kQueue0) == kQueue);                           // queue 0 size
  REQUIRE(std::to_integer<uint8_t>(blob[kQueue0 + 30]) == 1);  // has indices
  REQUIRE(get32(kQueue0 + 31) == 3);                           // next_avail

  SECTION("fields") {
    refused(patched(kPayload, 0x07, 1), "out of order");  // DRIVER_OK without FEATURES_OK
    refused(patched(kPayload, kOkStatus | 0x20, 1), "unknown bits");
    refused(patched(kPayload + 9, virtio::feature_bit(50) | virtio::feature_bit(32), 8),
            "not offered");
    refused(patched(kQueue0, 512, 4), "queue 0 size 512");
    refused(patched(kQueue0, 12, 4), "queue 0 unusable");              // not a power of two
    refused(patched(kQueue0 + 6, 0x7fff0000, 8), "queue 0 unusable");  // desc outside RAM
    refused(patched(kQueue0 + 35, 40, 4), "apart");                    // next_used
    refused(patched(kQueue0 + 30, 0, 1), "lacks indices");
    refused(patched(kPayload + 22, 4, 4), "ISR");
  }

  SECTION("device lists that differ") {
    refused(patched(8 + 4 + 4 + 4, '9', 1), "saved device 0 is \"disk9\"");
    refused(patched(8 + 4 + 9, 1, 4), "saved on pci");
    refused(patched(8 + 4 + 9 + 4, virtio::kDeviceNet, 4), "device type 1");
    refused(patched(8 + 4 + 9 + 8, 2, 4), "with 2 queues");
    refused(patched(8, 1, 4), "1 devices saved, this VM has 2 (first missing: rng0)");

    ScratchDir dir2;  // b holds the first image's lock
    VirtqBuilder qc(kQueue, kMem);
    Stack c(make_config(make_disk(dir2), false), qc);
    auto r = c.devices->restore_state(blob);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().to_string().find("saved device 1 \"rng0\" has no counterpart") !=
          std::string::npos);
  }

  SECTION("the untouched blob still restores") {
    REQUIRE(b.devices->restore_state(blob).ok());
    CHECK(b.slot(0).r32(mmio::kStatus) == kOkStatus);
  }
}

TEST_CASE("virtio state: a virtio-PCI device and the PCI root round trip", "[virtio-state]") {
  ScratchDir dir;
  VmConfig config = make_config(make_disk(dir));
  config.disks[0].transport = VirtioTransport::kPci;
  VirtqBuilder qa(kQueue, kMem);
  std::vector<std::byte> blob;
  {
    Stack a(config, qa);
    REQUIRE(a.devices->has_pci());
    // rng0 is the only MMIO device: slot 0.
    a.slot(0).negotiate(virtio::feature_bit(virtio::kFVersion1));
    REQUIRE(a.devices->quiesce(2s).ok());
    blob = take(a.devices->save_state());
    a.devices->unquiesce();
  }
  VirtqBuilder qb(kQueue, kMem);
  Stack b(config, qb);
  REQUIRE(b.devices->restore_state(blob).ok());
  CHECK(b.slot(0).r32(mmio::kStatus) == (kOkStatus & ~virtio::kStatusDriverOk));

  // The same blob on a VM whose disk is on MMIO: refused, naming the transport.
  ScratchDir dir2;
  VirtqBuilder qc(kQueue, kMem);
  Stack c(make_config(make_disk(dir2)), qc);
  auto r = c.devices->restore_state(blob);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code() == ErrorCode::kInvalidArgument);
  CHECK(r.error().to_string().find("disk0 was saved on pci, this VM has it on mmio") !=
        std::string::npos);
}

namespace {

// A SOCK_SEQPACKET end as a TAP-like backend (one message per frame, header included).
class SocketBackend final : public virtio::NetBackend {
 public:
  explicit SocketBackend(int fd) : fd_(fd) {}
  ~SocketBackend() override { ::close(fd_); }
  int fd() const override { return fd_; }
  virtio::NetOffloads supported_offloads() const override { return {}; }
  Result<void> set_offloads(const virtio::NetOffloads& /*o*/) override { return {}; }
  Result<std::optional<size_t>> read_frame(std::span<const iovec> iov) override {
    msghdr msg{};
    msg.msg_iov = const_cast<iovec*>(iov.data());
    msg.msg_iovlen = iov.size();
    ssize_t n = ::recvmsg(fd_, &msg, MSG_DONTWAIT | MSG_TRUNC);
    if (n < 0) {
      return std::optional<size_t>();
    }
    return std::optional<size_t>(static_cast<size_t>(n));
  }
  Result<std::optional<size_t>> write_frame(std::span<const iovec> /*iov*/) override {
    return std::optional<size_t>(0);
  }

 private:
  int fd_;
};

class CountingInterrupt final : public virtio::VirtioInterrupt {
 public:
  void notify_queue(uint16_t /*index*/) override {}
  void notify_config() override {}
  void set_needs_reset() override { needs_reset = true; }
  bool needs_reset = false;
};

}  // namespace

TEST_CASE("virtio-net quiesce gives back held receive chains and keeps the frame",
          "[virtio-state]") {
  boost::asio::io_context io;
  VirtqBuilder q(kQueue, kMem);
  int fds[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) == 0);
  auto dev =
      take(virtio::NetDevice::create(std::make_unique<SocketBackend>(fds[0]),
                                     virtio::MacAddress({2, 0, 0, 0, 0, 1}), std::nullopt, io));
  CountingInterrupt irq;
  virtio::ActivateContext ctx;
  ctx.memory = &q.memory();
  ctx.features = virtio::feature_bit(virtio::net::kFMrgRxbuf);
  ctx.queues.resize(2);
  ctx.queues[virtio::net::kRxQueue] = q.make_queue();
  ctx.interrupt = &irq;
  ctx.io = &io;
  REQUIRE(dev->activate(std::move(ctx)).ok());

  // A 1000-byte frame and one 100-byte receive chain: the device holds chain and frame.
  std::vector<std::byte> packet(virtio::net::kHdrSize + 1000, std::byte{0x5a});
  REQUIRE(::send(fds[1], packet.data(), packet.size(), 0) == static_cast<ssize_t>(packet.size()));
  q.push({VirtqBuilder::writable(100)});
  dev->process_queue(virtio::net::kRxQueue);
  REQUIRE(dev->queue_indices()[virtio::net::kRxQueue]->next_avail == 1);
  CHECK(q.used_idx() == 0);

  bool idle = false;
  dev->quiesce([&] { idle = true; });
  CHECK(idle);
  // Given back: the ring is as if the chain was never popped.
  CHECK(dev->queue_indices()[virtio::net::kRxQueue]->next_avail == 0);
  CHECK(dev->queue_indices()[virtio::net::kRxQueue]->next_used == 0);
  q.push({VirtqBuilder::writable(2000)});
  dev->process_queue(virtio::net::kRxQueue);  // the transport would not; ignored anyway
  CHECK(q.used_idx() == 0);

  dev->unquiesce();
  CHECK(q.used_idx() == 2);  // the held frame, over both chains
  CHECK(q.used(0).len + q.used(1).len == packet.size());
  CHECK(dev->stats().rx_frames == 1);
  CHECK_FALSE(irq.needs_reset);
  dev->reset();
  ::close(fds[1]);
}
