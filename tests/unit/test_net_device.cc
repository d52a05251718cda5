// NetDevice end to end on the event loop, over a socket-pair backend: the test holds the
// other end, where frames the guest sends arrive and where frames for the guest are written.
// (The TAP backend itself: test_net_tap.cc.)
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <functional>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <catch2/catch.hpp>

#include "virtio/net_device.h"
#include "virtio/virtio_spec.h"
#include "virtq_builder.h"
#include "vmm/base/unique_fd.h"

using petrel::GuestAddress;
using petrel::Result;
using petrel::UniqueFd;
using petrel::testing::VirtqBuilder;
using petrel::virtio::ActivateContext;
using petrel::virtio::feature_bit;
using petrel::virtio::MacAddress;
using petrel::virtio::NetBackend;
using petrel::virtio::NetDevice;
using petrel::virtio::NetOffloads;
using petrel::virtio::Virtqueue;
using namespace petrel::virtio::net;

namespace {

// A SOCK_SEQPACKET socket pair: one message per frame, like a TAP descriptor.
class SocketBackend final : public NetBackend {
 public:
  SocketBackend(UniqueFd fd, NetOffloads supported, NetOffloads* applied)
      : fd_(std::move(fd)), supported_(supported), applied_(applied) {}
  int fd() const override { return fd_.get(); }
  NetOffloads supported_offloads() const override { return supported_; }
  Result<void> set_offloads(const NetOffloads& o) override {
    *applied_ = o;
    return {};
  }
  Result<std::optional<size_t>> read_frame(std::span<const iovec> iov) override {
    msghdr msg{};
    msg.msg_iov = const_cast<iovec*>(iov.data());
    msg.msg_iovlen = iov.size();
    ssize_t n = ::recvmsg(fd_.get(), &msg, MSG_DONTWAIT | MSG_TRUNC);
    if (n < 0 && errno == EAGAIN) {
      return std::optional<size_t>();
    }
    if (n < 0) {
      return petrel::Error::from_errno("recvmsg", errno);
    }
    return std::optional<size_t>(static_cast<size_t>(n));
  }
  Result<std::optional<size_t>> write_frame(std::span<const iovec> iov) override {
    msghdr msg{};
    msg.msg_iov = const_cast<iovec*>(iov.data());
    msg.msg_iovlen = iov.size();
    ssize_t n = ::sendmsg(fd_.get(), &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n < 0 && errno == EAGAIN) {
      return std::optional<size_t>();
    }
    if (n < 0) {
      return petrel::Error::from_errno("sendmsg", errno);
    }
    return std::optional<size_t>(static_cast<size_t>(n));
  }

 private:
  UniqueFd fd_;
  NetOffloads supported_;
  NetOffloads* applied_;
};

class FakeInterrupt : public petrel::virtio::VirtioInterrupt {
 public:
  void notify_queue(uint16_t index) override { ++queue_notifications[index]; }
  void notify_config() override { ++config_notifications; }
  void set_needs_reset() override { needs_reset = true; }
  std::map<uint16_t, int> queue_notifications;
  int config_notifications = 0;
  bool needs_reset = false;
};

const MacAddress kMac({0x02, 0x11, 0x22, 0x33, 0x44, 0x55});

std::vector<std::byte> pattern(size_t len, uint8_t seed) {
  std::vector<std::byte> out(len);
  for (size_t i = 0; i < len; ++i) {
    out[i] = static_cast<std::byte>(seed + i * 13);
  }
  return out;
}

struct Harness {
  explicit Harness(NetOffloads supported = {}, std::optional<uint16_t> mtu = std::nullopt,
                   uint16_t queue_size = 16)
      : q(queue_size, 4 << 20) {
    int fds[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) == 0);
    peer = UniqueFd(fds[1]);
    auto backend = std::make_unique<SocketBackend>(UniqueFd(fds[0]), supported, &applied);
    device_fd = backend->fd();
    auto dev = NetDevice::create(std::move(backend), kMac, mtu, io);
    REQUIRE(dev.ok());
    device = *dev;
  }

  // Activates with the builder's queue as queue `index` (the other one not enabled).
  void activate(uint16_t index, uint64_t features = 0) {
    ActivateContext ctx;
    ctx.memory = &q.memory();
    ctx.features = features;
    ctx.queues.resize(2);
    ctx.queues[index] = q.make_queue();
    ctx.interrupt = &irq;
    ctx.io = &io;
    REQUIRE(device->activate(std::move(ctx)).ok());
  }

