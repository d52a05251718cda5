#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdint>
#include <cstring>
#include <string>

#include "scratch_dir.h"
#include "vmm/vm_config.h"

using petrel::ErrorCode;
using petrel::LogFormat;
using petrel::PvmMode;
using petrel::SerialMode;
using petrel::VmConfig;
using petrel::testing::ScratchDir;

namespace {

// The message of the error parse_config_json must return for `text`.
std::string parse_error(std::string_view text) {
  auto parsed = petrel::parse_config_json(text);
  REQUIRE_FALSE(parsed.ok());
  CHECK(parsed.error().code() == ErrorCode::kInvalidArgument);
  return parsed.error().to_string();
}

std::string size_error(std::string_view text) {
  auto parsed = petrel::parse_size(text);
  REQUIRE_FALSE(parsed.ok());
  CHECK(parsed.error().code() == ErrorCode::kInvalidArgument);
  return parsed.error().to_string();
}

std::string validate_error(const VmConfig& config) {
  auto valid = petrel::validate_config(config);
  REQUIRE_FALSE(valid.ok());
  return valid.error().to_string();
}

// Leaves a Unix socket file at `path` (nobody listening: a stale one).
void bind_socket_file(const std::filesystem::path& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  REQUIRE(path.native().size() < sizeof(addr.sun_path));
  std::memcpy(addr.sun_path, path.c_str(), path.native().size());
  int rc = ::bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr));
  ::close(fd);
  REQUIRE(rc == 0);
}

}  // namespace

TEST_CASE("parse_size reads byte counts with binary suffixes", "[config]") {
  CHECK(*petrel::parse_size("256M") == 256ull << 20);
  CHECK(*petrel::parse_size("1G") == 1ull << 30);
  CHECK(*petrel::parse_size("1048576") == 1048576);
  CHECK(*petrel::parse_size("2GiB") == 2ull << 30);
  CHECK(*petrel::parse_size("512MiB") == 512ull << 20);
  CHECK(*petrel::parse_size("4096K") == 4096ull << 10);
  CHECK(*petrel::parse_size("3kib") == 3072);
  CHECK(*petrel::parse_size("1t") == 1ull << 40);
  CHECK(*petrel::parse_size("7B") == 7);
  CHECK(*petrel::parse_size("0") == 0);
  CHECK(*petrel::parse_size("18446744073709551615") == UINT64_MAX);
  CHECK(*petrel::parse_size("16777215T") == 16777215ull << 40);
}

TEST_CASE("parse_size refuses junk and overflow", "[config]") {
  const std::string junk = ": expected digits with an optional K, M, G or T suffix, e.g. 256M";
  CHECK(size_error("") == "invalid size \"\"" + junk);
  CHECK(size_error("M") == "invalid size \"M\"" + junk);
  CHECK(size_error("12Q") == "invalid size \"12Q\"" + junk);
  CHECK(size_error("-1") == "invalid size \"-1\"" + junk);
  CHECK(size_error(" 1M") == "invalid size \" 1M\"" + junk);
  CHECK(size_error("1M ") == "invalid size \"1M \"" + junk);
  CHECK(size_error("1.5G") == "invalid size \"1.5G\"" + junk);
  CHECK(size_error("0x10") == "invalid size \"0x10\"" + junk);
  CHECK(size_error("1MB") == "invalid size \"1MB\"" + junk);
  CHECK(size_error("99999999999999999999G") ==
        "invalid size \"99999999999999999999G\": larger than 2^64 - 1 bytes");
  CHECK(size_error("18446744073709551616") ==
        "invalid size \"18446744073709551616\": larger than 2^64 - 1 bytes");
  CHECK(size_error("16777216T") == "invalid size \"16777216T\": larger than 2^64 - 1 bytes");
}

TEST_CASE("format_size prints the shortest exact form", "[config]") {
  CHECK(petrel::format_size(256ull << 20) == "256M");
  CHECK(petrel::format_size(1ull << 40) == "1T");
  CHECK(petrel::format_size(1536ull << 10) == "1536K");
  CHECK(petrel::format_size(4097) == "4097");
  CHECK(petrel::format_size(0) == "0");
}

