// The control-plane settings of VmConfig (api_socket, autostart, on_reboot,
// shutdown_timeout_ms): the config file, validate_config, config_to_json and the flags.
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <string>
#include <vector>

#include "scratch_dir.h"
#include "vmm/base/unique_fd.h"
#include "vmm/cli.h"
#include "vmm/config_checks.h"
#include "vmm/vm_config.h"

using petrel::CliCommand;
using petrel::ErrorCode;
using petrel::RebootAction;
using petrel::Result;
using petrel::SerialMode;
using petrel::UniqueFd;
using petrel::VmConfig;
using petrel::testing::ScratchDir;

namespace {

std::string parse_error(std::string_view text) {
  auto parsed = petrel::parse_config_json(text);
  REQUIRE_FALSE(parsed.ok());
  CHECK(parsed.error().code() == ErrorCode::kInvalidArgument);
  return parsed.error().to_string();
}

VmConfig parse_ok(std::string_view text) {
  auto parsed = petrel::parse_config_json(text);
  INFO(text);
  REQUIRE(parsed.ok());
  return *parsed;
}

std::string duration_error(std::string_view text) {
  auto parsed = petrel::config_detail::parse_duration_ms(text);
  INFO(text);
  REQUIRE_FALSE(parsed.ok());
  CHECK(parsed.error().code() == ErrorCode::kInvalidArgument);
  return parsed.error().to_string();
}

Result<CliCommand> parse_cli(const std::vector<std::string>& args) {
  std::vector<std::string_view> views(args.begin(), args.end());
  views.insert(views.begin(), "run");
  return petrel::parse_command_line(views);
}

std::string cli_error(const std::vector<std::string>& args) {
  auto parsed = parse_cli(args);
  REQUIRE_FALSE(parsed.ok());
  return parsed.error().to_string();
}

VmConfig cli_ok(const std::vector<std::string>& args) {
  auto parsed = parse_cli(args);
  if (!parsed.ok()) {
    FAIL(parsed.error().to_string());
  }
  return parsed->config;
}

// A socket file at `path` that nobody listens on (what a killed petrel leaves behind).
void make_stale_socket(const std::filesystem::path& path) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  REQUIRE(fd.valid());
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  REQUIRE(path.native().size() < sizeof(addr.sun_path));
  std::memcpy(addr.sun_path, path.c_str(), path.native().size());
  REQUIRE(::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0);
}

// The shortest valid config validate_config accepts: a kernel file in `dir`.
VmConfig minimal_config(ScratchDir& dir) {
  VmConfig config;
  config.kernel = dir.write("vmlinux", "kernel");
  return config;
}

const std::string kLongPath = "/tmp/" + std::string(103, 'a');  // 108 bytes

}  // namespace

TEST_CASE("parse_config_json reads the control-plane keys", "[config][control]") {
  VmConfig defaults = parse_ok("{}");
  CHECK(defaults.api_socket.empty());
  CHECK(defaults.autostart);
  CHECK(defaults.on_reboot == RebootAction::kRestart);
  CHECK(defaults.shutdown_timeout_ms == 30000);

  VmConfig config = parse_ok(
      R"({"api_socket": "/run/petrel/vm.sock", "autostart": false, "on_reboot": "exit",
          "shutdown_timeout_ms": 1500})");
  CHECK(config.api_socket == "/run/petrel/vm.sock");
  CHECK_FALSE(config.autostart);
  CHECK(config.on_reboot == RebootAction::kExit);
  CHECK(config.shutdown_timeout_ms == 1500);

  CHECK(parse_ok(R"({"api_socket": "api.sock"})").api_socket == "api.sock");
  CHECK(parse_ok(R"({"autostart": true})").autostart);
  CHECK(parse_ok(R"({"on_reboot": "restart"})").on_reboot == RebootAction::kRestart);
  CHECK(parse_ok(R"({"shutdown_timeout_ms": 1})").shutdown_timeout_ms == 1);
  CHECK(parse_ok(R"({"shutdown_timeout_ms": 3600000})").shutdown_timeout_ms == 3600000);
  CHECK(parse_ok("{\"api_socket\": \"/tmp/" + std::string(102, 'a') + "\"}")
            .api_socket.native()
            .size() == 107);
}

