#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <catch2/catch.hpp>
#include <csignal>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "devices/serial_16550.h"

using petrel::Serial16550;
using petrel::UniqueFd;

namespace {

constexpr uint64_t kRbr = 0;
constexpr uint64_t kDll = 0;
constexpr uint64_t kIer = 1;
constexpr uint64_t kDlm = 1;
constexpr uint64_t kIir = 2;
constexpr uint64_t kFcr = 2;
constexpr uint64_t kLcr = 3;
constexpr uint64_t kMcr = 4;
constexpr uint64_t kLsr = 5;
constexpr uint64_t kMsr = 6;
constexpr uint64_t kScr = 7;

class FakeLine : public petrel::InterruptLine {
 public:
  void set_level(bool asserted) override { calls.push_back(asserted); }
  bool level() const { return !calls.empty() && calls.back(); }
  std::vector<bool> calls;
};

// A UART whose output goes into a non-blocking pipe the test reads from.
struct Uart {
  Uart() : line(std::make_shared<FakeLine>()) {
    std::array<int, 2> fds{};
    REQUIRE(::pipe2(fds.data(), O_NONBLOCK | O_CLOEXEC) == 0);
    out_read = UniqueFd(fds[0]);
    serial = std::make_unique<Serial16550>(line, UniqueFd(fds[1]));
  }

  uint8_t in(uint64_t offset) {
    std::array<std::byte, 1> b{std::byte{0x5a}};
    serial->read(offset, b);
    return std::to_integer<uint8_t>(b[0]);
  }
  void out(uint64_t offset, uint8_t value) {
    std::array<std::byte, 1> b{std::byte{value}};
    serial->write(offset, b);
  }
  size_t push(const std::string& s) {
    return serial->push_input(std::as_bytes(std::span(s.data(), s.size())));
  }
  std::string output() {
    std::string got;
    std::array<char, 256> buf{};
    ssize_t n = 0;
    while ((n = ::read(out_read.get(), buf.data(), buf.size())) > 0) {
      got.append(buf.data(), static_cast<size_t>(n));
    }
    return got;
  }

  std::shared_ptr<FakeLine> line;
  UniqueFd out_read;
  std::unique_ptr<Serial16550> serial;
};

}  // namespace

TEST_CASE("serial registers after reset", "[serial]") {
  Uart u;
  CHECK(u.in(kIer) == 0);
  CHECK(u.in(kIir) == 0x01);
  CHECK(u.in(kLcr) == 0);
  CHECK(u.in(kMcr) == 0);
  CHECK(u.in(kLsr) == 0x60);
  CHECK(u.in(kMsr) == 0xb0);
  u.out(kScr, 0xa5);
  CHECK(u.in(kScr) == 0xa5);
  u.out(kIer, 0xff);
  CHECK(u.in(kIer) == 0x0f);
  u.out(kIer, 0x00);
  u.out(kMcr, 0xff);
  CHECK(u.in(kMcr) == 0x1f);
}

TEST_CASE("serial LCR.DLAB switches offsets 0 and 1 to the divisor latch", "[serial]") {
  Uart u;
  u.out(kIer, 0x05);
  u.out(kLcr, 0x83);
  u.out(kDll, 0x01);
  u.out(kDlm, 0x02);
  CHECK(u.in(kDll) == 0x01);
  CHECK(u.in(kDlm) == 0x02);
  CHECK(u.in(kLcr) == 0x83);
  CHECK(u.output().empty());
  CHECK(u.serial->tx_bytes() == 0);

  u.out(kLcr, 0x03);
  CHECK(u.in(kIer) == 0x05);
  u.out(kRbr, 'x');
  CHECK(u.output() == "x");

  u.out(kLcr, 0x80);
  CHECK(u.in(kDll) == 0x01);
  CHECK(u.in(kDlm) == 0x02);
}

TEST_CASE("serial transmits THR bytes to the output fd", "[serial]") {
  Uart u;
  for (char c : std::string("hi\n")) {
    u.out(kRbr, static_cast<uint8_t>(c));
  }
  CHECK(u.output() == "hi\n");
  CHECK(u.serial->tx_bytes() == 3);
  CHECK(u.in(kLsr) == 0x60);

  SECTION("a wide write sends only its first byte") {
    std::array<std::byte, 4> wide{std::byte{'a'}, std::byte{'b'}, std::byte{'c'}, std::byte{'d'}};
    u.serial->write(kRbr, wide);
    CHECK(u.output() == "a");
  }
  SECTION("the reader going away does not crash or block") {
    // EPIPE instead of SIGPIPE, as the header asks of the process.
    auto old = std::signal(SIGPIPE, SIG_IGN);
    u.out_read.reset();
    u.out(kRbr, 'z');
    std::signal(SIGPIPE, old);
    CHECK(u.serial->tx_bytes() == 4);
  }
}