TEST_CASE("parse_config_json reads every key", "[config]") {
  auto parsed = petrel::parse_config_json(R"({
    "name": "demo", "kernel": "/boot/vmlinux", "cmdline": "console=ttyS0",
    "memory": "512M", "vcpus": 2,
    "serial": {"mode": "file", "path": "/tmp/console.log"},
    "log": {"level": "debug", "format": "json"},
    "pvm_mode": "emulated"
  })");
  REQUIRE(parsed.ok());
  CHECK(parsed->name == "demo");
  CHECK(parsed->kernel == "/boot/vmlinux");
  CHECK(parsed->cmdline == "console=ttyS0");
  CHECK(parsed->memory_bytes == 512ull << 20);
  CHECK(parsed->vcpus == 2);
  CHECK(parsed->serial.mode == SerialMode::kFile);
  CHECK(parsed->serial.path == "/tmp/console.log");
  CHECK(parsed->log_level == "debug");
  CHECK(parsed->log_format == LogFormat::kJson);
  CHECK(parsed->pvm_mode == PvmMode::kEmulated);
}

TEST_CASE("parse_config_json keeps defaults and accepts the alternative forms", "[config]") {
  CHECK(*petrel::parse_config_json("{}") == VmConfig{});
  CHECK(petrel::parse_config_json(R"({"memory": 268435456})")->memory_bytes == 256ull << 20);
  auto serial = petrel::parse_config_json(R"({"serial": "file:out/console.log"})");
  REQUIRE(serial.ok());
  CHECK(serial->serial.mode == SerialMode::kFile);
  CHECK(serial->serial.path == "out/console.log");
  CHECK(petrel::parse_config_json(R"({"serial": "none"})")->serial.mode == SerialMode::kNone);
  CHECK(petrel::parse_config_json(R"({"serial": {"mode": "stdio"}})")->serial.mode ==
        SerialMode::kStdio);
  CHECK(petrel::parse_config_json(R"({"log": {"level": "off"}})")->log_format == LogFormat::kText);
}

TEST_CASE("parse_config_json names the field of a bad value", "[config]") {
  const std::string vcpus = "config: field \"vcpus\": expected an integer from 1 to 254, got ";
  CHECK(parse_error(R"({"vcpus": 0})") == vcpus + "0");
  CHECK(parse_error(R"({"vcpus": 255})") == vcpus + "255");
  CHECK(parse_error(R"({"vcpus": -1})") == vcpus + "-1");
  CHECK(parse_error(R"({"vcpus": 2.0})") == vcpus + "2.0");
  CHECK(parse_error(R"({"vcpus": "2"})") == vcpus + "\"2\"");

  CHECK(parse_error(R"({"memory": "8M"})") ==
        "config: field \"memory\": 8M is below the minimum 16M");
  CHECK(parse_error(R"({"memory": "2T"})") ==
        "config: field \"memory\": 2T is above the maximum 1T");
  CHECK(parse_error(R"({"memory": 16777217})") ==
        "config: field \"memory\": 16777217 is not a multiple of 4K");
  CHECK(parse_error(R"({"memory": "lots"})") ==
        "config: field \"memory\": invalid size \"lots\": expected digits with an optional K, M, "
        "G or T suffix, e.g. 256M");
  CHECK(parse_error(R"({"memory": true})") ==
        "config: field \"memory\": expected a size string like \"256M\" or an integer number of "
        "bytes, got true");

  CHECK(parse_error(R"({"name": "bad name"})") ==
        "config: field \"name\": expected 1 to 64 characters from A-Z a-z 0-9 . _ -, got \"bad "
        "name\"");
  CHECK_THAT(parse_error(R"({"name": ""})"), Catch::StartsWith("config: field \"name\": expected"));
  CHECK_THAT(parse_error("{\"name\": \"" + std::string(65, 'a') + "\"}"),
             Catch::StartsWith("config: field \"name\": expected") && Catch::EndsWith("..."));
  CHECK(parse_error(R"({"name": 5})") == "config: field \"name\": expected a string, got 5");
  CHECK(parse_error(R"({"kernel": ""})") == "config: field \"kernel\": must not be empty");
  CHECK(parse_error(R"({"kernel": null})") ==
        "config: field \"kernel\": expected a string, got null");

  CHECK(parse_error(R"({"cmdline": "a\nb"})") ==
        "config: field \"cmdline\": must not contain a newline");
  CHECK(parse_error(R"({"cmdline": "a\u0000b"})") ==
        "config: field \"cmdline\": must not contain a NUL byte");
  CHECK(parse_error("{\"cmdline\": \"" + std::string(4096, 'x') + "\"}") ==
        "config: field \"cmdline\": 4096 bytes is longer than the maximum 4095");
  CHECK(petrel::parse_config_json("{\"cmdline\": \"" + std::string(4095, 'x') + "\"}").ok());

  CHECK(parse_error(R"({"log": {"level": "verbose"}})") ==
        "config: field \"log.level\": expected one of trace, debug, info, warn, error, off, got "
        "\"verbose\"");
  CHECK(parse_error(R"({"log": {"format": "xml"}})") ==
        "config: field \"log.format\": expected one of text, json, got \"xml\"");
  CHECK(parse_error(R"({"log": "info"})") ==
        "config: field \"log\": expected an object with \"level\" and/or \"format\", got \"info\"");
  CHECK(parse_error(R"({"pvm_mode": "fast"})") ==
        "config: field \"pvm_mode\": expected one of auto, emulated, got \"fast\"");
}