  // Runs the event loop until `done` or 2 s.
  bool run_until(const std::function<bool()>& done) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    while (!done()) {
      if (std::chrono::steady_clock::now() > deadline) {
        return false;
      }
      io.restart();
      io.run_for(std::chrono::milliseconds(5));
    }
    return true;
  }
  // Runs what is ready now; the number of handlers run.
  size_t poll() {
    io.restart();
    return io.poll();
  }

  void peer_send(const VirtioNetHdr& hdr, std::span<const std::byte> frame) {
    iovec iov[2] = {{const_cast<VirtioNetHdr*>(&hdr), kHdrSize},
                    {const_cast<std::byte*>(frame.data()), frame.size()}};
    msghdr msg{};
    msg.msg_iov = iov;
    msg.msg_iovlen = 2;
    REQUIRE(::sendmsg(peer.get(), &msg, MSG_NOSIGNAL) ==
            static_cast<ssize_t>(kHdrSize + frame.size()));
  }
  // One frame the device wrote, header included; empty when none is waiting.
  std::vector<std::byte> peer_recv() {
    std::vector<std::byte> buf(kHdrSize + kMaxFrameLen);
    ssize_t n = ::recv(peer.get(), buf.data(), buf.size(), MSG_DONTWAIT);
    if (n < 0) {
      return {};
    }
    buf.resize(static_cast<size_t>(n));
    return buf;
  }

  VirtqBuilder::Chain push_tx(const VirtioNetHdr& hdr, std::span<const std::byte> frame) {
    auto chain = q.push({VirtqBuilder::readable(kHdrSize),
                         VirtqBuilder::readable(static_cast<uint32_t>(frame.size()))});
    q.put(chain.buffers[0].addr, hdr);
    q.write_bytes(chain.buffers[1].addr, frame);
    return chain;
  }

  boost::asio::io_context io;
  VirtqBuilder q;
  FakeInterrupt irq;
  NetOffloads applied{true, true, true, true, true};  // overwritten by set_offloads
  UniqueFd peer;
  int device_fd = -1;
  std::shared_ptr<NetDevice> device;
};

VirtioNetHdr read_hdr(const VirtqBuilder& q, GuestAddress addr) {
  return q.get<VirtioNetHdr>(addr);
}

}  // namespace

TEST_CASE("net device: features and configuration space", "[net][device]") {
  SECTION("no offloads, no MTU") {
    Harness h;
    const uint64_t f = h.device->device_features();
    CHECK(f == (feature_bit(kFMac) | feature_bit(kFStatus) | feature_bit(kFMrgRxbuf)));
    CHECK(h.device->device_type() == petrel::virtio::kDeviceNet);
    CHECK(h.device->queue_max_sizes() == std::vector<uint16_t>{256, 256});
    std::array<std::byte, 12> cfg;
    h.device->read_config(0, cfg);
    CHECK(std::memcmp(cfg.data(), kMac.bytes().data(), 6) == 0);
    uint16_t status, pairs, mtu;
    std::memcpy(&status, cfg.data() + 6, 2);
    std::memcpy(&pairs, cfg.data() + 8, 2);
    std::memcpy(&mtu, cfg.data() + 10, 2);
    CHECK(status == kStatusLinkUp);
    CHECK(pairs == 1);
    CHECK(mtu == 0);
  }
  SECTION("every offload and an MTU") {
    Harness h(NetOffloads{true, true, true, true, true}, 9000);
    const uint64_t f = h.device->device_features();
    for (unsigned bit : {kFCsum, kFGuestCsum, kFMtu, kFGuestTso4, kFGuestTso6, kFGuestEcn,
                         kFHostTso4, kFHostTso6, kFHostEcn}) {
      INFO(bit);
      CHECK((f & feature_bit(bit)) != 0);
    }
    CHECK((f & feature_bit(kFGuestUfo)) == 0);
    CHECK((f & feature_bit(kFHostUfo)) == 0);
    std::array<std::byte, 4> part;
    h.device->read_config(10, part);  // mtu, then past the end: zeros
    uint16_t mtu;
    std::memcpy(&mtu, part.data(), 2);
    CHECK(mtu == 9000);
    CHECK(part[2] == std::byte{0});
    CHECK(part[3] == std::byte{0});
    std::array<std::byte, 8> far;
    far.fill(std::byte{0xaa});
    h.device->read_config(~uint64_t{0} - 2, far);
    CHECK(far == std::array<std::byte, 8>{});
    const std::array<std::byte, 2> junk{std::byte{1}, std::byte{2}};
    h.device->write_config(0, junk);  // read-only: ignored
    h.device->read_config(0, part);
    CHECK(std::memcmp(part.data(), kMac.bytes().data(), 4) == 0);
  }
  SECTION("checksum offload only") {
    Harness h(NetOffloads{true, false, false, true, false});
    const uint64_t f = h.device->device_features();
    CHECK((f & feature_bit(kFCsum)) != 0);
    CHECK((f & feature_bit(kFGuestCsum)) != 0);
    CHECK((f & (feature_bit(kFHostTso4) | feature_bit(kFGuestTso4) | feature_bit(kFGuestEcn) |
                feature_bit(kFHostEcn))) == 0);
  }
}

