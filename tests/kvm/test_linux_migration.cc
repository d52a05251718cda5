// The project's Linux kernel with a virtio disk and a virtio NIC, live-migrated to a second
// petrel and restored from a snapshot: afterwards the kernel still answers ping from the host
// side of its TAP, and a graceful shutdown through the new petrel's API reaches it (the
// keyboard's state moved too) and is logged on the new console.
//
// The kernel waits for a root device that never comes (root=/dev/nonexistent rootwait) with
// its NIC configured by the kernel (ip=): no user space, which PVM hosts cannot run. Both
// petrels run in one network namespace holding the TAP (created multi-queue, so that the
// destination can attach while the paused source still holds its queue).
#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "api_harness.h"
#include "background_process.h"
#include "netns.h"
#include "petrel_process.h"
#include "scratch_dir.h"

using Catch::Matchers::Contains;
using nlohmann::json;
using petrel::test::BackgroundProcess;
using petrel::test::curl_api;
using petrel::test::petrel_binary;
using petrel::test::ScratchDir;

namespace {

constexpr const char* kCmdline =
    "console=ttyS0 ip=10.0.2.15::10.0.2.1:255.255.255.0::eth0:off root=/dev/nonexistent "
    "rootwait";

std::string cache_file(const std::string& rel) {
  const char* dir = std::getenv("PETREL_GUEST_CACHE");
  REQUIRE(dir != nullptr);
  std::string path = std::string(dir) + "/" + rel;
  INFO("missing " << path << ": run scripts/build-guest-kernel.sh");
  REQUIRE(std::filesystem::exists(path));
  return path;
}

bool wait_api(const std::string& socket, BackgroundProcess& p) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (std::chrono::steady_clock::now() < deadline && p.running()) {
    if (std::filesystem::exists(socket) && curl_api(socket, "GET", "/v1/vm").status == 200) {
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return false;
}

std::string state_of(const std::string& socket) {
  auto reply = curl_api(socket, "GET", "/v1/vm/state");
  return reply.status == 200 ? reply.json()["state"].get<std::string>() : "";
}

bool wait_state(const std::string& socket, const std::string& want, std::chrono::seconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (state_of(socket) == want) {
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  return false;
}

void check_ping(const petrel::test::NetNamespace& ns) {
  petrel::test::RunOptions options;
  options.timeout = std::chrono::seconds(90);
  auto ping = ns.run("ping", {"-c", "3", "-W", "10", "10.0.2.15"}, options);
  INFO("ping:\n" << ping.out << ping.err);
  CHECK(ping.exit_code == 0);
  CHECK_THAT(ping.out, Contains("3 packets transmitted, 3 received"));
}

// A petrel in the namespace: `petrel <args...> --api-socket <dir>/<name>.sock`.
struct NsPetrel {
  NsPetrel(const petrel::test::NetNamespace& ns, const std::string& dir, const std::string& name,
           std::vector<std::string> args)
      : socket(dir + "/" + name + ".sock") {
    std::vector<std::string> argv{"ip", "netns", "exec", ns.name(), petrel_binary()};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.push_back("--api-socket");
    argv.push_back(socket);
    process = std::make_unique<BackgroundProcess>(argv, dir + "/" + name + ".out",
                                                  dir + "/" + name + ".err");
  }
  std::string socket;
  std::unique_ptr<BackgroundProcess> process;
};

// Boots the kernel with disk and NIC until it waits for its root device and answers ping.
NsPetrel boot_source(const petrel::test::NetNamespace& ns, const std::string& dir) {
  const std::string disk = dir + "/data.img";
  std::filesystem::copy_file(cache_file("disk/root.ext4"), disk);
  NsPetrel source(ns, dir, "source",
                  {"run", "--kernel", cache_file("linux/vmlinux"), "--memory", "256M", "--disk",
                   "path=" + disk, "--net", "tap=" + ns.tap(), "--cmdline", kCmdline});
  const bool waiting =
      source.process->wait_for_line("Waiting for root device", std::chrono::seconds(600));
  INFO("console:\n" << source.process->out() << "\npetrel log:\n" << source.process->err());
  REQUIRE(waiting);
  CHECK_THAT(source.process->out(), Contains("IP-Config: Complete:"));
  CHECK_THAT(source.process->out(), Contains("virtio_blk virtio0: [vda]"));
  check_ping(ns);
  return source;
}

// The kernel on `p` shuts down gracefully through the API (Ctrl-Alt-Del) and says so on
// its console.
void check_shutdown(NsPetrel& p) {
  auto reply = curl_api(p.socket, "PUT", "/v1/vm/shutdown", R"({"timeout_ms": 120000})");
  REQUIRE(reply.status == 202);
  auto status = p.process->wait_exit(std::chrono::seconds(150));
  INFO("console:\n" << p.process->out() << "\npetrel log:\n" << p.process->err());
  REQUIRE(status.has_value());
  CHECK(*status == 0);
  CHECK_THAT(p.process->out(), Contains("reboot: Restarting system"));
}

}  // namespace

TEST_CASE("linux: a kernel with disk and NIC migrated live keeps answering ping",
          "[linux][migration]") {
  if (auto why = petrel::test::netns_unavailable()) {
    petrel::test::skip(*why);
  }
  ScratchDir dir;
  petrel::test::NetNamespace ns("petrel-m" + std::to_string(::getpid()), "pt0", "10.0.2.1/24");
  NsPetrel source = boot_source(ns, dir.path);
  NsPetrel dest(ns, dir.path, "dest", {"serve"});
  REQUIRE(wait_api(dest.socket, *dest.process));
  const std::string addr = "unix:" + dir.path + "/migration.sock";
  REQUIRE(
      curl_api(dest.socket, "PUT", "/v1/migration/receive", json{{"listen", addr}}.dump()).status ==
      202);
  auto sent =
      curl_api(source.socket, "PUT", "/v1/migration/send", json{{"destination", addr}}.dump());
  INFO(sent.body);
  REQUIRE(sent.status == 202);
  auto exited = source.process->wait_exit(std::chrono::seconds(300));
  INFO("source log:\n" << source.process->err() << "\ndest log:\n" << dest.process->err());
  REQUIRE(exited.has_value());
  CHECK(*exited == 0);
  CHECK_THAT(source.process->err(), Contains("migrated to"));
  REQUIRE(wait_state(dest.socket, "running", std::chrono::seconds(30)));
  check_ping(ns);
  check_shutdown(dest);
}

TEST_CASE("linux: a kernel with disk and NIC restored from a snapshot keeps answering ping",
          "[linux][snapshot]") {
  if (auto why = petrel::test::netns_unavailable()) {
    petrel::test::skip(*why);
  }
  ScratchDir dir;
  petrel::test::NetNamespace ns("petrel-s" + std::to_string(::getpid()), "pt0", "10.0.2.1/24");
  const std::string snap = dir.path + "/snap";
  {
    NsPetrel source = boot_source(ns, dir.path);
    REQUIRE(curl_api(source.socket, "PUT", "/v1/vm/pause").status == 200);
    auto reply = curl_api(source.socket, "PUT", "/v1/vm/snapshot", json{{"path", snap}}.dump());
    INFO(reply.body);
    REQUIRE(reply.status == 200);
    REQUIRE(curl_api(source.socket, "PUT", "/v1/vm/stop").status == 200);
    REQUIRE(source.process->wait_exit(std::chrono::seconds(30)).has_value());
  }
  NsPetrel restored(ns, dir.path, "restored", {"restore", snap});
  REQUIRE(wait_api(restored.socket, *restored.process));
  INFO("log:\n" << restored.process->err());
  REQUIRE(wait_state(restored.socket, "running", std::chrono::seconds(30)));
  check_ping(ns);
  check_shutdown(restored);
}