TEST_CASE("parse_config_json refuses bad control-plane values naming the field",
          "[config][control]") {
  CHECK(parse_error(R"({"api_socket": 5})") ==
        "config: field \"api_socket\": expected a string, got 5");
  CHECK(parse_error(R"({"api_socket": null})") ==
        "config: field \"api_socket\": expected a string, got null");
  CHECK(parse_error(R"({"api_socket": ""})") == "config: field \"api_socket\": must not be empty");
  CHECK(parse_error(R"({"api_socket": "a\u0000b"})") ==
        "config: field \"api_socket\": must not contain a NUL byte");
  CHECK(parse_error("{\"api_socket\": \"" + kLongPath + "\"}") ==
        "config: field \"api_socket\": the socket path is 108 bytes; a Unix socket address "
        "holds at most 107");

  for (const char* bad : {"\"true\"", "1", "0", "null", "[]"}) {
    std::string text = std::string(R"({"autostart": )") + bad + "}";
    CHECK(parse_error(text) ==
          std::string("config: field \"autostart\": expected true or false, got ") + bad);
  }

  CHECK(parse_error(R"({"on_reboot": "reboot"})") ==
        "config: field \"on_reboot\": expected one of restart, exit, got \"reboot\"");
  CHECK(parse_error(R"({"on_reboot": "Restart"})") ==
        "config: field \"on_reboot\": expected one of restart, exit, got \"Restart\"");
  CHECK(parse_error(R"({"on_reboot": false})") ==
        "config: field \"on_reboot\": expected a string, got false");

  for (const char* bad : {"0", "-1", "-30000", "3600001", "4294967297", "1.5", "30000.0", "1e3",
                          "\"30s\"", "\"30000\"", "true", "null", "18446744073709551616"}) {
    INFO(bad);
    std::string text = std::string(R"({"shutdown_timeout_ms": )") + bad + "}";
    CHECK_THAT(parse_error(text),
               Catch::StartsWith("config: field \"shutdown_timeout_ms\": expected an integer "
                                 "number of milliseconds from 1 to 3600000, got "));
  }
  CHECK(parse_error(R"({"shutdown_timeout_ms": -1})") ==
        "config: field \"shutdown_timeout_ms\": expected an integer number of milliseconds from "
        "1 to 3600000, got -1");

  CHECK(parse_error(R"({"autostart": true, "autostart": false})") ==
        "config: field \"autostart\" is given more than once");
  CHECK(parse_error(R"({"autostrat": false})") ==
        "config: unknown field \"autostrat\" (did you mean \"autostart\"?)");
  CHECK(parse_error(R"({"shutdown_timout_ms": 5})") ==
        "config: unknown field \"shutdown_timout_ms\" (did you mean \"shutdown_timeout_ms\"?)");
  CHECK(parse_error(R"({"api-socket": "/tmp/x"})") ==
        "config: unknown field \"api-socket\" (did you mean \"api_socket\"?)");
}

TEST_CASE("config_to_json round-trips the control-plane settings", "[config][control]") {
  VmConfig config;
  config.kernel = "/boot/vmlinux";
  config.api_socket = "/run/petrel/web 1.sock";
  config.autostart = false;
  config.on_reboot = RebootAction::kExit;
  config.shutdown_timeout_ms = petrel::kMaxShutdownTimeoutMs;

  nlohmann::json json = petrel::config_to_json(config);
  CHECK(json["api_socket"] == "/run/petrel/web 1.sock");
  CHECK(json["autostart"] == false);
  CHECK(json["on_reboot"] == "exit");
  CHECK(json["shutdown_timeout_ms"] == 3600000);
  auto parsed = petrel::parse_config_json(json.dump());
  REQUIRE(parsed.ok());
  CHECK(*parsed == config);

  VmConfig defaults;
  nlohmann::json default_json = petrel::config_to_json(defaults);
  CHECK_FALSE(default_json.contains("api_socket"));
  CHECK(default_json["autostart"] == true);
  CHECK(default_json["on_reboot"] == "restart");
  CHECK(default_json["shutdown_timeout_ms"] == 30000);
  auto parsed_defaults = petrel::parse_config_json(default_json.dump());
  REQUIRE(parsed_defaults.ok());
  CHECK(*parsed_defaults == defaults);
}