TEST_CASE("serial without an output fd or IRQ discards output", "[serial]") {
  Serial16550 serial(nullptr, UniqueFd());
  std::array<std::byte, 1> b{std::byte{0x02}};
  serial.write(kIer, b);
  b[0] = std::byte{'q'};
  serial.write(kRbr, b);
  CHECK(serial.tx_bytes() == 1);
  serial.read(kIir, b);
  CHECK(b[0] == std::byte{0x02});
}

TEST_CASE("serial receives pushed input through RBR and LSR.DR", "[serial]") {
  Uart u;
  CHECK((u.in(kLsr)&0x01) == 0);
  CHECK(u.push("ab") == 2);
  CHECK(u.serial->rx_bytes() == 2);
  CHECK(u.in(kLsr) == 0x61);
  CHECK(u.in(kRbr) == 'a');
  CHECK((u.in(kLsr)&0x01) == 0x01);
  CHECK(u.in(kRbr) == 'b');
  CHECK(u.in(kLsr) == 0x60);
  CHECK(u.in(kRbr) == 0);
}

TEST_CASE("serial input FIFO is bounded by kInputCapacity", "[serial]") {
  Uart u;
  constexpr size_t kCap = Serial16550::kInputCapacity;
  CHECK(u.serial->input_space() == kCap);
  std::vector<std::byte> big(kCap + 100);
  for (size_t i = 0; i < big.size(); ++i) {
    big[i] = std::byte{static_cast<uint8_t>(i * 7)};
  }
  CHECK(u.serial->push_input(big) == kCap);
  CHECK(u.serial->input_space() == 0);
  CHECK(u.push("x") == 0);
  CHECK(u.serial->rx_bytes() == kCap);

  CHECK(u.in(kRbr) == 0);
  CHECK(u.in(kRbr) == 7);
  CHECK(u.serial->input_space() == 2);
  CHECK(u.push("xyz") == 2);
  CHECK(u.serial->rx_bytes() == kCap + 2);
  for (size_t i = 2; i < kCap; ++i) {
    REQUIRE(u.in(kRbr) == static_cast<uint8_t>(i * 7));
  }
  CHECK(u.in(kRbr) == 'x');
  CHECK(u.in(kRbr) == 'y');
  CHECK((u.in(kLsr)&0x01) == 0);
}

TEST_CASE("serial THR-empty interrupt", "[serial]") {
  Uart u;
  CHECK(u.in(kIir) == 0x01);
  u.out(kIer, 0x02);
  CHECK(u.line->calls == std::vector<bool>{true});
  CHECK(u.in(kIir) == 0x02);
  // Reading IIR while it reports THRE clears it.
  CHECK(u.in(kIir) == 0x01);
  CHECK(u.line->calls == std::vector<bool>{true, false});

  u.out(kRbr, 'a');
  CHECK(u.line->calls == std::vector<bool>{true, false, true});
  u.out(kRbr, 'b');
  CHECK(u.line->calls.size() == 3);
  CHECK(u.in(kIir) == 0x02);
  CHECK_FALSE(u.line->level());

  u.out(kRbr, 'c');
  CHECK(u.line->level());
  u.out(kIer, 0x00);
  CHECK_FALSE(u.line->level());
  CHECK(u.in(kIir) == 0x01);
  u.out(kIer, 0x02);
  CHECK(u.line->level());
  CHECK(u.output() == "abc");
}

TEST_CASE("serial interrupt identification priorities", "[serial]") {
  Uart u;
  u.out(kFcr, 0x01);
  // Fill the receive FIFO, then overrun it through loopback: that leaves every source
  // pending at once (line status, data, THR empty, and modem status from the MCR change).
  std::vector<std::byte> fill(Serial16550::kInputCapacity, std::byte{'f'});
  REQUIRE(u.serial->push_input(fill) == fill.size());
  u.out(kMcr, 0x10);
  u.out(kRbr, 'L');
  u.out(kIer, 0x0f);
  CHECK(u.line->level());

  CHECK(u.in(kIir) == 0xc6);
  CHECK(u.in(kIir) == 0xc6);
  CHECK(u.in(kLsr) == 0x63);  // DR | OE | THRE | TEMT; reading clears OE
  CHECK(u.in(kIir) == 0xc4);
  u.out(kFcr, 0x03);
  CHECK(u.in(kIir) == 0xc2);
  CHECK(u.line->level());
  CHECK(u.in(kIir) == 0xc0);
  CHECK(u.line->level());
  CHECK(u.in(kMsr) == 0x0b);  // DCTS | DDSR | DDCD; CTS/DSR/RI/DCD follow MCR = 0
  CHECK(u.in(kIir) == 0xc1);
  CHECK_FALSE(u.line->level());
  CHECK(u.line->calls == std::vector<bool>{true, false});
}

