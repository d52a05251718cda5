// The VM routes (vm_routes.h) and metrics routes over a real Unix socket, with FakeVmControl
// behind them: every endpoint, every error class, the event stream (order, history, overflow,
// client gone, server gone), slow and half-open clients, many clients at once, curl.
#include <catch2/catch.hpp>
#include <chrono>
#include <memory>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "api/api_counters.h"
#include "api/metrics_routes.h"
#include "api/vm_routes.h"
#include "api_test_client.h"
#include "fake_vm_control.h"
#include "scratch_dir.h"

using namespace petrel;
using namespace petrel::testing;
using nlohmann::json;

namespace {

// A server with the VM and metrics routes over a FakeVmControl.
struct Api {
  explicit Api(ApiLimits limits = {}) {
    auto router = std::make_shared<Router>();
    REQUIRE(add_vm_routes(*router, vm).ok());
    REQUIRE(add_metrics_routes(*router, vm, counters).ok());
    server.emplace(path, router, limits, counters);
  }

  HttpAnswer get(const std::string& target) {
    return http_exchange(path, "GET " + target + " HTTP/1.1\r\nHost: x\r\n\r\n");
  }
  HttpAnswer put(const std::string& target, const std::string& body = "") {
    return http_exchange(path, "PUT " + target + " HTTP/1.1\r\nHost: x\r\nContent-Length: " +
                                   std::to_string(body.size()) + "\r\n\r\n" + body);
  }

