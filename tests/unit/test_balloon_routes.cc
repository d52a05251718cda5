// The balloon routes (balloon_routes.h) over a real Unix socket with FakeVmControl behind them:
// every endpoint, the target each PUT passes to VmControl, the 400/404/409 cases, and the JSON
// shapes (nulls for what the guest has not reported); plus the balloon's metrics.
#include <catch2/catch.hpp>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "api/api_counters.h"
#include "api/balloon_routes.h"
#include "api/metrics_format.h"
#include "api/metrics_routes.h"
#include "api/vm_routes.h"
#include "api_test_client.h"
#include "fake_vm_control.h"
#include "scratch_dir.h"

using namespace petrel;
using namespace petrel::testing;
using nlohmann::json;

namespace {

constexpr uint64_t kRam = 256ULL << 20;  // the fake's guest RAM

struct BalloonApi {
  BalloonApi() {
    auto router = std::make_shared<Router>();
    REQUIRE(add_vm_routes(*router, vm).ok());
    REQUIRE(add_metrics_routes(*router, vm, counters).ok());
    REQUIRE(add_balloon_routes(*router, vm).ok());
    server.emplace(path, router, ApiLimits{}, counters);
  }

  HttpAnswer get(const std::string& target) {
    return http_exchange(path, "GET " + target + " HTTP/1.1\r\nHost: x\r\n\r\n");
  }
  HttpAnswer put(const std::string& target, const std::string& body = "") {
    return http_exchange(path, "PUT " + target + " HTTP/1.1\r\nHost: x\r\nContent-Length: " +
                                   std::to_string(body.size()) + "\r\n\r\n" + body);
  }

  ScratchDir dir;
  std::filesystem::path path = dir.path() / "api.sock";
  FakeVmControl vm;
  std::shared_ptr<ApiCounters> counters = std::make_shared<ApiCounters>();
  std::optional<RunningServer> server;  // last: stopped before the VM goes away
};

json body_of(const HttpAnswer& a) {
  return json::parse(a.body);
}

std::vector<std::string> keys_of(const std::string& text) {
  std::vector<std::string> keys;
  auto object = nlohmann::ordered_json::parse(text);
  for (const auto& [key, value] : object.items()) {
    keys.push_back(key);
  }
  return keys;
}

const std::vector<std::string> kInfoKeys = {
    "target_bytes",   "actual_bytes",     "memory_bytes",       "guest_memory_bytes",
    "deflate_on_oom", "stats_interval_s", "free_page_reporting"};

const std::vector<std::string> kStatsKeys = {
    "swap_in",      "swap_out",         "major_faults", "minor_faults",        "free_memory",
    "total_memory", "available_memory", "disk_caches",  "hugetlb_allocations", "hugetlb_failures",
    "updated_at",   "age_seconds",      "unknown_tags"};

}  // namespace

TEST_CASE("balloon routes: 404 without a balloon, on every endpoint", "[api][balloon]") {
  BalloonApi api;
  for (const auto& a :
       {api.get("/v1/balloon"), api.put("/v1/balloon", R"({"target_bytes": 0})"),
        api.put("/v1/balloon", R"({"guest_memory_bytes": 4096})"), api.get("/v1/balloon/stats")}) {
    CHECK(a.status == 404);
    CHECK(error_code_of(a) == "not_found");
    CHECK(body_of(a)["error"]["message"] == "the VM has no balloon device");
  }
  CHECK_FALSE(api.vm.last_balloon_target());
}

TEST_CASE("balloon routes: GET and PUT target_bytes", "[api][balloon]") {
  BalloonApi api;
  api.vm.set_balloon_present(true);
  HttpAnswer a = api.get("/v1/balloon");
  REQUIRE(a.status == 200);
  CHECK(a.has_header("Content-Type: application/json"));
  CHECK(keys_of(a.body) == kInfoKeys);
  CHECK(body_of(a) == json{{"target_bytes", 0},
                           {"actual_bytes", 0},
                           {"memory_bytes", kRam},
                           {"guest_memory_bytes", kRam},
                           {"deflate_on_oom", true},
                           {"stats_interval_s", 5},
                           {"free_page_reporting", false}});

  a = api.put("/v1/balloon", R"({"target_bytes": 134217728})");
  REQUIRE(a.status == 200);
  CHECK(api.vm.last_balloon_target() == 128ULL << 20);
  CHECK(body_of(a)["target_bytes"] == 128ULL << 20);
  CHECK(body_of(a)["actual_bytes"] == 0);

  // The guest follows: actual and what it keeps.
  api.vm.set_balloon_actual(96ULL << 20);
  a = api.get("/v1/balloon");
  CHECK(body_of(a)["actual_bytes"] == 96ULL << 20);
  CHECK(body_of(a)["guest_memory_bytes"] == kRam - (96ULL << 20));

  // Deflating all the way is a target of 0.
  REQUIRE(api.put("/v1/balloon", R"({"target_bytes": 0})").status == 200);
  CHECK(api.vm.last_balloon_target() == 0);
}

