// virtio-blk device tests: real image files, both disk engines, a fake ring and a real
// io_context loop (see test_block_harness.h).
#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <cstring>

#include "test_block_harness.h"
#include "virtio/disk_open.h"

using petrel::GuestAddress;
using petrel::testing::all_zero;
using petrel::testing::allocated_bytes;
using petrel::testing::BlockHarness;
using petrel::testing::pattern;
using petrel::testing::read_file_range;
using petrel::testing::VirtqBuilder;
using petrel::testing::write_file_range;
using petrel::virtio::BlockDevice;
using petrel::virtio::DiskEngine;
namespace blk = petrel::virtio::blk;

namespace {

constexpr uint64_t kMiB = 1 << 20;

DiskEngine engine_param() {
  return GENERATE(DiskEngine::kSync, DiskEngine::kUring);
}

}  // namespace

TEST_CASE("virtio-blk config space and features", "[block]") {
  BlockHarness h(DiskEngine::kSync, 8 * kMiB + 512 + 100);
  auto& dev = h.dev();
  CHECK(dev.device_type() == petrel::virtio::kDeviceBlock);
  CHECK(dev.queue_max_sizes() == std::vector<uint16_t>{256});
  uint64_t f = dev.device_features();
  CHECK((f & petrel::virtio::feature_bit(blk::kFFlush)) != 0);
  CHECK((f & petrel::virtio::feature_bit(blk::kFDiscard)) != 0);
  CHECK((f & petrel::virtio::feature_bit(blk::kFWriteZeroes)) != 0);
  CHECK((f & petrel::virtio::feature_bit(blk::kFBlkSize)) != 0);
  CHECK((f & petrel::virtio::feature_bit(blk::kFRo)) == 0);

  auto read_u32 = [&](uint64_t off) {
    uint32_t v = 0;
    dev.read_config(off, std::as_writable_bytes(std::span(&v, 1)));
    return v;
  };
  uint64_t capacity = 0;
  dev.read_config(0, std::as_writable_bytes(std::span(&capacity, 1)));
  CHECK(capacity == (8 * kMiB) / 512 + 1);  // the 100-byte tail is not visible
  CHECK(read_u32(8) == BlockDevice::kSizeMax);
  CHECK(read_u32(12) == BlockDevice::kSegMax);
  CHECK(read_u32(20) == 512);
  CHECK(read_u32(36) == BlockDevice::kMaxDiscardSectors);
  CHECK(read_u32(40) == 1);
  CHECK(read_u32(52) == 1);
  uint8_t unmap = 0;
  dev.read_config(56, std::as_writable_bytes(std::span(&unmap, 1)));
  CHECK(unmap == 1);
  // Beyond the structure: zeros; writes are ignored.
  CHECK(read_u32(0x100) == 0);
  CHECK(read_u32(70) == 0);
  uint32_t junk = 0xffffffff;
  dev.write_config(0, std::as_bytes(std::span(&junk, 1)));
  dev.read_config(0, std::as_writable_bytes(std::span(&capacity, 1)));
  CHECK(capacity == (8 * kMiB) / 512 + 1);
}

