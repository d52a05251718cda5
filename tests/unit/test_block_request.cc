// blk::parse_request: framing and validation of virtio-blk requests (virtio 1.2 5.2.6),
// without a disk.
#include <catch2/catch.hpp>

#include "virtio/block_request.h"
#include "virtq_builder.h"

using petrel::GuestAddress;
using petrel::testing::VirtqBuilder;
using petrel::virtio::DescriptorChain;
namespace blk = petrel::virtio::blk;

namespace {

blk::Limits small_limits() {
  blk::Limits l;
  l.capacity_sectors = 1000;
  l.discard = true;
  l.write_zeroes = true;
  l.seg_max = 4;
  l.max_data_bytes = 8192;
  l.max_discard_sectors = 100;
  l.max_write_zeroes_sectors = 200;
  return l;
}

struct Parser {
  VirtqBuilder q{64};
  petrel::virtio::Virtqueue vq = q.make_queue();
  VirtqBuilder::Chain last;

  GuestAddress header(uint32_t type, uint64_t sector) {
    GuestAddress h = q.alloc(16);
    q.put(h, blk::RequestHeader{type, 0, sector});
    return h;
  }
  blk::ParsedRequest parse(std::initializer_list<VirtqBuilder::Buffer> bufs,
                           const blk::Limits& limits = small_limits()) {
    last = q.push(bufs);
    auto popped = vq.pop(q.memory());
    REQUIRE(popped.ok());
    REQUIRE(popped->has_value());
    return blk::parse_request(q.memory(), **popped, limits);
  }
};

}  // namespace

TEST_CASE("blk request: IN framing", "[block]") {
  Parser p;
  auto h = p.header(blk::kTIn, 7);
  auto r = p.parse({VirtqBuilder::at(h, 16, false), VirtqBuilder::writable(1024),
                    VirtqBuilder::writable(512), VirtqBuilder::writable(1)});
  REQUIRE(r.error == blk::kSOk);
  REQUIRE(r.status.has_value());
  CHECK(r.request.type == blk::RequestType::kIn);
  CHECK(r.request.sector == 7);
  CHECK(r.request.num_sectors == 3);
  CHECK(r.request.data_bytes == 1536);
  REQUIRE(r.request.data.size() == 2);
  CHECK(r.request.data[0].len == 1024);
  CHECK(r.request.data[1].len == 512);
  CHECK(*r.status == p.last.buffers.back().addr);
}

TEST_CASE("blk request: header, data and status in any descriptor layout", "[block]") {
  Parser p;
  SECTION("OUT: header and data in one descriptor") {
    GuestAddress buf = p.q.alloc(16 + 1024);
    p.q.put(buf, blk::RequestHeader{blk::kTOut, 0, 3});
    auto r = p.parse({VirtqBuilder::at(buf, 16 + 1024, false), VirtqBuilder::writable(1)});
    REQUIRE(r.error == blk::kSOk);
    CHECK(r.request.type == blk::RequestType::kOut);
    REQUIRE(r.request.data.size() == 1);
    CHECK(r.request.data[0].addr == buf + 16);
    CHECK(r.request.data_bytes == 1024);
  }
  SECTION("header split over two descriptors") {
    GuestAddress buf = p.q.alloc(16);
    p.q.put(buf, blk::RequestHeader{blk::kTFlush, 0, 0});
    auto r = p.parse({VirtqBuilder::at(buf, 4, false), VirtqBuilder::at(buf + 4, 12, false),
                      VirtqBuilder::writable(1)});
    CHECK(r.error == blk::kSOk);
    CHECK(r.request.type == blk::RequestType::kFlush);
  }
  SECTION("IN: data and status in one descriptor") {
    auto h = p.header(blk::kTIn, 0);
    GuestAddress buf = p.q.alloc(513);
    auto r = p.parse({VirtqBuilder::at(h, 16, false), VirtqBuilder::at(buf, 513, true)});
    REQUIRE(r.error == blk::kSOk);
    CHECK(*r.status == buf + 512);
    REQUIRE(r.request.data.size() == 1);
    CHECK(r.request.data[0].len == 512);
  }
}