TEST_CASE("parse_config_json checks the serial settings", "[config]") {
  CHECK(parse_error(R"({"serial": {"mode": "tty"}})") ==
        "config: field \"serial.mode\": expected one of stdio, file, none, socket, got \"tty\"");
  CHECK(parse_error(R"({"serial": {"mode": 1}})") ==
        "config: field \"serial.mode\": expected a string, got 1");
  CHECK(parse_error(R"({"serial": {}})") ==
        "config: field \"serial.mode\": required: one of stdio, file, none, socket");
  CHECK(parse_error(R"({"serial": {"mode": "file"}})") ==
        "config: field \"serial.path\": required when serial.mode is \"file\"");
  CHECK(parse_error(R"({"serial": {"mode": "file", "path": ""}})") ==
        "config: field \"serial.path\": must not be empty");
  CHECK(parse_error(R"({"serial": {"mode": "stdio", "path": "/x"}})") ==
        "config: field \"serial.path\": only allowed when serial.mode is \"file\" or \"socket\"");
  CHECK(parse_error(R"({"serial": "tty"})") ==
        "config: field \"serial\": expected stdio, none, file:PATH or socket:PATH, got \"tty\"");
  CHECK(parse_error(R"({"serial": "file:"})") ==
        "config: field \"serial\": file: needs a path, e.g. file:/tmp/console.log");
  CHECK(parse_error(R"({"serial": 3})") ==
        "config: field \"serial\": expected \"stdio\", \"none\", \"file:PATH\", \"socket:PATH\" or "
        "an object, got 3");
}

TEST_CASE("parse_config_json reads a socket console in both forms", "[config]") {
  auto shorthand = petrel::parse_config_json(R"({"serial": "socket:/run/vm/console.sock"})");
  REQUIRE(shorthand.ok());
  CHECK(shorthand->serial.mode == SerialMode::kSocket);
  CHECK(shorthand->serial.path == "/run/vm/console.sock");
  auto object =
      petrel::parse_config_json(R"({"serial": {"mode": "socket", "path": "console.sock"}})");
  REQUIRE(object.ok());
  CHECK(object->serial.mode == SerialMode::kSocket);
  CHECK(object->serial.path == "console.sock");

  std::string longest = "/" + std::string(petrel::kMaxSocketPathLength - 1, 's');
  CHECK(petrel::parse_config_json(R"({"serial": "socket:)" + longest + R"("})")->serial.path ==
        longest);
}

