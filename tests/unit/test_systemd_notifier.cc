// SystemdNotifier against a real datagram socket standing in for systemd's NOTIFY_SOCKET:
// which state events become READY=1, STATUS= and STOPPING=1, that READY and STOPPING go out
// once, the watchdog period from WATCHDOG_USEC, and that nothing is sent without the socket.
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/io_context.hpp>

#include "scratch_dir.h"
#include "vmm/systemd_notifier.h"

using petrel::SystemdNotifier;
using petrel::VmEvent;

namespace {

// A bound SOCK_DGRAM socket in a scratch directory, exported as NOTIFY_SOCKET while it lives.
class FakeSystemd {
 public:
  FakeSystemd() {
    path_ = (dir_.path() / "notify").string();
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    REQUIRE(fd_ >= 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    path_.copy(addr.sun_path, path_.size());
    REQUIRE(::bind(fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0);
    ::setenv("NOTIFY_SOCKET", path_.c_str(), 1);
  }
  ~FakeSystemd() {
    ::unsetenv("NOTIFY_SOCKET");
    ::unsetenv("WATCHDOG_USEC");
    ::close(fd_);
  }
  std::vector<std::string> take() {
    std::vector<std::string> got;
    char buf[4096];
    ssize_t n;
    while ((n = ::recv(fd_, buf, sizeof(buf), 0)) >= 0) {
      got.emplace_back(buf, static_cast<size_t>(n));
    }
    return got;
  }

 private:
  petrel::testing::ScratchDir dir_;
  std::string path_;
  int fd_ = -1;
};

VmEvent state_event(const std::string& from, const std::string& to, const std::string& action) {
  VmEvent e;
  e.type = "state";
  e.data = {{"from", from}, {"to", to}, {"action", action}};
  return e;
}

}  // namespace

TEST_CASE("systemd notifier: READY once at running, STATUS per state, STOPPING once", "[systemd]") {
  FakeSystemd systemd;
  boost::asio::io_context io;
  SystemdNotifier notifier(io, "vm1");
  REQUIRE(notifier.active());
  CHECK_FALSE(notifier.watchdog_interval());

  VmEvent other;
  other.type = "reset";
  notifier.on_event(other);
  CHECK(systemd.take().empty());

  notifier.on_event(state_event("created", "running", "start"));
  auto got = systemd.take();
  REQUIRE(got.size() == 1);
  CHECK(got[0] ==
        "READY=1\nSTATUS=VM 'vm1' running (start)\nMAINPID=" + std::to_string(::getpid()));

  notifier.on_event(state_event("running", "paused", "pause"));
  notifier.on_event(state_event("paused", "running", "resume"));
  got = systemd.take();
  CHECK(got == std::vector<std::string>{"STATUS=VM 'vm1' paused (pause)",
                                        "STATUS=VM 'vm1' running (resume)"});

  notifier.on_event(state_event("running", "shutting-down", "shutdown"));
  notifier.on_event(state_event("shutting-down", "shut-off", "guest-stopped"));
  got = systemd.take();
  CHECK(got == std::vector<std::string>{"STOPPING=1\nSTATUS=VM 'vm1' shutting-down (shutdown)",
                                        "STATUS=VM 'vm1' shut-off (guest-stopped)"});
}

TEST_CASE("systemd notifier: WATCHDOG=1 every half WATCHDOG_USEC on the loop", "[systemd]") {
  FakeSystemd systemd;
  ::setenv("WATCHDOG_USEC", "100000", 1);
  boost::asio::io_context io;
  SystemdNotifier notifier(io, "vm1");
  REQUIRE(notifier.watchdog_interval() == std::chrono::microseconds(100000));
  std::vector<std::string> got;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (got.size() < 3 && std::chrono::steady_clock::now() < deadline) {
    io.run_for(std::chrono::milliseconds(50));
    for (auto& m : systemd.take()) {
      got.push_back(std::move(m));
    }
  }
  CHECK(got.size() >= 3);
  for (const auto& m : got) {
    CHECK(m == "WATCHDOG=1");
  }
  notifier.close();
  io.run_for(std::chrono::milliseconds(120));
  CHECK(systemd.take().empty());
}

TEST_CASE("systemd notifier: inactive without NOTIFY_SOCKET", "[systemd]") {
  ::unsetenv("NOTIFY_SOCKET");
  boost::asio::io_context io;
  SystemdNotifier notifier(io, "vm1");
  CHECK_FALSE(notifier.active());
  notifier.ready("x");  // a no-op, not an error
  notifier.on_event(state_event("created", "running", "start"));
}
