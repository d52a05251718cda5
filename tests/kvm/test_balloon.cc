// The memory balloon end to end (virtio 1.2 section 5.5): the test guest's balloon driver
// (tests/guest/balloon.c) under a real petrel, driven through the API and petrelctl. Checks
// what the guest reports (actual, statistics), what the API reports, and the host itself:
// petrel's resident set falls when the guest inflates and rises when it touches the pages it
// took back. A hostile mode of the guest sends PFNs outside RAM, a huge PFN array, odd and
// empty buffers and stats with unknown tags; petrel must ignore and count them.
#include <sys/types.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <fstream>
#include <functional>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "api_harness.h"
#include "scratch_dir.h"

using Catch::Matchers::Contains;
using nlohmann::json;
using petrel::test::ApiPetrel;
using petrel::test::CommandResult;

namespace {

constexpr uint64_t kMiB = 1ull << 20;
constexpr uint64_t kPage = 4096;
constexpr auto kWait = std::chrono::seconds(30);

// VmRSS of `pid` in bytes (/proc/PID/status), 0 when it cannot be read.
uint64_t rss_bytes(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.starts_with("VmRSS:")) {
      return std::stoull(line.substr(6)) * 1024;  // "VmRSS:   1234 kB"
    }
  }
  return 0;
}

// Polls `done` every 100 ms until it holds or `timeout` passes; its last answer.
bool wait_until(const std::function<bool()>& done, std::chrono::seconds timeout = kWait) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) {
      return done();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return true;
}

json get_json(const ApiPetrel& vm, const std::string& path) {
  auto reply = vm.call("GET", path);
  INFO(path << " -> " << reply.status << " " << reply.body);
  REQUIRE(reply.status == 200);
  return reply.json();
}

void put_target(const ApiPetrel& vm, uint64_t bytes) {
  auto reply = vm.call("PUT", "/v1/balloon", json{{"target_bytes", bytes}}.dump());
  INFO("PUT /v1/balloon " << bytes << " -> " << reply.status << " " << reply.body);
  REQUIRE(reply.status >= 200);
  REQUIRE(reply.status < 300);
}

// Waits until GET /v1/balloon shows actual_bytes == bytes; REQUIREs it.
void wait_actual(ApiPetrel& vm, uint64_t bytes) {
  json last;
  const bool reached = wait_until([&] {
    last = get_json(vm, "/v1/balloon");
    return last["actual_bytes"] == bytes;
  });
  INFO("GET /v1/balloon: " << last.dump() << "\nconsole:\n"
                           << vm.process().out() << "\nlog:\n"
                           << vm.process().err());
  REQUIRE(reached);
  CHECK(last["target_bytes"] == bytes);
}

// The guest's "balloon ready ... pool=N ..." line: its pool in pages.
uint64_t wait_ready(ApiPetrel& vm) {
  const bool ready = vm.process().wait_for_line("balloon ready", kWait);
  INFO("console:\n" << vm.process().out() << "\nlog:\n" << vm.process().err());
  REQUIRE(ready);
  std::smatch m;
  const std::string out = vm.process().out();
  REQUIRE(std::regex_search(out, m, std::regex(R"(balloon ready transport=\w+ pool=(\d+) )")));
  return std::stoull(m[1]);
}

// The guest's console line for a settled balloon.
std::string settled(uint64_t actual_bytes, uint64_t target_bytes) {
  return "balloon actual=" + std::to_string(actual_bytes / kPage) +
         " target=" + std::to_string(target_bytes / kPage) + " ";
}

// Waits for a whole console line (the guest's output) holding `text`; REQUIREs it. The
// guest's line may reach the console in pieces: a match must be followed by its newline.
void wait_console(ApiPetrel& vm, const std::string& text) {
  const bool seen = wait_until([&] {
    const std::string out = vm.process().out();
    const size_t at = out.find(text);
    return at != std::string::npos && out.find('\n', at) != std::string::npos;
  });
  INFO("waiting for \"" << text << "\"\nconsole:\n"
                        << vm.process().out() << "\nlog:\n"
                        << vm.process().err());
  REQUIRE(seen);
}

