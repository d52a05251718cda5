// petrel under a service manager, with the test playing systemd: a NOTIFY_SOCKET datagram
// socket that collects READY/STATUS/STOPPING/WATCHDOG (sd_notify(3)), a listening API socket
// handed over as fd 3 with LISTEN_FDS/LISTEN_PID (sd_listen_fds(3)), SIGTERM/SIGINT to a guest
// that shuts down (kbd_shutdown) and to one that ignores it (kbd_ignore), and a stderr that
// JOURNAL_STREAM names as the journal.
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "api_harness.h"
#include "scratch_dir.h"

using Catch::Matchers::Contains;
using petrel::test::BackgroundProcess;
using petrel::test::ScratchDir;
using petrel::test::SpawnExtras;

namespace {

constexpr auto kWait = std::chrono::seconds(30);

sockaddr_un unix_address(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  REQUIRE(path.size() < sizeof(addr.sun_path));
  path.copy(addr.sun_path, path.size());
  return addr;
}

// systemd's end of NOTIFY_SOCKET: every datagram petrel sends, in order.
class NotifySocket {
 public:
  explicit NotifySocket(std::string path) : path_(std::move(path)) {
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    REQUIRE(fd_ >= 0);
    const sockaddr_un addr = unix_address(path_);
    REQUIRE(::bind(fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0);
  }
  ~NotifySocket() { ::close(fd_); }
  NotifySocket(const NotifySocket&) = delete;
  NotifySocket& operator=(const NotifySocket&) = delete;

  const std::string& path() const { return path_; }

  // Waits until `count` messages containing `text` arrived; the first of them ("" on timeout).
  std::string wait_for(const std::string& text, size_t count = 1,
                       std::chrono::seconds timeout = kWait) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      drain();
      std::vector<std::string> hits;
      for (const auto& m : messages_) {
        if (m.find(text) != std::string::npos) {
          hits.push_back(m);
        }
      }
      if (hits.size() >= count) {
        return hits.front();
      }
      if (std::chrono::steady_clock::now() > deadline) {
        return "";
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }

  std::vector<std::string> messages() {
    drain();
    return messages_;
  }

 private:
  void drain() {
    char buf[4096];
    for (;;) {
      const ssize_t n = ::recv(fd_, buf, sizeof(buf), 0);
      if (n < 0) {
        return;
      }
      messages_.emplace_back(buf, static_cast<size_t>(n));
    }
  }

  std::string path_;
  int fd_ = -1;
  std::vector<std::string> messages_;
};

std::string joined(const std::vector<std::string>& messages) {
  std::string out;
  for (const auto& m : messages) {
    out += "[" + m + "]\n";
  }
  return out;
}

std::unique_ptr<BackgroundProcess> start_petrel(const ScratchDir& dir, const std::string& guest,
                                                std::vector<std::string> extra,
                                                const SpawnExtras& extras) {
  std::vector<std::string> argv{petrel::test::petrel_binary(), "run", "--kernel",
                                petrel::test::guest_image(guest)};
  argv.insert(argv.end(), extra.begin(), extra.end());
  return std::make_unique<BackgroundProcess>(argv, dir.path + "/out.txt", dir.path + "/err.txt",
                                             extras);
}

}  // namespace

TEST_CASE(
    "systemd: READY, STATUS and STOPPING reach NOTIFY_SOCKET; SIGTERM shuts the guest "
    "down and petrel exits 0",
    "[systemd]") {
  ScratchDir dir;
  NotifySocket notify(dir.path + "/notify.sock");
  auto petrel = start_petrel(dir, "kbd_shutdown", {"--name", "sd1"},
                             {.env = {"NOTIFY_SOCKET=" + notify.path()}});
  REQUIRE(petrel->wait_for_line("waiting for ctrl-alt-del", kWait));
  const std::string ready = notify.wait_for("READY=1");
  INFO("messages:\n" << joined(notify.messages()) << "log:\n" << petrel->err());
  REQUIRE_FALSE(ready.empty());
  CHECK_THAT(ready, Contains("STATUS=VM 'sd1' running (start)"));
  CHECK_THAT(ready, Contains("MAINPID=" + std::to_string(petrel->pid())));

  REQUIRE(::kill(petrel->pid(), SIGTERM) == 0);
  CHECK(petrel->wait_exit(kWait) == 0);
  CHECK_THAT(petrel->out(), Contains("ctrl-alt-del received"));
  CHECK_THAT(petrel->err(), Contains("SIGTERM: asking the guest to shut down"));
  const std::string stopping = notify.wait_for("STOPPING=1");
  CHECK_THAT(stopping, Contains("STATUS=VM 'sd1' shutting-down (shutdown)"));
  CHECK_FALSE(notify.wait_for("STATUS=VM 'sd1' ended:").empty());
  CHECK_THAT(notify.messages().back(), Contains("exit status 0"));
  CHECK(notify.wait_for("READY=1", 2, std::chrono::seconds(0)).empty());  // only once
}

TEST_CASE("systemd: a guest that ignores SIGTERM's shutdown is stopped hard after the timeout",
          "[systemd]") {
  ScratchDir dir;
  auto petrel = start_petrel(dir, "kbd_ignore", {"--shutdown-timeout", "1s"}, {});
  REQUIRE(petrel->wait_for_line("ignoring ctrl-alt-del", kWait));
  const auto asked = std::chrono::steady_clock::now();
  REQUIRE(::kill(petrel->pid(), SIGTERM) == 0);
  const auto status = petrel->wait_exit(kWait);
  INFO("log:\n" << petrel->err());
  CHECK(status == 128 + SIGTERM);
  CHECK(std::chrono::steady_clock::now() - asked >= std::chrono::seconds(1));
  CHECK_THAT(petrel->err(), Contains("did not shut down within 1000 ms of SIGTERM; stopped hard"));
}

TEST_CASE("systemd: a second SIGINT stops the guest at once", "[systemd]") {
  ScratchDir dir;
  auto petrel = start_petrel(dir, "kbd_ignore", {"--shutdown-timeout", "60s"}, {});
  REQUIRE(petrel->wait_for_line("ignoring ctrl-alt-del", kWait));
  REQUIRE(::kill(petrel->pid(), SIGINT) == 0);
  REQUIRE(petrel->wait_for_log("SIGINT: asking the guest to shut down", kWait));
  CHECK(petrel->running());
  const auto second = std::chrono::steady_clock::now();
  REQUIRE(::kill(petrel->pid(), SIGINT) == 0);
  const auto status = petrel->wait_exit(kWait);
  INFO("log:\n" << petrel->err());
  CHECK(status == 128 + SIGINT);
  CHECK(std::chrono::steady_clock::now() - second < std::chrono::seconds(10));
  CHECK_THAT(petrel->err(), Contains("stopped by signal 2 (SIGINT)"));
}

TEST_CASE("systemd: the API socket comes from socket activation", "[systemd]") {
  ScratchDir dir;
  const std::string path = dir.path + "/api.sock";
  const int listener = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(listener >= 0);
  const sockaddr_un addr = unix_address(path);
  REQUIRE(::bind(listener, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0);
  REQUIRE(::listen(listener, 16) == 0);
  NotifySocket notify(dir.path + "/notify.sock");
  // No --api-socket: the socket systemd passes is the API.
  auto petrel = start_petrel(dir, "kbd_shutdown", {"--name", "sd2"},
                             {.env = {"LISTEN_FDS=1", "NOTIFY_SOCKET=" + notify.path()},
                              .fd3 = listener,
                              .listen_pid = true});
  ::close(listener);
  REQUIRE(petrel->wait_for_line("waiting for ctrl-alt-del", kWait));
  INFO("log:\n" << petrel->err());
  REQUIRE_FALSE(notify.wait_for("READY=1").empty());
  auto reply = petrel::test::curl_api(path, "GET", "/v1/vm");
  REQUIRE(reply.status == 200);
  CHECK(reply.json()["name"] == "sd2");
  CHECK_THAT(petrel->err(), Contains("(socket from systemd)"));
  CHECK_THAT(petrel->err(),
             Contains("api: first connection from uid " + std::to_string(::getuid())));
  REQUIRE(petrel::test::curl_api(path, "PUT", "/v1/vm/shutdown").status == 202);
  CHECK(petrel->wait_exit(kWait) == 0);
  // The socket is systemd's: petrel leaves it in place for the next start.
  struct stat st {};
  CHECK(::lstat(path.c_str(), &st) == 0);
}

TEST_CASE("systemd: a passed fd that is not a listening Unix socket is refused", "[systemd]") {
  ScratchDir dir;
  const std::string file = dir.path + "/not-a-socket";
  std::ofstream(file) << "x";
  const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  REQUIRE(fd >= 0);
  auto petrel = start_petrel(dir, "kbd_shutdown", {},
                             {.env = {"LISTEN_FDS=1"}, .fd3 = fd, .listen_pid = true});
  ::close(fd);
  CHECK(petrel->wait_exit(kWait) == 1);
  CHECK_THAT(petrel->err(), Contains("fd 3 is not a listening Unix stream socket"));
}

TEST_CASE("systemd: WATCHDOG=1 every half WatchdogSec", "[systemd]") {
  ScratchDir dir;
  NotifySocket notify(dir.path + "/notify.sock");
  auto petrel = start_petrel(
      dir, "kbd_shutdown", {},
      {.env = {"NOTIFY_SOCKET=" + notify.path(), "WATCHDOG_USEC=400000"}, .listen_pid = false});
  REQUIRE(petrel->wait_for_line("waiting for ctrl-alt-del", kWait));
  INFO("messages:\n" << joined(notify.messages()) << "log:\n" << petrel->err());
  CHECK_FALSE(notify.wait_for("WATCHDOG=1", 3, std::chrono::seconds(10)).empty());
  CHECK_THAT(petrel->err(), Contains("systemd watchdog: every 200 ms"));
  petrel->stop();
}

TEST_CASE("systemd: logs carry sd-daemon priority prefixes when stderr is the journal",
          "[systemd]") {
  ScratchDir dir;
  const std::string err = dir.path + "/err.txt";
  std::ofstream(err).flush();  // the file petrel's stderr will be: JOURNAL_STREAM names it
  struct stat st {};
  REQUIRE(::stat(err.c_str(), &st) == 0);
  const std::string stream =
      "JOURNAL_STREAM=" + std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino);
  auto petrel = start_petrel(dir, "kbd_shutdown", {}, {.env = {stream}});
  REQUIRE(petrel->wait_for_line("waiting for ctrl-alt-del", kWait));
  REQUIRE(::kill(petrel->pid(), SIGTERM) == 0);
  REQUIRE(petrel->wait_exit(kWait) == 0);
  const std::string log = petrel->err();
  INFO("log:\n" << log);
  REQUIRE_FALSE(log.empty());
  std::istringstream lines(log);
  std::string line;
  size_t count = 0;
  while (std::getline(lines, line)) {
    ++count;
    CHECK((line.starts_with("<6>petrel: ") || line.starts_with("<4>petrel: ") ||
           line.starts_with("<3>petrel: ") || line.starts_with("<7>petrel: ")));
  }
  CHECK(count >= 3);
  CHECK_THAT(log, Contains("<6>petrel: SIGTERM: asking the guest to shut down"));
}

TEST_CASE("lock-down: --user drops to an unprivileged user before the guest runs", "[systemd]") {
  if (::geteuid() != 0) {
    petrel::test::skip("--user needs petrel to start as root; the tests run as uid " +
                       std::to_string(::geteuid()));
  }
  ScratchDir dir;
  ::chmod(dir.path.c_str(), 0755);
  const std::string api = dir.path + "/api.sock";
  auto petrel =
      start_petrel(dir, "kbd_shutdown", {"--user", "nobody:nogroup", "--api-socket", api}, {});
  REQUIRE(petrel->wait_for_line("waiting for ctrl-alt-del", kWait));
  INFO("log:\n" << petrel->err());
  CHECK_THAT(petrel->err(), Contains("running as user nobody (uid 65534"));
  std::ifstream status("/proc/" + std::to_string(petrel->pid()) + "/status");
  std::string line;
  std::string uid_line, gid_line;
  while (std::getline(status, line)) {
    if (line.starts_with("Uid:")) {
      uid_line = line;
    } else if (line.starts_with("Gid:")) {
      gid_line = line;
    }
  }
  CHECK(uid_line == "Uid:\t65534\t65534\t65534\t65534");
  CHECK(gid_line == "Gid:\t65534\t65534\t65534\t65534");
  struct stat st {};
  REQUIRE(::lstat(api.c_str(), &st) == 0);
  CHECK(st.st_uid == 65534);
  CHECK((st.st_mode & 0777) == 0600);
  // The guest still runs and the API still answers (root may connect to any socket).
  REQUIRE(petrel::test::curl_api(api, "PUT", "/v1/vm/shutdown").status == 202);
  CHECK(petrel->wait_exit(kWait) == 0);
  CHECK_THAT(petrel->out(), Contains("ctrl-alt-del received"));
}

TEST_CASE("lock-down: --user with an unknown user is refused", "[systemd]") {
  auto r = petrel::test::run_process(
      petrel::test::petrel_binary(),
      {"run", "--kernel", petrel::test::guest_image("hello"), "--user", "no-such-user-petrel"});
  CHECK(r.exit_code == 2);
  CHECK_THAT(r.err, Contains("no user 'no-such-user-petrel'"));
}
