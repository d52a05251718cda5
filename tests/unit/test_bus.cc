#include <array>
#include <catch2/catch.hpp>
#include <memory>
#include <vector>

#include "devices/bus.h"

using petrel::Bus;
using petrel::BusDevice;

namespace {

// Records every access; reads return `fill` in each byte.
class RecordingDevice : public BusDevice {
 public:
  struct Access {
    bool is_write;
    uint64_t offset;
    size_t size;
    uint8_t first_byte;
  };

  explicit RecordingDevice(uint8_t fill = 0) : fill_(fill) {}

  void read(uint64_t offset, std::span<std::byte> data) override {
    for (auto& b : data) {
      b = std::byte{fill_};
    }
    accesses.push_back({false, offset, data.size(), fill_});
  }
  void write(uint64_t offset, std::span<const std::byte> data) override {
    accesses.push_back({true, offset, data.size(), std::to_integer<uint8_t>(data[0])});
  }

  std::vector<Access> accesses;

 private:
  uint8_t fill_;
};

}  // namespace

TEST_CASE("bus refuses overlapping ranges", "[bus]") {
  Bus bus("test");
  auto dev = std::make_shared<RecordingDevice>();
  REQUIRE(bus.insert(dev, 0x100, 0x10).ok());

  SECTION("adjacent ranges on both sides are fine") {
    CHECK(bus.insert(dev, 0xf0, 0x10).ok());
    CHECK(bus.insert(dev, 0x110, 0x10).ok());
  }
  SECTION("overlapping the start") {
    CHECK_FALSE(bus.insert(dev, 0xf8, 0x10).ok());
    CHECK_FALSE(bus.insert(dev, 0xff, 2).ok());
  }
  SECTION("overlapping the end") {
    CHECK_FALSE(bus.insert(dev, 0x108, 0x10).ok());
    auto r = bus.insert(dev, 0x10f, 1);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code() == petrel::ErrorCode::kInvalidArgument);
  }
  SECTION("contained in a registered range") {
    CHECK_FALSE(bus.insert(dev, 0x104, 4).ok());
    CHECK_FALSE(bus.insert(dev, 0x100, 0x10).ok());
  }
  SECTION("containing a registered range") {
    CHECK_FALSE(bus.insert(dev, 0x0, 0x1000).ok());
  }
  SECTION("refused inserts leave the bus unchanged") {
    CHECK_FALSE(bus.insert(dev, 0x108, 0x10).ok());
    std::array<std::byte, 1> b{};
    CHECK_FALSE(bus.read(0x110, b));
    CHECK(bus.read(0x10f, b));
  }
}

TEST_CASE("bus refuses empty and wrapping ranges", "[bus]") {
  Bus bus("test");
  auto dev = std::make_shared<RecordingDevice>();
  CHECK_FALSE(bus.insert(dev, 0x100, 0).ok());
  CHECK_FALSE(bus.insert(dev, UINT64_MAX - 3, 8).ok());
  CHECK(bus.insert(dev, UINT64_MAX - 3, 3).ok());
}

TEST_CASE("bus dispatches with the offset into the range", "[bus]") {
  Bus bus("test");
  auto low = std::make_shared<RecordingDevice>(0xaa);
  auto high = std::make_shared<RecordingDevice>(0xbb);
  REQUIRE(bus.insert(low, 0x60, 5).ok());
  REQUIRE(bus.insert(high, 0x3f8, 8).ok());

  std::array<std::byte, 2> two{};
  REQUIRE(bus.read(0x3fd, two));
  CHECK(two[0] == std::byte{0xbb});
  CHECK(two[1] == std::byte{0xbb});
  REQUIRE(high->accesses.size() == 1);
  CHECK_FALSE(high->accesses[0].is_write);
  CHECK(high->accesses[0].offset == 5);
  CHECK(high->accesses[0].size == 2);

  std::array<std::byte, 1> one{std::byte{0x42}};
  REQUIRE(bus.write(0x64, one));
  REQUIRE(low->accesses.size() == 1);
  CHECK(low->accesses[0].is_write);
  CHECK(low->accesses[0].offset == 4);
  CHECK(low->accesses[0].first_byte == 0x42);
  CHECK(high->accesses.size() == 1);

  REQUIRE(bus.write(0x60, one));
  CHECK(low->accesses.back().offset == 0);
}

TEST_CASE("bus refuses accesses it cannot route", "[bus]") {
  Bus bus("test");
  auto a = std::make_shared<RecordingDevice>();
  auto b = std::make_shared<RecordingDevice>();
  REQUIRE(bus.insert(a, 0x10, 0x10).ok());
  REQUIRE(bus.insert(b, 0x20, 0x10).ok());
  std::array<std::byte, 4> four{};

  SECTION("an access straddling the end of a range") {
    CHECK_FALSE(bus.read(0x1e, four));
    CHECK_FALSE(bus.write(0x2e, four));
    CHECK(bus.read(0x1c, four));
    CHECK(a->accesses.size() == 1);
    CHECK(b->accesses.empty());
  }
  SECTION("unknown addresses") {
    CHECK_FALSE(bus.read(0x0, four));
    CHECK_FALSE(bus.write(0x30, four));
    CHECK_FALSE(bus.read(UINT64_MAX, std::span(four).first(1)));
    CHECK(a->accesses.empty());
    CHECK(b->accesses.empty());
  }
  SECTION("an access starting before the first range") {
    CHECK_FALSE(bus.read(0xe, four));
    CHECK(a->accesses.empty());
  }
}
