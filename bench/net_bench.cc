// net_bench: virtio-net device-path throughput against a real TAP, with no guest.
//
// The process moves into a fresh network namespace (unshare(CLONE_NEWNET), needs root), so
// nothing touches the host's network, and creates a TAP there (petrel's Tap backend). A fake
// driver (tests/unit/virtq_builder.h) keeps one virtqueue in guest memory full of buffers and
// recycles them as the device returns them; the device runs on an Asio loop in this thread.
//
//  TX: frames the "guest" transmits go through NetDevice (header check, writev straight from
//      guest memory) into the TAP, where the kernel drops them early (the destination MAC is
//      not the interface's). Limit: the same frames written to the TAP fd in a tight loop.
//  RX: a burst of frames is injected into the TAP from the kernel side (AF_PACKET on the
//      interface; its transmit queue is enlarged to hold the whole burst), then drained into
//      the guest's receive queue by NetDevice (read into a bounce buffer, copy into the
//      chains, publish). Only the drain is timed. Limit: the same burst drained with read().
//
// Output: one JSON object per line: {"case", "path", "frame_bytes", "frames", "seconds",
// "cpu_seconds", "frames_per_s", "mb_per_s", "frames_per_cpu_s", "errors"}; cpu_seconds is
// this thread's CPU time (user + system: the TAP's kernel work runs in its syscalls) over
// the timed part. bench/net_bench.py prints them as a table.
#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <boost/asio/io_context.hpp>

#include "virtio/net_device.h"
#include "virtio/tap.h"
#include "virtio/virtio_spec.h"
#include "virtq_builder.h"
#include "vmm/base/unique_fd.h"