TEST_CASE("parse_config_json checks the socket console settings", "[config]") {
  CHECK(parse_error(R"({"serial": "socket:"})") ==
        "config: field \"serial\": socket: needs a path, e.g. socket:/tmp/console.sock");
  CHECK(parse_error(R"({"serial": {"mode": "socket"}})") ==
        "config: field \"serial.path\": required when serial.mode is \"socket\"");
  CHECK(parse_error(R"({"serial": {"mode": "socket", "path": ""}})") ==
        "config: field \"serial.path\": must not be empty");
  CHECK(parse_error(R"({"serial": {"mode": "socket", "path": 7}})") ==
        "config: field \"serial.path\": expected a string, got 7");

  std::string too_long = "/" + std::string(petrel::kMaxSocketPathLength, 's');  // 108 bytes
  CHECK(parse_error(R"({"serial": "socket:)" + too_long + R"("})") ==
        "config: field \"serial\": the socket path is 108 bytes; a Unix socket address holds at "
        "most 107");
  CHECK(parse_error(R"({"serial": {"mode": "socket", "path": ")" + too_long + R"("}})") ==
        "config: field \"serial.path\": the socket path is 108 bytes; a Unix socket address "
        "holds at most 107");
}

TEST_CASE("parse_config_json refuses unknown and repeated fields", "[config]") {
  CHECK(parse_error(R"({"vcpu": 2})") ==
        "config: unknown field \"vcpu\" (did you mean \"vcpus\"?)");
  CHECK(parse_error(R"({"frobnicate": 1})") == "config: unknown field \"frobnicate\"");
  CHECK(parse_error(R"({"serial": {"mdoe": "stdio"}})") ==
        "config: unknown field \"serial.mdoe\" (did you mean \"serial.mode\"?)");
  CHECK(parse_error(R"({"log": {"lvl": "info"}})") ==
        "config: unknown field \"log.lvl\" (did you mean \"log.level\"?)");
  CHECK(parse_error(R"({"log": {"colour": true}})") == "config: unknown field \"log.colour\"");
  CHECK(parse_error(R"({"vcpus": 1, "vcpus": 2})") ==
        "config: field \"vcpus\" is given more than once");
  CHECK(parse_error(R"({"serial": {"mode": "none", "mode": "stdio"}})") ==
        "config: field \"serial.mode\" is given more than once");
}

TEST_CASE("parse_config_json refuses malformed JSON and other documents", "[config]") {
  CHECK_THAT(parse_error(R"({"vcpus": })"),
             Catch::StartsWith("config: malformed JSON at byte 11: parse error at line 1, column "
                               "11: syntax error"));
  CHECK_THAT(parse_error(""), Catch::StartsWith("config: malformed JSON at byte 1: "));
  CHECK_THAT(parse_error("{} x"), Catch::StartsWith("config: malformed JSON at byte 4: "));
  CHECK_THAT(parse_error("{\"name\": \"\xff\"}"), Catch::StartsWith("config: malformed JSON"));
  CHECK(parse_error("[1, 2]") == "config: expected a JSON object at the top level, got array");
  CHECK(parse_error("42") == "config: expected a JSON object at the top level, got number");
}

