// Fuzz target: virtio-blk request handling (src/virtio/block_request.cc and
// block_device.cc) against hostile guest memory, through the real device with the
// synchronous disk engine on a small temp image.
//
// Input layout:
//   [0]     queue size = 1 << (b % 5)          (1..16)
//   [1]     bit 0: EVENT_IDX, bit 1: INDIRECT_DESC, bit 2: read-only disk,
//           bit 3: DISCARD, bit 4: WRITE_ZEROES, bit 5: FLUSH negotiated
//   [2]     number of kicks (1 + b % 4)
//   [3]     reserved
//   [4..]   guest memory image, copied to guest address 0 (the rest of RAM is zero)
// Guest RAM is one 64 KiB region. The rings sit at fixed addresses inside the image:
// descriptor table 0x0, avail ring 0x200, used ring 0x300; buffers anywhere.
// The image is 64 KiB (128 sectors), refilled with zeros before every input.
//
// Besides "never crash or hang", the target checks the device's promises: nothing stays in
// flight after process_queue with the sync engine, the used index moves by at most the
// number of chains the driver made available, the image never changes size, a read-only
// image is never written, and reset() leaves the device reusable.
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <boost/asio/io_context.hpp>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "virtio/block_config.h"
#include "virtio/block_device.h"
#include "virtio/block_request.h"
#include "virtio/virtio_device.h"
#include "virtio/virtio_spec.h"
#include "vmm/base/guest_memory.h"

namespace {

using petrel::GuestAddress;
using petrel::GuestMemory;
using petrel::GuestRegionSpec;
using petrel::virtio::BlockConfig;
using petrel::virtio::BlockDevice;
using petrel::virtio::DiskEngine;
using petrel::virtio::feature_bit;
using petrel::virtio::QueueLayout;
using petrel::virtio::Virtqueue;
namespace blk = petrel::virtio::blk;

constexpr size_t kHeader = 4;
constexpr uint64_t kRamSize = 0x10000;
constexpr uint64_t kImageSize = 0x10000;
constexpr GuestAddress kDesc{0x0};
constexpr GuestAddress kAvail{0x200};
constexpr GuestAddress kUsed{0x300};

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "fuzz_block_request: invariant broken: %s\n", what);
  std::abort();
}

void expect(bool ok, const char* what) {
  if (!ok) {
    fail(what);
  }
}

class CountingInterrupt : public petrel::virtio::VirtioInterrupt {
 public:
  void notify_queue(uint16_t index) override { expect(index == 0, "notify of a queue != 0"); }
  void notify_config() override {}
  void set_needs_reset() override { needs_reset = true; }
  bool needs_reset = false;
};

// One image file and one device on it; the path is unlinked at once (the fd keeps it).
struct Disk {
  std::shared_ptr<BlockDevice> device;
  int fd = -1;  // a second descriptor for checks, owned for the process's lifetime
};

Disk make_disk(bool read_only) {
  std::string templ = "/tmp/petrel-fuzz-blk-XXXXXX";
  int fd = ::mkstemp(templ.data());
  expect(fd >= 0, "mkstemp");
  expect(::ftruncate(fd, kImageSize) == 0, "ftruncate");
  BlockConfig cfg;
  cfg.path = templ;
  cfg.read_only = read_only;
  cfg.engine = DiskEngine::kSync;
  cfg.serial = "fuzz";
  auto dev = BlockDevice::open(cfg);
  ::unlink(templ.c_str());
  expect(dev.ok(), "open the image");
  return Disk{std::move(dev).value(), fd};
}

GuestMemory make_memory() {
  GuestRegionSpec spec{GuestAddress(0), kRamSize};
  auto mem = GuestMemory::create_anonymous(std::span(&spec, 1));
  expect(mem.ok(), "guest memory");
  return std::move(mem).value();
}

// Created on first use and reused for every input (the fuzzer never returns).
struct World {
  GuestMemory mem;
  boost::asio::io_context io;
  Disk rw;
  Disk ro;
};

World& world() {
  static World w{make_memory(), {}, make_disk(false), make_disk(true)};
  return w;
}