TEST_CASE("virtio-blk read/write round trip", "[block]") {
  DiskEngine engine = engine_param();
  INFO("engine " << petrel::virtio::to_string(engine));
  BlockHarness h(engine, 16 * kMiB);
  CHECK(h.dev().engine_name() == (engine == DiskEngine::kSync ? "sync" : "io_uring"));
  h.activate();

  // OUT with two data segments (1 KiB + 3 KiB) at sector 10.
  auto data = pattern(4096, 3);
  auto a = h.put_data(std::span(data).first(1024));
  auto b = h.put_data(std::span(data).subspan(1024));
  CHECK(h.roundtrip(blk::kTOut, 10,
                    {VirtqBuilder::at(a, 1024, false), VirtqBuilder::at(b, 3072, false)}) ==
        blk::kSOk);
  CHECK(read_file_range(h.path(), 10 * 512, 4096) == data);
  CHECK(h.q().used(0).len == 1);
  CHECK(h.irq().queue_notifications >= 1);

  // IN with a different segmentation (512 + 3584), the status in its own descriptor.
  BlockHarness::Sent s;
  CHECK(h.roundtrip(blk::kTIn, 10, {VirtqBuilder::writable(512), VirtqBuilder::writable(3584)},
                    &s) == blk::kSOk);
  CHECK(h.q().used(1).len == 4096 + 1);
  auto first = h.q().read_bytes(s.data[0].addr.value(), 512);
  auto second = h.q().read_bytes(s.data[1].addr.value(), 3584);
  first.insert(first.end(), second.begin(), second.end());
  CHECK(first == data);

  // IN whose data and status share one descriptor.
  GuestAddress header = h.q().alloc(16);
  h.q().put(header, blk::RequestHeader{blk::kTIn, 0, 11});
  GuestAddress buf = h.q().alloc(513, 512);
  auto chain = h.q().push({VirtqBuilder::at(header, 16, false), VirtqBuilder::at(buf, 513, true)});
  h.kick_and_wait(3);
  CHECK(h.q().used(2).id == chain.head);
  CHECK(h.q().get<uint8_t>(buf + 512) == blk::kSOk);
  auto sector11 = h.q().read_bytes(buf, 512);
  CHECK(std::equal(sector11.begin(), sector11.end(), data.begin() + 512));

  // Data written outside the device is read by the device.
  auto outside = pattern(512, 99);
  write_file_range(h.path(), 16 * kMiB - 512, outside);
  CHECK(h.roundtrip(blk::kTIn, 16 * kMiB / 512 - 1, {VirtqBuilder::writable(512)}, &s) ==
        blk::kSOk);
  CHECK(h.q().read_bytes(s.data[0].addr.value(), 512) == outside);
}

TEST_CASE("virtio-blk many requests in one kick", "[block]") {
  DiskEngine engine = engine_param();
  INFO("engine " << petrel::virtio::to_string(engine));
  BlockHarness h(engine, 4 * kMiB, false, 256);  // 48 chains of 3 descriptors
  h.activate();
  std::vector<BlockHarness::Sent> sent;
  std::vector<std::vector<std::byte>> datas;
  for (int i = 0; i < 48; ++i) {
    datas.push_back(pattern(8192, static_cast<uint8_t>(i)));
    auto addr = h.put_data(datas.back());
    sent.push_back(
        h.add(blk::kTOut, static_cast<uint64_t>(i) * 16, {VirtqBuilder::at(addr, 8192, false)}));
  }
  h.kick_and_wait(48);
  REQUIRE(h.q().used_idx() == 48);
  for (int i = 0; i < 48; ++i) {
    CHECK(h.status(sent[static_cast<size_t>(i)]) == blk::kSOk);
    CHECK(read_file_range(h.path(), static_cast<uint64_t>(i) * 16 * 512, 8192) ==
          datas[static_cast<size_t>(i)]);
  }
  CHECK(h.dev().in_flight() == 0);
}

TEST_CASE("virtio-blk flush and GET_ID", "[block]") {
  DiskEngine engine = engine_param();
  BlockHarness h(engine, 1 * kMiB);
  h.activate();
  auto data = pattern(512, 1);
  CHECK(h.roundtrip(blk::kTOut, 0, {VirtqBuilder::at(h.put_data(data), 512, false)}) == blk::kSOk);
  CHECK(h.roundtrip(blk::kTFlush, 0, {}) == blk::kSOk);
  CHECK(h.q().used(1).len == 1);

  BlockHarness::Sent s;
  CHECK(h.roundtrip(blk::kTGetId, 0, {VirtqBuilder::writable(20)}, &s) == blk::kSOk);
  std::string id = h.q().read_string(s.data[0].addr.value(), 20);
  CHECK(id == std::string("petrel-test-serial\0\0", 20));
  CHECK(h.q().used(2).len == 21);

  // A shorter buffer gets the first bytes.
  CHECK(h.roundtrip(blk::kTGetId, 0, {VirtqBuilder::writable(6)}, &s) == blk::kSOk);
  CHECK(h.q().read_string(s.data[0].addr.value(), 6) == "petrel");
}

TEST_CASE("virtio-blk default serial is derived from the path", "[block]") {
  auto a = BlockDevice::default_serial("/var/lib/petrel/a.img");
  auto b = BlockDevice::default_serial("/var/lib/petrel/b.img");
  CHECK(a.size() == 20);
  CHECK(a.rfind("ptrl", 0) == 0);
  CHECK(a != b);
  CHECK(a == BlockDevice::default_serial("/var/lib/petrel/a.img"));
}

