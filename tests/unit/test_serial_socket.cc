// SerialSocket against a real Serial16550 and real Unix sockets; the test thread runs the
// event loop itself (run_until), so no KVM and no extra threads are involved.
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <array>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstring>
#include <functional>
#include <memory>
#include <string>

#include "scratch_dir.h"
#include "vmm/serial_socket.h"

using petrel::SerialSocket;
using petrel::UniqueFd;
using petrel::testing::ScratchDir;

namespace {

constexpr uint64_t kThr = 0;
constexpr uint64_t kLsr = 5;
constexpr uint8_t kLsrDataReady = 0x01;

// Runs `io` until `done()` holds; false after a few seconds.
bool run_until(boost::asio::io_context& io, const std::function<bool()>& done) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) {
      return false;
    }
    io.run_one_for(std::chrono::milliseconds(5));
  }
  return true;
}

sockaddr_un address_of(const std::filesystem::path& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.native().size());
  return addr;
}

UniqueFd connect_client(const std::filesystem::path& path) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  REQUIRE(fd.valid());
  sockaddr_un addr = address_of(path);
  REQUIRE(::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0);
  return fd;
}

// Appends what `fd` has ready to `out`; false once the peer closed the connection.
bool read_ready(int fd, std::string& out) {
  std::array<char, 4096> buf{};
  while (true) {
    ssize_t n = ::recv(fd, buf.data(), buf.size(), MSG_DONTWAIT);
    if (n > 0) {
      out.append(buf.data(), static_cast<size_t>(n));
      continue;
    }
    return n != 0;
  }
}

void send_all(int fd, const std::string& text) {
  REQUIRE(::send(fd, text.data(), text.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(text.size()));
}

// A UART on a SerialSocket at <scratch>/console.sock, as Vm sets them up.
struct Console {
  Console() : path(dir.path() / "console.sock") {
    auto created = SerialSocket::create(io, path);
    REQUIRE(created.ok());
    socket = std::move(created).value();
    serial = std::make_shared<petrel::Serial16550>(nullptr, socket->uart_output());
    socket->start(serial);
  }

  // What the guest does: write `text` to THR.
  void guest_writes(const std::string& text) {
    for (char ch : text) {
      std::array<std::byte, 1> b{std::byte(static_cast<uint8_t>(ch))};
      serial->write(kThr, b);
    }
  }
  uint8_t guest_reads(uint64_t offset) {
    std::array<std::byte, 1> b{};
    serial->read(offset, b);
    return std::to_integer<uint8_t>(b[0]);
  }
  // What the guest does: read RBR while LSR says data is ready.
  std::string guest_drains() {
    std::string out;
    while ((guest_reads(kLsr) & kLsrDataReady) != 0) {
      out += static_cast<char>(guest_reads(kThr));
    }
    return out;
  }

  ScratchDir dir;
  std::filesystem::path path;
  boost::asio::io_context io;
  std::unique_ptr<SerialSocket> socket;
  std::shared_ptr<petrel::Serial16550> serial;
};

}  // namespace

TEST_CASE("the console socket is a 0600 socket file, removed with the SerialSocket", "[serial]") {
  Console console;
  struct stat st {};
  REQUIRE(::lstat(console.path.c_str(), &st) == 0);
  CHECK(S_ISSOCK(st.st_mode));
  CHECK((st.st_mode & 0777) == 0600);
  CHECK_FALSE(console.socket->uart_output().valid());  // handed out once, to the UART
  console.socket.reset();
  CHECK(::lstat(console.path.c_str(), &st) != 0);
}

TEST_CASE("a console client gets the guest output and feeds its input", "[serial]") {
  Console console;
  console.guest_writes("before any client\n");  // held for the first client
  UniqueFd client = connect_client(console.path);
  std::string got;
  CHECK(run_until(console.io, [&] { return read_ready(client.get(), got) && got.size() >= 18; }));
  CHECK(got == "before any client\n");

  console.guest_writes("live\n");
  CHECK(run_until(console.io, [&] { return read_ready(client.get(), got) && got.size() >= 23; }));
  CHECK(got == "before any client\nlive\n");

  send_all(client.get(), "typed");
  CHECK(run_until(console.io, [&] { return console.serial->rx_bytes() == 5; }));
  CHECK(console.guest_drains() == "typed");
}