void load_image(const GuestMemory& mem, std::span<const uint8_t> image) {
  std::vector<std::byte> ram(kRamSize);
  std::memcpy(ram.data(), image.data(), std::min<size_t>(image.size(), ram.size()));
  expect(mem.write(GuestAddress(0), ram).ok(), "fill RAM");
}

uint16_t used_idx(const GuestMemory& mem) {
  auto v = mem.read_obj<uint16_t>(kUsed + 2);
  expect(v.ok(), "read used idx");
  return *v;
}

long long st_blocks(int fd) {
  struct stat st {};
  return ::fstat(fd, &st) == 0 ? static_cast<long long>(st.st_blocks) : -1;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < kHeader) {
    return 0;
  }
  World& w = world();
  load_image(w.mem, std::span(data + kHeader, size - kHeader));
  // The driver initialises the used ring (2.7.8); the device's used idx starts at 0.
  expect(w.mem.write_obj<uint16_t>(kUsed + 2, 0).ok(), "clear used idx");
  bool read_only = (data[1] & 4) != 0;
  Disk& disk = read_only ? w.ro : w.rw;
  // A fresh all-zero image (sparse) for every input.
  expect(::ftruncate(disk.fd, 0) == 0 && ::ftruncate(disk.fd, kImageSize) == 0, "reset image");

  QueueLayout layout;
  layout.size = static_cast<uint16_t>(1u << (data[0] % 5));
  layout.desc = kDesc;
  layout.avail = kAvail;
  layout.used = kUsed;
  bool event_idx = (data[1] & 1) != 0;
  bool indirect = (data[1] & 2) != 0;
  auto vq = Virtqueue::create(w.mem, layout, BlockDevice::kQueueSize, event_idx, indirect);
  expect(vq.ok(), "create with a valid layout");

  uint64_t features = 0;
  features |= (data[1] & 8) != 0 ? feature_bit(blk::kFDiscard) : 0;
  features |= (data[1] & 16) != 0 ? feature_bit(blk::kFWriteZeroes) : 0;
  features |= (data[1] & 32) != 0 ? feature_bit(blk::kFFlush) : 0;
  CountingInterrupt irq;
  petrel::virtio::ActivateContext ctx;
  ctx.memory = &w.mem;
  ctx.features = features;
  ctx.queues.emplace_back(std::move(vq).value());
  ctx.interrupt = &irq;
  ctx.io = &w.io;
  BlockDevice& dev = *disk.device;
  expect(dev.activate(std::move(ctx)).ok(), "activate");

  auto avail = w.mem.read_obj<uint16_t>(kAvail + 2);
  expect(avail.ok(), "read avail idx");
  int kicks = 1 + data[2] % 4;
  for (int i = 0; i < kicks; ++i) {
    dev.process_queue(0);
    expect(dev.in_flight() == 0, "sync engine left a request in flight");
  }
  // Without a broken ring, at most the available chains were used (the fresh queue starts
  // reading the avail ring at index 0).
  if (!irq.needs_reset) {
    expect(used_idx(w.mem) <= *avail, "more used entries than available chains");
  }
  if (std::getenv("PETREL_FUZZ_VERBOSE") != nullptr) {  // for checking seeds by hand
    for (uint16_t i = 0; i < used_idx(w.mem); ++i) {
      auto id = w.mem.read_obj<uint32_t>(kUsed + 4 + 8 * (i % layout.size));
      auto len = w.mem.read_obj<uint32_t>(kUsed + 8 + 8 * (i % layout.size));
      std::fprintf(stderr, "used[%u]: head %u len %u\n", i, id.ok() ? *id : 0, len.ok() ? *len : 0);
    }
    std::fprintf(stderr, "needs_reset %d, image blocks %lld\n", irq.needs_reset ? 1 : 0,
                 static_cast<long long>(st_blocks(disk.fd)));
  }
  struct stat st {};
  expect(::fstat(disk.fd, &st) == 0, "fstat");
  expect(static_cast<uint64_t>(st.st_size) == kImageSize, "the image changed size");
  if (read_only) {
    expect(st.st_blocks == 0, "a read-only image was written");
  }
  dev.reset();
  expect(dev.in_flight() == 0, "in flight after reset");
  return 0;
}
