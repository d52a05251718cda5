// petrelctl end to end: the real binary (PETRELCTL_BIN) against a real petrel serving a test
// guest, every verb in readable and --json form, with the exit statuses docs/petrelctl.md
// promises (0 ok, 1 API error, 2 usage, 3 cannot connect, 4 refused by the state).
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "api_harness.h"

using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;
using nlohmann::json;
using petrel::test::ApiPetrel;
using petrel::test::BackgroundProcess;
using petrel::test::CommandResult;
using petrel::test::curl_api;
using petrel::test::petrelctl;

namespace {

constexpr auto kWait = std::chrono::seconds(20);

// petrelctl -s SOCKET ARGS...
CommandResult ctl(const ApiPetrel& vm, std::vector<std::string> args) {
  args.insert(args.begin(), {"-s", vm.socket()});
  return petrelctl(args);
}

// The stdout of a run that must succeed, parsed as JSON.
json json_out(const CommandResult& r) {
  INFO("exit " << r.exit_code << " stdout:\n" << r.out << "\nstderr:\n" << r.err);
  REQUIRE(r.exit_code == 0);
  auto parsed = json::parse(r.out, nullptr, false);
  REQUIRE_FALSE(parsed.is_discarded());
  return parsed;
}

// "key:   value" lines of the readable output, keyed by their key.
std::map<std::string, std::string> fields(const std::string& text) {
  std::map<std::string, std::string> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    const size_t colon = line.find(':');
    if (colon == std::string::npos) {
      continue;
    }
    const size_t value = line.find_first_not_of(' ', colon + 1);
    out[line.substr(0, colon)] = value == std::string::npos ? "" : line.substr(value);
  }
  return out;
}

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) {
      out.push_back(line);
    }
  }
  return out;
}

// The whitespace-separated words of a line.
std::vector<std::string> words(const std::string& line) {
  std::vector<std::string> out;
  std::istringstream in(line);
  for (std::string w; in >> w;) {
    out.push_back(w);
  }
  return out;
}

// A socket file that nobody listens on (bound, then closed): what a killed petrel leaves.
void make_stale_socket(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path.c_str());
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
  ::close(fd);
}