namespace {

using Clock = std::chrono::steady_clock;
using petrel::GuestAddress;
using petrel::UniqueFd;
using petrel::testing::VirtqBuilder;
using petrel::virtio::feature_bit;
using petrel::virtio::NetDevice;
using petrel::virtio::Tap;
using namespace petrel::virtio::net;

constexpr uint16_t kQueue = 256;
constexpr size_t kRxBurst = 20000;

struct Options {
  double seconds = 2.0;
};

void die(const std::string& what) {
  std::fprintf(stderr, "net_bench: %s\n", what.c_str());
  std::exit(1);
}

void report(const char* name, const char* path, size_t frame_bytes, uint64_t frames, double seconds,
            double cpu_seconds, uint64_t errors) {
  std::printf(
      "{\"case\": \"%s\", \"path\": \"%s\", \"frame_bytes\": %zu, \"frames\": %llu, "
      "\"seconds\": %.3f, \"cpu_seconds\": %.3f, \"frames_per_s\": %.0f, "
      "\"mb_per_s\": %.1f, \"frames_per_cpu_s\": %.0f, \"errors\": %llu}\n",
      name, path, frame_bytes, static_cast<unsigned long long>(frames), seconds, cpu_seconds,
      frames / seconds, frames * static_cast<double>(frame_bytes) / seconds / 1e6,
      frames / cpu_seconds, static_cast<unsigned long long>(errors));
  std::fflush(stdout);
}

double since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// CPU time of this thread (user + system), seconds: steadier than wall time on a loaded host.
double thread_cpu() {
  timespec ts{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

// An Ethernet + IPv4 + TCP frame of `len` bytes to a MAC that is not the TAP's.
std::vector<std::byte> make_frame(size_t len) {
  std::vector<uint8_t> f(len, 0);
  const uint8_t dst[6] = {0x02, 0, 0, 0, 0, 0x02};
  const uint8_t src[6] = {0x02, 0, 0, 0, 0, 0x01};
  std::memcpy(f.data(), dst, 6);
  std::memcpy(f.data() + 6, src, 6);
  f[12] = 0x08;  // IPv4
  uint8_t* ip = f.data() + 14;
  ip[0] = 0x45;
  const uint16_t ip_len = htons(static_cast<uint16_t>(std::min<size_t>(len - 14, 0xffff)));
  std::memcpy(ip + 2, &ip_len, 2);
  ip[8] = 64;
  ip[9] = 6;  // TCP
  const uint8_t saddr[4] = {10, 0, 0, 2}, daddr[4] = {10, 0, 0, 1};
  std::memcpy(ip + 12, saddr, 4);
  std::memcpy(ip + 16, daddr, 4);
  uint8_t* tcp = ip + 20;
  tcp[12] = 5 << 4;
  tcp[13] = 0x10;  // ACK
  std::vector<std::byte> out(len);
  std::memcpy(out.data(), f.data(), len);
  return out;
}

VirtioNetHdr tso_hdr() {
  VirtioNetHdr h;
  h.flags = kHdrFNeedsCsum;
  h.gso_type = kGsoTcpv4;
  h.hdr_len = 54;
  h.gso_size = 1448;
  h.csum_start = 34;
  h.csum_offset = 16;
  return h;
}

struct NullInterrupt : petrel::virtio::VirtioInterrupt {
  void notify_queue(uint16_t) override { ++notifications; }
  void notify_config() override {}
  void set_needs_reset() override { broken = true; }
  uint64_t notifications = 0;
  bool broken = false;
};

// The raw loop cycles over kQueue copies of the frame, the footprint the device's queue has.
void tx_raw(Tap& tap, const char* name, const VirtioNetHdr& hdr,
            const std::vector<std::byte>& frame, double seconds) {
  std::vector<std::vector<std::byte>> copies(kQueue, frame);
  uint64_t frames = 0, errors = 0;
  const auto start = Clock::now();
  const double cpu = thread_cpu();
  while (since(start) < seconds) {
    for (auto& copy : copies) {
      iovec iov[2] = {{const_cast<VirtioNetHdr*>(&hdr), kHdrSize}, {copy.data(), copy.size()}};
      auto r = tap.write_frame(iov);
      if (!r.ok()) {
        ++errors;
      } else if (*r) {
        ++frames;
      }
    }
  }
  report(name, "raw write", frame.size(), frames, since(start), thread_cpu() - cpu, errors);
}

void tx_device(NetDevice& dev, boost::asio::io_context& io, const char* name,
               const VirtioNetHdr& hdr, const std::vector<std::byte>& frame, uint64_t features,
               double seconds) {
  VirtqBuilder q(kQueue, 64 << 20);
  std::vector<uint16_t> heads;
  for (uint16_t i = 0; i < kQueue; ++i) {
    auto c = q.add_chain({VirtqBuilder::readable(static_cast<uint32_t>(kHdrSize + frame.size()))});
    q.put(c.buffers[0].addr, hdr);
    q.write_bytes(c.buffers[0].addr + kHdrSize, frame);
    heads.push_back(c.head);
  }
  NullInterrupt irq;
  petrel::virtio::ActivateContext ctx;
  ctx.memory = &q.memory();
  ctx.features = features;
  ctx.queues.resize(2);
  ctx.queues[kTxQueue] = q.make_queue();
  ctx.interrupt = &irq;
  ctx.io = &io;
  if (auto r = dev.activate(std::move(ctx)); !r.ok()) {
    die(r.error().to_string());
  }
  const auto before = dev.stats();
  uint16_t seen_used = 0;
  const auto start = Clock::now();
  const double cpu = thread_cpu();
  for (uint16_t h : heads) {
    q.publish(h);
  }
  while (since(start) < seconds) {
    dev.process_queue(kTxQueue);  // the driver's kick
    io.restart();
    io.poll();
    // The driver takes back what the device used and makes it available again.
    const uint16_t used = q.used_idx();
    for (; seen_used != used; ++seen_used) {
      q.publish(static_cast<uint16_t>(q.used(seen_used).id));
    }
  }
  const double elapsed = since(start);
  const double cpu_used = thread_cpu() - cpu;
  const auto after = dev.stats();
  dev.reset();
  if (irq.broken) {
    die("device reported a broken ring");
  }
  report(name, "virtio-net device", frame.size(), after.tx_frames - before.tx_frames, elapsed,
         cpu_used, after.tx_errors - before.tx_errors);
}

// Queues `count` copies of `frame` on the TAP's transmit side (towards its reader).
size_t inject(int raw, unsigned ifindex, const std::vector<std::byte>& frame, size_t count) {
  sockaddr_ll addr{};
  addr.sll_family = AF_PACKET;
  addr.sll_ifindex = static_cast<int>(ifindex);
  addr.sll_halen = 6;
  std::memcpy(addr.sll_addr, frame.data(), 6);
  size_t sent = 0;
  for (size_t i = 0; i < count; ++i) {
    if (::sendto(raw, frame.data(), frame.size(), 0, reinterpret_cast<const sockaddr*>(&addr),
                 sizeof(addr)) == static_cast<ssize_t>(frame.size())) {
      ++sent;
    }
  }
  return sent;
}

void rx_raw(Tap& tap, int raw, unsigned ifindex, const char* name,
            const std::vector<std::byte>& frame, double seconds) {
  std::vector<std::byte> buf(kHdrSize + kMaxFrameLen);
  iovec iov{buf.data(), buf.size()};
  uint64_t frames = 0;
  double drain = 0, cpu_used = 0;
  while (drain < seconds) {
    inject(raw, ifindex, frame, kRxBurst);
    const auto start = Clock::now();
    const double cpu = thread_cpu();
    for (;;) {
      auto r = tap.read_frame(std::span(&iov, 1));
      if (!r.ok() || !*r) {
        break;
      }
      frames += **r == kHdrSize + frame.size() ? 1 : 0;
    }
    drain += since(start);
    cpu_used += thread_cpu() - cpu;
  }
  report(name, "raw read", frame.size(), frames, drain, cpu_used, 0);
}

void rx_device(NetDevice& dev, boost::asio::io_context& io, int raw, unsigned ifindex,
               const char* name, const std::vector<std::byte>& frame, double seconds) {
  VirtqBuilder q(kQueue, 8 << 20);
  for (uint16_t i = 0; i < kQueue; ++i) {
    q.push({VirtqBuilder::writable(2048)});
  }
  NullInterrupt irq;
  petrel::virtio::ActivateContext ctx;
  ctx.memory = &q.memory();
  ctx.features = feature_bit(kFMrgRxbuf);
  ctx.queues.resize(2);
  ctx.queues[kRxQueue] = q.make_queue();
  ctx.interrupt = &irq;
  ctx.io = &io;
  if (auto r = dev.activate(std::move(ctx)); !r.ok()) {
    die(r.error().to_string());
  }
  uint16_t seen_used = 0;
  uint64_t frames = 0;
  double drain = 0, cpu_used = 0;
  while (drain < seconds) {
    const size_t sent = inject(raw, ifindex, frame, kRxBurst);
    const uint64_t target = dev.stats().rx_frames + sent;
    const auto start = Clock::now();
    const double cpu = thread_cpu();
    auto last_progress = start;
    while (dev.stats().rx_frames < target &&
           std::chrono::duration<double>(Clock::now() - last_progress).count() < 0.2) {
      io.restart();
      io.poll();
      const uint16_t used = q.used_idx();
      if (used != seen_used) {
        last_progress = Clock::now();
      }
      for (; seen_used != used; ++seen_used) {
        q.publish(static_cast<uint16_t>(q.used(seen_used).id));
      }
      dev.process_queue(kRxQueue);  // the driver's kick after refilling
    }
    drain += std::chrono::duration<double>(last_progress - start).count();
    cpu_used += thread_cpu() - cpu;
    frames += sent - (target - std::min(target, dev.stats().rx_frames));
  }
  const auto stats = dev.stats();
  dev.reset();
  if (irq.broken) {
    die("device reported a broken ring");
  }
  report(name, "virtio-net device", frame.size(), frames, drain, cpu_used,
         stats.rx_dropped + stats.rx_errors);
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--seconds=", 0) == 0) {
      opt.seconds = std::atof(a.c_str() + 10);
    } else {
      die("usage: net_bench [--seconds=S]");
    }
  }
  if (::unshare(CLONE_NEWNET) != 0) {
    die(fmt::format("unshare(CLONE_NEWNET): {} (needs root)", std::strerror(errno)));
  }
  auto tap = Tap::open(petrel::virtio::TapOptions{"pbench0", std::nullopt});
  if (!tap.ok()) {
    die(tap.error().to_string());
  }
  const unsigned ifindex = ::if_nametoindex("pbench0");
  {
    // Room for a whole RX burst in the TAP's queue towards its reader.
    UniqueFd sock(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    ifreq ifr{};
    std::strncpy(ifr.ifr_name, "pbench0", IFNAMSIZ - 1);
    ifr.ifr_qlen = static_cast<int>(kRxBurst + 1000);
    if (::ioctl(sock.get(), SIOCSIFTXQLEN, &ifr) != 0) {
      die(fmt::format("SIOCSIFTXQLEN: {}", std::strerror(errno)));
    }
  }
  UniqueFd raw(::socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL)));
  if (!raw.valid()) {
    die(fmt::format("AF_PACKET socket: {}", std::strerror(errno)));
  }
  const bool tso = (*tap)->supported_offloads().tso4;
  const auto frame1500 = make_frame(1514);
  const auto frame64k = make_frame(kMaxFrameLen - 16);
  const VirtioNetHdr plain{};

  tx_raw(**tap, "tx 1514 B", plain, frame1500, opt.seconds);
  if (tso) {
    tx_raw(**tap, "tx 64 KiB TSO", tso_hdr(), frame64k, opt.seconds);
  }
  rx_raw(**tap, raw.get(), ifindex, "rx 1514 B", frame1500, opt.seconds);

  boost::asio::io_context io;
  const uint64_t tso_features =
      feature_bit(kFCsum) | feature_bit(kFHostTso4) | feature_bit(kFMrgRxbuf);
  auto dev = NetDevice::create(std::move(*tap), petrel::virtio::MacAddress::generate("bench", 0),
                               std::nullopt, io);
  if (!dev.ok()) {
    die(dev.error().to_string());
  }
  tx_device(**dev, io, "tx 1514 B", plain, frame1500, 0, opt.seconds);
  if (tso) {
    tx_device(**dev, io, "tx 64 KiB TSO", tso_hdr(), frame64k, tso_features, opt.seconds);
  }
  rx_device(**dev, io, raw.get(), ifindex, "rx 1514 B", frame1500, opt.seconds);
  return 0;
}
