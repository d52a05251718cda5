// The snapshot, restore and migration routes (migration_routes.h) over a real Unix socket,
// with FakeVmControl behind them: every endpoint, the request each passes to VmControl, every
// 400 case, the 409 mapping, 500 for other errors, and the JSON shape of the status.
#include <catch2/catch.hpp>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "api/api_counters.h"
#include "api/migration_routes.h"
#include "api/vm_routes.h"
#include "api_test_client.h"
#include "fake_vm_control.h"
#include "scratch_dir.h"

using namespace petrel;
using namespace petrel::testing;
using nlohmann::json;

namespace {

// A server with the VM routes and the migration routes over a FakeVmControl.
struct MigrationApi {
  MigrationApi() {
    auto router = std::make_shared<Router>();
    REQUIRE(add_vm_routes(*router, vm).ok());
    REQUIRE(add_migration_routes(*router, vm).ok());
    server.emplace(path, router, ApiLimits{}, std::make_shared<ApiCounters>());
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
  std::optional<RunningServer> server;  // last: stopped before the VM goes away
};

json body_of(const HttpAnswer& a) {
  return json::parse(a.body);
}

const std::vector<std::string> kStatusKeys = {"role",
                                              "phase",
                                              "peer",
                                              "round",
                                              "bytes",
                                              "pages",
                                              "remaining_bytes",
                                              "dirty_rate_bytes_per_s",
                                              "bandwidth_bytes_per_s",
                                              "expected_downtime_ms",
                                              "elapsed_ms",
                                              "total_ms",
                                              "downtime_ms",
                                              "error"};

// The keys of a JSON object in the order the server wrote them.
std::vector<std::string> keys_of(const std::string& text) {
  std::vector<std::string> keys;
  auto object = nlohmann::ordered_json::parse(text);
  for (const auto& [key, value] : object.items()) {
    keys.push_back(key);
  }
  return keys;
}

}  // namespace

TEST_CASE("migration routes: snapshot only while paused, with the request's path",
          "[api][migration]") {
  MigrationApi api;
  REQUIRE(api.put("/v1/vm/start").status == 200);
  HttpAnswer a = api.put("/v1/vm/snapshot", R"({"path": "/var/lib/snap1"})");
  CHECK(a.status == 409);
  CHECK(error_code_of(a) == "state");
  CHECK(body_of(a)["error"]["state"] == "running");
  CHECK(!api.vm.last_snapshot());

  REQUIRE(api.put("/v1/vm/pause").status == 200);
  a = api.put("/v1/vm/snapshot", R"({"path": "/var/lib/snap1"})");
  REQUIRE(a.status == 200);
  CHECK(a.has_header("Content-Type: application/json"));
  CHECK(body_of(a) == json{{"path", "/var/lib/snap1"},
                           {"memory_bytes_written", 4096},
                           {"state_bytes", 1234},
                           {"duration_ms", 7}});
  REQUIRE(api.vm.last_snapshot());
  CHECK(api.vm.last_snapshot()->path == "/var/lib/snap1");

  api.vm.fail_next_action(Error(ErrorCode::kIo, "disk full"));
  a = api.put("/v1/vm/snapshot", R"({"path": "/var/lib/snap2"})");
  CHECK(a.status == 500);
  CHECK(error_code_of(a) == "io");
}

TEST_CASE("migration routes: restore only on an empty petrel, paused or not", "[api][migration]") {
  MigrationApi api;
  HttpAnswer a = api.put("/v1/vm/restore", R"({"path": "/snap"})");
  CHECK(a.status == 409);
  CHECK(body_of(a)["error"]["state"] == "created");

  api.vm.restorable = true;
  a = api.put("/v1/vm/restore", R"({"path": "/snap"})");
  REQUIRE(a.status == 200);
  CHECK(body_of(a).at("state").is_string());
  REQUIRE(api.vm.last_restore());
  CHECK(api.vm.last_restore()->path == "/snap");
  CHECK(!api.vm.last_restore()->paused);

  a = api.put("/v1/vm/restore", R"({"path": "/snap2", "paused": true})");
  REQUIRE(a.status == 200);
  CHECK(api.vm.last_restore()->path == "/snap2");
  CHECK(api.vm.last_restore()->paused);
}

TEST_CASE("migration routes: send passes the request and reports the status", "[api][migration]") {
  MigrationApi api;
  // Created: nothing to send.
  HttpAnswer a = api.put("/v1/migration/send", R"({"destination": "unix:/run/m.sock"})");
  CHECK(a.status == 409);
  CHECK(body_of(a)["error"]["state"] == "created");

  REQUIRE(api.put("/v1/vm/start").status == 200);
  a = api.put("/v1/migration/send", R"({"destination": "unix:/run/m.sock"})");
  REQUIRE(a.status == 202);
  json status = body_of(a);
  CHECK(status["role"] == "send");
  CHECK(status["phase"] == "precopy");
  CHECK(status["peer"] == "unix:/run/m.sock");
  auto sent = api.vm.last_send();
  REQUIRE(sent);
  CHECK(sent->destination == "unix:/run/m.sock");
  CHECK(sent->downtime == std::chrono::milliseconds(300));  // the defaults
  CHECK(sent->timeout == std::chrono::milliseconds(600000));
  CHECK(sent->max_rounds == 30);

  // One migration at a time.
  a = api.put("/v1/migration/send", R"({"destination": "tcp:10.0.0.2:4444"})");
  CHECK(a.status == 409);
  CHECK(body_of(a)["error"]["message"].get<std::string>().find("already active") !=
        std::string::npos);

  REQUIRE(api.put("/v1/migration/cancel").status == 200);
  a = api.put("/v1/migration/send",
              R"({"destination": "tcp:[fd00::2]:4444", "downtime_ms": 60000,
                  "timeout_ms": 86400000, "max_rounds": 1000})");
  REQUIRE(a.status == 202);
  sent = api.vm.last_send();
  CHECK(sent->destination == "tcp:[fd00::2]:4444");
  CHECK(sent->downtime == std::chrono::milliseconds(60000));
  CHECK(sent->timeout == std::chrono::milliseconds(86400000));
  CHECK(sent->max_rounds == 1000);
}