TEST_CASE("net device: refuses bad construction parameters", "[net][device]") {
  boost::asio::io_context io;
  int fds[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) == 0);
  UniqueFd peer(fds[1]);
  NetOffloads applied;
  auto make = [&] {
    return std::make_unique<SocketBackend>(UniqueFd(::dup(fds[0])), NetOffloads{}, &applied);
  };
  CHECK_FALSE(NetDevice::create(make(), MacAddress({0x03, 0, 0, 0, 0, 1}), std::nullopt, io).ok());
  CHECK_FALSE(NetDevice::create(make(), MacAddress(), std::nullopt, io).ok());
  CHECK_FALSE(NetDevice::create(make(), kMac, uint16_t{67}, io).ok());
  CHECK(NetDevice::create(make(), kMac, uint16_t{68}, io).ok());
  CHECK_FALSE(NetDevice::create(nullptr, kMac, std::nullopt, io).ok());
  ::close(fds[0]);
}

TEST_CASE("net device: guest offloads applied to the backend at activation", "[net][device]") {
  Harness h(NetOffloads{true, true, true, true, false});
  SECTION("checksum and TSO4") {
    h.activate(kTxQueue, feature_bit(kFGuestCsum) | feature_bit(kFGuestTso4));
    CHECK(h.applied == NetOffloads{true, true, false, false, false});
  }
  SECTION("TSO without checksum offload is not applied") {
    h.activate(kTxQueue,
               feature_bit(kFGuestTso4) | feature_bit(kFGuestTso6) | feature_bit(kFGuestEcn));
    CHECK(h.applied == NetOffloads{});
  }
  SECTION("everything; reset turns it off") {
    h.activate(kTxQueue, feature_bit(kFGuestCsum) | feature_bit(kFGuestTso4) |
                             feature_bit(kFGuestTso6) | feature_bit(kFGuestEcn));
    CHECK(h.applied == NetOffloads{true, true, true, true, false});
    h.device->reset();
    CHECK(h.applied == NetOffloads{});
  }
}

TEST_CASE("net device: transmit", "[net][device][tx]") {
  Harness h;
  h.activate(kTxQueue);
  std::vector<VirtqBuilder::Chain> chains;
  for (int i = 0; i < 3; ++i) {
    VirtioNetHdr hdr;
    hdr.hdr_len = static_cast<uint16_t>(i);
    chains.push_back(h.push_tx(hdr, pattern(60 + 500 * i, static_cast<uint8_t>(i))));
  }
  h.device->process_queue(kTxQueue);
  for (int i = 0; i < 3; ++i) {
    auto got = h.peer_recv();
    REQUIRE(got.size() == kHdrSize + 60 + 500 * i);
    VirtioNetHdr hdr;
    std::memcpy(&hdr, got.data(), kHdrSize);
    CHECK(hdr.hdr_len == i);
    CHECK(std::vector<std::byte>(got.begin() + kHdrSize, got.end()) ==
          pattern(60 + 500 * i, static_cast<uint8_t>(i)));
    CHECK(h.q.used(static_cast<uint16_t>(i)).id == chains[i].head);
    CHECK(h.q.used(static_cast<uint16_t>(i)).len == 0);
  }
  CHECK(h.peer_recv().empty());
  CHECK(h.q.used_idx() == 3);
  CHECK(h.irq.queue_notifications[kTxQueue] == 1);  // one interrupt for the batch
  auto s = h.device->stats();
  CHECK(s.tx_frames == 3);
  CHECK(s.tx_bytes == 60 + 560 + 1060);
  CHECK(s.tx_errors == 0);
  CHECK_FALSE(h.irq.needs_reset);
}