TEST_CASE("validate_config checks the control-plane settings", "[config][control]") {
  ScratchDir dir;
  VmConfig config = minimal_config(dir);
  REQUIRE(petrel::validate_config(config).ok());

  config.api_socket = dir.path() / "api.sock";
  CHECK(petrel::validate_config(config).ok());
  make_stale_socket(config.api_socket);  // replaced at start: accepted here
  CHECK(petrel::validate_config(config).ok());

  config.api_socket = dir.path() / "missing" / "api.sock";
  auto missing = petrel::validate_config(config);
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().code() == ErrorCode::kNotFound);
  CHECK(missing.error().to_string() ==
        "config: field \"api_socket\": " + (dir.path() / "missing").string() +
            ": No such file or directory");

  config.api_socket = dir.write("regular", "x");
  auto regular = petrel::validate_config(config);
  REQUIRE_FALSE(regular.ok());
  CHECK(regular.error().to_string() ==
        "config: field \"api_socket\": " + config.api_socket.string() +
            ": exists and is not a socket");

  config.api_socket = dir.path();  // a directory
  CHECK_FALSE(petrel::validate_config(config).ok());

  config.api_socket = kLongPath;
  auto too_long = petrel::validate_config(config);
  REQUIRE_FALSE(too_long.ok());
  CHECK_THAT(too_long.error().to_string(),
             Catch::StartsWith("config: field \"api_socket\": the socket path is 108 bytes"));

  config.api_socket = dir.path() / "same.sock";
  config.serial = {SerialMode::kSocket, dir.path() / "." / "same.sock"};
  auto same = petrel::validate_config(config);
  REQUIRE_FALSE(same.ok());
  CHECK(same.error().to_string() ==
        "config: field \"api_socket\": the same path as the console socket (serial.path)");
  config.serial = {SerialMode::kSocket, dir.path() / "console.sock"};
  CHECK(petrel::validate_config(config).ok());
  config.serial = {};

  config.autostart = false;
  CHECK(petrel::validate_config(config).ok());
  config.api_socket.clear();
  auto no_api = petrel::validate_config(config);
  REQUIRE_FALSE(no_api.ok());
  CHECK(no_api.error().to_string() ==
        "config: field \"autostart\": false (--no-autostart) needs api_socket (--api-socket): "
        "only the API can start the VM");
  config.autostart = true;

  for (uint32_t bad : {0u, petrel::kMaxShutdownTimeoutMs + 1}) {
    config.shutdown_timeout_ms = bad;
    auto out_of_range = petrel::validate_config(config);
    REQUIRE_FALSE(out_of_range.ok());
    CHECK(out_of_range.error().to_string() ==
          "config: field \"shutdown_timeout_ms\": expected an integer number of milliseconds "
          "from 1 to 3600000, got " +
              std::to_string(bad));
  }
  config.shutdown_timeout_ms = 1;
  CHECK(petrel::validate_config(config).ok());

  config.on_reboot = static_cast<RebootAction>(7);
  CHECK_FALSE(petrel::validate_config(config).ok());
}

TEST_CASE("load_config_file resolves a relative api_socket against the file's directory",
          "[config][control]") {
  ScratchDir dir;
  auto relative = petrel::load_config_file(
      dir.write("vms/vm.json", R"({"api_socket": "run/api.sock", "autostart": false})"));
  REQUIRE(relative.ok());
  CHECK(relative->api_socket == dir.path() / "vms" / "run" / "api.sock");

  auto absolute =
      petrel::load_config_file(dir.write("abs.json", R"({"api_socket": "/run/petrel.sock"})"));
  REQUIRE(absolute.ok());
  CHECK(absolute->api_socket == "/run/petrel.sock");

  auto none = petrel::load_config_file(dir.write("none.json", "{}"));
  REQUIRE(none.ok());
  CHECK(none->api_socket.empty());
}

TEST_CASE("parse_duration_ms reads milliseconds, seconds, minutes and hours", "[config][control]") {
  using petrel::config_detail::parse_duration_ms;
  CHECK(*parse_duration_ms("1500ms") == 1500);
  CHECK(*parse_duration_ms("30s") == 30000);
  CHECK(*parse_duration_ms("2m") == 120000);
  CHECK(*parse_duration_ms("1h") == 3600000);
  CHECK(*parse_duration_ms("45") == 45000);
  CHECK(*parse_duration_ms("0") == 0);  // the range is the caller's check
  CHECK(*parse_duration_ms("007s") == 7000);

  for (const char* bad : {"", "s", "ms", "-1", "+1s", "1.5s", " 30s", "30s ", "30 s", "30S",
                          "30sec", "0x10", "1d", "1e3", "30ms5"}) {
    CHECK_THAT(duration_error(bad), Catch::StartsWith("invalid duration ") &&
                                        Catch::EndsWith("expected digits with a unit ms, s, m or h "
                                                        "(plain digits are seconds), e.g. 30s or "
                                                        "1500ms"));
  }
  CHECK(duration_error("18446744073709551616ms") ==
        "invalid duration \"18446744073709551616ms\": too large");
  CHECK(duration_error("18446744073709551615h") ==
        "invalid duration \"18446744073709551615h\": too large");
}