// petrelctl -s SOCKET ARGS...
CommandResult ctl(const ApiPetrel& vm, std::vector<std::string> args) {
  args.insert(args.begin(), {"-s", vm.socket()});
  return petrel::test::petrelctl(args);
}

json json_out(const CommandResult& r) {
  INFO("exit " << r.exit_code << " stdout:\n" << r.out << "\nstderr:\n" << r.err);
  REQUIRE(r.exit_code == 0);
  auto parsed = json::parse(r.out, nullptr, false);
  REQUIRE_FALSE(parsed.is_discarded());
  return parsed;
}

// Inflate to `target`, deflate to 0 with touch=1, over the transport the VM was given.
void inflate_deflate_cycle(ApiPetrel& vm, uint64_t target) {
  put_target(vm, target);
  wait_actual(vm, target);
  wait_console(vm, settled(target, target));
  put_target(vm, 0);
  wait_actual(vm, 0);
  const std::string pages = std::to_string(target / kPage);
  wait_console(vm, "balloon returned pages=" + pages + " nonzero=0 verified=" + pages + "\n");
  wait_console(vm, settled(0, 0));
}

}  // namespace

TEST_CASE("balloon: the guest follows targets and petrel's RSS falls and rises with them",
          "[balloon]") {
  constexpr uint64_t kMemory = 1024 * kMiB;
  constexpr uint64_t kTarget = 512 * kMiB;
  ApiPetrel vm("balloon",
               {"--memory", "1G", "--balloon", "stats_interval=1s", "--cmdline", "touch=1"});
  const uint64_t pool = wait_ready(vm);
  REQUIRE(pool * kPage > kTarget + 256 * kMiB);  // "most of free RAM"
  wait_console(vm, settled(0, 0));               // the whole pool is written by now

  auto info = get_json(vm, "/v1/balloon");
  CHECK(info["memory_bytes"] == kMemory);
  CHECK(info["target_bytes"] == 0);
  CHECK(info["actual_bytes"] == 0);

  const pid_t pid = vm.process().pid();
  const uint64_t rss_full = rss_bytes(pid);
  INFO("RSS with the pool written: " << rss_full / kMiB << " MiB");
  REQUIRE(rss_full > pool * kPage);

  // Inflate: the guest gives 512 MiB of written pages; petrel must give them back to the host.
  put_target(vm, kTarget);
  wait_actual(vm, kTarget);
  wait_console(vm, settled(kTarget, kTarget));
  uint64_t rss_low = rss_full;
  const bool fell = wait_until(
      [&] {
        rss_low = rss_bytes(pid);
        return rss_full > rss_low && rss_full - rss_low >= kTarget / 10 * 9;
      },
      std::chrono::seconds(10));
  INFO("RSS after inflating " << kTarget / kMiB << " MiB: " << rss_low / kMiB << " MiB");
  CHECK(fell);

  // Statistics, polled every second: the guest reports its pool less the balloon as free.
  json stats;
  const uint64_t free_expected = (pool - kTarget / kPage) * kPage;
  const bool fresh = wait_until([&] {
    stats = get_json(vm, "/v1/balloon/stats");
    return stats["free_memory"] == free_expected;
  });
  INFO("stats: " << stats.dump());
  CHECK(fresh);
  CHECK(stats["total_memory"] == kMemory);
  CHECK(stats["available_memory"].is_number());
  CHECK(stats["major_faults"] == 0);
  CHECK(stats["unknown_tags"].get<uint64_t>() >= 1);  // the guest's tag 0x77
  REQUIRE(stats["age_seconds"].is_number());
  CHECK(stats["age_seconds"].get<double>() < 5.0);
  CHECK(stats["updated_at"].is_string());
  // minor_faults is the guest's refill count: the device keeps asking.
  const uint64_t refills = stats["minor_faults"].get<uint64_t>();
  CHECK(wait_until(
      [&] { return get_json(vm, "/v1/balloon/stats")["minor_faults"].get<uint64_t>() > refills; },
      std::chrono::seconds(10)));

  // Deflate: the pages come back as zeros, the guest writes them, the RSS rises again.
  put_target(vm, 0);
  wait_actual(vm, 0);
  const std::string pages = std::to_string(kTarget / kPage);
  wait_console(vm, "balloon returned pages=" + pages + " nonzero=0 verified=" + pages + "\n");
  uint64_t rss_high = rss_low;
  const bool rose = wait_until(
      [&] {
        rss_high = rss_bytes(pid);
        return rss_high > rss_low && rss_high - rss_low >= kTarget / 10 * 9;
      },
      std::chrono::seconds(10));
  INFO("RSS after deflating and touching: " << rss_high / kMiB << " MiB");
  CHECK(rose);

  auto metrics = get_json(vm, "/v1/metrics");
  INFO("metrics: " << metrics.dump());
  REQUIRE(metrics.contains("balloon"));
  CHECK(metrics["balloon"]["inflated_pages_total"] == kTarget / kPage);
  CHECK(metrics["balloon"]["deflated_pages_total"] == kTarget / kPage);
  CHECK(metrics["balloon"]["ignored_pfns_total"] == 0);
  CHECK(metrics["balloon"]["actual_bytes"] == 0);
  CHECK(vm.state() == "running");
}