TEST_CASE("net device: bad transmit chains are dropped, the device goes on", "[net][device][tx]") {
  Harness h;
  h.activate(kTxQueue);
  auto writable = h.q.push({VirtqBuilder::readable(kHdrSize + 60), VirtqBuilder::writable(8)});
  auto runt = h.q.push({VirtqBuilder::readable(kHdrSize + 5)});
  VirtioNetHdr csum;
  csum.flags = kHdrFNeedsCsum;  // F_CSUM not negotiated
  auto bad_hdr = h.push_tx(csum, pattern(80, 1));
  auto good = h.push_tx(VirtioNetHdr{}, pattern(70, 2));
  h.device->process_queue(kTxQueue);
  auto got = h.peer_recv();
  CHECK(got.size() == kHdrSize + 70);
  CHECK(h.peer_recv().empty());
  REQUIRE(h.q.used_idx() == 4);
  CHECK(h.q.used(0).id == writable.head);
  CHECK(h.q.used(1).id == runt.head);
  CHECK(h.q.used(2).id == bad_hdr.head);
  CHECK(h.q.used(3).id == good.head);
  for (uint16_t i = 0; i < 4; ++i) {
    CHECK(h.q.used(i).len == 0);
  }
  CHECK(h.device->stats().tx_errors == 3);
  CHECK(h.device->stats().tx_frames == 1);
  CHECK_FALSE(h.irq.needs_reset);
}

TEST_CASE("net device: a full backend holds frames until it drains", "[net][device][tx]") {
  Harness h(NetOffloads{}, std::nullopt, 128);  // 40 chains of 2 descriptors
  int small = 4096;
  REQUIRE(::setsockopt(h.device_fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)) == 0);
  h.activate(kTxQueue);
  constexpr int kFrames = 40;
  for (int i = 0; i < kFrames; ++i) {
    h.push_tx(VirtioNetHdr{}, pattern(1500, static_cast<uint8_t>(i)));
  }
  h.device->process_queue(kTxQueue);
  const uint16_t first_batch = h.q.used_idx();
  CHECK(first_batch > 0);
  CHECK(first_batch < kFrames);       // the socket buffer took only some
  h.device->process_queue(kTxQueue);  // a kick while waiting changes nothing
  CHECK(h.q.used_idx() == first_batch);

  std::vector<std::vector<std::byte>> received;
  REQUIRE(h.run_until([&] {
    for (auto f = h.peer_recv(); !f.empty(); f = h.peer_recv()) {
      received.push_back(std::move(f));
    }
    return received.size() == kFrames;
  }));
  for (int i = 0; i < kFrames; ++i) {
    REQUIRE(received[i].size() == kHdrSize + 1500);
    CHECK(received[i][kHdrSize] == pattern(1, static_cast<uint8_t>(i))[0]);
  }
  CHECK(h.run_until([&] { return h.q.used_idx() == kFrames; }));
  CHECK(h.device->stats().tx_frames == kFrames);
  CHECK(h.device->stats().tx_errors == 0);
}

TEST_CASE("net device: receive into single buffers", "[net][device][rx]") {
  Harness h;
  auto c0 = h.q.push({VirtqBuilder::writable(kHdrSize), VirtqBuilder::writable(1514)});
  auto c1 = h.q.push({VirtqBuilder::writable(2048)});
  h.activate(kRxQueue);
  VirtioNetHdr hdr;
  hdr.flags = kHdrFDataValid;
  h.peer_send(hdr, pattern(1000, 7));
  h.peer_send(VirtioNetHdr{}, pattern(64, 8));
  REQUIRE(h.run_until([&] { return h.q.used_idx() == 2; }));
  CHECK(h.q.used(0).id == c0.head);
  CHECK(h.q.used(0).len == kHdrSize + 1000);
  auto got0 = read_hdr(h.q, c0.buffers[0].addr);
  CHECK(got0.flags == kHdrFDataValid);
  CHECK(got0.num_buffers == 1);
  CHECK(h.q.read_bytes(c0.buffers[1].addr, 1000) == pattern(1000, 7));
  CHECK(h.q.used(1).id == c1.head);
  CHECK(h.q.used(1).len == kHdrSize + 64);
  CHECK(h.q.read_bytes(c1.buffers[0].addr + kHdrSize, 64) == pattern(64, 8));
  CHECK(h.irq.queue_notifications[kRxQueue] >= 1);
  CHECK(h.device->stats().rx_frames == 2);
  CHECK(h.device->stats().rx_bytes == 1064);
}

