// blk_bench: the virtio-blk device path on the host, without a guest or KVM. A driver
// written here lays out a split virtqueue (virtio 1.2 section 2.7) in a GuestMemory, keeps
// `--qd` requests available, kicks the device (process_queue, as the ioeventfd handler
// would) and recycles each chain as soon as the device puts it in the used ring; completions
// of the io_uring engine arrive through the device's eventfd on a real io_context.
//
// Usage: blk_bench --file PATH --engine sync|uring --workload randread|randwrite|seqread|
//                  seqwrite [--bs BYTES] [--qd N] [--seconds S]
// Prints one JSON object: {"engine", "workload", "bs", "qd", "ops", "seconds", "iops",
// "mib_s", "errors", "interrupts", "cpu_s"} (cpu_s: user + system CPU time of the whole
// process during the run, io_uring worker threads included). The file must exist (its size is the
// disk size); writes change it.
#include <sys/resource.h>

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "virtio/block_device.h"
#include "virtio/block_request.h"
#include "virtio/virtio_spec.h"
#include "vmm/base/guest_memory.h"

namespace {

using petrel::GuestAddress;
using petrel::GuestMemory;
using petrel::virtio::BlockDevice;
namespace blk = petrel::virtio::blk;

constexpr uint16_t kQueueSize = 256;
constexpr GuestAddress kDesc{0x0};
constexpr GuestAddress kAvail{0x1000};
constexpr GuestAddress kUsed{0x2000};
constexpr uint64_t kSlotArea = 0x4000;   // headers and status bytes: 32 bytes per slot
constexpr uint64_t kDataArea = 0x10000;  // data buffers, one per slot

struct Options {
  std::string file;
  std::string engine = "uring";
  std::string workload = "randread";
  uint64_t bs = 4096;
  unsigned qd = 32;
  double seconds = 3;
};

class NullInterrupt : public petrel::virtio::VirtioInterrupt {
 public:
  void notify_queue(uint16_t /*index*/) override { ++notifications; }
  void notify_config() override {}
  void set_needs_reset() override { needs_reset = true; }
  uint64_t notifications = 0;
  bool needs_reset = false;
};

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "blk_bench: %s\n", what.c_str());
  std::exit(1);
}

template <typename R>
auto must(R&& r, const char* what) {
  if (!r.ok()) {
    die(std::string(what) + ": " + r.error().to_string());
  }
  return std::forward<R>(r).value();
}