TEST_CASE("migration routes: receive and cancel", "[api][migration]") {
  MigrationApi api;
  HttpAnswer a = api.put("/v1/migration/cancel");
  CHECK(a.status == 409);
  CHECK(error_code_of(a) == "state");
  CHECK(body_of(a)["error"]["state"] == "created");

  a = api.put("/v1/migration/receive", R"({"listen": "tcp:0.0.0.0:4444", "timeout_ms": 1000})");
  REQUIRE(a.status == 202);
  CHECK(body_of(a)["role"] == "receive");
  CHECK(body_of(a)["phase"] == "listening");
  REQUIRE(api.vm.last_receive());
  CHECK(api.vm.last_receive()->listen == "tcp:0.0.0.0:4444");
  CHECK(api.vm.last_receive()->timeout == std::chrono::milliseconds(1000));

  a = api.put("/v1/migration/cancel", "{}");
  REQUIRE(a.status == 200);
  CHECK(body_of(a)["phase"] == "cancelled");
  CHECK(body_of(a)["error"] == "cancelled through the API");
  CHECK(api.put("/v1/migration/cancel").status == 409);
}

TEST_CASE("migration routes: GET /v1/migration has every field, nulls when unset",
          "[api][migration]") {
  MigrationApi api;
  HttpAnswer a = api.get("/v1/migration");
  REQUIRE(a.status == 200);
  json idle = body_of(a);
  CHECK(keys_of(a.body) == kStatusKeys);  // and in this order
  CHECK(idle["role"] == "none");
  CHECK(idle["phase"] == "idle");
  CHECK(idle["peer"] == "");
  CHECK(idle["elapsed_ms"] == 0);
  CHECK(idle["total_ms"].is_null());
  CHECK(idle["downtime_ms"].is_null());
  CHECK(idle["error"].is_null());

  MigrationStatus completed;
  completed.role = MigrationRole::kSend;
  completed.phase = MigrationPhase::kCompleted;
  completed.peer = "tcp:h:1";
  completed.round = 5;
  completed.bytes_sent = 1ULL << 33;
  completed.pages = 1ULL << 21;
  completed.dirty_rate_bytes_per_s = 123;
  completed.bandwidth_bytes_per_s = 456;
  completed.expected_downtime_ms = 12;
  completed.elapsed = std::chrono::milliseconds(2500);
  completed.total = std::chrono::milliseconds(2500);
  completed.downtime = std::chrono::milliseconds(42);
  api.vm.set_migration(completed);
  json done = body_of(api.get("/v1/migration"));
  CHECK(done == json{{"role", "send"},
                     {"phase", "completed"},
                     {"peer", "tcp:h:1"},
                     {"round", 5},
                     {"bytes", 1ULL << 33},
                     {"pages", 1ULL << 21},
                     {"remaining_bytes", 0},
                     {"dirty_rate_bytes_per_s", 123},
                     {"bandwidth_bytes_per_s", 456},
                     {"expected_downtime_ms", 12},
                     {"elapsed_ms", 2500},
                     {"total_ms", 2500},
                     {"downtime_ms", 42},
                     {"error", nullptr}});

  MigrationStatus failed;
  failed.role = MigrationRole::kReceive;
  failed.phase = MigrationPhase::kFailed;
  failed.error = "connection reset by peer";
  api.vm.set_migration(failed);
  json f = body_of(api.get("/v1/migration"));
  CHECK(f["role"] == "receive");
  CHECK(f["phase"] == "failed");
  CHECK(f["error"] == "connection reset by peer");
  CHECK(f["total_ms"].is_null());

  for (auto [phase, name] : {std::pair{MigrationPhase::kConnecting, "connecting"},
                             std::pair{MigrationPhase::kStopAndCopy, "stop-and-copy"}}) {
    MigrationStatus active;
    active.role = MigrationRole::kSend;
    active.phase = phase;
    api.vm.set_migration(active);
    CHECK(body_of(api.get("/v1/migration"))["phase"] == name);
  }

  CHECK(api.get("/v1/migration?x=1").status == 400);
  a = api.put("/v1/migration");
  CHECK(a.status == 405);
  CHECK(a.has_header("Allow: GET"));
  CHECK(api.get("/v1/migration/send").status == 405);
}