// A petrel whose API socket is DIR/NAME.sock (ApiPetrel always uses api.sock).
std::unique_ptr<BackgroundProcess> start_named(const std::filesystem::path& dir,
                                               const std::string& name,
                                               const std::vector<std::string>& extra) {
  const std::string socket = (dir / (name + ".sock")).string();
  std::vector<std::string> argv{petrel::test::petrel_binary(),
                                "run",
                                "--kernel",
                                petrel::test::guest_image("kbd_ignore"),
                                "--api-socket",
                                socket,
                                "--name",
                                name};
  argv.insert(argv.end(), extra.begin(), extra.end());
  auto process = std::make_unique<BackgroundProcess>(argv, (dir / (name + ".out")).string(),
                                                     (dir / (name + ".err")).string());
  const auto deadline = std::chrono::steady_clock::now() + kWait;
  while (std::chrono::steady_clock::now() < deadline && process->running()) {
    if (std::filesystem::exists(socket) && curl_api(socket, "GET", "/v1/vm").status == 200) {
      return process;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  INFO("petrel log:\n" << process->err());
  FAIL("petrel " << name << " did not come up");
  return process;
}

}  // namespace

TEST_CASE("petrelctl: info, state and config of a running guest", "[petrelctl]") {
  ApiPetrel vm("kbd_ignore", {"--name", "ctltest", "--vcpus", "2", "--memory", "64M"});
  REQUIRE(vm.process().wait_for_line("ignoring ctrl-alt-del", kWait));

  auto info = ctl(vm, {"info"});
  REQUIRE(info.exit_code == 0);
  CHECK(info.err.empty());
  auto f = fields(info.out);
  for (const char* key : {"name", "state", "vcpus", "memory", "uptime", "started at", "boot count",
                          "exec mode", "version", "pid"}) {
    INFO("info output:\n" << info.out);
    CHECK(f.count(key) == 1);
  }
  CHECK(f["name"] == "ctltest");
  CHECK(f["state"] == "running");
  CHECK(f["vcpus"] == "2");
  CHECK(f["memory"] == "64 MiB");
  CHECK(f["boot count"] == "1");
  CHECK(f["pid"] == std::to_string(vm.process().pid()));
  CHECK_THAT(f["uptime"], Catch::Matchers::EndsWith("s"));
  CHECK_THAT(f["started at"], Catch::Matchers::EndsWith("Z"));

  auto info_json = json_out(ctl(vm, {"--json", "info"}));
  CHECK(info_json["name"] == "ctltest");
  CHECK(info_json["memory_bytes"] == 64ull << 20);
  CHECK(info_json["pid"] == vm.process().pid());

  auto state = ctl(vm, {"state"});
  CHECK(state.exit_code == 0);
  CHECK(state.out == "running\n");
  CHECK(json_out(ctl(vm, {"--json", "state"})) == json{{"state", "running"}});

  auto expected = curl_api(vm.socket(), "GET", "/v1/vm/config");
  REQUIRE(expected.status == 200);
  const json config = expected.json();
  CHECK(config["name"] == "ctltest");
  CHECK(json_out(ctl(vm, {"--json", "config"})) == config);
  // The readable form is indented JSON with the same content.
  auto readable = ctl(vm, {"config"});
  CHECK_THAT(readable.out, Contains("\n  \"name\": \"ctltest\""));
  CHECK(json_out(readable) == config);

  CHECK(ctl(vm, {"stop"}).out == "shut-off\n");
  CHECK(vm.process().wait_exit(kWait) == 0);
}

TEST_CASE("petrelctl: pause, resume, reboot and a refused second pause", "[petrelctl]") {
  ApiPetrel vm("kbd_ignore");
  REQUIRE(vm.process().wait_for_line("ignoring ctrl-alt-del", kWait));

  auto paused = ctl(vm, {"pause"});
  CHECK(paused.exit_code == 0);
  CHECK(paused.out == "paused\n");
  CHECK(vm.state() == "paused");

  auto again = ctl(vm, {"pause"});
  CHECK(again.exit_code == 4);
  CHECK(again.out.empty());
  CHECK(again.err == "petrelctl: cannot pause: the VM is paused\n");
  auto refused_json = ctl(vm, {"--json", "reboot"});
  CHECK(refused_json.exit_code == 4);
  CHECK_THAT(refused_json.err, StartsWith("petrelctl: cannot reboot"));
  CHECK(vm.state() == "paused");

  CHECK(json_out(ctl(vm, {"--json", "resume"})) == json{{"state", "running"}});
  CHECK(vm.state() == "running");
  auto resume_again = ctl(vm, {"resume"});
  CHECK(resume_again.exit_code == 4);
  CHECK_THAT(resume_again.err, Contains("running"));

  auto rebooted = ctl(vm, {"reboot"});
  CHECK(rebooted.exit_code == 0);
  CHECK(rebooted.out == "running\n");
  CHECK(fields(ctl(vm, {"info"}).out)["boot count"] == "2");
  CHECK(json_out(ctl(vm, {"--json", "info"}))["boot_count"] == 2);
  REQUIRE(vm.process().wait_for_line("ignoring ctrl-alt-del\nignoring ctrl-alt-del", kWait));

  CHECK(json_out(ctl(vm, {"--json", "stop"})) == json{{"state", "shut-off"}});
  CHECK(vm.process().wait_exit(kWait) == 0);
}

TEST_CASE("petrelctl: shutdown --wait on a guest that shuts down", "[petrelctl]") {
  ApiPetrel vm("kbd_shutdown");
  REQUIRE(vm.process().wait_for_line("waiting for ctrl-alt-del", kWait));
  auto r = ctl(vm, {"shutdown", "--timeout", "20", "--wait"});
  INFO("stderr: " << r.err);
  CHECK(r.exit_code == 0);
  // It polls every 200 ms: it sees shut-off, or petrel already gone.
  CHECK((r.out == "shut-off\n" || r.out == "exited\n"));
  CHECK(vm.process().wait_exit(kWait) == 0);
  CHECK_THAT(vm.process().out(), Contains("ctrl-alt-del received"));
  CHECK_THAT(vm.process().err(), !Contains("did not shut down"));
  // petrel is gone: nobody answers any more.
  auto after = ctl(vm, {"state"});
  CHECK(after.exit_code == 3);
  CHECK_THAT(after.err, StartsWith("petrelctl: "));
}

TEST_CASE("petrelctl: shutdown --timeout 1 --wait stops an ignoring guest hard", "[petrelctl]") {
  ApiPetrel vm("kbd_ignore");
  REQUIRE(vm.process().wait_for_line("ignoring ctrl-alt-del", kWait));
  const auto asked = std::chrono::steady_clock::now();
  auto r = ctl(vm, {"shutdown", "--timeout", "1", "--wait"});
  const auto took = std::chrono::steady_clock::now() - asked;
  INFO("stderr: " << r.err);
  CHECK(r.exit_code == 0);
  CHECK((r.out == "shut-off\n" || r.out == "exited\n"));
  CHECK(took >= std::chrono::seconds(1));
  CHECK(took < std::chrono::seconds(10));
  CHECK(vm.process().wait_exit(kWait) == 0);
  CHECK_THAT(vm.process().err(), Contains("did not shut down within 1000 ms"));
}

TEST_CASE("petrelctl: shutdown without --wait answers shutting-down", "[petrelctl]") {
  ApiPetrel vm("kbd_ignore");
  REQUIRE(vm.process().wait_for_line("ignoring ctrl-alt-del", kWait));
  CHECK(json_out(ctl(vm, {"--json", "shutdown", "--timeout", "3"})) ==
        json{{"state", "shutting-down"}});
  auto state = ctl(vm, {"state"});
  CHECK(state.out == "shutting-down\n");
  auto second = ctl(vm, {"shutdown"});
  CHECK(second.exit_code == 4);
  CHECK_THAT(second.err, Contains("shutting-down"));
  CHECK(vm.process().wait_exit(kWait) == 0);

  ApiPetrel other("kbd_shutdown");
  REQUIRE(other.process().wait_for_line("waiting for ctrl-alt-del", kWait));
  auto readable = ctl(other, {"shutdown"});
  CHECK(readable.exit_code == 0);
  CHECK(readable.out == "shutting-down\n");
  CHECK(other.process().wait_exit(kWait) == 0);
}

TEST_CASE("petrelctl: start and stop a VM created with --no-autostart", "[petrelctl]") {
  ApiPetrel vm("kbd_ignore", {"--no-autostart"});
  CHECK(ctl(vm, {"state"}).out == "created\n");
  auto f = fields(ctl(vm, {"info"}).out);
  CHECK(f["state"] == "created");
  CHECK(f["boot count"] == "0");
  CHECK(f["started at"] == "-");
  CHECK(json_out(ctl(vm, {"--json", "info"}))["started_at"].is_null());
  CHECK(ctl(vm, {"pause"}).exit_code == 4);
  CHECK(vm.process().out().empty());

  auto started = ctl(vm, {"start"});
  CHECK(started.exit_code == 0);
  CHECK(started.out == "running\n");
  REQUIRE(vm.process().wait_for_line("ignoring ctrl-alt-del", kWait));
  auto again = ctl(vm, {"start"});
  CHECK(again.exit_code == 4);
  CHECK_THAT(again.err, StartsWith("petrelctl: cannot start"));

  auto stopped = ctl(vm, {"stop"});
  CHECK(stopped.exit_code == 0);
  CHECK(stopped.out == "shut-off\n");
  CHECK(vm.process().wait_exit(kWait) == 0);
  CHECK(ctl(vm, {"stop"}).exit_code == 3);
}

TEST_CASE("petrelctl: metrics as key-value lines, JSON and Prometheus text", "[petrelctl]") {
  ApiPetrel vm("kbd_ignore", {"--name", "ctlmetrics"});
  REQUIRE(vm.process().wait_for_line("ignoring ctrl-alt-del", kWait));

  auto readable = ctl(vm, {"metrics"});
  REQUIRE(readable.exit_code == 0);
  auto f = fields(readable.out);
  CHECK(f["name"] == "ctlmetrics");
  CHECK(f["state"] == "running");
  CHECK(f["guest_memory_bytes"] == "256 MiB");
  CHECK_THAT(f["vcpus[0]"], Contains("cpu_time_ns=") && Contains("exits.io="));
  CHECK_THAT(f["api"], Contains("requests_total="));

  auto j = json_out(ctl(vm, {"--json", "metrics"}));
  CHECK(j["name"] == "ctlmetrics");
  CHECK(j["guest_memory_bytes"] == 256ull << 20);
  REQUIRE(j["vcpus"].size() == 1);
  CHECK(j["vcpus"][0]["exits"]["io"].get<uint64_t>() > 0);
  CHECK(j["api"]["requests_total"].get<uint64_t>() >= 2);

  auto prom = ctl(vm, {"metrics", "--prometheus"});
  REQUIRE(prom.exit_code == 0);
  CHECK_THAT(prom.out, Contains("# TYPE petrel_vcpu_exits_total counter"));
  CHECK_THAT(prom.out, Contains("petrel_guest_memory_bytes{"));
  CHECK_THAT(prom.out, Contains("vm=\"ctlmetrics\""));
  CHECK(prom.out.back() == '\n');
  CHECK(json::parse(prom.out, nullptr, false).is_discarded());
  CHECK(ctl(vm, {"stop"}).exit_code == 0);
}

TEST_CASE("petrelctl: events replay the history in order and follow new ones", "[petrelctl]") {
  ApiPetrel vm("kbd_ignore");
  REQUIRE(vm.process().wait_for_line("ignoring ctrl-alt-del", kWait));
  REQUIRE(ctl(vm, {"pause"}).exit_code == 0);
  REQUIRE(ctl(vm, {"resume"}).exit_code == 0);

  auto readable = ctl(vm, {"events", "--after", "0", "--count", "3"});
  REQUIRE(readable.exit_code == 0);
  auto lines = split_lines(readable.out);
  REQUIRE(lines.size() == 3);
  const std::vector<std::string> tails{"state created -> running (start)",
                                       "state running -> paused (pause)",
                                       "state paused -> running (resume)"};
  for (size_t i = 0; i < 3; ++i) {
    INFO("line: " << lines[i]);
    CHECK_THAT(lines[i], Catch::Matchers::EndsWith(tails[i]));
    const auto time = words(lines[i]).at(0);  // 2026-11-22T05:00:00.123Z
    CHECK(time.size() == 24);
    CHECK(time[10] == 'T');
    CHECK(time.back() == 'Z');
  }

  auto raw = ctl(vm, {"--json", "events", "--after", "0", "--count", "3"});
  REQUIRE(raw.exit_code == 0);
  auto json_lines = split_lines(raw.out);
  REQUIRE(json_lines.size() == 3);
  std::vector<json> events;
  for (const auto& line : json_lines) {
    auto e = json::parse(line, nullptr, false);
    INFO("line: " << line);
    REQUIRE(e.is_object());
    events.push_back(e);
  }
  CHECK(events[0]["data"]["to"] == "running");
  CHECK(events[1]["data"]["to"] == "paused");
  CHECK(events[2]["data"]["to"] == "running");
  CHECK(events[1]["seq"].get<uint64_t>() == events[0]["seq"].get<uint64_t>() + 1);
  CHECK(events[2]["seq"].get<uint64_t>() == events[1]["seq"].get<uint64_t>() + 1);

  // Without --after only new events: the follower's first line is one we cause now, never
  // the replayed "created -> running". Toggle until it has connected and seen one.
  const char* bin = std::getenv("PETRELCTL_BIN");
  REQUIRE(bin != nullptr);
  BackgroundProcess follower({bin, "-s", vm.socket(), "events", "--count", "1"},
                             (vm.dir() / "follow.out").string(),
                             (vm.dir() / "follow.err").string());
  bool paused = false;
  std::optional<int> follower_exit;
  for (int i = 0; i < 40 && !follower_exit; ++i) {
    REQUIRE(ctl(vm, {paused ? "resume" : "pause"}).exit_code == 0);
    paused = !paused;
    follower_exit = follower.wait_exit(std::chrono::milliseconds(250));
  }
  REQUIRE(follower_exit.has_value());
  CHECK(*follower_exit == 0);
  auto followed = split_lines(follower.out());
  REQUIRE(followed.size() == 1);
  CHECK_THAT(followed[0], Contains("state running -> paused (pause)") ||
                              Contains("state paused -> running (resume)"));

  // The stream ends when petrel exits: with events still owed, exit 3.
  BackgroundProcess owed({bin, "-s", vm.socket(), "events", "--count", "100"},
                         (vm.dir() / "owed.out").string(), (vm.dir() / "owed.err").string());
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  REQUIRE(ctl(vm, {"stop"}).exit_code == 0);
  CHECK(vm.process().wait_exit(kWait) == 0);
  CHECK(owed.wait_exit(kWait) == 3);
}

TEST_CASE("petrelctl: list a directory of sockets and name a VM by its socket", "[petrelctl]") {
  std::string templ = "/tmp/petrelctl-list-XXXXXX";
  REQUIRE(::mkdtemp(templ.data()) != nullptr);
  const std::filesystem::path dir = templ;
  struct Cleanup {
    std::filesystem::path dir;
    ~Cleanup() {
      std::error_code ec;
      std::filesystem::remove_all(dir, ec);
    }
  } cleanup{dir};
  auto alpha = start_named(dir, "alpha", {"--vcpus", "2", "--memory", "64M"});
  auto beta = start_named(dir, "beta", {"--memory", "128M"});
  make_stale_socket((dir / "stale.sock").string());
  std::ofstream(dir / "notes.txt") << "not a socket\n";
  std::ofstream(dir / "fake.sock") << "a regular file named .sock\n";

  auto list = petrelctl({"list", "--dir", dir.string()});
  REQUIRE(list.exit_code == 0);
  auto rows = split_lines(list.out);
  INFO("list:\n" << list.out);
  REQUIRE(rows.size() == 4);
  CHECK(words(rows[0]) == std::vector<std::string>{"NAME", "STATE", "VCPUS", "MEMORY", "UPTIME"});
  auto a = words(rows[1]);
  REQUIRE(a.size() == 6);
  CHECK(a[0] == "alpha");
  CHECK(a[1] == "running");
  CHECK(a[2] == "2");
  CHECK(a[3] + " " + a[4] == "64 MiB");
  CHECK(a[5].back() == 's');
  auto b = words(rows[2]);
  REQUIRE(b.size() == 6);
  CHECK(b[0] == "beta");
  CHECK(b[2] == "1");
  CHECK(b[3] + " " + b[4] == "128 MiB");
  CHECK(words(rows[3]) == std::vector<std::string>{"stale", "unreachable", "-", "-", "-"});

  auto list_json = json_out(petrelctl({"--json", "list", "--dir", dir.string()}));
  REQUIRE(list_json.is_array());
  REQUIRE(list_json.size() == 3);
  CHECK(list_json[0]["name"] == "alpha");
  CHECK(list_json[0]["socket"] == (dir / "alpha.sock").string());
  CHECK(list_json[0]["pid"] == alpha->pid());
  CHECK(list_json[1]["name"] == "beta");
  CHECK(list_json[1]["memory_bytes"] == 128ull << 20);
  CHECK(list_json[2] == json{{"socket", (dir / "stale.sock").string()},
                             {"name", "stale"},
                             {"state", "unreachable"}});

  // -s NAME means DIR/NAME.sock.
  auto by_name = petrelctl({"--dir", dir.string(), "-s", "beta", "--json", "info"});
  CHECK(json_out(by_name)["pid"] == beta->pid());
  CHECK(petrelctl({"--dir", dir.string(), "-s", "alpha", "pause"}).out == "paused\n");
  CHECK(curl_api((dir / "alpha.sock").string(), "GET", "/v1/vm/state").json()["state"] == "paused");
  CHECK(curl_api((dir / "beta.sock").string(), "GET", "/v1/vm/state").json()["state"] == "running");

  // Nobody listening: exit 3 with a message, for a stale socket and for no socket at all.
  auto stale = petrelctl({"--dir", dir.string(), "-s", "stale", "state"});
  CHECK(stale.exit_code == 3);
  CHECK(stale.out.empty());
  CHECK_THAT(stale.err, StartsWith("petrelctl: "));
  auto missing = petrelctl({"-s", (dir / "missing.sock").string(), "info"});
  CHECK(missing.exit_code == 3);
  CHECK_THAT(missing.err, StartsWith("petrelctl: "));
  // A missing directory lists nothing.
  auto empty = petrelctl({"list", "--dir", (dir / "nowhere").string()});
  CHECK(empty.exit_code == 0);
  CHECK(split_lines(empty.out).size() == 1);

  CHECK(petrelctl({"--dir", dir.string(), "-s", "alpha", "stop"}).exit_code == 0);
  CHECK(petrelctl({"--dir", dir.string(), "-s", "beta", "stop"}).exit_code == 0);
  CHECK(alpha->wait_exit(kWait) == 0);
  CHECK(beta->wait_exit(kWait) == 0);
}

TEST_CASE("petrelctl: help on a verb and usage errors", "[petrelctl]") {
  for (const char* verb : {"info", "pause", "shutdown", "events", "list"}) {
    auto r = petrelctl({verb, "--help"});
    INFO("verb " << verb << " stderr: " << r.err);
    CHECK(r.exit_code == 0);
    CHECK_THAT(r.out, Contains("Usage: petrelctl") && Contains(verb));
  }
  auto shutdown_help = petrelctl({"help", "shutdown"});
  CHECK(shutdown_help.exit_code == 0);
  CHECK_THAT(shutdown_help.out, Contains("--wait"));
  CHECK(petrelctl({"--help"}).exit_code == 0);

  // Usage errors send nothing and exit 2.
  CHECK(petrelctl({"frobnicate"}).exit_code == 2);
  auto no_socket = petrelctl({"info"});
  CHECK(no_socket.exit_code == 2);
  CHECK_THAT(no_socket.err, Contains("socket"));
  CHECK(petrelctl({"-s", "/tmp/x.sock", "shutdown", "--timeout", "soon"}).exit_code == 2);
}