TEST_CASE("balloon routes: guest_memory_bytes sets RAM minus it as the target", "[api][balloon]") {
  BalloonApi api;
  api.vm.set_balloon_present(true);
  HttpAnswer a = api.put("/v1/balloon", R"({"guest_memory_bytes": 67108864})");
  REQUIRE(a.status == 200);
  CHECK(api.vm.last_balloon_target() == kRam - (64ULL << 20));
  CHECK(body_of(a)["target_bytes"] == kRam - (64ULL << 20));

  // All of the RAM: the balloon empties.
  REQUIRE(api.put("/v1/balloon", json{{"guest_memory_bytes", kRam}}.dump()).status == 200);
  CHECK(api.vm.last_balloon_target() == 0);

  a = api.put("/v1/balloon", json{{"guest_memory_bytes", kRam + 4096}}.dump());
  CHECK(a.status == 400);
  CHECK(body_of(a)["error"]["message"] ==
        "field \"guest_memory_bytes\" (268439552) is more than the guest's RAM (268435456)");
  CHECK(api.vm.last_balloon_target() == 0);
}

TEST_CASE("balloon routes: bodies and queries are checked before VmControl", "[api][balloon]") {
  BalloonApi api;
  api.vm.set_balloon_present(true);
  struct Case {
    std::string body;
    std::string message;
  };
  const std::string one_of =
      "give exactly one of the fields \"target_bytes\" (what the balloon holds) and "
      "\"guest_memory_bytes\" (what the guest keeps)";
  for (const auto& [body, message] : std::vector<Case>{
           {"", one_of},
           {"{}", one_of},
           {R"({"target_bytes": 4096, "guest_memory_bytes": 4096})", one_of},
           {R"({"target_bytes": 4097})",
            "field \"target_bytes\" must be a multiple of 4096 (the balloon's page)"},
           {R"({"guest_memory_bytes": 100})",
            "field \"guest_memory_bytes\" must be a multiple of 4096 (the balloon's page)"},
           {R"({"guest_memory_bytes": 0})", ""},
           {R"({"target_bytes": -4096})", ""},
           {R"({"target_bytes": "128M"})", ""},
           {R"({"target_bytes": 1.5})", ""},
           {R"({"target_bytes": null})", ""},
           {R"({"target_bytes": 18446744073709551615})", ""},
           {R"({"target": 4096})", ""},
           {R"([4096])", ""},
           {R"({"target_bytes": 4096)", ""},
       }) {
    INFO(body);
    HttpAnswer a = api.put("/v1/balloon", body);
    CHECK(a.status == 400);
    CHECK(error_code_of(a) == "invalid_argument");
    if (!message.empty()) {
      CHECK(body_of(a)["error"]["message"] == message);
    }
  }
  CHECK_FALSE(api.vm.last_balloon_target());
  CHECK(api.get("/v1/balloon?x=1").status == 400);
  CHECK(api.get("/v1/balloon/stats?after=1").status == 400);
  CHECK(api.put("/v1/balloon?target_bytes=0", R"({"target_bytes": 0})").status == 400);
  CHECK_FALSE(api.vm.last_balloon_target());
  CHECK(api.get("/v1/balloon/nope").status == 404);
  CHECK(api.put("/v1/balloon/stats").status == 405);
}

TEST_CASE("balloon routes: VmControl's refusals map to 400, 409 and 500", "[api][balloon]") {
  BalloonApi api;
  api.vm.set_balloon_present(true);
  // Not below the guest's RAM: the controller's rule, answered 400.
  HttpAnswer a = api.put("/v1/balloon", json{{"target_bytes", kRam}}.dump());
  CHECK(a.status == 400);
  CHECK(error_code_of(a) == "invalid_argument");
  CHECK_FALSE(api.vm.last_balloon_target());

  api.vm.fail_next_action(Error(ErrorCode::kIo, "config write failed"));
  a = api.put("/v1/balloon", R"({"target_bytes": 4096})");
  CHECK(a.status == 500);
  CHECK(error_code_of(a) == "io");

  // Once the VM is gone, a new target is refused with the state.
  REQUIRE(api.put("/v1/vm/stop").status == 200);
  a = api.put("/v1/balloon", R"({"target_bytes": 4096})");
  CHECK(a.status == 409);
  CHECK(error_code_of(a) == "state");
  CHECK(body_of(a)["error"]["state"] == "shut-off");
  CHECK_FALSE(api.vm.last_balloon_target());
  CHECK(api.get("/v1/balloon").status == 200);  // reading still works
}

