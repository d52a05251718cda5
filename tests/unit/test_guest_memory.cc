#include <array>
#include <catch2/catch.hpp>

#include "vmm/base/guest_memory.h"

using petrel::ErrorCode;
using petrel::GuestAddress;
using petrel::GuestMemory;
using petrel::GuestRegionSpec;

namespace {

GuestMemory two_regions() {
  std::array specs{GuestRegionSpec{GuestAddress(0), 0x10000},
                   GuestRegionSpec{GuestAddress(0x20000), 0x10000}};
  auto mem = GuestMemory::create_anonymous(specs);
  REQUIRE(mem.ok());
  return std::move(mem).value();
}

}  // namespace

TEST_CASE("guest memory reads back what was written", "[memory]") {
  auto mem = two_regions();
  REQUIRE(mem.write_obj<uint64_t>(GuestAddress(0x1000), 0x1122334455667788).ok());
  auto v = mem.read_obj<uint64_t>(GuestAddress(0x1000));
  REQUIRE(v.ok());
  CHECK(*v == 0x1122334455667788);
  REQUIRE(mem.write_obj<uint32_t>(GuestAddress(0x2fffc), 7).ok());
  CHECK(*mem.read_obj<uint32_t>(GuestAddress(0x2fffc)) == 7);
  CHECK(mem.total_size() == 0x20000);
}

TEST_CASE("guest memory refuses accesses outside RAM", "[memory]") {
  auto mem = two_regions();
  SECTION("in the hole between regions") {
    auto r = mem.read_obj<uint8_t>(GuestAddress(0x18000));
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code() == ErrorCode::kOutOfRange);
  }
  SECTION("crossing the end of a region into the hole") {
    CHECK_FALSE(mem.write_obj<uint32_t>(GuestAddress(0xfffe), 1).ok());
  }
  SECTION("past the last region") {
    CHECK_FALSE(mem.read_obj<uint8_t>(GuestAddress(0x30000)).ok());
    CHECK_FALSE(mem.read_obj<uint64_t>(GuestAddress(UINT64_MAX - 3)).ok());
  }
  SECTION("a slice longer than the region") {
    CHECK_FALSE(mem.slice(GuestAddress(0x20000), 0x10001).ok());
    CHECK(mem.slice(GuestAddress(0x20000), 0x10000).ok());
  }
}

TEST_CASE("guest memory refuses bad region layouts", "[memory]") {
  std::array overlap{GuestRegionSpec{GuestAddress(0), 0x2000},
                     GuestRegionSpec{GuestAddress(0x1000), 0x1000}};
  CHECK_FALSE(GuestMemory::create_anonymous(overlap).ok());
  std::array unaligned{GuestRegionSpec{GuestAddress(0x10), 0x1000}};
  CHECK_FALSE(GuestMemory::create_anonymous(unaligned).ok());
  std::array empty{GuestRegionSpec{GuestAddress(0), 0}};
  CHECK_FALSE(GuestMemory::create_anonymous(empty).ok());
}