TEST_CASE("net device: receive waits for buffers without losing frames", "[net][device][rx]") {
  Harness h;
  h.q.push({VirtqBuilder::writable(2048)});
  h.activate(kRxQueue);
  for (uint8_t i = 0; i < 4; ++i) {
    h.peer_send(VirtioNetHdr{}, pattern(100 + i, i));
  }
  REQUIRE(h.run_until([&] { return h.q.used_idx() == 1; }));
  // No buffers: the device neither reads the backend nor spins on the loop.
  CHECK(h.poll() == 0);
  CHECK(h.q.used_idx() == 1);
  CHECK(h.device->stats().rx_dropped == 0);
  std::vector<VirtqBuilder::Chain> more;
  for (int i = 0; i < 3; ++i) {
    more.push_back(h.q.push({VirtqBuilder::writable(2048)}));
  }
  h.device->process_queue(kRxQueue);  // the driver's kick
  REQUIRE(h.run_until([&] { return h.q.used_idx() == 4; }));
  for (uint8_t i = 1; i < 4; ++i) {
    CHECK(h.q.used(i).len == kHdrSize + 100 + i);
    CHECK(h.q.read_bytes(more[i - 1].buffers[0].addr + kHdrSize, 100 + i) == pattern(100 + i, i));
  }
  CHECK(h.device->stats().rx_frames == 4);
  CHECK(h.device->stats().rx_dropped == 0);
}

TEST_CASE("net device: mergeable receive buffers", "[net][device][rx]") {
  Harness h;
  std::vector<VirtqBuilder::Chain> chains;
  for (int i = 0; i < 5; ++i) {
    chains.push_back(h.q.push({VirtqBuilder::writable(1024)}));
  }
  h.activate(kRxQueue, feature_bit(kFMrgRxbuf));
  const auto frame = pattern(3000, 3);  // 3012 bytes: 1024 + 1024 + 964
  h.peer_send(VirtioNetHdr{}, frame);
  REQUIRE(h.run_until([&] { return h.q.used_idx() == 3; }));
  CHECK(read_hdr(h.q, chains[0].buffers[0].addr).num_buffers == 3);
  std::vector<std::byte> got;
  for (uint16_t i = 0; i < 3; ++i) {
    CHECK(h.q.used(i).id == chains[i].head);
    auto b = h.q.read_bytes(chains[i].buffers[0].addr, h.q.used(i).len);
    got.insert(got.end(), b.begin(), b.end());
  }
  CHECK(h.q.used(2).len == 964);
  CHECK(std::vector<std::byte>(got.begin() + kHdrSize, got.end()) == frame);

  // A frame larger than the two chains left waits for a third, then takes it.
  h.peer_send(VirtioNetHdr{}, pattern(2500, 4));
  CHECK_FALSE(h.run_until([&] { return h.q.used_idx() != 3; }));
  auto extra = h.q.push({VirtqBuilder::writable(1024)});
  h.device->process_queue(kRxQueue);
  REQUIRE(h.run_until([&] { return h.q.used_idx() == 6; }));
  CHECK(read_hdr(h.q, chains[3].buffers[0].addr).num_buffers == 3);
  CHECK(h.q.used(5).id == extra.head);
  CHECK(h.q.used(5).len == kHdrSize + 2500 - 2048);
}