TEST_CASE("migration routes: bad bodies answer 400 and call nothing", "[api][migration]") {
  MigrationApi api;
  REQUIRE(api.put("/v1/vm/start").status == 200);
  REQUIRE(api.put("/v1/vm/pause").status == 200);
  api.vm.restorable = true;
  struct Case {
    std::string target;
    std::string body;
    std::string mentions;  // the message names this
  };
  const std::string long_unix = "unix:/" + std::string(107, 'a');
  std::vector<Case> cases = {
      // snapshot
      {"/v1/vm/snapshot", "", "\"path\" is required"},
      {"/v1/vm/snapshot", "{}", "\"path\" is required"},
      {"/v1/vm/snapshot", R"({"path": ""})", "must not be empty"},
      {"/v1/vm/snapshot", R"({"path": "snap"})", "absolute"},
      {"/v1/vm/snapshot", R"({"path": "./snap"})", "absolute"},
      {"/v1/vm/snapshot", R"({"path": "/a\u0000b"})", "NUL"},
      {"/v1/vm/snapshot", "{\"path\": \"/" + std::string(5000, 'a') + "\"}", "longer than"},
      {"/v1/vm/snapshot", R"({"path": 7})", "path"},
      {"/v1/vm/snapshot", R"({"path": null})", "path"},
      {"/v1/vm/snapshot", R"({"path": ["/a"]})", "path"},
      {"/v1/vm/snapshot", R"({"path": "/a", "compress": true})", "compress"},
      {"/v1/vm/snapshot", R"(["/a"])", "JSON object"},
      {"/v1/vm/snapshot", "{", "not valid JSON"},
      {"/v1/vm/snapshot?x=1", R"({"path": "/a"})", "x"},
      // restore
      {"/v1/vm/restore", "{}", "\"path\" is required"},
      {"/v1/vm/restore", R"({"path": "rel"})", "absolute"},
      {"/v1/vm/restore", R"({"path": "/a", "paused": 1})", "paused"},
      {"/v1/vm/restore", R"({"path": "/a", "paused": "true"})", "paused"},
      {"/v1/vm/restore", R"({"path": "/a", "resume": true})", "resume"},
      // send
      {"/v1/migration/send", "", "\"destination\" is required"},
      {"/v1/migration/send", R"({"destination": ""})", "destination"},
      {"/v1/migration/send", R"({"destination": "/run/m.sock"})", "unix:"},
      {"/v1/migration/send", R"({"destination": "udp:h:1"})", "unix:"},
      {"/v1/migration/send", R"({"destination": "UNIX:/a"})", "unix:"},
      {"/v1/migration/send", R"({"destination": "unix:"})", "must not be empty"},
      {"/v1/migration/send", R"({"destination": "unix:rel.sock"})", "absolute"},
      {"/v1/migration/send", "{\"destination\": \"" + long_unix + "\"}", "at most 107"},
      {"/v1/migration/send", R"({"destination": "tcp:"})", "tcp:HOST:PORT"},
      {"/v1/migration/send", R"({"destination": "tcp:host"})", "tcp:HOST:PORT"},
      {"/v1/migration/send", R"({"destination": "tcp::4444"})", "host"},
      {"/v1/migration/send", R"({"destination": "tcp:a b:4444"})", "host"},
      {"/v1/migration/send", R"({"destination": "tcp:h/x:4444"})", "host"},
      {"/v1/migration/send", R"({"destination": "tcp:[]:4444"})", "host"},
      {"/v1/migration/send", R"({"destination": "tcp:[zz::1]:4444"})", "host"},
      {"/v1/migration/send", R"({"destination": "tcp:::1:4444"})", "host"},
      {"/v1/migration/send", R"({"destination": "tcp:h:"})", "port"},
      {"/v1/migration/send", R"({"destination": "tcp:h:0"})", "port"},
      {"/v1/migration/send", R"({"destination": "tcp:h:65536"})", "port"},
      {"/v1/migration/send", R"({"destination": "tcp:h:-1"})", "port"},
      {"/v1/migration/send", R"({"destination": "tcp:h:44x"})", "port"},
      {"/v1/migration/send", R"({"destination": "tcp:h:99999999999999999999"})", "port"},
      {"/v1/migration/send", R"({"destination": 5})", "destination"},
      {"/v1/migration/send", R"({"destination": "tcp:h:1", "downtime_ms": 0})", "downtime_ms"},
      {"/v1/migration/send", R"({"destination": "tcp:h:1", "downtime_ms": 60001})", "downtime_ms"},
      {"/v1/migration/send", R"({"destination": "tcp:h:1", "downtime_ms": "5"})", "downtime_ms"},
      {"/v1/migration/send", R"({"destination": "tcp:h:1", "timeout_ms": 999})", "timeout_ms"},
      {"/v1/migration/send", R"({"destination": "tcp:h:1", "timeout_ms": 86400001})", "timeout_ms"},
      {"/v1/migration/send", R"({"destination": "tcp:h:1", "timeout_ms": 1.5})", "timeout_ms"},
      {"/v1/migration/send", R"({"destination": "tcp:h:1", "max_rounds": 0})", "max_rounds"},
      {"/v1/migration/send", R"({"destination": "tcp:h:1", "max_rounds": 1001})", "max_rounds"},
      {"/v1/migration/send", R"({"destination": "tcp:h:1", "max_rounds": null})", "max_rounds"},
      {"/v1/migration/send", R"({"destination": "tcp:h:1", "speed": 1})", "speed"},
      // receive
      {"/v1/migration/receive", "{}", "\"listen\" is required"},
      {"/v1/migration/receive", R"({"listen": "tcp:h"})", "tcp:HOST:PORT"},
      {"/v1/migration/receive", R"({"listen": "unix:x"})", "absolute"},
      {"/v1/migration/receive", R"({"listen": "tcp:h:1", "timeout_ms": 0})", "timeout_ms"},
      {"/v1/migration/receive", R"({"listen": "tcp:h:1", "downtime_ms": 5})", "downtime_ms"},
      // cancel
      {"/v1/migration/cancel", R"({"force": true})", "force"},
      {"/v1/migration/cancel", "[]", "JSON object"},
  };
  for (const auto& c : cases) {
    INFO(c.target << " " << c.body);
    HttpAnswer a = api.put(c.target, c.body);
    CHECK(a.status == 400);
    CHECK(error_code_of(a) == "invalid_argument");
    CHECK(body_of(a)["error"]["message"].get<std::string>().find(c.mentions) != std::string::npos);
  }
  CHECK(!api.vm.last_snapshot());
  CHECK(!api.vm.last_restore());
  CHECK(!api.vm.last_send());
  CHECK(!api.vm.last_receive());
  CHECK(api.vm.migration_status().phase == MigrationPhase::kIdle);
}

TEST_CASE("migration routes: address and path checks accept the documented shapes",
          "[api][migration]") {
  for (const std::string& address : std::vector<std::string>{
           "unix:/run/petrel/m.sock", "unix:/" + std::string(106, 'a'), "tcp:10.0.0.2:4444",
           "tcp:host-b.example.org:1", "tcp:[::1]:65535", "tcp:[::ffff:10.0.0.1]:80"}) {
    INFO(address);
    CHECK(check_migration_address("destination", address).ok());
  }
  for (std::string address : {"tcp:[fe80::1%eth0]:1", "unix:", "udp:h:1", "tcp:h:1 ", " tcp:h:1"}) {
    INFO(address);
    CHECK(!check_migration_address("destination", address).ok());
  }
  CHECK(check_absolute_path("path", "/").ok());
  CHECK(!check_absolute_path("path", "~/snap").ok());
}