TEST_CASE("virtio-blk discard punches a hole and reads back zeros", "[block]") {
  DiskEngine engine = engine_param();
  BlockHarness h(engine, 8 * kMiB);
  h.activate();
  auto data = pattern(kMiB, 5);
  write_file_range(h.path(), 2 * kMiB, data);
  uint64_t before = allocated_bytes(h.path());
  REQUIRE(before >= kMiB);

  CHECK(h.roundtrip(blk::kTDiscard, 0,
                    {VirtqBuilder::at(h.put_discard(2 * kMiB / 512, kMiB / 512, 0), 16, false)}) ==
        blk::kSOk);
  CHECK(allocated_bytes(h.path()) + kMiB <= before);
  CHECK(all_zero(read_file_range(h.path(), 2 * kMiB, kMiB)));

  BlockHarness::Sent s;
  CHECK(h.roundtrip(blk::kTIn, 2 * kMiB / 512 + 8, {VirtqBuilder::writable(4096)}, &s) ==
        blk::kSOk);
  CHECK(all_zero(h.q().read_bytes(s.data[0].addr.value(), 4096)));
}

TEST_CASE("virtio-blk write zeroes", "[block]") {
  DiskEngine engine = engine_param();
  bool unmap = GENERATE(false, true);
  INFO("unmap " << unmap);
  BlockHarness h(engine, 8 * kMiB);
  h.activate();
  auto data = pattern(kMiB, 9);
  write_file_range(h.path(), kMiB, data);
  uint64_t before = allocated_bytes(h.path());
  // Zero the middle 512 KiB of the written MiB.
  CHECK(h.roundtrip(blk::kTWriteZeroes, 0,
                    {VirtqBuilder::at(h.put_discard((kMiB + 256 * 1024) / 512, 1024,
                                                    unmap ? blk::kDiscardFlagUnmap : 0),
                                      16, false)}) == blk::kSOk);
  auto after = read_file_range(h.path(), kMiB, kMiB);
  CHECK(std::equal(after.begin(), after.begin() + 256 * 1024, data.begin()));
  CHECK(all_zero(std::span(after).subspan(256 * 1024, 512 * 1024)));
  CHECK(std::equal(after.begin() + 768 * 1024, after.end(), data.begin() + 768 * 1024));
  // Never more allocated than before; with unmap the range is deallocated.
  CHECK(allocated_bytes(h.path()) <= before);
  if (unmap) {
    CHECK(allocated_bytes(h.path()) + 512 * 1024 <= before);
  }
}

TEST_CASE("virtio-blk sparse image stays sparse", "[block]") {
  DiskEngine engine = engine_param();
  BlockHarness h(engine, 256 * kMiB);
  h.activate();
  CHECK(allocated_bytes(h.path()) == 0);
  auto data = pattern(4096, 7);
  CHECK(h.roundtrip(blk::kTOut, 1000, {VirtqBuilder::at(h.put_data(data), 4096, false)}) ==
        blk::kSOk);
  for (uint64_t sector : std::initializer_list<uint64_t>{0, 4096, 100000, 256 * kMiB / 512 - 8}) {
    BlockHarness::Sent s;
    CHECK(h.roundtrip(blk::kTIn, sector, {VirtqBuilder::writable(4096)}, &s) == blk::kSOk);
    CHECK(all_zero(h.q().read_bytes(s.data[0].addr.value(), 4096)));
  }
  CHECK(h.roundtrip(blk::kTFlush, 0, {}) == blk::kSOk);
  CHECK(h.roundtrip(blk::kTWriteZeroes, 0,
                    {VirtqBuilder::at(h.put_discard(50000, 65536, 1), 16, false)}) == blk::kSOk);
  CHECK(h.roundtrip(blk::kTDiscard, 0,
                    {VirtqBuilder::at(h.put_discard(60000, 65536, 0), 16, false)}) == blk::kSOk);
  // Only the 4 KiB the guest wrote (one or two fs blocks) are allocated.
  CHECK(allocated_bytes(h.path()) <= 16 * 1024);
}