TEST_CASE("output not yet sent reaches the client when the SerialSocket goes away", "[serial]") {
  Console console;
  UniqueFd client = connect_client(console.path);
  console.guest_writes("first ");
  std::string got;
  CHECK(run_until(console.io, [&] { return read_ready(client.get(), got) && got == "first "; }));
  // The guest's last words, then the VM stops before the event loop sees them.
  console.guest_writes(std::string(10000, 'w') + "\nbye\n");
  console.socket.reset();
  while (read_ready(client.get(), got)) {  // until the end of file
  }
  CHECK(got == "first " + std::string(10000, 'w') + "\nbye\n");
}

TEST_CASE("input beyond the UART FIFO waits until the guest reads", "[serial]") {
  Console console;
  UniqueFd client = connect_client(console.path);
  std::string sent;
  for (size_t i = 0; sent.size() < petrel::Serial16550::kInputCapacity + 3000; ++i) {
    sent += static_cast<char>('a' + i % 26);
  }
  send_all(client.get(), sent);
  std::string received;
  CHECK(run_until(console.io, [&] {
    received += console.guest_drains();
    return received.size() >= sent.size();
  }));
  CHECK(received == sent);
}

TEST_CASE("a second console client is refused while one is connected", "[serial]") {
  Console console;
  UniqueFd first = connect_client(console.path);
  std::string first_got;
  console.guest_writes("x");
  CHECK(run_until(console.io,
                  [&] { return read_ready(first.get(), first_got) && !first_got.empty(); }));

  UniqueFd second = connect_client(console.path);
  std::string second_got;
  CHECK(run_until(console.io, [&] { return !read_ready(second.get(), second_got); }));
  CHECK(second_got.empty());

  console.guest_writes("y");
  CHECK(run_until(console.io,
                  [&] { return read_ready(first.get(), first_got) && first_got == "xy"; }));

  // Once the first client has left, output with nobody connected is discarded and the next
  // client is accepted.
  first.reset();
  console.io.run_for(std::chrono::milliseconds(100));  // notices the end of input
  console.guest_writes("dropped");
  console.io.run_for(std::chrono::milliseconds(100));  // drains the pipe
  UniqueFd third = connect_client(console.path);
  console.io.run_for(std::chrono::milliseconds(100));  // accepts it
  console.guest_writes("third");
  std::string third_got;
  CHECK(run_until(console.io,
                  [&] { return read_ready(third.get(), third_got) && third_got.size() >= 5; }));
  CHECK(third_got == "third");
}

TEST_CASE("a full UART pipe drops output instead of blocking the guest", "[serial]") {
  Console console;
  UniqueFd client = connect_client(console.path);
  // Nobody runs the event loop: the pipe fills and the UART must drop the rest.
  console.guest_writes(std::string(256 * 1024, 'o'));
  CHECK(console.serial->tx_bytes() == 256 * 1024);
  std::string got;
  CHECK(run_until(console.io, [&] { return read_ready(client.get(), got) && got.size() >= 4096; }));
  console.io.run_for(std::chrono::milliseconds(50));
  read_ready(client.get(), got);
  CHECK(got.size() < 256 * 1024);
  CHECK(got.size() >= 4096);
}

TEST_CASE("a stale console socket is replaced; other files and live sockets are refused",
          "[serial]") {
  ScratchDir dir;
  boost::asio::io_context io;
  std::filesystem::path path = dir.path() / "console.sock";
  {
    UniqueFd stale(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un addr = address_of(path);
    REQUIRE(::bind(stale.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0);
  }
  auto replaced = SerialSocket::create(io, path);
  REQUIRE(replaced.ok());

  auto live = SerialSocket::create(io, path);
  REQUIRE_FALSE(live.ok());
  CHECK(live.error().to_string() ==
        path.string() + ": a process is already listening on this socket");
  replaced->reset();
  CHECK_FALSE(std::filesystem::exists(path));

  std::filesystem::path regular = dir.write("console.log", "keep me");
  auto refused = SerialSocket::create(io, regular);
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().to_string() == regular.string() + ": exists and is not a socket");
  CHECK(std::filesystem::is_regular_file(regular));
}
