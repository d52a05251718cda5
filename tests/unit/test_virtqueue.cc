#include <array>
#include <catch2/catch.hpp>
#include <cstring>

#include "virtio/virtio_spec.h"
#include "virtio/virtqueue.h"
#include "virtq_builder.h"

using petrel::ErrorCode;
using petrel::GuestAddress;
using petrel::testing::VirtqBuilder;
using petrel::virtio::ChainReader;
using petrel::virtio::ChainWriter;
using petrel::virtio::DescriptorChain;
using petrel::virtio::kAvailFNoInterrupt;
using petrel::virtio::kDescFIndirect;
using petrel::virtio::kDescFNext;
using petrel::virtio::kDescFWrite;
using petrel::virtio::QueueLayout;
using petrel::virtio::Virtqueue;

namespace {

DescriptorChain pop_one(Virtqueue& vq, const VirtqBuilder& q) {
  auto r = vq.pop(q.memory());
  REQUIRE(r.ok());
  REQUIRE(r->has_value());
  return std::move(**r);
}

// pop() must fail (the ring is broken) and must not throw or crash.
void require_pop_error(Virtqueue& vq, const VirtqBuilder& q) {
  auto r = vq.pop(q.memory());
  REQUIRE_FALSE(r.ok());
  INFO(r.error().to_string());
}

std::vector<std::byte> bytes_of(std::string_view s) {
  auto b = std::as_bytes(std::span(s.data(), s.size()));
  return {b.begin(), b.end()};
}

}  // namespace