TEST_CASE("virtio-blk read-only disk refuses writes", "[block]") {
  DiskEngine engine = engine_param();
  BlockHarness h(engine, 1 * kMiB, /*read_only=*/true);
  CHECK((h.dev().device_features() & petrel::virtio::feature_bit(blk::kFRo)) != 0);
  h.activate();
  auto data = pattern(512, 1);
  CHECK(h.roundtrip(blk::kTOut, 0, {VirtqBuilder::at(h.put_data(data), 512, false)}) ==
        blk::kSIoErr);
  CHECK(h.roundtrip(blk::kTDiscard, 0, {VirtqBuilder::at(h.put_discard(0, 8, 0), 16, false)}) ==
        blk::kSIoErr);
  CHECK(h.roundtrip(blk::kTWriteZeroes, 0, {VirtqBuilder::at(h.put_discard(0, 8, 0), 16, false)}) ==
        blk::kSIoErr);
  CHECK(all_zero(read_file_range(h.path(), 0, 4096)));
  // Reads, flush and GET_ID still work.
  CHECK(h.roundtrip(blk::kTIn, 0, {VirtqBuilder::writable(512)}) == blk::kSOk);
  CHECK(h.roundtrip(blk::kTFlush, 0, {}) == blk::kSOk);
  CHECK(h.roundtrip(blk::kTGetId, 0, {VirtqBuilder::writable(20)}) == blk::kSOk);
}

TEST_CASE("virtio-blk answers bad requests with an error status and keeps working", "[block]") {
  DiskEngine engine = engine_param();
  INFO("engine " << petrel::virtio::to_string(engine));
  BlockHarness h(engine, 1 * kMiB);
  const uint64_t cap = kMiB / 512;
  // DISCARD not negotiated: UNSUPP; WRITE_ZEROES negotiated.
  h.activate(petrel::virtio::feature_bit(blk::kFFlush) |
             petrel::virtio::feature_bit(blk::kFWriteZeroes));
  auto ok_read = [&] { return h.roundtrip(blk::kTIn, 1, {VirtqBuilder::writable(512)}); };
  CHECK(ok_read() == blk::kSOk);

  SECTION("past the end") {
    CHECK(h.roundtrip(blk::kTIn, cap, {VirtqBuilder::writable(512)}) == blk::kSIoErr);
    CHECK(h.roundtrip(blk::kTIn, cap - 1, {VirtqBuilder::writable(1024)}) == blk::kSIoErr);
    CHECK(h.roundtrip(blk::kTOut, cap - 1, {VirtqBuilder::readable(1024)}) == blk::kSIoErr);
    CHECK(h.roundtrip(blk::kTIn, UINT64_MAX, {VirtqBuilder::writable(512)}) == blk::kSIoErr);
    CHECK(h.roundtrip(blk::kTIn, UINT64_MAX / 512, {VirtqBuilder::writable(512)}) == blk::kSIoErr);
    CHECK(h.roundtrip(blk::kTWriteZeroes, 0,
                      {VirtqBuilder::at(h.put_discard(cap - 4, 8, 0), 16, false)}) == blk::kSIoErr);
    CHECK(h.roundtrip(blk::kTWriteZeroes, 0,
                      {VirtqBuilder::at(h.put_discard(UINT64_MAX - 2, 8, 0), 16, false)}) ==
          blk::kSIoErr);
    CHECK(allocated_bytes(h.path()) == 0);
  }
  SECTION("misaligned length") {
    CHECK(h.roundtrip(blk::kTIn, 0, {VirtqBuilder::writable(100)}) == blk::kSIoErr);
    CHECK(h.roundtrip(blk::kTOut, 0, {VirtqBuilder::readable(513)}) == blk::kSIoErr);
  }
  SECTION("zero-length transfer") {
    CHECK(h.roundtrip(blk::kTIn, 0, {}) == blk::kSIoErr);
    CHECK(h.roundtrip(blk::kTOut, 0, {}) == blk::kSIoErr);
    CHECK(h.roundtrip(blk::kTWriteZeroes, 0,
                      {VirtqBuilder::at(h.put_discard(0, 0, 0), 16, false)}) == blk::kSIoErr);
  }
  SECTION("wrong direction") {
    // IN with a device-readable data buffer; OUT with a device-writable one.
    CHECK(h.roundtrip(blk::kTIn, 0, {VirtqBuilder::readable(512)}) == blk::kSIoErr);
    CHECK(h.roundtrip(blk::kTOut, 0, {VirtqBuilder::writable(512)}) == blk::kSIoErr);
    CHECK(allocated_bytes(h.path()) == 0);
  }
  SECTION("short header") {
    uint16_t before = h.q().used_idx();
    auto s = h.add(blk::kTIn, 0, {VirtqBuilder::writable(512)}, true, 8);
    h.kick_and_wait(static_cast<uint16_t>(before + 1));
    CHECK(h.status(s) == blk::kSIoErr);
    CHECK(h.q().used(before).len == 1);
  }
  SECTION("no status byte") {
    uint16_t before = h.q().used_idx();
    auto s = h.add(blk::kTOut, 0, {VirtqBuilder::readable(512)}, false);
    h.kick_and_wait(static_cast<uint16_t>(before + 1));
    REQUIRE(h.q().used_idx() == before + 1);
    CHECK(h.q().used(before).id == s.head);
    CHECK(h.q().used(before).len == 0);
    CHECK(allocated_bytes(h.path()) == 0);
  }
  SECTION("unknown and unsupported types") {
    CHECK(h.roundtrip(99, 0, {VirtqBuilder::writable(512)}) == blk::kSUnsupp);
    CHECK(h.roundtrip(blk::kTGetLifetime, 0, {VirtqBuilder::writable(16)}) == blk::kSUnsupp);
    CHECK(h.roundtrip(blk::kTSecureErase, 0,
                      {VirtqBuilder::at(h.put_discard(0, 8, 0), 16, false)}) == blk::kSUnsupp);
    // Not negotiated.
    CHECK(h.roundtrip(blk::kTDiscard, 0, {VirtqBuilder::at(h.put_discard(0, 8, 0), 16, false)}) ==
          blk::kSUnsupp);
    // Unknown write-zeroes flag.
    CHECK(h.roundtrip(blk::kTWriteZeroes, 0,
                      {VirtqBuilder::at(h.put_discard(0, 8, 4), 16, false)}) == blk::kSUnsupp);
  }
  SECTION("two write-zeroes segments (max_write_zeroes_seg is 1)") {
    GuestAddress segs = h.q().alloc(32);
    h.q().put(segs, blk::DiscardSegment{0, 8, 0});
    h.q().put(segs + 16, blk::DiscardSegment{16, 8, 0});
    CHECK(h.roundtrip(blk::kTWriteZeroes, 0, {VirtqBuilder::at(segs, 32, false)}) == blk::kSIoErr);
  }
  SECTION("data outside guest RAM is refused by the queue") {
    uint16_t before = h.q().used_idx();
    h.add(blk::kTIn, 0, {VirtqBuilder::at(GuestAddress(1ull << 40), 512, true)});
    h.dev().process_queue(0);
    CHECK(h.irq().needs_reset);
    CHECK(h.q().used_idx() == before);
    return;
  }
  CHECK_FALSE(h.irq().needs_reset);
  CHECK(ok_read() == blk::kSOk);
  CHECK(h.dev().in_flight() == 0);
}

