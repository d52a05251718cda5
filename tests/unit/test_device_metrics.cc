// Device counters and error reporting behind VmMetrics: virtio-blk bytes/ops/errors and its
// I/O-error reports, the virtio-net drop of a held frame at reset, the DEVICE_NEEDS_RESET
// decorator and the per-device rate limit, vCPU exit reasons and thread CPU time, host RSS.
#include <sys/socket.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <cerrno>
#include <chrono>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "test_block_harness.h"
#include "virtio/error_reporting_device.h"
#include "virtio/net_device.h"
#include "vmm/base/unique_fd.h"
#include "vmm/device_error_reporter.h"
#include "vmm/host_rss.h"
#include "vmm/thread_cpu_clock.h"
#include "vmm/vcpu.h"

using petrel::DeviceErrorReporter;
using petrel::DeviceErrorSink;
using petrel::ThreadCpuClock;
using petrel::UniqueFd;
using petrel::Vcpu;
using petrel::testing::BlockHarness;
using petrel::testing::RecordingInterrupt;
using petrel::testing::VirtqBuilder;
using petrel::virtio::BlockDevice;
using petrel::virtio::DiskEngine;
namespace blk = petrel::virtio::blk;
namespace virtio = petrel::virtio;

namespace {

constexpr uint64_t kMiB = 1 << 20;

// A backend whose every operation fails: submit() refuses when `refuse_submit`, otherwise
// commit() completes each queued op with EIO (like the sync engine, on the caller's thread).
class FailingBackend final : public virtio::DiskBackend {
 public:
  explicit FailingBackend(bool refuse_submit) : refuse_submit_(refuse_submit) {}
  std::string_view engine_name() const override { return "failing"; }
  uint64_t size() const override { return kMiB; }
  bool read_only() const override { return false; }
  petrel::Result<void> attach(boost::asio::io_context& /*io*/,
                              virtio::DiskCompletionHandler handler) override {
    handler_ = std::move(handler);
    return {};
  }
  petrel::Result<void> submit(virtio::DiskOp /*op*/, uint64_t tag) override {
    if (refuse_submit_) {
      return petrel::Error(petrel::ErrorCode::kIo, "queue full");
    }
    queued_.push_back(virtio::DiskCompletion{tag, EIO});
    return {};
  }
  void commit() override {
    auto done = std::exchange(queued_, {});
    if (!done.empty() && handler_) {
      handler_(done);
    }
  }
  void drain() override { commit(); }
  void detach() override { handler_ = nullptr; }
  size_t in_flight() const override { return queued_.size(); }

 private:
  bool refuse_submit_;
  virtio::DiskCompletionHandler handler_;
  std::vector<virtio::DiskCompletion> queued_;
};

}  // namespace