TEST_CASE("config_to_json round-trips through parse_config_json", "[config]") {
  VmConfig config;
  config.name = "round.trip_1";
  config.kernel = "/boot/vmlinux";
  config.cmdline = "console=ttyS0 \"quoted\" \\ é";
  config.memory_bytes = (1ull << 30) + 4096;
  config.vcpus = 254;
  config.serial = {SerialMode::kFile, "/var/log/petrel console.log"};
  config.log_level = "trace";
  config.log_format = LogFormat::kJson;
  config.pvm_mode = PvmMode::kEmulated;

  nlohmann::json json = petrel::config_to_json(config);
  CHECK(json["memory"] == "1048580K");
  CHECK(json["serial"]["mode"] == "file");
  auto parsed = petrel::parse_config_json(json.dump(2));
  REQUIRE(parsed.ok());
  CHECK(*parsed == config);

  VmConfig defaults;
  VmConfig socket = config;
  socket.serial = {SerialMode::kSocket, "/run/petrel/console.sock"};
  nlohmann::json socket_json = petrel::config_to_json(socket);
  CHECK(socket_json["serial"] ==
        nlohmann::json{{"mode", "socket"}, {"path", "/run/petrel/console.sock"}});
  CHECK(*petrel::parse_config_json(socket_json.dump()) == socket);

  nlohmann::json default_json = petrel::config_to_json(defaults);
  CHECK_FALSE(default_json.contains("kernel"));
  CHECK(default_json["serial"] == nlohmann::json{{"mode", "stdio"}});
  CHECK(*petrel::parse_config_json(default_json.dump()) == defaults);
}

TEST_CASE("validate_config checks a complete config", "[config]") {
  ScratchDir dir;
  VmConfig config;
  CHECK(validate_error(config) == "config: field \"kernel\": required: the guest kernel image");

  config.kernel = dir.path() / "missing-vmlinux";
  auto missing = petrel::validate_config(config);
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().code() == ErrorCode::kNotFound);
  CHECK(missing.error().to_string() ==
        "config: field \"kernel\": " + config.kernel.string() + ": No such file or directory");

  config.kernel = dir.path();
  CHECK(validate_error(config) ==
        "config: field \"kernel\": " + dir.path().string() + ": not a regular file");

  config.kernel = dir.write("vmlinux", "kernel");
  CHECK(petrel::validate_config(config).ok());

  SECTION("values out of range") {
    config.vcpus = 0;
    CHECK(validate_error(config) ==
          "config: field \"vcpus\": expected an integer from 1 to 254, got 0");
    config.vcpus = 1;
    config.memory_bytes = 8ull << 20;
    CHECK(validate_error(config) == "config: field \"memory\": 8M is below the minimum 16M");
    config.memory_bytes = 256ull << 20;
    config.log_level = "loud";
    CHECK_THAT(validate_error(config), Catch::StartsWith("config: field \"log.level\": expected"));
    config.log_level = "info";
    config.name = "";
    CHECK_THAT(validate_error(config), Catch::StartsWith("config: field \"name\": expected"));
    config.name = "ok";
    config.cmdline = "a\nb";
    CHECK(validate_error(config) == "config: field \"cmdline\": must not contain a newline");
  }
  SECTION("serial settings") {
    config.serial = {SerialMode::kFile, {}};
    CHECK(validate_error(config) ==
          "config: field \"serial.path\": the file path must not be empty");
    config.serial = {SerialMode::kStdio, "/tmp/x"};
    CHECK(validate_error(config) ==
          "config: field \"serial.path\": only allowed when serial.mode is \"file\" or "
          "\"socket\"");
    config.serial = {SerialMode::kFile, dir.path() / "no-such-dir" / "console.log"};
    auto bad_dir = petrel::validate_config(config);
    REQUIRE_FALSE(bad_dir.ok());
    CHECK(bad_dir.error().code() == ErrorCode::kNotFound);
    CHECK(bad_dir.error().to_string() ==
          "config: field \"serial.path\": " + (dir.path() / "no-such-dir").string() +
              ": No such file or directory");
    config.serial = {SerialMode::kFile, dir.path()};
    CHECK(validate_error(config) ==
          "config: field \"serial.path\": " + dir.path().string() + ": is a directory");
    config.serial = {SerialMode::kFile, dir.path() / "console.log"};
    CHECK(petrel::validate_config(config).ok());
  }
  SECTION("socket console") {
    config.serial = {SerialMode::kSocket, dir.path() / "console.sock"};
    CHECK(petrel::validate_config(config).ok());
    bind_socket_file(config.serial.path);  // a stale socket is accepted: petrel replaces it
    CHECK(petrel::validate_config(config).ok());

    config.serial = {SerialMode::kSocket, {}};
    CHECK(validate_error(config) ==
          "config: field \"serial.path\": the socket path must not be empty");
    config.serial = {SerialMode::kSocket, dir.write("console.log", "x")};
    CHECK(validate_error(config) ==
          "config: field \"serial.path\": " + config.serial.path.string() +
              ": exists and is not a socket");
    config.serial = {SerialMode::kSocket, dir.path()};
    CHECK(validate_error(config) ==
          "config: field \"serial.path\": " + dir.path().string() + ": exists and is not a socket");
    config.serial = {SerialMode::kSocket, dir.path() / "no-such-dir" / "console.sock"};
    auto bad_dir = petrel::validate_config(config);
    REQUIRE_FALSE(bad_dir.ok());
    CHECK(bad_dir.error().code() == ErrorCode::kNotFound);
    CHECK(bad_dir.error().to_string() ==
          "config: field \"serial.path\": " + (dir.path() / "no-such-dir").string() +
              ": No such file or directory");
    config.serial = {SerialMode::kSocket, dir.path() / std::string(120, 's')};
    CHECK_THAT(validate_error(config),
               Catch::StartsWith("config: field \"serial.path\": the socket path is ") &&
                   Catch::EndsWith(" bytes; a Unix socket address holds at most 107"));
  }
}

