// The project's Linux kernel's own virtio_balloon driver (CONFIG_VIRTIO_BALLOON, no user
// space needed: the driver inflates from a kernel work item) follows a target set through
// the API, reports its statistics, and with free page reporting hands back free memory by
// itself (virtio 1.2 5.5.6.7: Linux reports free 2 MiB blocks a few seconds after they form,
// here once the deflated pages merge in the buddy allocator).
#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>

#include "api_harness.h"

using nlohmann::json;

namespace {

std::string kernel_image() {
  const char* dir = std::getenv("PETREL_GUEST_CACHE");
  REQUIRE(dir != nullptr);
  std::string path = std::string(dir) + "/linux/vmlinux";
  INFO("missing " << path << ": run scripts/build-guest-kernel.sh");
  REQUIRE(std::filesystem::exists(path));
  return path;
}

// Polls GET /v1/balloon until `done` holds for its JSON, or `limit` passes.
template <typename Pred>
json wait_balloon(const petrel::test::ApiPetrel& vm, Pred done, std::chrono::seconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  json last;
  while (std::chrono::steady_clock::now() < deadline) {
    auto reply = vm.call("GET", "/v1/balloon");
    REQUIRE(reply.status == 200);
    last = reply.json();
    if (done(last)) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  return last;
}

}  // namespace

TEST_CASE("linux: the kernel's virtio_balloon driver follows the target set through the API",
          "[linux][balloon]") {
  petrel::test::ApiPetrel vm(
      kernel_image(), {"--memory", "256M", "--balloon", "stats_interval=1s,free_page_reporting=on",
                       "--cmdline", "console=ttyS0 root=/dev/nonexistent rootwait"});
  INFO("console:\n" << vm.process().out() << "\npetrel log:\n" << vm.process().err());
  REQUIRE(vm.process().wait_for_line("Waiting for root device", std::chrono::seconds(400)));

  constexpr uint64_t kTarget = 64ull << 20;
  auto set = vm.call("PUT", "/v1/balloon", json{{"target_bytes", kTarget}}.dump());
  INFO(set.body);
  REQUIRE(set.status == 200);
  auto info = wait_balloon(
      vm, [](const json& j) { return j["actual_bytes"].get<uint64_t>() == kTarget; },
      std::chrono::seconds(300));
  INFO(info.dump());
  CHECK(info["actual_bytes"].get<uint64_t>() == kTarget);
  CHECK(info["target_bytes"].get<uint64_t>() == kTarget);

  // The driver answers the stats queue with its memory figures.
  auto stats = vm.call("GET", "/v1/balloon/stats").json();
  INFO(stats.dump());
  CHECK(stats["total_memory"].is_number());
  CHECK(stats["free_memory"].is_number());

  // And gives the memory back when the target drops.
  REQUIRE(vm.call("PUT", "/v1/balloon", json{{"target_bytes", 0}}.dump()).status == 200);
  info = wait_balloon(
      vm, [](const json& j) { return j["actual_bytes"].get<uint64_t>() == 0; },
      std::chrono::seconds(300));
  CHECK(info["actual_bytes"].get<uint64_t>() == 0);
  auto metrics = vm.call("GET", "/v1/metrics").json();
  INFO(metrics.dump());
  CHECK(metrics["balloon"]["inflated_pages_total"].get<uint64_t>() >= kTarget / 4096);
  // Free page reporting: the 64 MiB the driver freed merge into 2 MiB blocks it reports.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(180);
  uint64_t reported = 0;
  while (reported < 512 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::seconds(1));
    reported =
        vm.call("GET", "/v1/metrics").json()["balloon"]["reported_pages_total"].get<uint64_t>();
  }
  INFO("reported pages: " << reported);
  CHECK(reported >= 512);  // at least one 2 MiB block
}