  // Opens GET /v1/events (`query` e.g. "?after=0") and reads the response head.
  UniqueFd open_events(const std::string& query, std::string& pending) {
    UniqueFd fd = connect_to(path);
    send_all(fd.get(), "GET /v1/events" + query + " HTTP/1.1\r\nHost: x\r\n\r\n");
    HttpAnswer head = read_head(fd.get(), pending);
    REQUIRE(head.status == 200);
    CHECK(head.has_header("Content-Type: application/x-ndjson"));
    CHECK(head.has_header("Transfer-Encoding: chunked"));
    return fd;
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

// Polls `done` for up to 5 s.
template <typename F>
bool eventually(F done) {
  for (int i = 0; i < 500; ++i) {
    if (done()) {
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return done();
}

json read_event(int fd, std::string& pending) {
  auto chunk = read_chunk(fd, pending);
  REQUIRE(chunk.has_value());
  REQUIRE(!chunk->empty());
  REQUIRE(chunk->back() == '\n');
  REQUIRE(chunk->find('\n') == chunk->size() - 1);  // one line per chunk
  return json::parse(*chunk);
}

const std::regex kRfc3339Ms(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)");

}  // namespace

TEST_CASE("vm routes: GET /v1/vm, /v1/vm/state, /v1/vm/config", "[api][routes]") {
  Api api;
  HttpAnswer a = api.get("/v1/vm");
  REQUIRE(a.status == 200);
  CHECK(a.has_header("Content-Type: application/json"));
  json info = body_of(a);
  CHECK(info.at("name") == "test-vm");
  CHECK(info.at("state") == "created");
  CHECK(info.at("vcpus") == 2);
  CHECK(info.at("memory_bytes") == 256ULL << 20);
  CHECK(info.at("uptime_seconds").is_number());
  CHECK(info.at("started_at").is_null());
  CHECK(info.at("boot_count") == 0);
  CHECK(info.at("exec_mode") == "hardware");
  CHECK(info.at("version") == "0.1.0-test");
  CHECK(info.at("pid") == 4242);

  REQUIRE(api.put("/v1/vm/start").status == 200);
  info = body_of(api.get("/v1/vm"));
  CHECK(info.at("state") == "running");
  CHECK(info.at("boot_count") == 1);
  REQUIRE(info.at("started_at").is_string());
  CHECK(std::regex_match(info.at("started_at").get<std::string>(), kRfc3339Ms));

  a = api.get("/v1/vm/state");
  CHECK(a.status == 200);
  CHECK(body_of(a) == json{{"state", "running"}});

  a = api.get("/v1/vm/config");
  CHECK(a.status == 200);
  CHECK(body_of(a) == api.vm.config());
}

TEST_CASE("vm routes: actions follow the lifecycle; illegal ones answer 409 with the state",
          "[api][routes]") {
  Api api;
  HttpAnswer a = api.put("/v1/vm/pause");
  CHECK(a.status == 409);
  CHECK(error_code_of(a) == "state");
  CHECK(body_of(a)["error"]["state"] == "created");

  a = api.put("/v1/vm/start");
  CHECK(a.status == 200);
  CHECK(body_of(a) == json{{"state", "running"}});
  a = api.put("/v1/vm/pause", "{}");
  CHECK(a.status == 200);
  CHECK(body_of(a) == json{{"state", "paused"}});

  a = api.put("/v1/vm/pause");
  REQUIRE(a.status == 409);
  json err = body_of(a).at("error");
  CHECK(err.at("code") == "state");
  CHECK(err.at("state") == "paused");
  CHECK(err.at("message").get<std::string>().find("cannot pause") != std::string::npos);
  CHECK(err.at("chain").is_array());
  CHECK(api.vm.info().state == VmState::kPaused);  // nothing changed

  CHECK(body_of(api.put("/v1/vm/resume")) == json{{"state", "running"}});
  CHECK(body_of(api.put("/v1/vm/reboot", " \r\n")) == json{{"state", "running"}});
  CHECK(api.vm.info().boot_count == 2);

  a = api.put("/v1/vm/shutdown", R"({"timeout_ms": 5000})");
  CHECK(a.status == 202);
  CHECK(body_of(a) == json{{"state", "shutting-down"}});
  CHECK(api.vm.last_shutdown_timeout_ms == 5000);

  CHECK(body_of(api.put("/v1/vm/stop")) == json{{"state", "shut-off"}});
  a = api.put("/v1/vm/start");
  CHECK(a.status == 409);
  CHECK(body_of(a)["error"]["state"] == "shut-off");
}

TEST_CASE("vm routes: shutdown without a body leaves the timeout to the VM's config",
          "[api][routes]") {
  Api api;
  REQUIRE(api.put("/v1/vm/start").status == 200);
  HttpAnswer a = api.put("/v1/vm/shutdown");
  CHECK(a.status == 202);
  CHECK(api.vm.last_shutdown_timeout_ms == -1);
}

TEST_CASE("vm routes: bad bodies and queries answer 400 invalid_argument", "[api][routes]") {
  Api api;
  REQUIRE(api.put("/v1/vm/start").status == 200);
  struct Case {
    std::string target;
    std::string body;
    std::string mentions;  // the message names this
  };
  std::vector<Case> cases = {
      {"/v1/vm/pause", R"({"force": true})", "force"},
      {"/v1/vm/pause", "{", "not valid JSON"},
      {"/v1/vm/pause", "{} {}", "not valid JSON"},
      {"/v1/vm/pause", "[]", "JSON object"},
      {"/v1/vm/pause", "\"x\"", "JSON object"},
      {"/v1/vm/pause", "null", "JSON object"},
      {"/v1/vm/pause", "\xff\xfe", "not valid JSON"},
      {"/v1/vm/shutdown", R"({"timeout_ms": "5"})", "timeout_ms"},
      {"/v1/vm/shutdown", R"({"timeout_ms": 0})", "timeout_ms"},
      {"/v1/vm/shutdown", R"({"timeout_ms": -1})", "timeout_ms"},
      {"/v1/vm/shutdown", R"({"timeout_ms": 3600001})", "timeout_ms"},
      {"/v1/vm/shutdown", R"({"timeout_ms": 18446744073709551615})", "timeout_ms"},
      {"/v1/vm/shutdown", R"({"timeout_ms": 1.5})", "timeout_ms"},
      {"/v1/vm/shutdown", R"({"timeout_ms": null})", "timeout_ms"},
      {"/v1/vm/shutdown", R"({"timeout_ms": 5, "grace": 1})", "grace"},
      {"/v1/vm/stop?now=1", "", "now"},
  };
  for (const auto& c : cases) {
    INFO(c.target << " " << c.body);
    HttpAnswer a = api.put(c.target, c.body);
    CHECK(a.status == 400);
    CHECK(error_code_of(a) == "invalid_argument");
    CHECK(body_of(a)["error"]["message"].get<std::string>().find(c.mentions) != std::string::npos);
  }
  for (std::string target : {"/v1/vm?x=1", "/v1/events?after=-1", "/v1/events?after=1x",
                             "/v1/events?after=", "/v1/events?after=1&after=2",
                             "/v1/events?before=3", "/v1/metrics?a"}) {
    INFO(target);
    HttpAnswer a = api.get(target);
    CHECK(a.status == 400);
    CHECK(error_code_of(a) == "invalid_argument");
  }
  CHECK(api.vm.info().state == VmState::kRunning);  // nothing was done
}

TEST_CASE("vm routes: 404, 405 with Allow, 413, 500", "[api][routes]") {
  Api api;
  HttpAnswer a = api.get("/v1/vm/nope");
  CHECK(a.status == 404);
  CHECK(error_code_of(a) == "not_found");

  a = api.get("/v1/vm/start");
  CHECK(a.status == 405);
  CHECK(error_code_of(a) == "method_not_allowed");
  CHECK(a.has_header("Allow: PUT"));
  a = api.put("/v1/vm");
  CHECK(a.status == 405);
  CHECK(a.has_header("Allow: GET"));

  a = api.put("/v1/vm/shutdown", std::string(100 * 1024, ' '));
  CHECK(a.status == 413);
  CHECK(error_code_of(a) == "body_too_large");

  api.vm.fail_next_action(Error(ErrorCode::kInternal, "the vCPUs did not park"));
  a = api.put("/v1/vm/start");
  CHECK(a.status == 500);
  CHECK(error_code_of(a) == "internal");
  CHECK(api.put("/v1/vm/start").status == 200);  // the failure changed nothing
}

TEST_CASE("vm routes: the event stream delivers history and new events in order",
          "[api][routes][events]") {
  Api api;
  REQUIRE(api.put("/v1/vm/start").status == 200);  // seq 1
  REQUIRE(api.put("/v1/vm/pause").status == 200);  // seq 2

  std::string pending;
  UniqueFd fd = api.open_events("?after=0", pending);
  json e = read_event(fd.get(), pending);
  CHECK(e.at("seq") == 1);
  CHECK(e.at("type") == "state");
  CHECK(e.at("data") == json{{"from", "created"}, {"to", "running"}, {"action", "start"}});
  CHECK(std::regex_match(e.at("time").get<std::string>(), kRfc3339Ms));
  CHECK(read_event(fd.get(), pending).at("seq") == 2);

  // Events published on other threads while the client reads.
  constexpr int kEvents = 500;
  std::jthread publisher([&] {
    for (int i = 0; i < kEvents; ++i) {
      api.vm.publish("device_error", {{"device", "disk0"}, {"message", std::to_string(i)}});
    }
  });
  for (int i = 0; i < kEvents; ++i) {
    json ev = read_event(fd.get(), pending);
    REQUIRE(ev.at("seq") == 3 + i);
    REQUIRE(ev.at("data").at("message") == std::to_string(i));
  }
  publisher.join();

  // after=N skips what the client has seen; without `after` only new events come.
  std::string pending2;
  UniqueFd from_two = api.open_events("?after=501", pending2);
  CHECK(read_event(from_two.get(), pending2).at("seq") == 502);
  std::string pending3;
  UniqueFd only_new = api.open_events("", pending3);
  uint64_t seq = api.vm.publish("panic", {{"message", "bad \xff byte"}});
  json ev = read_event(only_new.get(), pending3);
  CHECK(ev.at("seq") == seq);
  CHECK(ev.at("type") == "panic");
  CHECK(read_event(fd.get(), pending).at("seq") == seq);
  CHECK(api.counters->snapshot().event_streams_active == 3);
}

TEST_CASE("vm routes: a client that goes away is unsubscribed", "[api][routes][events]") {
  Api api;
  {
    std::string pending;
    UniqueFd fd = api.open_events("", pending);
    REQUIRE(api.vm.subscriber_count() == 1);
  }  // closed
  CHECK(eventually([&] { return api.vm.subscriber_count() == 0; }));
  CHECK(eventually([&] { return api.counters->snapshot().event_streams_active == 0; }));
  api.vm.publish("state");  // nobody listens: no crash

  // A client that half-closes its side also ends the stream.
  std::string pending;
  UniqueFd fd = api.open_events("", pending);
  ::shutdown(fd.get(), SHUT_WR);
  CHECK(eventually([&] { return api.vm.subscriber_count() == 0; }));
  CHECK(read_chunk(fd.get(), pending) == std::string());  // terminating chunk
  CHECK(closed_by_server(fd.get()));
}

TEST_CASE("vm routes: destroying the server ends streams with the terminating chunk",
          "[api][routes][events]") {
  Api api;
  std::string pending;
  UniqueFd fd = api.open_events("", pending);
  api.vm.publish("state", {{"n", 1}});
  CHECK(read_event(fd.get(), pending).at("data") == json{{"n", 1}});
  api.server->stop();
  CHECK(api.vm.subscriber_count() == 0);
  CHECK(read_chunk(fd.get(), pending) == std::string());
  CHECK(closed_by_server(fd.get()));
}

TEST_CASE("vm routes: a stream whose client does not read overflows and ends",
          "[api][routes][events]") {
  ApiLimits limits;
  limits.max_stream_queue = 8;
  Api api(limits);
  std::string pending;
  UniqueFd fd = api.open_events("", pending);
  // Enough to fill the socket buffers and then the queue.
  std::string filler(2000, 'x');
  for (int i = 0; i < 5000; ++i) {
    api.vm.publish("device_error", {{"message", filler}});
  }
  uint64_t expected = 1;
  for (;;) {
    auto chunk = read_chunk(fd.get(), pending);
    REQUIRE(chunk.has_value());
    REQUIRE(!chunk->empty());
    json line = json::parse(*chunk);
    if (line.at("type") == "overflow") {
      CHECK(line.at("data").at("last_seq") == expected - 1);
      break;
    }
    REQUIRE(line.at("seq") == expected);  // no gap before the overflow
    ++expected;
  }
  CHECK(expected < 5000);
  CHECK(read_chunk(fd.get(), pending) == std::string());
  CHECK(closed_by_server(fd.get()));
  CHECK(eventually([&] { return api.vm.subscriber_count() == 0; }));
}

TEST_CASE("vm routes: slow and half-open clients do not block the others", "[api][routes]") {
  ApiLimits limits;
  limits.io_timeout = std::chrono::milliseconds(300);
  Api api(limits);
  UniqueFd slow = connect_to(api.path);
  send_all(slow.get(), "PUT /v1/vm/start HTTP/1.1\r\nContent-Length: 10\r\n\r\n{");
  UniqueFd half = connect_to(api.path);
  send_all(half.get(), "GET /v1/vm HTTP/1.1\r\n");
  ::shutdown(half.get(), SHUT_WR);
  UniqueFd silent = connect_to(api.path);  // connects, says nothing

  CHECK(api.get("/v1/vm/state").status == 200);
  CHECK(closed_by_server(half.get()));
  CHECK(closed_by_server(slow.get()));
  CHECK(closed_by_server(silent.get()));
  CHECK(api.vm.info().state == VmState::kCreated);  // the unfinished PUT did nothing
}

TEST_CASE("vm routes: many clients at once are all served", "[api][routes]") {
  Api api;
  REQUIRE(api.put("/v1/vm/start").status == 200);
  constexpr int kClients = 40;
  constexpr int kRequests = 10;
  std::vector<int> ok(kClients, 0);
  {
    std::vector<std::jthread> clients;
    for (int c = 0; c < kClients; ++c) {
      clients.emplace_back([&, c] {
        UniqueFd fd = connect_to(api.path);
        std::string pending;
        for (int r = 0; r < kRequests; ++r) {
          send_all(fd.get(), r % 2 ? "GET /v1/vm HTTP/1.1\r\nHost: x\r\n\r\n"
                                   : "GET /v1/vm/state HTTP/1.1\r\nHost: x\r\n\r\n");
          if (read_response(fd.get(), pending).status == 200) {
            ++ok[c];
          }
        }
      });
    }
  }
  for (int c = 0; c < kClients; ++c) {
    CHECK(ok[c] == kRequests);
  }
}

TEST_CASE("vm routes: the API counts requests by status and connections", "[api][routes]") {
  Api api;
  CHECK(api.get("/v1/vm").status == 200);
  CHECK(api.get("/v1/nope").status == 404);
  CHECK(api.put("/v1/vm/pause").status == 409);
  CHECK(eventually([&] { return api.counters->snapshot().connections_active == 0; }));
  ApiMetrics m = api.counters->snapshot();
  CHECK(m.requests_total == 3);
  CHECK(m.connections_total == 3);
  CHECK(m.responses_by_status ==
        std::vector<std::pair<unsigned, uint64_t>>{{200, 1}, {404, 1}, {409, 1}});

  HttpAnswer a = api.get("/v1/metrics");
  REQUIRE(a.status == 200);
  json metrics = body_of(a);
  CHECK(metrics.at("name") == "test-vm");
  CHECK(metrics.at("api").at("requests_total") == 3);  // this request is counted once written

  a = api.get("/v1/metrics/prometheus");
  REQUIRE(a.status == 200);
  CHECK(a.has_header("Content-Type: text/plain; version=0.0.4"));
  CHECK(a.body.find("petrel_api_requests_total") != std::string::npos);
}

TEST_CASE("vm routes: curl drives every endpoint", "[api][routes][curl]") {
  if (!have_curl()) {
    SUCCEED("curl not installed");
    return;
  }
  Api api;
  std::string curl = "/usr/bin/curl -s -m 5 --unix-socket " + api.path.string() + " ";
  auto run = [&](const std::string& args) {
    int status = -1;
    std::string out = run_command(curl + "-w '\\n%{http_code}' " + args, status);
    CHECK(status == 0);
    return out;
  };
  CHECK(run("-X PUT http://localhost/v1/vm/start") == "{\"state\":\"running\"}\n200");
  CHECK(run("-X PUT -d '{}' http://localhost/v1/vm/pause") == "{\"state\":\"paused\"}\n200");
  CHECK(run("-X PUT http://localhost/v1/vm/resume") == "{\"state\":\"running\"}\n200");
  CHECK(run("-X PUT http://localhost/v1/vm/reboot") == "{\"state\":\"running\"}\n200");
  CHECK(run("-X PUT -H 'Content-Type: application/json' -d '{\"timeout_ms\":1000}' "
            "http://localhost/v1/vm/shutdown") == "{\"state\":\"shutting-down\"}\n202");
  CHECK(run("-X PUT http://localhost/v1/vm/stop") == "{\"state\":\"shut-off\"}\n200");
  CHECK(run("-X PUT http://localhost/v1/vm/stop").ends_with("\n409"));
  CHECK(run("http://localhost/v1/vm/state") == "{\"state\":\"shut-off\"}\n200");
  CHECK(run("http://localhost/v1/vm").ends_with("\n200"));
  CHECK(run("http://localhost/v1/vm/config").ends_with("\n200"));
  CHECK(run("http://localhost/v1/metrics").ends_with("\n200"));
  CHECK(run("http://localhost/v1/metrics/prometheus").ends_with("\n200"));
  CHECK(run("-X PUT -d '{\"x\":1}' http://localhost/v1/vm/stop").ends_with("\n400"));

  // The stream never ends by itself: curl's -m ends it (exit status 28) after the history.
  int status = -1;
  std::string out = run_command("/usr/bin/curl -s -N -m 1 --unix-socket " + api.path.string() +
                                    " 'http://localhost/v1/events?after=0'",
                                status);
  CHECK(WEXITSTATUS(status) == 28);
  std::vector<json> lines;
  std::size_t start = 0;
  for (std::size_t nl; (nl = out.find('\n', start)) != std::string::npos; start = nl + 1) {
    lines.push_back(json::parse(out.substr(start, nl - start)));
  }
  REQUIRE(lines.size() == 6);
  for (std::size_t i = 0; i < lines.size(); ++i) {
    CHECK(lines[i].at("seq") == i + 1);
    CHECK(lines[i].at("type") == "state");
  }
  CHECK(lines.back().at("data").at("to") == "shut-off");
}