TEST_CASE("balloon: over PCI the guest inflates and deflates", "[balloon]") {
  ApiPetrel vm("balloon", {"--memory", "256M", "--balloon", "transport=pci,stats_interval=1s",
                           "--cmdline", "transport=pci touch=1"});
  wait_ready(vm);
  inflate_deflate_cycle(vm, 64 * kMiB);
  CHECK(vm.state() == "running");
}

TEST_CASE("balloon: petrelctl balloon set, setmem and stats", "[balloon]") {
  ApiPetrel vm("balloon",
               {"--memory", "256M", "--balloon", "stats_interval=1s", "--cmdline", "touch=1"});
  const uint64_t pool = wait_ready(vm);

  auto set = ctl(vm, {"balloon", "set", "64M"});
  INFO("balloon set: " << set.out << set.err);
  CHECK(set.exit_code == 0);
  wait_actual(vm, 64 * kMiB);
  wait_console(vm, settled(64 * kMiB, 64 * kMiB));

  // setmem: what the guest keeps; the balloon holds the rest.
  auto setmem = ctl(vm, {"setmem", "160M"});
  INFO("setmem: " << setmem.out << setmem.err);
  CHECK(setmem.exit_code == 0);
  wait_actual(vm, 96 * kMiB);

  auto info = json_out(ctl(vm, {"--json", "balloon"}));
  CHECK(info["target_bytes"] == 96 * kMiB);
  CHECK(info["actual_bytes"] == 96 * kMiB);
  CHECK(info["memory_bytes"] == 256 * kMiB);
  auto readable = ctl(vm, {"balloon"});
  CHECK(readable.exit_code == 0);
  CHECK_THAT(readable.out, Contains("actual"));

  const uint64_t free_expected = (pool - 96 * kMiB / kPage) * kPage;
  json stats;
  CHECK(wait_until([&] {
    stats = json_out(ctl(vm, {"--json", "balloon", "stats"}));
    return stats["free_memory"] == free_expected;
  }));
  INFO("stats: " << stats.dump());
  CHECK(stats["total_memory"] == 256 * kMiB);
  CHECK(stats["unknown_tags"].get<uint64_t>() >= 1);
  auto stats_text = ctl(vm, {"balloon", "stats"});
  CHECK(stats_text.exit_code == 0);
  CHECK_THAT(stats_text.out, Contains("free"));

  // Refusals: not a size, more than the guest has.
  CHECK(ctl(vm, {"balloon", "set", "lots"}).exit_code == 2);
  CHECK(ctl(vm, {"balloon", "set", "1G"}).exit_code == 1);

  CHECK(ctl(vm, {"balloon", "set", "0"}).exit_code == 0);
  wait_actual(vm, 0);
  const std::string pages = std::to_string(96 * kMiB / kPage);
  wait_console(vm, "balloon returned pages=" + pages + " nonzero=0 verified=" + pages + "\n");
}