TEST_CASE("virtio-blk broken ring sets DEVICE_NEEDS_RESET and recovers after reset", "[block]") {
  DiskEngine engine = engine_param();
  BlockHarness h(engine, 1 * kMiB, false, 16);
  h.activate();
  CHECK(h.roundtrip(blk::kTIn, 0, {VirtqBuilder::writable(512)}) == blk::kSOk);
  // The driver claims 100 new entries in a 16-entry ring.
  h.q().set_avail_idx(static_cast<uint16_t>(h.q().avail_idx() + 100));
  h.dev().process_queue(0);
  CHECK(h.irq().needs_reset);
  uint16_t used = h.q().used_idx();
  h.dev().process_queue(0);  // the queue is no longer used
  CHECK(h.q().used_idx() == used);

  h.dev().reset();
  h.irq().needs_reset = false;
  // A fresh driver: a new ring (the builder's indices restart from what the device saw).
  h.q().set_avail_idx(0);
  h.q().put<uint16_t>(h.q().layout().used + 2, 0);
  h.activate();
  CHECK(h.roundtrip(blk::kTIn, 0, {VirtqBuilder::writable(512)}) == blk::kSOk);
  CHECK_FALSE(h.irq().needs_reset);
}

TEST_CASE("virtio-blk reset waits for requests in flight", "[block]") {
  BlockHarness h(DiskEngine::kUring, 64 * kMiB, false, 128);  // 32 chains of 3 descriptors
  auto data = pattern(64 * 1024, 1);
  write_file_range(h.path(), 0, data);
  h.activate();
  std::vector<BlockHarness::Sent> sent;
  for (int i = 0; i < 32; ++i) {
    sent.push_back(
        h.add(blk::kTIn, static_cast<uint64_t>(i) * 128, {VirtqBuilder::writable(64 * 1024)}));
  }
  h.dev().process_queue(0);
  // No loop iteration ran: the completions cannot have been delivered.
  CHECK(h.dev().in_flight() > 0);
  CHECK(h.q().used_idx() == 0);
  h.dev().reset();
  CHECK(h.dev().in_flight() == 0);
  // Nothing was published after the reset, and nothing comes later from the loop.
  CHECK(h.q().used_idx() == 0);
  h.run_until([] { return false; }, std::chrono::milliseconds(50));
  CHECK(h.q().used_idx() == 0);
  for (const auto& s : sent) {
    CHECK(h.status(s) == 0xff);
  }

  // The device can be activated again and serves requests.
  h.q().set_avail_idx(0);
  h.activate();
  BlockHarness::Sent s;
  CHECK(h.roundtrip(blk::kTIn, 0, {VirtqBuilder::writable(4096)}, &s) == blk::kSOk);
  CHECK(h.q().read_bytes(s.data[0].addr.value(), 4096) ==
        std::vector<std::byte>(data.begin(), data.begin() + 4096));
}