TEST_CASE("net device: frames that do not fit are dropped", "[net][device][rx]") {
  Harness h;
  SECTION("without mergeable buffers the first chain must hold the frame") {
    auto small = h.q.push({VirtqBuilder::writable(600)});
    h.activate(kRxQueue);
    h.peer_send(VirtioNetHdr{}, pattern(1000, 1));  // dropped; the chain stays
    h.peer_send(VirtioNetHdr{}, pattern(500, 2));   // fits
    REQUIRE(h.run_until([&] { return h.q.used_idx() == 1; }));
    CHECK(h.q.used(0).id == small.head);
    CHECK(h.q.used(0).len == kHdrSize + 500);
    CHECK(h.device->stats().rx_dropped == 1);
    CHECK(h.device->stats().rx_frames == 1);
  }
  SECTION("a chain too small for a header is returned empty") {
    auto tiny = h.q.push({VirtqBuilder::writable(kHdrSize - 1)});
    auto fine = h.q.push({VirtqBuilder::writable(2048)});
    h.activate(kRxQueue, feature_bit(kFMrgRxbuf));
    h.peer_send(VirtioNetHdr{}, pattern(100, 1));
    REQUIRE(h.run_until([&] { return h.q.used_idx() == 2; }));
    CHECK(h.q.used(0).id == tiny.head);
    CHECK(h.q.used(0).len == 0);
    CHECK(h.q.used(1).id == fine.head);
    CHECK(h.q.used(1).len == kHdrSize + 100);
    CHECK(h.device->stats().rx_errors == 1);
  }
  SECTION("mergeable: all queue entries together too small") {
    Harness small(NetOffloads{}, std::nullopt, 2);
    small.q.push({VirtqBuilder::writable(100)});
    small.q.push({VirtqBuilder::writable(100)});
    small.activate(kRxQueue, feature_bit(kFMrgRxbuf));
    small.peer_send(VirtioNetHdr{}, pattern(1000, 1));  // needs 11 chains, the queue has 2
    small.peer_send(VirtioNetHdr{}, pattern(150, 2));
    REQUIRE(small.run_until([&] { return small.q.used_idx() == 2; }));
    CHECK(small.device->stats().rx_dropped == 1);
    CHECK(small.device->stats().rx_frames == 1);
    CHECK(small.q.used(1).len == kHdrSize + 150 - 100);
  }
  CHECK_FALSE(h.irq.needs_reset);
}

TEST_CASE("net device: a broken ring needs a reset", "[net][device]") {
  Harness h;
  SECTION("transmit queue") {
    h.activate(kTxQueue);
    h.q.set_avail_idx(100);  // more than the queue size ahead
    h.device->process_queue(kTxQueue);
  }
  SECTION("receive queue") {
    h.q.push({VirtqBuilder::writable(2048)});
    h.q.write_desc(0, VirtqBuilder::RawDesc{0xffff0000, 2048, petrel::virtio::kDescFWrite, 0});
    h.activate(kRxQueue);
    h.peer_send(VirtioNetHdr{}, pattern(100, 1));
    REQUIRE(h.run_until([&] { return h.irq.needs_reset; }));
  }
  CHECK(h.irq.needs_reset);
  h.device->process_queue(kTxQueue);
  h.device->process_queue(kRxQueue);
  h.poll();
  h.device->reset();
}

TEST_CASE("net device: reset stops everything and the device can start again", "[net][device]") {
  Harness h;
  h.activate(kRxQueue);  // no buffers: a read wait armed, then nothing
  h.peer_send(VirtioNetHdr{}, pattern(100, 1));
  h.poll();
  h.device->reset();
  h.device->process_queue(kRxQueue);  // ignored while inactive
  h.poll();
  CHECK(h.q.used_idx() == 0);

  // Re-activation on a fresh ring: the pending frame was discarded with the old state.
  VirtqBuilder q2(16);
  auto c = q2.push({VirtqBuilder::writable(2048)});
  ActivateContext ctx;
  ctx.memory = &q2.memory();
  ctx.queues.resize(2);
  ctx.queues[kRxQueue] = q2.make_queue();
  ctx.interrupt = &h.irq;
  ctx.io = &h.io;
  REQUIRE(h.device->activate(std::move(ctx)).ok());
  h.peer_send(VirtioNetHdr{}, pattern(200, 2));
  REQUIRE(h.run_until([&] { return q2.used_idx() >= 1; }));
  CHECK(q2.used(0).id == c.head);
  CHECK(q2.read_bytes(c.buffers[0].addr + kHdrSize, 200) == pattern(200, 2));

  // A device destroyed with a wait armed leaves a harmless handler behind.
  h.device.reset();
  h.poll();
}
