#include <array>
#include <catch2/catch.hpp>

#include "vmm/base/dirty_bitmap.h"
#include "vmm/base/guest_memory.h"

using petrel::DirtyBitmap;
using petrel::GuestAddress;
using petrel::GuestMemory;
using petrel::GuestRegionSpec;

TEST_CASE("dirty bitmap marks single pages and ranges", "[dirty]") {
  DirtyBitmap bm(200);
  CHECK(bm.pages() == 200);
  CHECK(bm.count() == 0);
  bm.mark(0, 1);
  bm.mark(63, 1);
  bm.mark(64, 1);
  CHECK(bm.test(0));
  CHECK_FALSE(bm.test(1));
  CHECK(bm.test(63));
  CHECK(bm.test(64));
  CHECK(bm.count() == 3);
  bm.mark(0, 1);  // idempotent
  CHECK(bm.count() == 3);
  bm.mark(10, 0);  // empty range
  CHECK(bm.count() == 3);
}

TEST_CASE("dirty bitmap spans crossing 64-page words", "[dirty]") {
  DirtyBitmap bm(300);
  bm.mark(60, 140);  // pages 60..199: words 0 (4 bits), 1 (64), 2 (64), 3 (8)
  CHECK(bm.count() == 140);
  CHECK_FALSE(bm.test(59));
  CHECK(bm.test(60));
  CHECK(bm.test(199));
  CHECK_FALSE(bm.test(200));
  auto words = bm.take();
  REQUIRE(words.size() == 5);
  CHECK(words[0] == 0xf000'0000'0000'0000ULL);
  CHECK(words[1] == ~uint64_t{0});
  CHECK(words[2] == ~uint64_t{0});
  CHECK(words[3] == 0xff);
  CHECK(words[4] == 0);
  CHECK(bm.count() == 0);  // take() clears
  CHECK_FALSE(bm.test(100));
  CHECK(bm.take() == std::vector<uint64_t>(5, 0));
}

TEST_CASE("dirty bitmap exactly one full word", "[dirty]") {
  DirtyBitmap bm(128);
  bm.mark(64, 64);
  auto words = bm.take();
  REQUIRE(words.size() == 2);
  CHECK(words[0] == 0);
  CHECK(words[1] == ~uint64_t{0});
}

TEST_CASE("dirty bitmap ignores pages past the end", "[dirty]") {
  DirtyBitmap bm(70);  // the last word holds 6 valid pages
  bm.mark(68, 100);
  CHECK(bm.count() == 2);
  CHECK(bm.test(69));
  CHECK_FALSE(bm.test(70));
  CHECK_FALSE(bm.test(UINT64_MAX));
  bm.mark(70, 1);
  bm.mark(1000, 5);
  bm.mark(UINT64_MAX, UINT64_MAX);
  bm.mark(5, UINT64_MAX);  // count overflowing first + count
  CHECK(bm.count() == 65);
  auto words = bm.take();
  REQUIRE(words.size() == 2);
  CHECK(words[0] == ~uint64_t{0x1f});
  CHECK(words[1] == 0x3f);  // nothing past page 69
}

TEST_CASE("dirty bitmap of zero pages", "[dirty]") {
  DirtyBitmap bm(0);
  bm.mark(0, 10);
  CHECK(bm.count() == 0);
  CHECK_FALSE(bm.test(0));
  CHECK(bm.take().empty());
}

TEST_CASE("guest memory records VMM writes only while logging", "[dirty][memory]") {
  std::array specs{GuestRegionSpec{GuestAddress(0), 0x10000},
                   GuestRegionSpec{GuestAddress(0x100000), 0x10000}};
  auto made = GuestMemory::create_anonymous(specs);
  REQUIRE(made.ok());
  auto& mem = *made;
  const auto& low = mem.regions()[0].dirty();
  const auto& high = mem.regions()[1].dirty();

  REQUIRE(mem.write_obj<uint32_t>(GuestAddress(0x1000), 1).ok());
  CHECK(low.count() == 0);
  CHECK_FALSE(mem.dirty_logging());

  mem.set_dirty_logging(true);
  CHECK(mem.dirty_logging());
  REQUIRE(mem.write_obj<uint32_t>(GuestAddress(0x2ffe), 1).ok());  // crosses pages 2 and 3
  CHECK(low.test(2));
  CHECK(low.test(3));
  CHECK(low.count() == 2);
  REQUIRE(mem.slice_mut(GuestAddress(0x105000), 1).ok());
  CHECK(high.test(5));
  REQUIRE(mem.slice(GuestAddress(0x106000), 1).ok());  // reading marks nothing
  CHECK_FALSE(high.test(6));
  CHECK(mem.read_obj<uint32_t>(GuestAddress(0x7000)).ok());
  CHECK(low.count() == 2);

  CHECK_FALSE(mem.write_obj<uint32_t>(GuestAddress(0xfffe), 1).ok());  // leaves the region
  mem.mark_dirty(GuestAddress(0x50000), 0x1000);                       // in the hole: ignored
  mem.mark_dirty(GuestAddress(0xf000), 0x100000);  // clipped at the region's end
  CHECK(low.test(15));
  CHECK(low.count() == 3);
  mem.mark_dirty(GuestAddress(0x8000), 0);  // empty
  CHECK_FALSE(low.test(8));

  mem.set_dirty_logging(false);
  REQUIRE(mem.write_obj<uint32_t>(GuestAddress(0x9000), 1).ok());
  CHECK_FALSE(low.test(9));
}
