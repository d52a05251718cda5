#include <array>
#include <atomic>
#include <catch2/catch.hpp>
#include <cstdint>
#include <memory>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "devices/bus.h"
#include "devices/i8042.h"
#include "vmm/guest_abi.h"

using petrel::I8042;
using Bytes = std::vector<uint8_t>;

namespace {

constexpr uint64_t kData = 0;
constexpr uint64_t kCommand = 4;
constexpr uint8_t kOutputFull = 0x01;

// Records every level the device drives; set_level may come from any thread.
class FakeLine : public petrel::InterruptLine {
 public:
  void set_level(bool asserted) override {
    std::lock_guard lock(mutex_);
    levels_.push_back(asserted);
  }
  std::vector<bool> take() {
    std::lock_guard lock(mutex_);
    return std::exchange(levels_, {});
  }
  bool level() {
    std::lock_guard lock(mutex_);
    return !levels_.empty() && levels_.back();
  }

 private:
  std::mutex mutex_;
  std::vector<bool> levels_;
};

struct Controller {
  Controller() : i8042([this] { ++resets; }) {}
  explicit Controller(std::shared_ptr<petrel::InterruptLine> irq)
      : i8042([this] { ++resets; }, std::move(irq)) {}

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
  // Reads the output buffer until it is empty.
  Bytes drain() {
    Bytes out;
    while ((in(kCommand)&kOutputFull) != 0) {
      out.push_back(in(kData));
      REQUIRE(out.size() <= 4 * I8042::kKeyboardQueueCapacity);
    }
    return out;
  }
  // Sends bytes to the keyboard and returns everything that came back.
  Bytes keyboard(std::initializer_list<uint8_t> bytes) {
    for (uint8_t b : bytes) {
      out(kData, b);
    }
    return drain();
  }
  void set_command_byte(uint8_t value) {
    out(kCommand, 0x60);
    out(kData, value);
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

// ---- The attached keyboard ----

namespace {

constexpr uint8_t kCtrKbdInt = 0x01;
constexpr uint8_t kCtrSys = 0x04;
constexpr uint8_t kCtrXlate = 0x40;

const Bytes kCadSet1 = {0x1d, 0x38, 0xe0, 0x53, 0xe0, 0xd3, 0xb8, 0x9d};
const Bytes kCadSet2 = {0x14, 0x11, 0xe0, 0x71, 0xe0, 0xf0, 0x71, 0xf0, 0x11, 0xf0, 0x14};
const Bytes kCadSet3 = {0x11, 0x19, 0x64, 0xf0, 0x64, 0xf0, 0x19, 0xf0, 0x11};

}  // namespace

TEST_CASE("i8042 keyboard answers atkbd's probe commands", "[i8042]") {
  Controller c(nullptr);
  SECTION("raw (XLATE clear)") {
    c.set_command_byte(kCtrSys);
    CHECK(c.keyboard({0xf2}) == Bytes{0xfa, 0xab, 0x83});
    CHECK(c.keyboard({0xff}) == Bytes{0xfa, 0xaa});
    CHECK(c.keyboard({0xf5}) == Bytes{0xfa});
    CHECK(c.keyboard({0xf6}) == Bytes{0xfa});
    CHECK(c.keyboard({0xf4}) == Bytes{0xfa});
    CHECK(c.keyboard({0xed}) == Bytes{0xfa});
    CHECK(c.keyboard({0x07}) == Bytes{0xfa});  // LEDs: not a command
    CHECK(c.keyboard({0xf3, 0x00}) == Bytes{0xfa, 0xfa});
    CHECK(c.keyboard({0xf0, 0x00}) == Bytes{0xfa, 0xfa, 0x02});
    CHECK(c.keyboard({0xf0, 0x03}) == Bytes{0xfa, 0xfa});
    CHECK(c.keyboard({0xf0, 0x00}) == Bytes{0xfa, 0xfa, 0x03});
    CHECK(c.keyboard({0xf0, 0x09}) == Bytes{0xfa, 0xfa});  // no such set: unchanged
    CHECK(c.keyboard({0xf0, 0x00}) == Bytes{0xfa, 0xfa, 0x03});
    CHECK(c.keyboard({0xff}) == Bytes{0xfa, 0xaa});  // reset: back to set 2
    CHECK(c.keyboard({0xf0, 0x00}) == Bytes{0xfa, 0xfa, 0x02});
    CHECK(c.keyboard({0xee}) == Bytes{0xee});
    CHECK(c.keyboard({0x00}) == Bytes{0xfa});
    CHECK(c.keyboard({0xe8}) == Bytes{0xfa});
  }
  SECTION("translated (XLATE set, the initial command byte)") {
    CHECK((c.command_result(0x20) & kCtrXlate) != 0);
    CHECK(c.keyboard({0xf2}) == Bytes{0xfa, 0xab, 0x41});
    CHECK(c.keyboard({0xff}) == Bytes{0xfa, 0xaa});
    CHECK(c.keyboard({0xf0, 0x00}) == Bytes{0xfa, 0xfa, 0x41});
  }
  CHECK(c.resets == 0);
}

TEST_CASE("i8042 without a keyboard drops keyboard bytes and types nothing", "[i8042]") {
  Controller c;
  CHECK(c.keyboard({0xf2, 0xff}).empty());
  CHECK_FALSE(c.i8042.inject_ctrl_alt_del());
  CHECK(c.drain().empty());
}

TEST_CASE("i8042 bytes for the AUX port are dropped", "[i8042]") {
  Controller c(nullptr);
  c.out(kCommand, 0xd4);
  CHECK(c.keyboard({0xf2}).empty());
  CHECK(c.keyboard({0xf2}) == Bytes{0xfa, 0xab, 0x41});  // the next one is the keyboard's
}

TEST_CASE("i8042 Ctrl-Alt-Del in the scancode set the guest reads", "[i8042]") {
  Controller c(nullptr);
  SECTION("set 2 translated to set 1 (the default)") {
    REQUIRE(c.i8042.inject_ctrl_alt_del());
    CHECK(c.drain() == kCadSet1);
  }
  SECTION("set 2 raw") {
    c.set_command_byte(kCtrSys);
    REQUIRE(c.i8042.inject_ctrl_alt_del());
    CHECK(c.drain() == kCadSet2);
  }
  SECTION("set 1 raw") {
    c.set_command_byte(kCtrSys);
    REQUIRE(c.keyboard({0xf0, 0x01}) == Bytes{0xfa, 0xfa});
    REQUIRE(c.i8042.inject_ctrl_alt_del());
    CHECK(c.drain() == kCadSet1);
  }
  SECTION("set 3 raw") {
    c.set_command_byte(kCtrSys);
    REQUIRE(c.keyboard({0xf0, 0x03}) == Bytes{0xfa, 0xfa});
    REQUIRE(c.i8042.inject_ctrl_alt_del());
    CHECK(c.drain() == kCadSet3);
  }
  CHECK(c.resets == 0);
}

TEST_CASE("i8042 keyboard scanning and the keyboard interface gate key codes", "[i8042]") {
  Controller c(nullptr);
  SECTION("scanning disabled by 0xf5 loses keys; 0xf4 enables it") {
    REQUIRE(c.keyboard({0xf5}) == Bytes{0xfa});
    CHECK_FALSE(c.i8042.inject_ctrl_alt_del());
    CHECK(c.drain().empty());
    REQUIRE(c.keyboard({0xf4}) == Bytes{0xfa});
    CHECK(c.i8042.inject_ctrl_alt_del());
    CHECK(c.drain() == kCadSet1);
  }
  SECTION("a reset enables scanning") {
    REQUIRE(c.keyboard({0xf5}) == Bytes{0xfa});
    REQUIRE(c.keyboard({0xff}) == Bytes{0xfa, 0xaa});
    CHECK(c.i8042.inject_ctrl_alt_del());
    CHECK(c.drain() == kCadSet1);
  }
  SECTION("a disabled keyboard interface holds the codes until enabled") {
    c.out(kCommand, 0xad);
    REQUIRE(c.i8042.inject_ctrl_alt_del());
    CHECK((c.in(kCommand)&kOutputFull) == 0);
    // Controller replies still come through.
    CHECK(c.command_result(0x20) == (kCtrKbdInt | kCtrSys | kCtrXlate | 0x10));
    c.out(kCommand, 0xae);
    CHECK(c.drain() == kCadSet1);
  }
}

TEST_CASE("i8042 keyboard queue is bounded and sequences are never cut", "[i8042]") {
  Controller c(nullptr);
  c.set_command_byte(kCtrSys);  // raw set 2: 11 bytes a sequence
  size_t accepted = 0;
  while (c.i8042.inject_ctrl_alt_del()) {
    ++accepted;
    REQUIRE(accepted <= I8042::kKeyboardQueueCapacity);
  }
  CHECK(accepted * kCadSet2.size() >= I8042::kKeyboardQueueCapacity - kCadSet2.size());
  Bytes all = c.drain();
  REQUIRE(all.size() == accepted * kCadSet2.size());
  for (size_t i = 0; i < accepted; ++i) {
    CHECK(Bytes(all.begin() + static_cast<long>(i * kCadSet2.size()),
                all.begin() + static_cast<long>((i + 1) * kCadSet2.size())) == kCadSet2);
  }
  // Drained, it takes keys again.
  CHECK(c.i8042.inject_ctrl_alt_del());
  CHECK(c.drain() == kCadSet2);
}

TEST_CASE("i8042 keyboard IRQ follows the output buffer, one edge per byte", "[i8042]") {
  auto line = std::make_shared<FakeLine>();
  Controller c(line);
  SECTION("keyboard bytes raise the line; each read that leaves more pulses it") {
    c.out(kData, 0xf2);  // fa ab 41
    CHECK(line->take() == std::vector<bool>{true});
    CHECK(c.in(kData) == 0xfa);
    CHECK(line->take() == std::vector<bool>{false, true});
    CHECK(c.in(kData) == 0xab);
    CHECK(line->take() == std::vector<bool>{false, true});
    CHECK(c.in(kData) == 0x41);
    CHECK(line->take() == std::vector<bool>{false});
    // Reading an empty buffer changes nothing.
    CHECK(c.in(kData) == 0x41);
    CHECK(line->take().empty());
  }
  SECTION("Ctrl-Alt-Del asserts the line from the injecting thread") {
    REQUIRE(c.i8042.inject_ctrl_alt_del());
    CHECK(line->level());
    CHECK(c.drain() == kCadSet1);
    CHECK_FALSE(line->level());
  }
  SECTION("no interrupt while the command byte disables it") {
    c.set_command_byte(kCtrSys | kCtrXlate);
    line->take();
    REQUIRE(c.i8042.inject_ctrl_alt_del());
    CHECK_FALSE(line->level());
    CHECK(c.in(kData) == kCadSet1[0]);
    // Enabling it with bytes waiting asserts the line.
    c.set_command_byte(kCtrKbdInt | kCtrSys | kCtrXlate);
    CHECK(line->level());
    c.drain();
    CHECK_FALSE(line->level());
  }
}

TEST_CASE("i8042 Ctrl-Alt-Del from another thread while the guest reads", "[i8042]") {
  auto line = std::make_shared<FakeLine>();
  Controller c(line);
  std::atomic<bool> done{false};
  std::atomic<size_t> accepted{0};
  std::thread injector([&] {
    for (int i = 0; i < 200; ++i) {
      if (c.i8042.inject_ctrl_alt_del()) {
        ++accepted;
      }
      std::this_thread::yield();
    }
    done = true;
  });
  Bytes got;
  while (!done.load()) {
    while ((c.in(kCommand)&kOutputFull) != 0) {
      got.push_back(c.in(kData));
    }
  }
  injector.join();
  Bytes rest = c.drain();
  got.insert(got.end(), rest.begin(), rest.end());
  REQUIRE(accepted.load() > 0);
  REQUIRE(got.size() == accepted.load() * kCadSet1.size());
  for (size_t i = 0; i < got.size(); ++i) {
    CHECK(got[i] == kCadSet1[i % kCadSet1.size()]);
  }
  CHECK_FALSE(line->level());
}

TEST_CASE("i8042 replies a guest never reads do not pile up", "[i8042]") {
  Controller c(nullptr);
  for (int i = 0; i < 100000; ++i) {
    c.out(kCommand, 0x20);
    c.out(kData, 0xf2);
  }
  Bytes got = c.drain();  // bounded inside drain()
  CHECK(got.size() <= 2 * I8042::kKeyboardQueueCapacity);
  CHECK_FALSE(got.empty());
}

TEST_CASE("i8042 survives random guest port traffic", "[i8042]") {
  auto line = std::make_shared<FakeLine>();
  Controller c(line);
  std::mt19937 rng(1234);
  for (int i = 0; i < 200000; ++i) {
    const uint32_t r = rng();
    const uint64_t offset = (r >> 8) % 5;
    if ((r & 1) != 0) {
      c.out(offset, static_cast<uint8_t>(r >> 16));
    } else {
      c.in(offset);
    }
    if (r % 97 == 0) {
      c.i8042.inject_ctrl_alt_del();
    }
  }
  // Whatever state it is in, the buffer drains, and the line ends deasserted.
  c.out(kCommand, 0xae);
  c.drain();
  CHECK_FALSE(line->level());
  CHECK(c.resets > 0);  // random 0xfe/0xd1 writes pulse reset: the callback is reached
}