TEST_CASE("virtio-blk counts bytes, operations and errors", "[metrics][block]") {
  DiskEngine engine = GENERATE(DiskEngine::kSync, DiskEngine::kUring);
  INFO("engine " << virtio::to_string(engine));
  BlockHarness h(engine, 4 * kMiB);
  CHECK(h.dev().stats().read_ops == 0);
  h.activate();

  auto data = petrel::testing::pattern(4096, 1);
  CHECK(h.roundtrip(blk::kTOut, 0, {VirtqBuilder::at(h.put_data(data), 4096, false)}) == blk::kSOk);
  CHECK(h.roundtrip(blk::kTOut, 8, {VirtqBuilder::at(h.put_data(data), 1024, false)}) == blk::kSOk);
  CHECK(h.roundtrip(blk::kTIn, 0, {VirtqBuilder::writable(2048)}) == blk::kSOk);
  CHECK(h.roundtrip(blk::kTFlush, 0, {}) == blk::kSOk);
  CHECK(h.roundtrip(blk::kTDiscard, 0, {VirtqBuilder::at(h.put_discard(0, 8, 0), 16, false)}) ==
        blk::kSOk);
  CHECK(h.roundtrip(blk::kTWriteZeroes, 0, {VirtqBuilder::at(h.put_discard(8, 8, 0), 16, false)}) ==
        blk::kSOk);
  CHECK(h.roundtrip(blk::kTGetId, 0, {VirtqBuilder::writable(20)}) == blk::kSOk);
  // Rejected by validation: past the end, misaligned, unknown type.
  CHECK(h.roundtrip(blk::kTIn, 4 * kMiB / 512, {VirtqBuilder::writable(512)}) == blk::kSIoErr);
  CHECK(h.roundtrip(blk::kTOut, 0, {VirtqBuilder::readable(100)}) == blk::kSIoErr);
  CHECK(h.roundtrip(0x7777, 0, {VirtqBuilder::writable(512)}) == blk::kSUnsupp);

  const virtio::BlockStats s = h.dev().stats();
  CHECK(s.write_ops == 2);
  CHECK(s.write_bytes == 4096 + 1024);
  CHECK(s.read_ops == 1);
  CHECK(s.read_bytes == 2048);
  CHECK(s.flush_ops == 1);
  CHECK(s.discard_ops == 2);
  CHECK(s.errors == 3);

  // A device reset keeps the counters (they are per boot of the device, not per driver).
  h.dev().reset();
  CHECK(h.dev().stats().write_bytes == 4096 + 1024);
}

TEST_CASE("virtio-blk reports backend I/O errors and counts them", "[metrics][block]") {
  const bool refuse_submit = GENERATE(false, true);
  INFO("refuse_submit " << refuse_submit);
  BlockHarness h(DiskEngine::kSync, kMiB);
  h.dev_ptr() = BlockDevice::create(std::make_unique<FailingBackend>(refuse_submit), "x");
  std::vector<std::string> reports;
  h.dev().set_error_handler([&](std::string m) { reports.push_back(std::move(m)); });
  h.activate();

  CHECK(h.roundtrip(blk::kTIn, 2, {VirtqBuilder::writable(512)}) == blk::kSIoErr);
  CHECK(h.roundtrip(blk::kTFlush, 0, {}) == blk::kSIoErr);
  // Rejected before the backend: counted, not reported (a guest mistake, not an I/O error).
  CHECK(h.roundtrip(blk::kTIn, 0, {VirtqBuilder::writable(100)}) == blk::kSIoErr);

  REQUIRE(reports.size() == 2);
  CHECK(reports[0].find("read at byte 1024 failed") != std::string::npos);
  CHECK(reports[1].find("flush") != std::string::npos);
  if (!refuse_submit) {
    CHECK(reports[0].find(std::strerror(EIO)) != std::string::npos);
  }
  const virtio::BlockStats s = h.dev().stats();
  CHECK(s.errors == 3);
  CHECK(s.read_ops == 0);
  CHECK(s.read_bytes == 0);
  CHECK(s.flush_ops == 0);
  CHECK_FALSE(h.irq().needs_reset);
}

TEST_CASE("ErrorReportingDevice reports DEVICE_NEEDS_RESET and forwards the rest",
          "[metrics][virtio]") {
  BlockHarness h(DiskEngine::kSync, kMiB, false, 16);
  std::vector<std::string> reports;
  virtio::ErrorReportingDevice dev(h.dev_ptr(),
                                   [&](std::string m) { reports.push_back(std::move(m)); });
  CHECK(dev.device_type() == h.dev().device_type());
  CHECK(dev.device_features() == h.dev().device_features());
  CHECK(dev.queue_max_sizes() == h.dev().queue_max_sizes());
  uint64_t capacity = 0;
  dev.read_config(0, std::as_writable_bytes(std::span(&capacity, 1)));
  CHECK(capacity == kMiB / 512);

  auto activate = [&] {
    virtio::ActivateContext ctx;
    ctx.memory = &h.q().memory();
    ctx.features = BlockHarness::kAllBlkFeatures;
    ctx.queues.emplace_back(h.q().make_queue());
    ctx.interrupt = &h.irq();
    ctx.io = &h.io();
    return dev.activate(std::move(ctx));
  };
  REQUIRE(activate().ok());
  // Requests work through the decorator, interrupts reach the transport's interrupt.
  h.add(blk::kTIn, 0, {VirtqBuilder::writable(512)});
  dev.process_queue(0);
  REQUIRE(h.run_until([&] { return h.q().used_idx() == 1; }));
  CHECK(h.irq().queue_notifications >= 1);
  CHECK(reports.empty());

  // The driver breaks the ring: the transport hears it and so does the report.
  h.q().set_avail_idx(static_cast<uint16_t>(h.q().avail_idx() + 100));
  dev.process_queue(0);
  CHECK(h.irq().needs_reset);
  REQUIRE(reports.size() == 1);
  CHECK(reports[0].find("DEVICE_NEEDS_RESET") != std::string::npos);

  // A second activation without a reset fails: reported as well.
  CHECK_FALSE(activate().ok());
  REQUIRE(reports.size() == 2);
  CHECK(reports[1].find("activation failed") != std::string::npos);
  dev.reset();
}