struct RawDesc {
  uint64_t addr;
  uint32_t len;
  uint16_t flags;
  uint16_t next;
};

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        die("missing value for " + std::string(arg));
      }
      return argv[++i];
    };
    if (arg == "--file") {
      o.file = value();
    } else if (arg == "--engine") {
      o.engine = value();
    } else if (arg == "--workload") {
      o.workload = value();
    } else if (arg == "--bs") {
      o.bs = std::stoull(value());
    } else if (arg == "--qd") {
      o.qd = static_cast<unsigned>(std::stoul(value()));
    } else if (arg == "--seconds") {
      o.seconds = std::stod(value());
    } else {
      die("unknown argument " + std::string(arg));
    }
  }
  if (o.file.empty() || o.qd == 0 || o.qd > kQueueSize / 3 || o.bs % 512 != 0 || o.bs == 0) {
    die("need --file; --qd 1..85; --bs a multiple of 512");
  }
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  Options opt = parse(argc, argv);
  bool random = opt.workload.rfind("rand", 0) == 0;
  bool write = opt.workload.find("write") != std::string::npos;

  petrel::virtio::BlockConfig cfg;
  cfg.path = opt.file;
  auto engine = petrel::virtio::parse_disk_engine(opt.engine);
  if (!engine) {
    die("unknown engine " + opt.engine);
  }
  cfg.engine = *engine;
  auto dev = must(BlockDevice::open(cfg), "open");
  uint64_t capacity = dev->capacity_sectors();
  uint64_t sectors_per_io = opt.bs / 512;
  if (capacity < sectors_per_io) {
    die("file smaller than one block");
  }

  uint64_t ram = kDataArea + uint64_t{opt.qd} * opt.bs;
  ram = (ram + 0xfffff) & ~uint64_t{0xfffff};
  petrel::GuestRegionSpec spec{GuestAddress(0), ram};
  auto mem = must(GuestMemory::create_anonymous(std::span(&spec, 1)), "guest memory");
  // Touch the data buffers once so that page faults are not measured.
  std::vector<std::byte> fill(opt.bs, std::byte{0x5a});
  for (unsigned s = 0; s < opt.qd; ++s) {
    must(mem.write(GuestAddress(kDataArea + s * opt.bs), fill), "fill");
  }

  // Slot s uses descriptors 3s (header, readable), 3s+1 (data), 3s+2 (status, writable).
  for (unsigned s = 0; s < opt.qd; ++s) {
    GuestAddress header(kSlotArea + 32 * s);
    uint16_t d = static_cast<uint16_t>(3 * s);
    uint16_t data_flags = petrel::virtio::kDescFNext | (write ? 0 : petrel::virtio::kDescFWrite);
    must(mem.write_obj(kDesc + 16 * d, RawDesc{header.value(), 16, petrel::virtio::kDescFNext,
                                               static_cast<uint16_t>(d + 1)}),
         "desc");
    must(mem.write_obj(kDesc + 16 * (d + 1),
                       RawDesc{kDataArea + s * opt.bs, static_cast<uint32_t>(opt.bs), data_flags,
                               static_cast<uint16_t>(d + 2)}),
         "desc");
    must(mem.write_obj(kDesc + 16 * (d + 2),
                       RawDesc{header.value() + 16, 1, petrel::virtio::kDescFWrite, 0}),
         "desc");
  }

  petrel::virtio::QueueLayout layout{kQueueSize, kDesc, kAvail, kUsed};
  boost::asio::io_context io;
  NullInterrupt irq;
  petrel::virtio::ActivateContext ctx;
  ctx.memory = &mem;
  ctx.features = petrel::virtio::feature_bit(blk::kFFlush);
  ctx.queues.emplace_back(
      must(petrel::virtio::Virtqueue::create(mem, layout, kQueueSize, false, false), "queue"));
  ctx.interrupt = &irq;
  ctx.io = &io;
  must(dev->activate(std::move(ctx)), "activate");

  uint64_t rng = 0x9e3779b97f4a7c15ull;
  uint64_t seq_sector = 0;
  auto next_sector = [&]() -> uint64_t {
    uint64_t blocks = capacity / sectors_per_io;
    if (random) {
      rng ^= rng << 13;
      rng ^= rng >> 7;
      rng ^= rng << 17;
      return (rng % blocks) * sectors_per_io;
    }
    uint64_t s = seq_sector;
    seq_sector = (seq_sector + sectors_per_io) % (blocks * sectors_per_io);
    return s;
  };
  uint16_t avail_idx = 0;
  auto publish = [&](unsigned slot) {
    GuestAddress header(kSlotArea + 32 * slot);
    must(
        mem.write_obj(header, blk::RequestHeader{write ? blk::kTOut : blk::kTIn, 0, next_sector()}),
        "header");
    must(mem.write_obj<uint16_t>(kAvail + 4 + 2 * (avail_idx % kQueueSize),
                                 static_cast<uint16_t>(3 * slot)),
         "avail ring");
    ++avail_idx;
    must(mem.write_obj<uint16_t>(kAvail + 2, avail_idx), "avail idx");
  };

  for (unsigned s = 0; s < opt.qd; ++s) {
    publish(s);
  }
  uint16_t seen_used = 0;
  uint64_t ops = 0;
  uint64_t errors = 0;
  auto cpu_now = [] {
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);  // all threads, io_uring's io-wq workers included
    auto secs = [](const timeval& tv) { return static_cast<double>(tv.tv_sec) + tv.tv_usec / 1e6; };
    return secs(ru.ru_utime) + secs(ru.ru_stime);
  };
  double cpu_start = cpu_now();
  auto start = std::chrono::steady_clock::now();
  auto deadline = start + std::chrono::duration<double>(opt.seconds);
  bool sync = dev->engine_name() == "sync";
  while (std::chrono::steady_clock::now() < deadline && !irq.needs_reset) {
    dev->process_queue(0);
    if (!sync) {
      io.run_one();
      io.poll();
    }
    uint16_t used = must(mem.read_obj<uint16_t>(kUsed + 2), "used idx");
    while (seen_used != used) {
      uint32_t id = must(mem.read_obj<uint32_t>(kUsed + 4 + 8 * (seen_used % kQueueSize)), "used");
      ++seen_used;
      unsigned slot = id / 3;
      uint8_t status = must(mem.read_obj<uint8_t>(GuestAddress(kSlotArea + 32 * slot + 16)), "st");
      errors += status != blk::kSOk;
      ++ops;
      publish(slot);
    }
  }
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  double cpu = cpu_now() - cpu_start;
  dev->reset();
  std::printf(
      "{\"engine\": \"%s\", \"workload\": \"%s\", \"bs\": %llu, \"qd\": %u, \"ops\": %llu, "
      "\"seconds\": %.3f, \"iops\": %.0f, \"mib_s\": %.1f, \"errors\": %llu, "
      "\"interrupts\": %llu, \"cpu_s\": %.3f}\n",
      std::string(dev->engine_name()).c_str(), opt.workload.c_str(),
      static_cast<unsigned long long>(opt.bs), opt.qd, static_cast<unsigned long long>(ops), secs,
      static_cast<double>(ops) / secs,
      static_cast<double>(ops) * static_cast<double>(opt.bs) / secs / (1 << 20),
      static_cast<unsigned long long>(errors), static_cast<unsigned long long>(irq.notifications),
      cpu);
  return errors == 0 && !irq.needs_reset ? 0 : 1;
}
