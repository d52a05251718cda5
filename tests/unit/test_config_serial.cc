// The serial console settings of VmConfig: parse_config_json, validate_config, config_to_json
// and load_config_file (the rest of the config tests are in test_config.cc).
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <string>

#include "scratch_dir.h"
#include "vmm/vm_config.h"

using petrel::ErrorCode;
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

TEST_CASE("parse_config_json reads the serial shorthand and object forms", "[config]") {
  auto serial = petrel::parse_config_json(R"({"serial": "file:out/console.log"})");
  REQUIRE(serial.ok());
  CHECK(serial->serial.mode == SerialMode::kFile);
  CHECK(serial->serial.path == "out/console.log");
  CHECK(petrel::parse_config_json(R"({"serial": "none"})")->serial.mode == SerialMode::kNone);
  CHECK(petrel::parse_config_json(R"({"serial": {"mode": "stdio"}})")->serial.mode ==
        SerialMode::kStdio);
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

TEST_CASE("config_to_json round-trips the serial settings", "[config]") {
  VmConfig config;
  config.serial = {SerialMode::kFile, "/var/log/petrel console.log"};
  nlohmann::json file_json = petrel::config_to_json(config);
  CHECK(file_json["serial"] ==
        nlohmann::json{{"mode", "file"}, {"path", "/var/log/petrel console.log"}});
  CHECK(*petrel::parse_config_json(file_json.dump(2)) == config);

  config.serial = {SerialMode::kSocket, "/run/petrel/console.sock"};
  nlohmann::json socket_json = petrel::config_to_json(config);
  CHECK(socket_json["serial"] ==
        nlohmann::json{{"mode", "socket"}, {"path", "/run/petrel/console.sock"}});
  CHECK(*petrel::parse_config_json(socket_json.dump()) == config);

  config.serial = {SerialMode::kNone, {}};
  nlohmann::json none_json = petrel::config_to_json(config);
  CHECK(none_json["serial"] == nlohmann::json{{"mode", "none"}});
  CHECK(*petrel::parse_config_json(none_json.dump()) == config);

  CHECK(petrel::config_to_json(VmConfig{})["serial"] == nlohmann::json{{"mode", "stdio"}});
}

TEST_CASE("validate_config checks the serial settings", "[config]") {
  ScratchDir dir;
  VmConfig config;
  config.kernel = dir.write("vmlinux", "kernel");
  REQUIRE(petrel::validate_config(config).ok());

  SECTION("serial file") {
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

TEST_CASE("load_config_file resolves a relative serial path against the file's directory",
          "[config]") {
  ScratchDir dir;
  std::filesystem::create_directories(dir.path() / "logs");
  std::filesystem::path file = dir.write("vm/file.json", R"({"serial": "file:../logs/c.log"})");
  CHECK(petrel::load_config_file(file)->serial.path == dir.path() / "vm" / "../logs/c.log");
  std::filesystem::path socket = dir.write("vm/socket.json", R"({"serial": "socket:run/c.sock"})");
  CHECK(petrel::load_config_file(socket)->serial.path == dir.path() / "vm" / "run/c.sock");
  std::filesystem::path object =
      dir.write("vm/object.json", R"({"serial": {"mode": "socket", "path": "/abs/c.sock"}})");
  CHECK(petrel::load_config_file(object)->serial.path == "/abs/c.sock");
}