TEST_CASE("balloon: hostile PFNs, arrays and stats are ignored, counted and harmless",
          "[balloon]") {
  ApiPetrel vm("balloon", {"--memory", "256M", "--balloon", "stats_interval=1s", "--cmdline",
                           "evil=1 touch=1"});
  wait_ready(vm);
  // The guest checks its whole pool against its pattern after the hostile requests.
  wait_console(vm, "balloon evil done ");
  const std::string out = vm.process().out();
  INFO("console:\n" << out << "\nlog:\n" << vm.process().err());
  CHECK_THAT(out, Contains(" intact=1\n"));
  CHECK(vm.process().running());
  CHECK(vm.state() == "running");

  // Every case is either used (what is bad in it ignored) or refused with DEVICE_NEEDS_RESET;
  // the guest sums the PFNs outside RAM (a partial one included) of the used ones, and the
  // device counts each of them. The first case must be used: nothing in it is malformed.
  CHECK_THAT(out, Contains("balloon evil case=outside-ram bad=6 used\n"));
  CHECK_THAT(out, Contains("balloon evil case=huge-array bad=524288 used\n"));
  std::smatch m;
  REQUIRE(std::regex_search(out, m, std::regex(R"(balloon evil done bad_pfns=(\d+) )")));
  const uint64_t bad_pfns = std::stoull(m[1]);
  auto metrics = get_json(vm, "/v1/metrics");
  INFO("metrics: " << metrics.dump());
  REQUIRE(metrics.contains("balloon"));
  CHECK(metrics["balloon"]["ignored_pfns_total"] == bad_pfns);
  CHECK(metrics["balloon"]["inflated_pages_total"] == 0);
  CHECK(metrics["balloon"]["actual_bytes"] == 0);
  auto prom = vm.call("GET", "/v1/metrics/prometheus");
  CHECK_THAT(prom.body, Contains("petrel_balloon_ignored_pfns_total"));

  // The stats buffer carries five unknown tags and a partial trailing entry.
  json stats;
  CHECK(wait_until([&] {
    stats = get_json(vm, "/v1/balloon/stats");
    return stats["unknown_tags"].is_number() && stats["unknown_tags"].get<uint64_t>() >= 5;
  }));
  INFO("stats: " << stats.dump());
  CHECK(stats["total_memory"] == 256 * kMiB);

  // The device still works for the same driver.
  inflate_deflate_cycle(vm, 32 * kMiB);
  CHECK(vm.state() == "running");
}

// VIRTIO_BALLOON_F_DEFLATE_ON_OOM (virtio 1.2 5.5.6.1): a guest short of memory takes pages
// back from the balloon without the host lowering the target. petrel honours it, counts the
// pages and hands them back as zeros; the guest follows the next target as before.
TEST_CASE("balloon: with deflate_on_oom the guest takes pages back unasked and petrel counts them",
          "[balloon]") {
  constexpr uint64_t kTarget = 64 * kMiB;
  constexpr uint64_t kOomPages = 1024;
  ApiPetrel vm("balloon", {"--memory", "256M", "--balloon", "deflate_on_oom=on", "--cmdline",
                           "oom=1024 touch=1"});
  wait_ready(vm);
  CHECK(get_json(vm, "/v1/balloon")["deflate_on_oom"] == true);
  put_target(vm, kTarget);
  const std::string held = std::to_string(kTarget / kPage - kOomPages);
  wait_console(vm, "balloon oom deflated=1024 actual=" + held +
                       " target=" + std::to_string(kTarget / kPage) + "\n");
  wait_console(vm, "balloon returned pages=1024 nonzero=0 verified=1024\n");

  json info;
  CHECK(wait_until([&] {
    info = get_json(vm, "/v1/balloon");
    return info["actual_bytes"] == kTarget - kOomPages * kPage;
  }));
  INFO("GET /v1/balloon: " << info.dump() << "\nlog:\n" << vm.process().err());
  CHECK(info["target_bytes"] == kTarget);  // the host's target is unchanged
  auto metrics = get_json(vm, "/v1/metrics")["balloon"];
  CHECK(metrics["oom_deflated_pages_total"] == kOomPages);
  CHECK(metrics["deflated_pages_total"] == kOomPages);
  CHECK_THAT(vm.process().err(), Contains("deflate on OOM"));

  // A new target: the guest follows it; a requested deflation is not counted as OOM.
  put_target(vm, 32 * kMiB);
  wait_actual(vm, 32 * kMiB);
  metrics = get_json(vm, "/v1/metrics")["balloon"];
  CHECK(metrics["oom_deflated_pages_total"] == kOomPages);
  CHECK(metrics["deflated_pages_total"] == kTarget / kPage - 32 * kMiB / kPage);
  put_target(vm, 0);
  wait_actual(vm, 0);
  CHECK(get_json(vm, "/v1/metrics")["balloon"]["oom_deflated_pages_total"] == kOomPages);
  CHECK(vm.state() == "running");
}