TEST_CASE("petrel run reads the control-plane flags", "[cli][control]") {
  ScratchDir dir;
  std::string kernel = dir.write("vmlinux", "kernel").string();
  std::string socket = (dir.path() / "api.sock").string();

  VmConfig defaults = cli_ok({"--kernel", kernel});
  CHECK(defaults.api_socket.empty());
  CHECK(defaults.autostart);
  CHECK(defaults.on_reboot == RebootAction::kRestart);
  CHECK(defaults.shutdown_timeout_ms == 30000);

  VmConfig spaced = cli_ok({"--kernel", kernel, "--api-socket", socket, "--no-autostart",
                            "--on-reboot", "exit", "--shutdown-timeout", "1500ms"});
  CHECK(spaced.api_socket == socket);
  CHECK_FALSE(spaced.autostart);
  CHECK(spaced.on_reboot == RebootAction::kExit);
  CHECK(spaced.shutdown_timeout_ms == 1500);

  VmConfig inline_form = cli_ok({"--no-autostart", "--kernel=" + kernel, "--api-socket=" + socket,
                                 "--on-reboot=restart", "--shutdown-timeout=2m"});
  CHECK(inline_form.api_socket == socket);
  CHECK_FALSE(inline_form.autostart);
  CHECK(inline_form.on_reboot == RebootAction::kRestart);
  CHECK(inline_form.shutdown_timeout_ms == 120000);

  for (const auto& [text, ms] : std::vector<std::pair<std::string, uint32_t>>{
           {"30s", 30000}, {"45", 45000}, {"1ms", 1}, {"1h", 3600000}, {"60m", 3600000}}) {
    INFO(text);
    CHECK(cli_ok({"--kernel", kernel, "--shutdown-timeout", text}).shutdown_timeout_ms == ms);
  }
}

TEST_CASE("petrel run refuses bad control-plane flags naming the flag", "[cli][control]") {
  ScratchDir dir;
  std::string kernel = dir.write("vmlinux", "kernel").string();
  std::string socket = (dir.path() / "api.sock").string();

  CHECK(cli_error({"--kernel", kernel, "--api-socket", (dir.path() / "no" / "a.sock").string()}) ==
        "--api-socket: " + (dir.path() / "no").string() + ": No such file or directory");
  CHECK(cli_error({"--kernel", kernel, "--api-socket", kLongPath}) ==
        "--api-socket: the socket path is 108 bytes; a Unix socket address holds at most 107");
  CHECK(cli_error({"--kernel", kernel, "--api-socket="}) ==
        "--api-socket: the socket path must not be empty");
  CHECK(cli_error({"--kernel", kernel, "--api-socket"}) ==
        "--api-socket: missing value (PATH), e.g. --api-socket /run/petrel/web-1.sock");
  std::string regular = dir.write("file", "x").string();
  CHECK(cli_error({"--kernel", kernel, "--api-socket", regular}) ==
        "--api-socket: " + regular + ": exists and is not a socket");
  CHECK(cli_error({"--kernel", kernel, "--api-socket", socket, "--api-socket", socket}) ==
        "--api-socket: given more than once");

  CHECK(cli_error({"--kernel", kernel, "--no-autostart=yes"}) == "--no-autostart: takes no value");
  CHECK(cli_error({"--kernel", kernel, "--api-socket", socket, "--no-autostart",
                   "--no-autostart"}) == "--no-autostart: given more than once");
  CHECK(cli_error({"--kernel", kernel, "--no-autostart"}) ==
        "config: field \"autostart\": false (--no-autostart) needs api_socket (--api-socket): "
        "only the API can start the VM");
  CHECK(cli_error({"--kernel", kernel, "--no-autostart", "yes"}) ==
        "run: unexpected argument \"yes\"; settings are given as flags, see petrel run --help");
  CHECK(cli_error({"--kernel", kernel, "--no-autostrat"}) ==
        "run: unknown flag \"--no-autostrat\" (did you mean \"--no-autostart\"?); see petrel run "
        "--help");

  CHECK(cli_error({"--kernel", kernel, "--on-reboot", "poweroff"}) ==
        "--on-reboot: expected one of restart, exit, got \"poweroff\"");
  CHECK(cli_error({"--kernel", kernel, "--on-reboot"}) ==
        "--on-reboot: missing value (ACTION), e.g. --on-reboot exit");

  for (const char* bad : {"0", "0s", "0ms"}) {
    CHECK(cli_error({"--kernel", kernel, "--shutdown-timeout", bad}) ==
          "--shutdown-timeout: 0ms is outside 1ms to 3600000ms (1h)");
  }
  CHECK(cli_error({"--kernel", kernel, "--shutdown-timeout", "61m"}) ==
        "--shutdown-timeout: 3660000ms is outside 1ms to 3600000ms (1h)");
  CHECK(cli_error({"--kernel", kernel, "--shutdown-timeout", "3601"}) ==
        "--shutdown-timeout: 3601000ms is outside 1ms to 3600000ms (1h)");
  CHECK(cli_error({"--kernel", kernel, "--shutdown-timeout", "99999999999999999999"}) ==
        "--shutdown-timeout: invalid duration \"99999999999999999999\": too large");
  CHECK(cli_error({"--kernel", kernel, "--shutdown-timeout", "1.5s"}) ==
        "--shutdown-timeout: invalid duration \"1.5s\": expected digits with a unit ms, s, m or "
        "h (plain digits are seconds), e.g. 30s or 1500ms");
  CHECK(cli_error({"--kernel", kernel, "--shutdown-timeout=-5s"}) ==
        "--shutdown-timeout: invalid duration \"-5s\": expected digits with a unit ms, s, m or "
        "h (plain digits are seconds), e.g. 30s or 1500ms");
  CHECK(cli_error({"--kernel", kernel, "--shutdown-timeout", "--no-autostart"}) ==
        "--shutdown-timeout: missing value (DURATION), e.g. --shutdown-timeout 10s");
}