TEST_CASE("balloon routes: stats with nulls, the age, and unknown tags", "[api][balloon]") {
  BalloonApi api;
  api.vm.set_balloon_present(true);
  HttpAnswer a = api.get("/v1/balloon/stats");
  REQUIRE(a.status == 200);
  CHECK(keys_of(a.body) == kStatsKeys);
  json none = body_of(a);
  for (const auto& key : kStatsKeys) {
    INFO(key);
    if (key == "unknown_tags") {
      CHECK(none[key] == 0);
    } else {
      CHECK(none[key].is_null());
    }
  }

  BalloonStats stats;
  stats.free_memory = 100ULL << 20;
  stats.total_memory = 250ULL << 20;
  stats.major_faults = 7;
  stats.swap_in = 0;
  stats.unknown_tags = 3;
  stats.updated_at = std::chrono::system_clock::now() - std::chrono::seconds(4);
  api.vm.set_balloon_stats(stats);
  json got = body_of(api.get("/v1/balloon/stats"));
  CHECK(got["free_memory"] == 100ULL << 20);
  CHECK(got["total_memory"] == 250ULL << 20);
  CHECK(got["major_faults"] == 7);
  CHECK(got["swap_in"] == 0);
  CHECK(got["swap_out"].is_null());
  CHECK(got["available_memory"].is_null());
  CHECK(got["unknown_tags"] == 3);
  REQUIRE(got["updated_at"].is_string());
  CHECK(got["updated_at"] == rfc3339_utc_ms(*stats.updated_at));
  REQUIRE(got["age_seconds"].is_number());
  CHECK(got["age_seconds"].get<double>() >= 4.0);
  CHECK(got["age_seconds"].get<double>() < 60.0);
}

TEST_CASE("balloon_stats_json: the age from a given now, never negative", "[api][balloon]") {
  using std::chrono::seconds;
  BalloonStats stats;
  auto t = std::chrono::system_clock::time_point(seconds(1'800'000'000));
  stats.updated_at = t;
  stats.hugetlb_failures = 2;
  auto j = balloon_stats_json(stats, t + std::chrono::milliseconds(2500));
  CHECK(j["updated_at"] == "2027-01-15T08:00:00.000Z");
  CHECK(j["age_seconds"] == 2.5);
  CHECK(j["hugetlb_failures"] == 2);
  CHECK(balloon_stats_json(stats, t - seconds(10))["age_seconds"] == 0.0);
}

TEST_CASE("balloon metrics: JSON and Prometheus only when present", "[api][balloon][metrics]") {
  VmMetrics vm;
  vm.name = "vm1";
  ApiMetrics api;
  CHECK_FALSE(metrics_to_json(vm, api).contains("balloon"));
  CHECK(metrics_to_prometheus(vm, api).find("petrel_balloon") == std::string::npos);

  vm.balloon = BalloonMetrics{.target = 128ULL << 20,
                              .actual = 64ULL << 20,
                              .inflated_pages_total = 20000,
                              .deflated_pages_total = 3616,
                              .reported_pages_total = 5,
                              .ignored_pfns_total = 1,
                              .oom_deflated_pages_total = 256};
  json j = metrics_to_json(vm, api);
  CHECK(j["balloon"] == json{{"target_bytes", 128ULL << 20},
                             {"actual_bytes", 64ULL << 20},
                             {"inflated_pages_total", 20000},
                             {"deflated_pages_total", 3616},
                             {"reported_pages_total", 5},
                             {"ignored_pfns_total", 1},
                             {"oom_deflated_pages_total", 256}});
  std::string text = metrics_to_prometheus(vm, api);
  CHECK(text.find("# TYPE petrel_balloon_target_bytes gauge\n") != std::string::npos);
  CHECK(text.find("petrel_balloon_target_bytes{vm=\"vm1\"} 134217728\n") != std::string::npos);
  CHECK(text.find("petrel_balloon_actual_bytes{vm=\"vm1\"} 67108864\n") != std::string::npos);
  CHECK(text.find("# TYPE petrel_balloon_inflated_pages_total counter\n") != std::string::npos);
  CHECK(text.find("petrel_balloon_inflated_pages_total{vm=\"vm1\"} 20000\n") != std::string::npos);
  CHECK(text.find("petrel_balloon_ignored_pfns_total{vm=\"vm1\"} 1\n") != std::string::npos);
  CHECK(text.find("petrel_balloon_oom_deflated_pages_total{vm=\"vm1\"} 256\n") !=
        std::string::npos);
}
