#include <array>
#include <catch2/catch.hpp>
#include <cstdint>
#include <memory>
#include <vector>

#include "devices/bus.h"
#include "devices/pvpanic.h"

using petrel::PvPanic;

namespace {

constexpr uint64_t kPort = 0x505;  // where petrel puts it (QEMU's default)

struct Fixture {
  Fixture() : dev(std::make_shared<PvPanic>([this](uint8_t e) { events.push_back(e); })) {
    REQUIRE(bus.insert(dev, kPort, PvPanic::kPortCount).ok());
  }
  uint8_t in() {
    std::array<std::byte, 1> b{std::byte{0x5a}};
    REQUIRE(bus.read(kPort, b));
    return std::to_integer<uint8_t>(b[0]);
  }
  void out(uint8_t value) {
    std::array<std::byte, 1> b{std::byte{value}};
    REQUIRE(bus.write(kPort, b));
  }

  petrel::Bus bus{"pio"};
  std::vector<uint8_t> events;
  std::shared_ptr<PvPanic> dev;
};

}  // namespace

TEST_CASE("pvpanic reads back the supported events", "[pvpanic]") {
  Fixture f;
  CHECK(f.in() == 0x03);  // PANICKED | CRASH_LOADED, as Linux's pvpanic probe reads it
  std::array<std::byte, 4> wide{};
  wide.fill(std::byte{0x77});
  f.dev->read(0, wide);
  CHECK(wide == std::array<std::byte, 4>{std::byte{3}, std::byte{0}, std::byte{0}, std::byte{0}});
  f.dev->read(1, wide);
  CHECK(wide == std::array<std::byte, 4>{});
  CHECK(f.events.empty());
}

TEST_CASE("pvpanic reports the supported events the guest writes", "[pvpanic]") {
  Fixture f;
  f.out(0x01);
  f.out(0x02);
  f.out(0x03);
  f.out(0xff);  // unknown bits are dropped
  f.out(0x81);
  CHECK(f.events == std::vector<uint8_t>{0x01, 0x02, 0x03, 0x03, 0x01});
}

TEST_CASE("pvpanic ignores writes without a supported event", "[pvpanic]") {
  Fixture f;
  for (unsigned v = 0; v < 256; ++v) {
    if ((v & 0x03) == 0) {
      f.out(static_cast<uint8_t>(v));
    }
  }
  f.dev->write(0, {});
  std::array<std::byte, 1> b{std::byte{1}};
  f.dev->write(1, b);  // not its port
  CHECK(f.events.empty());
}

TEST_CASE("pvpanic without a callback drops events", "[pvpanic]") {
  PvPanic dev(nullptr);
  std::array<std::byte, 1> b{std::byte{1}};
  dev.write(0, b);
  dev.read(0, b);
  CHECK(std::to_integer<uint8_t>(b[0]) == 0x03);
}
