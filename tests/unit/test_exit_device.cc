#include <array>
#include <catch2/catch.hpp>
#include <optional>
#include <vector>

#include "devices/bus.h"
#include "devices/exit_device.h"
#include "vmm/guest_abi.h"

using petrel::ExitDevice;

TEST_CASE("exit device reports the low byte of the first write", "[exit]") {
  std::vector<uint8_t> statuses;
  ExitDevice dev([&](uint8_t status) { statuses.push_back(status); });

  SECTION("a byte write") {
    std::array<std::byte, 1> b{std::byte{0x2a}};
    dev.write(0, b);
    CHECK(statuses == std::vector<uint8_t>{0x2a});
  }
  SECTION("a 4-byte write uses the low byte of the little-endian value") {
    std::array<std::byte, 4> v{std::byte{0x78}, std::byte{0x56}, std::byte{0x34}, std::byte{0x12}};
    dev.write(0, v);
    CHECK(statuses == std::vector<uint8_t>{0x78});
  }
  SECTION("later writes are ignored") {
    std::array<std::byte, 1> b{std::byte{0}};
    dev.write(0, b);
    b[0] = std::byte{1};
    dev.write(0, b);
    dev.write(2, b);
    CHECK(statuses == std::vector<uint8_t>{0});
  }
  SECTION("an empty write is not a write") {
    dev.write(0, std::span<const std::byte>());
    CHECK(statuses.empty());
    std::array<std::byte, 1> b{std::byte{3}};
    dev.write(0, b);
    CHECK(statuses == std::vector<uint8_t>{3});
  }
}

TEST_CASE("exit device reads return 0", "[exit]") {
  int calls = 0;
  ExitDevice dev([&](uint8_t) { ++calls; });
  std::array<std::byte, 4> v{};
  v.fill(std::byte{0xff});
  dev.read(0, v);
  CHECK(v == std::array<std::byte, 4>{});
  CHECK(calls == 0);
}

TEST_CASE("exit device on a bus at PETREL_PORT_EXIT", "[exit]") {
  std::optional<uint8_t> status;
  petrel::Bus bus("pio");
  REQUIRE(bus.insert(std::make_shared<ExitDevice>([&](uint8_t s) { status = s; }), PETREL_PORT_EXIT,
                     ExitDevice::kPortCount)
              .ok());
  std::array<std::byte, 2> w{std::byte{0x07}, std::byte{0x01}};
  REQUIRE(bus.write(PETREL_PORT_EXIT, w));
  REQUIRE(status.has_value());
  CHECK(*status == 0x07);
  CHECK_FALSE(bus.write(PETREL_PORT_EXIT + ExitDevice::kPortCount, w));
}