TEST_CASE("balloon: without deflate_on_oom the feature is not offered and nothing is taken back",
          "[balloon]") {
  constexpr uint64_t kTarget = 64 * kMiB;
  ApiPetrel vm("balloon", {"--memory", "256M", "--balloon", "deflate_on_oom=off", "--cmdline",
                           "oom=1024 touch=1"});
  wait_ready(vm);
  const std::string out = vm.process().out();
  std::smatch m;
  REQUIRE(std::regex_search(out, m, std::regex(R"(balloon ready .* features=0x([0-9a-f]+) )")));
  CHECK((std::stoull(m[1], nullptr, 16) & (1u << 2)) == 0);  // F_DEFLATE_ON_OOM
  CHECK(get_json(vm, "/v1/balloon")["deflate_on_oom"] == false);
  put_target(vm, kTarget);
  wait_actual(vm, kTarget);
  const std::string pages = std::to_string(kTarget / kPage);
  wait_console(vm, "balloon oom not negotiated actual=" + pages + " target=" + pages + "\n");
  CHECK(get_json(vm, "/v1/balloon")["actual_bytes"] == kTarget);
  CHECK(get_json(vm, "/v1/metrics")["balloon"]["oom_deflated_pages_total"] == 0);
}

// Pages in the balloon read as zeros and are not written to a snapshot: a guest that wrote
// its whole pool and then gave half of it to the balloon leaves a memory file with about
// half the data of one that gave nothing. The restored guest still has its balloon.
TEST_CASE("balloon: a snapshot leaves ballooned pages out and the restored VM keeps them",
          "[balloon][snapshot]") {
  auto snapshot_bytes = [](uint64_t target, const std::string& dir) {
    ApiPetrel vm("balloon",
                 {"--memory", "512M", "--balloon", "stats_interval=1s", "--cmdline", "touch=1"});
    wait_ready(vm);
    if (target != 0) {
      put_target(vm, target);
      wait_actual(vm, target);
    }
    REQUIRE(vm.call("PUT", "/v1/vm/pause").status == 200);
    auto reply = vm.call("PUT", "/v1/vm/snapshot", json{{"path", dir}}.dump());
    INFO(reply.body);
    REQUIRE(reply.status == 200);
    return reply.json()["memory_bytes_written"].get<uint64_t>();
  };
  petrel::test::ScratchDir dir("petrel-balloon-snap");
  const uint64_t full = snapshot_bytes(0, dir.path + "/full");
  const uint64_t halved = snapshot_bytes(256 * kMiB, dir.path + "/halved");
  INFO("full " << full << " halved " << halved);
  CHECK(full > 400 * kMiB);  // the guest wrote most of its 512 MiB
  CHECK(halved + 240 * kMiB < full);

  ApiPetrel restored(ApiPetrel::Command{{"restore", dir.path + "/halved"}});
  CHECK(restored.state() == "running");
  auto info = get_json(restored, "/v1/balloon");
  INFO(info.dump());
  CHECK(info["actual_bytes"] == 256 * kMiB);
  inflate_deflate_cycle(restored, 64 * kMiB);
}