TEST_CASE("control-plane flags override the --config file", "[cli][control]") {
  ScratchDir dir;
  std::string kernel = dir.write("vmlinux", "kernel").string();
  std::string file = dir.write("vm.json", R"({"kernel": "vmlinux", "api_socket": "vm.sock",
      "autostart": false, "on_reboot": "exit", "shutdown_timeout_ms": 5000})")
                         .string();

  VmConfig from_file = cli_ok({"--config", file});
  CHECK(from_file.api_socket == dir.path() / "vm.sock");
  CHECK_FALSE(from_file.autostart);
  CHECK(from_file.on_reboot == RebootAction::kExit);
  CHECK(from_file.shutdown_timeout_ms == 5000);

  std::string other = (dir.path() / "other.sock").string();
  VmConfig merged = cli_ok({"--on-reboot", "restart", "--config", file, "--shutdown-timeout", "1m",
                            "--api-socket", other});
  CHECK(merged.api_socket == other);
  CHECK_FALSE(merged.autostart);
  CHECK(merged.on_reboot == RebootAction::kRestart);
  CHECK(merged.shutdown_timeout_ms == 60000);

  std::string bad =
      dir.write("bad.json", R"({"kernel": "vmlinux", "shutdown_timeout_ms": 0})").string();
  CHECK(cli_error({"--config", bad, "--shutdown-timeout", "5s"}) ==
        bad +
            ": config: field \"shutdown_timeout_ms\": expected an integer number of milliseconds "
            "from 1 to 3600000, got 0");
  std::string missing_dir =
      dir.write("nodir.json", R"({"kernel": "vmlinux", "api_socket": "nope/vm.sock"})").string();
  CHECK(cli_error({"--config", missing_dir}) ==
        missing_dir + ": config: field \"api_socket\": " + (dir.path() / "nope").string() +
            ": No such file or directory");
}

TEST_CASE("usage_text documents the control-plane flags", "[cli][control]") {
  std::string usage = petrel::usage_text();
  for (const char* text :
       {"--api-socket PATH", "--no-autostart ", "--on-reboot ACTION", "--shutdown-timeout DURATION",
        "e.g. --shutdown-timeout 10s", "e.g. --on-reboot exit", "e.g. --api-socket "}) {
    CHECK_THAT(usage, Catch::Contains(text));
  }
}