TEST_CASE("load_config_file resolves relative paths against the file's directory", "[config]") {
  ScratchDir dir;
  std::filesystem::path kernel = dir.write("kernels/vmlinux", "kernel");
  std::filesystem::create_directories(dir.path() / "logs");
  std::filesystem::path file = dir.write(
      "vm/demo.json",
      R"({"kernel": "../kernels/vmlinux", "serial": "file:../logs/console.log", "vcpus": 3})");

  auto loaded = petrel::load_config_file(file);
  REQUIRE(loaded.ok());
  CHECK(loaded->kernel == dir.path() / "vm" / "../kernels/vmlinux");
  CHECK(std::filesystem::equivalent(loaded->kernel, kernel));
  CHECK(loaded->serial.path == dir.path() / "vm" / "../logs/console.log");
  CHECK(loaded->vcpus == 3);
  CHECK(petrel::validate_config(*loaded).ok());

  std::filesystem::path socket = dir.write("vm/socket.json", R"({"serial": "socket:run/c.sock"})");
  CHECK(petrel::load_config_file(socket)->serial.path == dir.path() / "vm" / "run/c.sock");

  std::filesystem::path absolute =
      dir.write("abs.json", R"({"kernel": ")" + kernel.string() + R"("})");
  CHECK(petrel::load_config_file(absolute)->kernel == kernel);
}

TEST_CASE("load_config_file reports unreadable and invalid files", "[config]") {
  ScratchDir dir;
  std::filesystem::path missing = dir.path() / "nope.json";
  auto not_found = petrel::load_config_file(missing);
  REQUIRE_FALSE(not_found.ok());
  CHECK(not_found.error().code() == ErrorCode::kNotFound);
  CHECK(not_found.error().to_string() ==
        "config: " + missing.string() + ": No such file or directory");

  auto directory = petrel::load_config_file(dir.path());
  REQUIRE_FALSE(directory.ok());
  CHECK(directory.error().to_string() == "config: " + dir.path().string() + ": Is a directory");

  std::filesystem::path bad = dir.write("bad.json", R"({"vcpus": 0})");
  auto invalid = petrel::load_config_file(bad);
  REQUIRE_FALSE(invalid.ok());
  CHECK(invalid.error().code() == ErrorCode::kInvalidArgument);
  CHECK(invalid.error().to_string() ==
        bad.string() + ": config: field \"vcpus\": expected an integer from 1 to 254, got 0");

  std::filesystem::path big = dir.write("big.json", std::string((1 << 20) + 1, ' '));
  CHECK_THAT(petrel::load_config_file(big).error().to_string(),
             Catch::EndsWith(": larger than the limit of 1M"));
}