TEST_CASE("DeviceErrorReporter rate-limits per device", "[metrics]") {
  std::vector<std::pair<std::string, std::string>> got;
  DeviceErrorSink sink;  // empty at first: reports go nowhere, but still count
  DeviceErrorReporter disk0("disk0", &sink);
  DeviceErrorReporter net0("net0", &sink);
  disk0.report("before the sink");
  sink = [&](std::string device, std::string message) {
    got.emplace_back(std::move(device), std::move(message));
  };
  for (int i = 0; i < 100; ++i) {
    disk0.report("error " + std::to_string(i));
  }
  net0.report("broken");
  // 1 went nowhere, 9 more reported, then one "suppressed", then silence.
  REQUIRE(got.size() == DeviceErrorReporter::kMaxReports - 1 + 1 + 1);
  CHECK(got[0] == std::pair<std::string, std::string>{"disk0", "error 0"});
  CHECK(got[8].second == "error 8");
  CHECK(got[9] == std::pair<std::string, std::string>{"disk0", "further errors suppressed"});
  CHECK(got[10] == std::pair<std::string, std::string>{"net0", "broken"});
}

TEST_CASE("virtio-net counts a held frame as dropped when the driver resets", "[metrics][net]") {
  // A socket pair as the backend, one message per frame like a TAP.
  class PairBackend final : public virtio::NetBackend {
   public:
    explicit PairBackend(UniqueFd fd) : fd_(std::move(fd)) {}
    int fd() const override { return fd_.get(); }
    virtio::NetOffloads supported_offloads() const override { return {}; }
    petrel::Result<void> set_offloads(const virtio::NetOffloads& /*o*/) override { return {}; }
    petrel::Result<std::optional<size_t>> read_frame(std::span<const iovec> iov) override {
      msghdr msg{};
      msg.msg_iov = const_cast<iovec*>(iov.data());
      msg.msg_iovlen = iov.size();
      ssize_t n = ::recvmsg(fd_.get(), &msg, MSG_DONTWAIT | MSG_TRUNC);
      if (n < 0) {
        return std::optional<size_t>();
      }
      return std::optional<size_t>(static_cast<size_t>(n));
    }
    petrel::Result<std::optional<size_t>> write_frame(std::span<const iovec> /*iov*/) override {
      return std::optional<size_t>(0);
    }

   private:
    UniqueFd fd_;
  };
  int fds[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) == 0);
  UniqueFd peer(fds[1]);
  boost::asio::io_context io;
  VirtqBuilder q(16, 4 << 20);
  RecordingInterrupt irq;
  auto dev = virtio::NetDevice::create(std::make_unique<PairBackend>(UniqueFd(fds[0])),
                                       virtio::MacAddress({0x02, 1, 2, 3, 4, 5}), std::nullopt, io);
  REQUIRE(dev.ok());
  CHECK((*dev)->tap_name().empty());

  std::vector<std::byte> packet(virtio::net::kHdrSize + 60, std::byte{0x5a});
  REQUIRE(::send(peer.get(), packet.data(), packet.size(), 0) ==
          static_cast<ssize_t>(packet.size()));
  virtio::ActivateContext ctx;
  ctx.memory = &q.memory();
  ctx.queues.resize(2);
  ctx.queues[virtio::net::kRxQueue] = q.make_queue();  // no receive buffers
  ctx.interrupt = &irq;
  ctx.io = &io;
  REQUIRE((*dev)->activate(std::move(ctx)).ok());  // reads the frame and holds it
  CHECK((*dev)->stats().rx_dropped == 0);
  (*dev)->reset();
  CHECK((*dev)->stats().rx_dropped == 1);
  CHECK((*dev)->stats().rx_frames == 0);
}