TEST_CASE("blk request: validation errors", "[block]") {
  Parser p;
  auto l = small_limits();
  auto io_err = [&](uint32_t type, uint64_t sector,
                    std::initializer_list<VirtqBuilder::Buffer> data) {
    std::vector<VirtqBuilder::Buffer> bufs{VirtqBuilder::at(p.header(type, sector), 16, false)};
    bufs.insert(bufs.end(), data.begin(), data.end());
    bufs.push_back(VirtqBuilder::writable(1));
    auto chain = p.q.add_chain(std::span<const VirtqBuilder::Buffer>(bufs));
    p.q.publish(chain.head);
    auto popped = p.vq.pop(p.q.memory());
    REQUIRE(popped.ok());
    auto r = blk::parse_request(p.q.memory(), **popped, l);
    CHECK(r.status.has_value());
    INFO(r.reason);
    return r.error;
  };
  CHECK(io_err(blk::kTIn, 0, {VirtqBuilder::writable(8192)}) == blk::kSOk);
  // Too long (max_data_bytes 8192).
  CHECK(io_err(blk::kTIn, 0, {VirtqBuilder::writable(8192 + 512)}) == blk::kSIoErr);
  CHECK(io_err(blk::kTOut, 0, {VirtqBuilder::readable(8192), VirtqBuilder::readable(512)}) ==
        blk::kSIoErr);
  // More than seg_max (4) data segments.
  CHECK(
      io_err(blk::kTIn, 0,
             {VirtqBuilder::writable(512), VirtqBuilder::writable(512), VirtqBuilder::writable(512),
              VirtqBuilder::writable(512), VirtqBuilder::writable(512)}) == blk::kSIoErr);
  // Capacity: 1000 sectors.
  CHECK(io_err(blk::kTIn, 999, {VirtqBuilder::writable(512)}) == blk::kSOk);
  CHECK(io_err(blk::kTIn, 999, {VirtqBuilder::writable(1024)}) == blk::kSIoErr);
  CHECK(io_err(blk::kTIn, UINT64_MAX, {VirtqBuilder::writable(512)}) == blk::kSIoErr);
  // Direction.
  CHECK(io_err(blk::kTIn, 0, {VirtqBuilder::readable(512), VirtqBuilder::writable(512)}) ==
        blk::kSIoErr);
  CHECK(io_err(blk::kTOut, 0, {VirtqBuilder::readable(512), VirtqBuilder::writable(512)}) ==
        blk::kSIoErr);
  // Discard/write-zeroes bounds.
  auto seg = [&](uint64_t sector, uint32_t num, uint32_t flags) {
    GuestAddress a = p.q.alloc(16);
    p.q.put(a, blk::DiscardSegment{sector, num, flags});
    return VirtqBuilder::at(a, 16, false);
  };
  CHECK(io_err(blk::kTDiscard, 0, {seg(0, 100, 0)}) == blk::kSOk);
  CHECK(io_err(blk::kTDiscard, 0, {seg(0, 101, 0)}) == blk::kSIoErr);
  CHECK(io_err(blk::kTDiscard, 0, {seg(0, 8, blk::kDiscardFlagUnmap)}) == blk::kSUnsupp);
  CHECK(io_err(blk::kTWriteZeroes, 0, {seg(900, 100, blk::kDiscardFlagUnmap)}) == blk::kSOk);
  CHECK(io_err(blk::kTWriteZeroes, 0, {seg(901, 100, 0)}) == blk::kSIoErr);
  CHECK(io_err(blk::kTWriteZeroes, 0, {seg(0, 8, 0x80000000)}) == blk::kSUnsupp);
  CHECK(io_err(blk::kTWriteZeroes, 0, {VirtqBuilder::readable(8)}) == blk::kSIoErr);
  l.read_only = true;
  CHECK(io_err(blk::kTOut, 0, {VirtqBuilder::readable(512)}) == blk::kSIoErr);
  CHECK(io_err(blk::kTDiscard, 0, {seg(0, 8, 0)}) == blk::kSIoErr);
  CHECK(io_err(blk::kTIn, 0, {VirtqBuilder::writable(512)}) == blk::kSOk);
  l.discard = false;
  l.read_only = false;
  CHECK(io_err(blk::kTDiscard, 0, {seg(0, 8, 0)}) == blk::kSUnsupp);
}

TEST_CASE("blk request: no status byte", "[block]") {
  Parser p;
  auto r = p.parse({VirtqBuilder::at(p.header(blk::kTFlush, 0), 16, false)});
  CHECK_FALSE(r.status.has_value());
  CHECK(r.error == blk::kSIoErr);
  // A zero-length writable descriptor is no status byte either.
  r = p.parse({VirtqBuilder::at(p.header(blk::kTFlush, 0), 16, false), VirtqBuilder::writable(0)});
  CHECK_FALSE(r.status.has_value());
}