TEST_CASE("serial data-available interrupt drives the IRQ line", "[serial]") {
  Uart u;
  u.push("12");
  CHECK(u.line->calls.empty());
  u.out(kIer, 0x01);
  CHECK(u.line->calls == std::vector<bool>{true});
  CHECK(u.in(kIir) == 0x04);
  CHECK(u.in(kRbr) == '1');
  CHECK(u.push("3") == 1);
  CHECK(u.line->calls.size() == 1);
  CHECK(u.in(kRbr) == '2');
  CHECK(u.in(kRbr) == '3');
  CHECK(u.line->calls == std::vector<bool>{true, false});
  u.push("4");
  CHECK(u.line->calls == std::vector<bool>{true, false, true});
}

TEST_CASE("serial loopback mode", "[serial]") {
  Uart u;
  u.out(kMcr, 0x10 | 0x0a);
  // Linux's autoconfig loopback check: RTS -> CTS and OUT2 -> DCD.
  CHECK((u.in(kMsr)&0xf0) == 0x90);
  u.out(kMcr, 0x10 | 0x05);
  CHECK((u.in(kMsr)&0xf0) == 0x60);
  u.out(kMcr, 0x10);
  // RI fell (OUT1 cleared): trailing edge.
  CHECK((u.in(kMsr)&0x04) == 0x04);

  u.out(kRbr, 'L');
  CHECK(u.output().empty());
  CHECK(u.serial->tx_bytes() == 0);
  CHECK(u.in(kLsr) == 0x61);
  CHECK(u.in(kRbr) == 'L');

  u.out(kMcr, 0x00);
  CHECK(u.in(kMsr) == 0xbb);  // DCD | DSR | CTS, each with its delta bit
  CHECK(u.in(kMsr) == 0xb0);
  u.out(kRbr, 'T');
  CHECK(u.output() == "T");
}

TEST_CASE("serial FCR enables the FIFOs and clears the receiver", "[serial]") {
  Uart u;
  u.push("abc");
  u.out(kFcr, 0x01);
  // Leaving 16450 mode clears the FIFOs.
  CHECK(u.serial->input_space() == Serial16550::kInputCapacity);
  CHECK((u.in(kIir)&0xc0) == 0xc0);
  CHECK(u.push("de") == 2);
  u.out(kFcr, 0x01);
  CHECK(u.in(kLsr) == 0x61);
  u.out(kFcr, 0x03);
  CHECK(u.in(kLsr) == 0x60);
  CHECK(u.serial->input_space() == Serial16550::kInputCapacity);
  u.push("f");
  u.out(kFcr, 0x00);
  CHECK((u.in(kIir)&0xc0) == 0);
  CHECK(u.in(kLsr) == 0x60);
}

TEST_CASE("serial ignores offsets past its registers", "[serial]") {
  Uart u;
  u.out(8, 'x');
  u.out(100, 'y');
  CHECK(u.output().empty());
  CHECK(u.in(8) == 0);
  std::array<std::byte, 4> wide{};
  wide.fill(std::byte{0x77});
  u.serial->read(kLsr, wide);
  CHECK(wide ==
        std::array<std::byte, 4>{std::byte{0x60}, std::byte{0}, std::byte{0}, std::byte{0}});
  u.serial->read(kLsr, std::span<std::byte>());
}

TEST_CASE("serial input from another thread arrives in order", "[serial]") {
  Uart u;
  constexpr size_t kTotal = 20000;
  std::thread producer([&] {
    size_t sent = 0;
    while (sent < kTotal) {
      std::array<std::byte, 64> chunk{};
      size_t n = std::min(chunk.size(), kTotal - sent);
      for (size_t i = 0; i < n; ++i) {
        chunk[i] = std::byte{static_cast<uint8_t>((sent + i) % 251)};
      }
      size_t accepted = u.serial->push_input(std::span(chunk).first(n));
      sent += accepted;
      if (accepted == 0) {
        std::this_thread::yield();
      }
    }
  });
  size_t got = 0;
  bool in_order = true;
  u.out(kIer, 0x01);
  while (got < kTotal) {
    if ((u.in(kLsr)&0x01) == 0) {
      std::this_thread::yield();
      continue;
    }
    uint8_t byte = u.in(kRbr);
    in_order = in_order && byte == got % 251;
    ++got;
  }
  producer.join();
  CHECK(in_order);
  CHECK(u.serial->rx_bytes() == kTotal);
  CHECK_FALSE(u.line->level());
}