TEST_CASE("vCPU exit reasons are named as VcpuMetrics lists them", "[metrics][vcpu]") {
  using petrel::VcpuExit;
  auto name = [](const VcpuExit& e) {
    return std::string(Vcpu::kExitReasons.at(Vcpu::exit_reason_index(e)));
  };
  CHECK(name(petrel::IoExit{}) == "io");
  CHECK(name(petrel::MmioExit{}) == "mmio");
  CHECK(name(petrel::HltExit{}) == "hlt");
  CHECK(name(petrel::IntrExit{}) == "intr");
  CHECK(name(petrel::SystemEventExit{}) == "system_event");
  CHECK(name(petrel::ShutdownExit{}) == "shutdown");
  CHECK(name(petrel::InternalErrorExit{}) == "internal_error");
  CHECK(name(petrel::FailEntryExit{}) == "fail_entry");
  CHECK(name(petrel::UnknownExit{}) == "other");
}

TEST_CASE("ThreadCpuClock measures a live thread and keeps the final value", "[metrics][vcpu]") {
  ThreadCpuClock clock;
  CHECK(clock.nanoseconds() == 0);
  std::atomic<bool> attached{false};
  std::atomic<bool> stop{false};
  std::thread worker([&] {
    clock.attach();
    attached = true;
    volatile uint64_t x = 0;
    while (!stop.load()) {
      x = x + 1;  // burn CPU
    }
    clock.finish();
  });
  while (!attached.load()) {
    std::this_thread::yield();
  }
  uint64_t first = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while ((first = clock.nanoseconds()) < 20'000'000 &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  CHECK(first >= 20'000'000);  // 20 ms of CPU, read from this thread while it runs
  stop = true;
  worker.join();
  const uint64_t final_ns = clock.nanoseconds();
  CHECK(final_ns >= first);
  std::this_thread::sleep_for(std::chrono::milliseconds(10));
  CHECK(clock.nanoseconds() == final_ns);  // the thread is gone: the recorded value stays
}

TEST_CASE("host RSS from /proc/self/statm", "[metrics]") {
  auto parsed = petrel::parse_statm_rss("1000 250 30 4 0 60 0\n", 4096);
  REQUIRE(parsed.ok());
  CHECK(*parsed == 250 * 4096);
  CHECK_FALSE(petrel::parse_statm_rss("", 4096).ok());
  CHECK_FALSE(petrel::parse_statm_rss("1000", 4096).ok());
  CHECK_FALSE(petrel::parse_statm_rss("1000 x", 4096).ok());
  CHECK_FALSE(petrel::parse_statm_rss("1 99999999999999999999", 4096).ok());
  CHECK_FALSE(petrel::parse_statm_rss("1 18446744073709551615", 4096).ok());

  auto rss = petrel::host_rss_bytes();
  REQUIRE(rss.ok());
  // Touch 32 MiB more: the RSS grows by about as much.
  std::vector<char> block(32 * kMiB);
  for (size_t i = 0; i < block.size(); i += 4096) {
    block[i] = 1;
  }
  auto after = petrel::host_rss_bytes();
  REQUIRE(after.ok());
  CHECK(*rss > 0);
  CHECK(*after >= *rss + 24 * kMiB);
  CHECK(block[4096] == 1);
}
