#include <array>
#include <catch2/catch.hpp>

#include "devices/bus.h"
#include "devices/i8042.h"
#include "vmm/guest_abi.h"

using petrel::I8042;

namespace {

constexpr uint64_t kData = 0;
constexpr uint64_t kCommand = 4;
constexpr uint8_t kOutputFull = 0x01;

struct Controller {
  Controller() : i8042([this] { ++resets; }) {}

  uint8_t in(uint64_t offset) {
    std::array<std::byte, 1> b{std::byte{0x5a}};
    i8042.read(offset, b);
    return std::to_integer<uint8_t>(b[0]);
  }
  void out(uint64_t offset, uint8_t value) {
    std::array<std::byte, 1> b{std::byte{value}};
    i8042.write(offset, b);
  }
  // Sends a command and returns its one result byte, checking the output buffer flag.
  uint8_t command_result(uint8_t command) {
    out(kCommand, command);
    REQUIRE((in(kCommand)&kOutputFull) != 0);
    uint8_t result = in(kData);
    REQUIRE((in(kCommand)&kOutputFull) == 0);
    return result;
  }

  int resets = 0;
  I8042 i8042;
};

}  // namespace

TEST_CASE("i8042 is present with an empty output buffer", "[i8042]") {
  Controller c;
  uint8_t status = c.in(kCommand);
  CHECK(status != 0xff);
  CHECK((status & kOutputFull) == 0);
  CHECK((status & 0x10) == 0x10);  // keyboard not locked
  CHECK(c.in(1) == 0xff);
  CHECK(c.in(3) == 0xff);
  c.out(2, 0xfe);
  CHECK(c.resets == 0);
}

TEST_CASE("i8042 answers Linux's probe commands", "[i8042]") {
  Controller c;
  CHECK(c.command_result(0xaa) == 0x55);
  CHECK((c.in(kCommand)&0x04) == 0x04);  // system flag after self-test
  CHECK(c.command_result(0xab) == 0x00);
  uint8_t aux = c.command_result(0xa9);
  CHECK(aux != 0x00);
  CHECK(aux != 0xfa);
  CHECK(aux != 0xff);
  CHECK(c.resets == 0);
}

TEST_CASE("i8042 command byte read, write and port enables", "[i8042]") {
  Controller c;
  uint8_t initial = c.command_result(0x20);
  CHECK((initial & 0x30) == 0);

  c.out(kCommand, 0x60);
  c.out(kData, 0x47);
  CHECK((c.in(kCommand)&kOutputFull) == 0);
  CHECK(c.command_result(0x20) == 0x47);

  c.out(kCommand, 0xa7);
  CHECK(c.command_result(0x20) == 0x67);
  c.out(kCommand, 0xad);
  CHECK(c.command_result(0x20) == 0x77);
  c.out(kCommand, 0xa8);
  CHECK(c.command_result(0x20) == 0x57);
  c.out(kCommand, 0xae);
  CHECK(c.command_result(0x20) == 0x47);

  // A data byte with no command pending goes to the (absent) keyboard.
  c.out(kData, 0x00);
  CHECK(c.command_result(0x20) == 0x47);
}

TEST_CASE("i8042 reset line", "[i8042]") {
  Controller c;
  SECTION("command 0xfe pulses reset") {
    c.out(kCommand, 0xfe);
    CHECK(c.resets == 1);
    c.out(kCommand, 0xfe);
    CHECK(c.resets == 2);
  }
  SECTION("pulses that leave the reset line alone do not reset") {
    c.out(kCommand, 0xff);
    c.out(kCommand, 0xfd);
    CHECK(c.resets == 0);
  }
  SECTION("writing the output port with bit 0 clear resets") {
    c.out(kCommand, 0xd1);
    c.out(kData, 0xdf);
    CHECK(c.resets == 0);
    CHECK(c.command_result(0xd0) == 0xdf);
    c.out(kCommand, 0xd1);
    c.out(kData, 0xde);
    CHECK(c.resets == 1);
  }
  SECTION("a reset value on the data port without 0xd1 does nothing") {
    c.out(kData, 0x00);
    c.out(kData, 0xfe);
    CHECK(c.resets == 0);
  }
}

TEST_CASE("i8042 ignores unknown commands", "[i8042]") {
  Controller c;
  uint8_t before = c.command_result(0x20);
  c.out(kCommand, 0x12);
  c.out(kCommand, 0xd3);
  CHECK((c.in(kCommand)&kOutputFull) == 0);
  // A 0x60 cancelled by another command does not take the next data byte.
  c.out(kCommand, 0x60);
  c.out(kCommand, 0x12);
  c.out(kData, 0x00);
  CHECK(c.command_result(0x20) == before);
  CHECK(c.resets == 0);
}

TEST_CASE("i8042 on a bus at its fixed ports", "[i8042]") {
  int resets = 0;
  petrel::Bus bus("pio");
  auto dev = std::make_shared<I8042>([&] { ++resets; });
  REQUIRE(bus.insert(dev, PETREL_PORT_I8042_DATA, I8042::kPortCount).ok());
  std::array<std::byte, 1> b{std::byte{0xfe}};
  REQUIRE(bus.write(PETREL_PORT_I8042_CMD, b));
  CHECK(resets == 1);
  REQUIRE(bus.write(PETREL_PORT_I8042_CMD - 1, b));
  CHECK(resets == 1);
}