TEST_CASE("virtio-blk interrupts follow EVENT_IDX", "[block]") {
  DiskEngine engine = engine_param();
  BlockHarness h(engine, 1 * kMiB, false, 16);
  h.activate(BlockHarness::kAllBlkFeatures, /*event_idx=*/true);
  // used_event = 1: the driver wants an interrupt only once used idx passes 1.
  h.q().set_used_event(1);
  CHECK(h.roundtrip(blk::kTIn, 0, {VirtqBuilder::writable(512)}) == blk::kSOk);
  int after_first = h.irq().queue_notifications;
  CHECK(h.q().avail_event() == 1);
  CHECK(h.roundtrip(blk::kTIn, 0, {VirtqBuilder::writable(512)}) == blk::kSOk);
  CHECK(h.irq().queue_notifications == after_first + 1);
  h.q().set_used_event(100);
  CHECK(h.roundtrip(blk::kTIn, 0, {VirtqBuilder::writable(512)}) == blk::kSOk);
  CHECK(h.irq().queue_notifications == after_first + 1);
}

TEST_CASE("virtio-blk records the guest pages it writes in the dirty log", "[block][dirty]") {
  DiskEngine engine = engine_param();
  INFO("engine " << petrel::virtio::to_string(engine));
  BlockHarness h(engine, 16 * kMiB);
  h.activate();
  const auto& mem = h.q().memory();
  const auto& region = mem.regions().front();
  auto page_of = [&](GuestAddress a) { return (a - region.start()) / 4096; };

  // Dirty logging off: an IN request leaves the bitmap empty.
  BlockHarness::Sent s;
  CHECK(h.roundtrip(blk::kTIn, 0, {VirtqBuilder::writable(4096)}, &s) == blk::kSOk);
  CHECK(region.dirty().count() == 0);

  // On: the data buffer (two pages here), the status byte's page and the used ring's page.
  mem.set_dirty_logging(true);
  GuestAddress buf = h.q().alloc(8192, 4096);
  CHECK(h.roundtrip(blk::kTIn, 0, {VirtqBuilder::at(buf, 8192, true)}, &s) == blk::kSOk);
  CHECK(region.dirty().test(page_of(buf)));
  CHECK(region.dirty().test(page_of(buf + 4096)));
  CHECK(region.dirty().test(page_of(s.status)));
  CHECK(region.dirty().test(page_of(h.q().layout().used)));
  // An OUT request writes only the status byte and the used ring, not its data pages.
  (void)region.dirty().take();
  auto data = pattern(4096, 5);
  GuestAddress out = h.q().alloc(4096, 4096);
  h.q().write_bytes(out, data);
  (void)region.dirty().take();  // the test's own write
  CHECK(h.roundtrip(blk::kTOut, 0, {VirtqBuilder::at(out, 4096, false)}, &s) == blk::kSOk);
  CHECK_FALSE(region.dirty().test(page_of(out)));
  CHECK(region.dirty().test(page_of(s.status)));
  mem.set_dirty_logging(false);
}