TEST_CASE("virtqueue create checks the layout", "[virtqueue]") {
  VirtqBuilder q(16);
  auto mem_create = [&](QueueLayout l, uint16_t max = 256) {
    return Virtqueue::create(q.memory(), l, max, false, false);
  };
  CHECK(mem_create(q.layout()).ok());
  auto l = q.layout();
  SECTION("size not a power of two") {
    l.size = 12;
    CHECK_FALSE(mem_create(l).ok());
  }
  SECTION("size zero") {
    l.size = 0;
    CHECK_FALSE(mem_create(l).ok());
  }
  SECTION("size above the device maximum") {
    CHECK_FALSE(mem_create(l, 8).ok());
  }
  SECTION("misaligned rings") {
    auto d = l;
    d.desc = d.desc + 8;
    CHECK_FALSE(mem_create(d).ok());
    auto a = l;
    a.avail = a.avail + 1;
    CHECK_FALSE(mem_create(a).ok());
    auto u = l;
    u.used = u.used + 2;
    CHECK_FALSE(mem_create(u).ok());
  }
  SECTION("rings outside RAM") {
    l.used = GuestAddress(VirtqBuilder::kDefaultMemSize - 8);  // 6 + 8 * 16 bytes do not fit
    CHECK_FALSE(mem_create(l).ok());
    l = q.layout();
    l.desc = GuestAddress(0x4000'0000);
    CHECK_FALSE(mem_create(l).ok());
  }
}

TEST_CASE("virtqueue pops a normal chain in order", "[virtqueue]") {
  VirtqBuilder q(8);
  auto vq = q.make_queue();
  CHECK_FALSE(vq.pop(q.memory())->has_value());

  auto c1 = q.push({VirtqBuilder::readable(16), VirtqBuilder::readable(5),
                    VirtqBuilder::writable(100), VirtqBuilder::writable(1)});
  auto c2 = q.push({VirtqBuilder::writable(32)});

  auto chain = pop_one(vq, q);
  CHECK(chain.head() == c1.head);
  REQUIRE(chain.segments().size() == 4);
  CHECK(chain.readable().size() == 2);
  CHECK(chain.writable().size() == 2);
  CHECK(chain.readable_bytes() == 21);
  CHECK(chain.writable_bytes() == 101);
  CHECK(chain.segments()[2].addr == c1.buffers[2].addr);
  CHECK(chain.segments()[2].device_writable);

  auto second = pop_one(vq, q);
  CHECK(second.head() == c2.head);
  CHECK(second.readable().empty());
  CHECK(second.writable_bytes() == 32);
  CHECK_FALSE(vq.pop(q.memory())->has_value());
  CHECK(vq.next_avail() == 2);
}

TEST_CASE("virtqueue add_used publishes id and length", "[virtqueue]") {
  VirtqBuilder q(4);
  auto vq = q.make_queue();
  for (int round = 0; round < 10; ++round) {  // wraps the 4-entry rings a few times
    q.set_next_desc(static_cast<uint16_t>(round));
    auto c = q.push({VirtqBuilder::writable(8)});
    auto chain = pop_one(vq, q);
    CHECK(chain.head() == c.head);
    REQUIRE(vq.add_used(q.memory(), chain.head(), static_cast<uint32_t>(round)).ok());
    CHECK(q.used_idx() == round + 1);
    CHECK(q.used(static_cast<uint16_t>(round)).id == c.head);
    CHECK(q.used(static_cast<uint16_t>(round)).len == static_cast<uint32_t>(round));
  }
  CHECK(vq.next_used() == 10);
  CHECK_FALSE(vq.add_used(q.memory(), 4, 0).ok());  // head beyond the queue
  CHECK(q.used_idx() == 10);
}

TEST_CASE("virtqueue add_used_batch publishes several chains with one index update",
          "[virtqueue]") {
  using Element = petrel::virtio::Virtqueue::UsedElement;
  VirtqBuilder q(4);
  auto vq = q.make_queue();
  std::array<uint16_t, 3> heads{};
  for (auto& head : heads) {
    q.push({VirtqBuilder::writable(8)});
    head = pop_one(vq, q).head();
  }
  // Refused without writing anything: a head past the queue, or more elements than entries.
  std::array<Element, 2> bad{{{heads[0], 1}, {4, 1}}};
  CHECK(vq.add_used_batch(q.memory(), bad).error().code() == ErrorCode::kInternal);
  std::array<Element, 5> too_many{};
  CHECK_FALSE(vq.add_used_batch(q.memory(), too_many).ok());
  CHECK(q.used_idx() == 0);
  CHECK(q.used(0).len == 0);

  std::array<Element, 3> batch{{{heads[0], 10}, {heads[1], 20}, {heads[2], 30}}};
  REQUIRE(vq.add_used_batch(q.memory(), batch).ok());
  CHECK(q.used_idx() == 3);
  CHECK(vq.next_used() == 3);
  for (uint16_t i = 0; i < 3; ++i) {
    CHECK(q.used(i).id == heads[i]);
    CHECK(q.used(i).len == 10u * (i + 1u));
  }
  CHECK(vq.add_used_batch(q.memory(), {}).ok());
  CHECK(q.used_idx() == 3);
}

TEST_CASE("virtqueue indices wrap at 65536", "[virtqueue]") {
  VirtqBuilder q(8);
  auto vq = q.make_queue();
  vq.set_indices(65534, 65535);
  q.set_avail_idx(65534);
  q.push({VirtqBuilder::writable(4)});
  q.push({VirtqBuilder::writable(4)});
  CHECK(q.avail_idx() == 0);
  auto a = pop_one(vq, q);
  auto b = pop_one(vq, q);
  CHECK(vq.next_avail() == 0);
  CHECK_FALSE(vq.pop(q.memory())->has_value());
  REQUIRE(vq.add_used(q.memory(), a.head(), 1).ok());
  CHECK(q.used_idx() == 0);
  REQUIRE(vq.add_used(q.memory(), b.head(), 2).ok());
  CHECK(q.used_idx() == 1);
  CHECK(q.used(65535).id == a.head());
  CHECK(q.used(0).id == b.head());
}

TEST_CASE("virtqueue indirect chains", "[virtqueue]") {
  VirtqBuilder q(8);
  SECTION("walked when negotiated") {
    auto vq = q.make_queue(false, true);
    auto c = q.push_indirect(
        {VirtqBuilder::readable(10), VirtqBuilder::writable(20), VirtqBuilder::writable(30)});
    auto chain = pop_one(vq, q);
    CHECK(chain.head() == c.head);
    REQUIRE(chain.segments().size() == 3);
    CHECK(chain.readable_bytes() == 10);
    CHECK(chain.writable_bytes() == 50);
    CHECK(chain.segments()[1].addr == c.buffers[1].addr);
  }
  SECTION("an error when not negotiated") {
    auto vq = q.make_queue(false, false);
    q.push_indirect({VirtqBuilder::readable(10)});
    require_pop_error(vq, q);
  }
  SECTION("the table's own WRITE flag is ignored") {
    auto vq = q.make_queue(false, true);
    auto c = q.push_indirect({VirtqBuilder::readable(10)});
    auto d = q.read_desc(c.head);
    d.flags |= kDescFWrite;
    q.write_desc(c.head, d);
    CHECK(pop_one(vq, q).readable_bytes() == 10);
  }
  SECTION("direct descriptors before the indirect one") {
    auto vq = q.make_queue(false, true);
    auto inner = q.add_indirect_chain({VirtqBuilder::writable(7)});
    GuestAddress buf = q.alloc(3);
    q.write_desc(5, {buf.value(), 3, kDescFNext, inner.head});
    q.publish(5);
    auto chain = pop_one(vq, q);
    CHECK(chain.readable_bytes() == 3);
    CHECK(chain.writable_bytes() == 7);
  }
}

TEST_CASE("virtqueue rejects broken indirect tables", "[virtqueue]") {
  VirtqBuilder q(8);
  auto vq = q.make_queue(false, true);
  GuestAddress table = q.alloc(64);
  GuestAddress buf = q.alloc(16);
  q.write_indirect_desc(table, 0, {buf.value(), 16, 0, 0});
  SECTION("nested indirect") {
    GuestAddress inner = q.alloc(16);
    q.write_indirect_desc(inner, 0, {buf.value(), 16, 0, 0});
    q.write_indirect_desc(table, 0, {inner.value(), 16, kDescFIndirect, 0});
    q.write_desc(0, {table.value(), 16, kDescFIndirect, 0});
  }
  SECTION("length zero") {
    q.write_desc(0, {table.value(), 0, kDescFIndirect, 0});
  }
  SECTION("length not a multiple of 16") {
    q.write_desc(0, {table.value(), 24, kDescFIndirect, 0});
  }
  SECTION("table outside RAM") {
    q.write_desc(0, {VirtqBuilder::kDefaultMemSize - 16, 32, kDescFIndirect, 0});
  }
  SECTION("NEXT and INDIRECT both set") {
    q.write_desc(1, {buf.value(), 16, 0, 0});
    q.write_desc(0, {table.value(), 16, kDescFIndirect | kDescFNext, 1});
  }
  SECTION("next index beyond the table") {
    q.write_indirect_desc(table, 0, {buf.value(), 16, kDescFNext, 4});
    q.write_desc(0, {table.value(), 64, kDescFIndirect, 0});
  }
  SECTION("a loop inside the table") {
    q.write_indirect_desc(table, 0, {buf.value(), 16, kDescFNext, 1});
    q.write_indirect_desc(table, 1, {buf.value(), 16, kDescFNext, 0});
    q.write_desc(0, {table.value(), 32, kDescFIndirect, 0});
  }
  SECTION("more entries than the queue size") {
    GuestAddress big = q.alloc(16 * 9);
    for (uint16_t i = 0; i < 9; ++i) {
      q.write_indirect_desc(big, i,
                            {buf.value(), 16, static_cast<uint16_t>(i < 8 ? kDescFNext : 0),
                             static_cast<uint16_t>(i + 1)});
    }
    q.write_desc(0, {big.value(), 16 * 9, kDescFIndirect, 0});
  }
  q.publish(0);
  require_pop_error(vq, q);
}

TEST_CASE("virtqueue rejects broken direct chains", "[virtqueue]") {
  VirtqBuilder q(8);
  auto vq = q.make_queue();
  GuestAddress buf = q.alloc(64);
  uint16_t head = 0;
  SECTION("loop 0 -> 1 -> 0") {
    q.write_desc(0, {buf.value(), 8, kDescFNext, 1});
    q.write_desc(1, {buf.value(), 8, kDescFNext, 0});
  }
  SECTION("self loop") {
    q.write_desc(0, {buf.value(), 8, kDescFNext, 0});
  }
  SECTION("loop of zero-length descriptors") {
    q.write_desc(0, {0, 0, kDescFNext, 1});
    q.write_desc(1, {0, 0, kDescFNext, 0});
  }
  SECTION("head index out of range") {
    head = 8;
  }
  SECTION("head index 0xffff") {
    head = 0xffff;
  }
  SECTION("next index out of range") {
    q.write_desc(0, {buf.value(), 8, kDescFNext, 200});
  }
  SECTION("buffer outside RAM") {
    q.write_desc(0, {VirtqBuilder::kDefaultMemSize, 8, 0, 0});
  }
  SECTION("buffer crossing the end of RAM") {
    q.write_desc(0, {VirtqBuilder::kDefaultMemSize - 4, 8, kDescFWrite, 0});
  }
  SECTION("address that wraps 2^64") {
    q.write_desc(0, {UINT64_MAX - 3, 8, 0, 0});
  }
  SECTION("huge length") {
    q.write_desc(0, {buf.value(), 0xffffffff, kDescFWrite, 0});
  }
  SECTION("readable after writable") {
    q.write_desc(0, {buf.value(), 8, kDescFWrite | kDescFNext, 1});
    q.write_desc(1, {buf.value() + 8, 8, 0, 0});
  }
  SECTION("unknown flags") {
    q.write_desc(0, {buf.value(), 8, 0x10, 0});
  }
  q.set_avail_ring(0, head);
  q.set_avail_idx(1);
  require_pop_error(vq, q);
}

TEST_CASE("virtqueue accepts a chain as long as the queue", "[virtqueue]") {
  VirtqBuilder q(4);
  auto vq = q.make_queue();
  auto c = q.push({VirtqBuilder::readable(1), VirtqBuilder::readable(2), VirtqBuilder::writable(3),
                   VirtqBuilder::writable(4)});
  auto chain = pop_one(vq, q);
  CHECK(chain.head() == c.head);
  CHECK(chain.segments().size() == 4);
}

TEST_CASE("virtqueue zero-length buffers are harmless", "[virtqueue]") {
  VirtqBuilder q(8);
  auto vq = q.make_queue();
  // Address outside RAM but length zero: never touched, so not an error.
  q.push({VirtqBuilder::readable(4), VirtqBuilder::at(GuestAddress(UINT64_MAX), 0, false),
          VirtqBuilder::writable(4)});
  auto chain = pop_one(vq, q);
  CHECK(chain.segments().size() == 2);
  CHECK(chain.readable_bytes() == 4);
  CHECK(chain.writable_bytes() == 4);
  ChainReader r(q.memory(), chain);
  std::array<std::byte, 4> out{};
  CHECK(r.read(out).ok());
  CHECK(r.remaining() == 0);
}

TEST_CASE("virtqueue refuses an avail idx that jumps too far", "[virtqueue]") {
  VirtqBuilder q(8);
  auto vq = q.make_queue();
  for (int i = 0; i < 8; ++i) {
    q.set_avail_ring(static_cast<uint16_t>(i), 0);
  }
  q.write_desc(0, {q.alloc(8).value(), 8, 0, 0});
  SECTION("exactly the queue size is fine") {
    q.set_avail_idx(8);
    for (int i = 0; i < 8; ++i) {
      CHECK(pop_one(vq, q).head() == 0);
    }
    CHECK_FALSE(vq.pop(q.memory())->has_value());
  }
  SECTION("one more is an error") {
    q.set_avail_idx(9);
    require_pop_error(vq, q);
  }
  SECTION("going backwards is an error") {
    vq.set_indices(100, 100);
    q.set_avail_idx(99);
    require_pop_error(vq, q);
  }
}

TEST_CASE("virtqueue undo_pop returns the same chain again", "[virtqueue]") {
  VirtqBuilder q(8);
  auto vq = q.make_queue();
  auto c1 = q.push({VirtqBuilder::readable(8)});
  auto c2 = q.push({VirtqBuilder::readable(8)});
  CHECK(pop_one(vq, q).head() == c1.head);
  vq.undo_pop();
  CHECK(vq.next_avail() == 0);
  CHECK(pop_one(vq, q).head() == c1.head);
  CHECK(pop_one(vq, q).head() == c2.head);
  vq.undo_pop();
  CHECK(pop_one(vq, q).head() == c2.head);
  CHECK_FALSE(vq.pop(q.memory())->has_value());
}

TEST_CASE("virtqueue notification without EVENT_IDX follows NO_INTERRUPT", "[virtqueue]") {
  VirtqBuilder q(8);
  auto vq = q.make_queue(false, false);
  auto c = q.push({VirtqBuilder::writable(4)});
  auto chain = pop_one(vq, q);
  REQUIRE(vq.add_used(q.memory(), chain.head(), 4).ok());
  CHECK(*vq.should_notify(q.memory()));
  q.set_avail_flags(kAvailFNoInterrupt);
  CHECK_FALSE(*vq.should_notify(q.memory()));
  q.set_avail_flags(0);
  CHECK(*vq.should_notify(q.memory()));
  CHECK(c.head == chain.head());
  // avail_event is not written without EVENT_IDX.
  q.put<uint16_t>(q.layout().used + 4 + 8 * 8, 0x1234);
  REQUIRE(vq.update_avail_event(q.memory()).ok());
  CHECK(q.avail_event() == 0x1234);
}

TEST_CASE("virtqueue EVENT_IDX notification decisions", "[virtqueue]") {
  VirtqBuilder q(8);
  auto vq = q.make_queue(true, false);
  auto complete = [&](int n) {
    for (int i = 0; i < n; ++i) {
      q.set_next_desc(0);
      q.push({VirtqBuilder::writable(4)});
      auto chain = pop_one(vq, q);
      REQUIRE(vq.add_used(q.memory(), chain.head(), 4).ok());
    }
  };
  SECTION("the first decision always notifies") {
    q.set_used_event(100);
    complete(1);
    CHECK(*vq.should_notify(q.memory()));
  }
  SECTION("notify only when used idx passes used_event") {
    q.set_used_event(0);
    complete(1);  // used idx 0 -> 1 crosses event 0
    CHECK(*vq.should_notify(q.memory()));
    q.set_used_event(3);
    complete(2);  // 1 -> 3: event 3 not yet passed (needs idx 4)
    CHECK_FALSE(*vq.should_notify(q.memory()));
    complete(1);  // 3 -> 4 passes 3
    CHECK(*vq.should_notify(q.memory()));
    CHECK_FALSE(*vq.should_notify(q.memory()));  // nothing new
  }
  SECTION("NO_INTERRUPT is ignored with EVENT_IDX") {
    q.set_avail_flags(kAvailFNoInterrupt);
    q.set_used_event(0);
    complete(1);
    CHECK(*vq.should_notify(q.memory()));
  }
  SECTION("wraparound at 65535") {
    vq.set_indices(65533, 65533);
    q.set_avail_idx(65533);
    q.set_used_event(65533);
    complete(1);  // first decision after set_indices: always
    CHECK(*vq.should_notify(q.memory()));
    q.set_used_event(0);
    complete(2);  // 65534 -> 0: event 0 not passed
    CHECK_FALSE(*vq.should_notify(q.memory()));
    complete(1);  // 0 -> 1 passes 0
    CHECK(*vq.should_notify(q.memory()));
    q.set_used_event(65535);
    complete(1);  // 1 -> 2: event 65535 is behind, not between old and new
    CHECK_FALSE(*vq.should_notify(q.memory()));
  }
  SECTION("avail_event tracks the next index to read") {
    complete(3);
    REQUIRE(vq.update_avail_event(q.memory()).ok());
    CHECK(q.avail_event() == 3);
    vq.set_indices(65535, 0);
    REQUIRE(vq.update_avail_event(q.memory()).ok());
    CHECK(q.avail_event() == 65535);
  }
}

TEST_CASE("chain reader copies across segments and stops at the end", "[virtqueue]") {
  VirtqBuilder q(8);
  auto vq = q.make_queue();
  auto c =
      q.push({VirtqBuilder::readable(3), VirtqBuilder::readable(5), VirtqBuilder::writable(4)});
  q.write_string(c.buffers[0].addr, "abc");
  q.write_string(c.buffers[1].addr, "defgh");
  auto chain = pop_one(vq, q);
  ChainReader r(q.memory(), chain);
  CHECK(r.remaining() == 8);
  std::array<std::byte, 2> two{};
  REQUIRE(r.read(two).ok());
  CHECK(two[1] == std::byte{'b'});
  std::array<std::byte, 4> four{};
  REQUIRE(r.read(four).ok());  // "cdef" crosses the segment boundary
  CHECK(std::memcmp(four.data(), "cdef", 4) == 0);
  CHECK(r.remaining() == 2);
  std::array<std::byte, 3> three{};
  auto too_much = r.read(three);
  REQUIRE_FALSE(too_much.ok());
  CHECK(too_much.error().code() == ErrorCode::kOutOfRange);
  CHECK(r.remaining() == 2);  // consumed nothing
  CHECK_FALSE(r.skip(3).ok());
  REQUIRE(r.skip(1).ok());
  auto last = r.read_obj<char>();
  REQUIRE(last.ok());
  CHECK(*last == 'h');
  CHECK(r.remaining() == 0);
  CHECK(r.take(10).empty());
}

TEST_CASE("chain reader take() hands out guest ranges", "[virtqueue]") {
  VirtqBuilder q(8);
  auto vq = q.make_queue();
  auto c = q.push({VirtqBuilder::readable(3), VirtqBuilder::readable(5)});
  auto chain = pop_one(vq, q);
  ChainReader r(q.memory(), chain);
  REQUIRE(r.skip(1).ok());
  auto ranges = r.take(4);
  REQUIRE(ranges.size() == 2);
  CHECK(ranges[0].addr == c.buffers[0].addr + 1);
  CHECK(ranges[0].len == 2);
  CHECK(ranges[1].addr == c.buffers[1].addr);
  CHECK(ranges[1].len == 2);
  CHECK(r.remaining() == 3);
  auto rest = r.take(100);
  REQUIRE(rest.size() == 1);
  CHECK(rest[0].len == 3);
}

TEST_CASE("chain writer fills writable segments and counts bytes", "[virtqueue]") {
  VirtqBuilder q(8);
  auto vq = q.make_queue();
  auto c =
      q.push({VirtqBuilder::readable(4), VirtqBuilder::writable(2), VirtqBuilder::writable(6)});
  auto chain = pop_one(vq, q);
  ChainWriter w(q.memory(), chain);
  CHECK(w.remaining() == 8);
  REQUIRE(w.write(bytes_of("xyz")).ok());
  CHECK(w.written() == 3);
  CHECK(q.read_string(c.buffers[1].addr, 2) == "xy");
  CHECK(q.read_string(c.buffers[2].addr, 1) == "z");
  auto fail = w.write(bytes_of("123456"));
  REQUIRE_FALSE(fail.ok());
  CHECK(w.written() == 3);
  CHECK(q.read_string(c.buffers[2].addr + 1, 5) == std::string(5, '\0'));  // wrote nothing
  REQUIRE(w.write_obj<uint8_t>(0x41).ok());
  auto ranges = w.peek(100);
  REQUIRE(ranges.size() == 1);
  CHECK(ranges[0].addr == c.buffers[2].addr + 2);
  CHECK(ranges[0].len == 4);
  CHECK(w.remaining() == 4);  // peek consumes nothing
  CHECK_FALSE(w.advance(5).ok());
  REQUIRE(w.advance(4).ok());
  CHECK(w.written() == 8);
  CHECK(w.remaining() == 0);
  CHECK(w.peek(1).empty());
  CHECK_FALSE(w.write(bytes_of("a")).ok());
}

TEST_CASE("virtqueue writes are recorded in the dirty log", "[virtqueue][dirty]") {
  constexpr uint64_t kPage = 4096;
  VirtqBuilder q(8);
  auto vq = q.make_queue(true, false);
  const auto& region = q.memory().regions().front();
  auto c = q.push({VirtqBuilder::writable(16)});
  GuestAddress far = q.alloc(3 * kPage, kPage);
  auto c2 = q.push({VirtqBuilder::at(far + (kPage - 2), 2 * kPage, true)});

  SECTION("nothing when logging is off") {
    auto chain = pop_one(vq, q);
    ChainWriter w(q.memory(), chain);
    REQUIRE(w.write(bytes_of("hello")).ok());
    REQUIRE(vq.add_used(q.memory(), chain.head(), 5).ok());
    REQUIRE(vq.update_avail_event(q.memory()).ok());
    CHECK(region.dirty().count() == 0);
  }
  SECTION("used ring and buffer pages when logging is on") {
    region.dirty().take();  // the builder's own writes are not the device's
    q.memory().set_dirty_logging(true);
    auto chain = pop_one(vq, q);
    CHECK(region.dirty().count() == 0);  // reading marks nothing
    ChainWriter w(q.memory(), chain);
    REQUIRE(w.write(bytes_of("hello")).ok());
    CHECK(region.dirty().test(c.buffers[0].addr.value() / kPage));
    REQUIRE(vq.add_used(q.memory(), chain.head(), 5).ok());
    CHECK(region.dirty().test(q.layout().used.value() / kPage));
    CHECK(region.dirty().count() == 2);

    region.dirty().take();
    auto big = pop_one(vq, q);
    CHECK(big.head() == c2.head);
    ChainWriter zc(q.memory(), big);
    REQUIRE(zc.peek(3).size() == 1);
    REQUIRE(zc.advance(3).ok());  // 2 bytes in the first page, 1 in the next
    CHECK(region.dirty().test(far.value() / kPage));
    CHECK(region.dirty().test(far.value() / kPage + 1));
    CHECK(region.dirty().count() == 2);
    q.memory().set_dirty_logging(false);
  }
}
