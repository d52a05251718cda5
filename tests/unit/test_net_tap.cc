// The TAP backend against the real kernel (needs root / CAP_NET_ADMIN and /dev/net/tun;
// skipped with a warning otherwise): create, offload probing, MTU, link state, and a NetDevice
// over a real TAP sending a frame to the kernel and receiving one injected with AF_PACKET.
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <string>

#include <fmt/format.h>
#include <boost/asio/io_context.hpp>
#include <catch2/catch.hpp>

#include "virtio/net_device.h"
#include "virtio/tap.h"
#include "virtio/virtio_spec.h"
#include "virtq_builder.h"
#include "vmm/base/unique_fd.h"

using petrel::UniqueFd;
using petrel::testing::VirtqBuilder;
using petrel::virtio::MacAddress;
using petrel::virtio::NetDevice;
using petrel::virtio::NetOffloads;
using petrel::virtio::Tap;
using petrel::virtio::TapOptions;
using namespace petrel::virtio::net;

namespace {

// Why a TAP cannot be used here, or empty.
std::string tap_unusable() {
  if (::geteuid() != 0) {
    return "not root (creating a TAP needs CAP_NET_ADMIN)";
  }
  UniqueFd fd(::open("/dev/net/tun", O_RDWR | O_CLOEXEC));
  if (!fd.valid()) {
    return fmt::format("/dev/net/tun: {}", std::strerror(errno));
  }
  return {};
}

// Unique per process; at most 15 characters.
std::string test_tap_name(int n = 0) {
  return fmt::format("petrel-ut{}{}", ::getpid() % 100000, n == 0 ? "" : "b");
}

struct IfInfo {
  bool up = false;
  int mtu = 0;
};

IfInfo interface_info(const std::string& name) {
  UniqueFd sock(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
  IfInfo info;
  REQUIRE(::ioctl(sock.get(), SIOCGIFFLAGS, &ifr) == 0);
  info.up = (ifr.ifr_flags & IFF_UP) != 0;
  REQUIRE(::ioctl(sock.get(), SIOCGIFMTU, &ifr) == 0);
  info.mtu = ifr.ifr_mtu;
  return info;
}

uint64_t sys_counter(const std::string& name, const std::string& counter) {
  std::ifstream in("/sys/class/net/" + name + "/statistics/" + counter);
  uint64_t v = 0;
  in >> v;
  return v;
}

#define SKIP_WITHOUT_TAP()                         \
  do {                                             \
    if (auto why = tap_unusable(); !why.empty()) { \
      WARN("TAP test skipped: " << why);           \
      return;                                      \
    }                                              \
  } while (false)

}  // namespace

TEST_CASE("TAP: create, probe offloads, MTU, link up, gone on close", "[net][tap]") {
  SKIP_WITHOUT_TAP();
  const std::string name = test_tap_name();
  REQUIRE(::if_nametoindex(name.c_str()) == 0);
  {
    auto tap = Tap::open(TapOptions{name, 1400});
    REQUIRE(tap.ok());
    CHECK((*tap)->name() == name);
    CHECK((*tap)->created());
    CHECK(::if_nametoindex(name.c_str()) != 0);
    auto info = interface_info(name);
    CHECK(info.up);
    CHECK(info.mtu == 1400);
    const NetOffloads off = (*tap)->supported_offloads();
    CHECK(off.csum);  // every kernel petrel supports has these
    CHECK(off.tso4);
    CHECK(off.tso6);
    REQUIRE((*tap)->set_offloads(NetOffloads{true, true, false, false, false}).ok());
    REQUIRE((*tap)->set_offloads(NetOffloads{}).ok());
    const int flags = ::fcntl((*tap)->fd(), F_GETFL);
    CHECK((flags & O_NONBLOCK) != 0);
    CHECK((::fcntl((*tap)->fd(), F_GETFD) & FD_CLOEXEC) != 0);
    // Nothing to read yet or only what the kernel sends on link-up; never blocks.
    std::array<std::byte, 2048> buf;
    iovec iov{buf.data(), buf.size()};
    for (int i = 0; i < 100; ++i) {
      auto r = (*tap)->read_frame(std::span(&iov, 1));
      REQUIRE(r.ok());
      if (!*r) {
        break;
      }
    }
    // Multi-queue: a second petrel (a migration's destination) can attach to it meanwhile.
    auto again = Tap::open(TapOptions{name, std::nullopt});
    INFO((again.ok() ? std::string("attached") : again.error().to_string()));
    REQUIRE(again.ok());
  }
  CHECK(::if_nametoindex(name.c_str()) == 0);
}

TEST_CASE("TAP: kernel-chosen name and refused options", "[net][tap]") {
  SKIP_WITHOUT_TAP();
  {
    auto tap = Tap::open(TapOptions{});
    REQUIRE(tap.ok());
    CHECK((*tap)->name().rfind("ptap", 0) == 0);
    CHECK((*tap)->created());
    CHECK(interface_info((*tap)->name()).up);
  }
  CHECK_FALSE(Tap::open(TapOptions{"a-name-of-16-chr", std::nullopt}).ok());
  CHECK_FALSE(Tap::open(TapOptions{test_tap_name(1), 60}).ok());
}

TEST_CASE("TAP: a NetDevice sends to and receives from the kernel", "[net][tap][device]") {
  SKIP_WITHOUT_TAP();
  const std::string name = test_tap_name();
  boost::asio::io_context io;
  petrel::virtio::NetConfig config;
  config.tap_name = name;
  config.vm_name = "unit";
  auto device = NetDevice::create(config, io);
  REQUIRE(device.ok());
  CHECK((*device)->mac() == MacAddress::generate("unit", 0));
  const unsigned ifindex = ::if_nametoindex(name.c_str());
  REQUIRE(ifindex != 0);

  struct Interrupt : petrel::virtio::VirtioInterrupt {
    void notify_queue(uint16_t) override {}
    void notify_config() override {}
    void set_needs_reset() override { broken = true; }
    bool broken = false;
  } irq;
  // VirtqBuilder lays out one queue per guest memory: receive first, then transmit after a
  // reset and a second activation.
  VirtqBuilder rxq(16);
  std::vector<VirtqBuilder::Chain> rx_chains;
  for (int i = 0; i < 8; ++i) {
    rx_chains.push_back(rxq.push({VirtqBuilder::writable(kHdrSize + 1514)}));
  }
  petrel::virtio::ActivateContext ctx;
  ctx.memory = &rxq.memory();
  ctx.queues.resize(2);
  ctx.queues[kRxQueue] = rxq.make_queue();
  ctx.interrupt = &irq;
  ctx.io = &io;
  REQUIRE((*device)->activate(std::move(ctx)).ok());

  // Inject a frame into the TAP from the kernel side (an AF_PACKET socket transmits on the
  // interface; the TAP hands it to its reader, the device).
  UniqueFd raw(::socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL)));
  REQUIRE(raw.valid());
  constexpr uint16_t kEtherType = 0x88b5;  // IEEE 802 local experimental
  std::array<uint8_t, 100> frame{};
  std::memcpy(frame.data(), (*device)->mac().bytes().data(), 6);
  const std::array<uint8_t, 6> src{0x02, 0, 0, 0, 0, 0x99};
  std::memcpy(frame.data() + 6, src.data(), 6);
  frame[12] = kEtherType >> 8;
  frame[13] = kEtherType & 0xff;
  for (size_t i = 14; i < frame.size(); ++i) {
    frame[i] = static_cast<uint8_t>(i);
  }
  sockaddr_ll addr{};
  addr.sll_family = AF_PACKET;
  addr.sll_ifindex = static_cast<int>(ifindex);
  addr.sll_halen = 6;
  std::memcpy(addr.sll_addr, frame.data(), 6);
  REQUIRE(::sendto(raw.get(), frame.data(), frame.size(), 0,
                   reinterpret_cast<const sockaddr*>(&addr),
                   sizeof(addr)) == static_cast<ssize_t>(frame.size()));

  // The kernel may also send its own frames on link-up (IPv6 ND/MLD); look for ours.
  auto found = [&] {
    for (uint16_t i = 0; i < rxq.used_idx(); ++i) {
      const auto used = rxq.used(i);
      if (used.len != kHdrSize + frame.size()) {
        continue;
      }
      for (const auto& c : rx_chains) {
        if (c.head == used.id) {
          auto bytes = rxq.read_bytes(c.buffers[0].addr + kHdrSize, frame.size());
          if (std::memcmp(bytes.data(), frame.data(), frame.size()) == 0) {
            return true;
          }
        }
      }
    }
    return false;
  };
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
  while (!found() && std::chrono::steady_clock::now() < deadline) {
    io.restart();
    io.run_for(std::chrono::milliseconds(10));
  }
  CHECK(found());
  CHECK((*device)->stats().rx_frames >= 1);
  (*device)->reset();

  // Transmit: the frame the guest sends shows in the interface's receive counters.
  VirtqBuilder txq(16);
  auto chain = txq.push({VirtqBuilder::readable(kHdrSize + frame.size())});
  txq.put(chain.buffers[0].addr, VirtioNetHdr{});
  txq.write_bytes(chain.buffers[0].addr + kHdrSize, std::as_bytes(std::span(frame)));
  petrel::virtio::ActivateContext tx_ctx;
  tx_ctx.memory = &txq.memory();
  tx_ctx.queues.resize(2);
  tx_ctx.queues[kTxQueue] = txq.make_queue();
  tx_ctx.interrupt = &irq;
  tx_ctx.io = &io;
  const uint64_t rx_before = sys_counter(name, "rx_packets");
  REQUIRE((*device)->activate(std::move(tx_ctx)).ok());
  (*device)->process_queue(kTxQueue);
  CHECK(txq.used_idx() == 1);
  CHECK((*device)->stats().tx_frames == 1);
  CHECK(sys_counter(name, "rx_packets") == rx_before + 1);
  CHECK_FALSE(irq.broken);
}
