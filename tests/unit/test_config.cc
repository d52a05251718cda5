#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdint>
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
    "name": "demo", "kernel": "/boot/vmlinux", "initrd": "/boot/initramfs.cpio.gz",
    "cmdline": "console=ttyS0",
    "memory": "512M", "vcpus": 2,
    "serial": {"mode": "file", "path": "/tmp/console.log"},
    "log": {"level": "debug", "format": "json"},
    "pvm_mode": "emulated"
  })");
  REQUIRE(parsed.ok());
  CHECK(parsed->name == "demo");
  CHECK(parsed->kernel == "/boot/vmlinux");
  CHECK(parsed->initrd == "/boot/initramfs.cpio.gz");
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
  // The serial forms are in test_config_serial.cc.
  CHECK(*petrel::parse_config_json("{}") == VmConfig{});
  CHECK(petrel::parse_config_json("{}")->initrd.empty());
  CHECK(petrel::parse_config_json(R"({"initrd": "initrd.img"})")->initrd == "initrd.img");
  CHECK(petrel::parse_config_json(R"({"memory": 268435456})")->memory_bytes == 256ull << 20);
  CHECK(petrel::parse_config_json(R"({"log": {"level": "off"}})")->log_format == LogFormat::kText);
  CHECK(petrel::parse_config_json(R"({"log": {"format": "journal"}})")->log_format ==
        LogFormat::kJournal);
  CHECK_FALSE(petrel::parse_config_json(R"({"log": {"format": "syslog"}})").ok());
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
  CHECK(parse_error(R"({"initrd": ""})") == "config: field \"initrd\": must not be empty");
  CHECK(parse_error(R"({"initrd": null})") ==
        "config: field \"initrd\": expected a string, got null");
  CHECK(parse_error(R"({"initrd": ["a"]})") ==
        "config: field \"initrd\": expected a string, got [\"a\"]");
  CHECK(parse_error(R"({"initrd": "a\u0000b"})") ==
        "config: field \"initrd\": must not contain a NUL byte");
  CHECK(parse_error(R"({"initramfs": "x"})") == "config: unknown field \"initramfs\"");
  CHECK(parse_error(R"({"initr": "x"})") ==
        "config: unknown field \"initr\" (did you mean \"initrd\"?)");

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
        "config: field \"log.format\": expected one of text, json, journal, got \"xml\"");
  CHECK(parse_error(R"({"log": "info"})") ==
        "config: field \"log\": expected an object with \"level\" and/or \"format\", got \"info\"");
  CHECK(parse_error(R"({"pvm_mode": "fast"})") ==
        "config: field \"pvm_mode\": expected one of auto, emulated, got \"fast\"");
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
  config.initrd = "/boot/initramfs 1.cpio.gz";
  config.cmdline = "console=ttyS0 \"quoted\" \\ é";
  config.memory_bytes = (1ull << 30) + 4096;
  config.vcpus = 254;
  config.serial = {SerialMode::kFile, "/var/log/petrel console.log"};
  config.log_level = "trace";
  config.log_format = LogFormat::kJson;
  config.pvm_mode = PvmMode::kEmulated;

  nlohmann::json json = petrel::config_to_json(config);
  CHECK(json["memory"] == "1048580K");
  CHECK(json["initrd"] == "/boot/initramfs 1.cpio.gz");
  auto parsed = petrel::parse_config_json(json.dump(2));
  REQUIRE(parsed.ok());
  CHECK(*parsed == config);

  VmConfig defaults;
  nlohmann::json default_json = petrel::config_to_json(defaults);
  CHECK_FALSE(default_json.contains("kernel"));
  CHECK_FALSE(default_json.contains("initrd"));
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
  SECTION("initrd") {
    config.initrd = dir.write("initramfs.cpio.gz", "ramdisk");
    CHECK(petrel::validate_config(config).ok());

    config.initrd = dir.path() / "missing.cpio.gz";
    auto missing_initrd = petrel::validate_config(config);
    REQUIRE_FALSE(missing_initrd.ok());
    CHECK(missing_initrd.error().code() == ErrorCode::kNotFound);
    CHECK(missing_initrd.error().to_string() ==
          "config: field \"initrd\": " + config.initrd.string() + ": No such file or directory");
    config.initrd = dir.path() / "vmlinux" / "initrd";  // a file used as a directory
    auto not_dir = petrel::validate_config(config);
    REQUIRE_FALSE(not_dir.ok());
    CHECK(not_dir.error().code() == ErrorCode::kNotFound);
    CHECK(not_dir.error().to_string() ==
          "config: field \"initrd\": " + config.initrd.string() + ": Not a directory");

    config.initrd = dir.path();
    auto directory = petrel::validate_config(config);
    REQUIRE_FALSE(directory.ok());
    CHECK(directory.error().code() == ErrorCode::kInvalidArgument);
    CHECK(directory.error().to_string() ==
          "config: field \"initrd\": " + dir.path().string() + ": not a regular file");

    config.initrd = dir.path() / "fifo";
    REQUIRE(::mkfifo(config.initrd.c_str(), 0600) == 0);
    CHECK(validate_error(config) ==
          "config: field \"initrd\": " + config.initrd.string() + ": not a regular file");

    if (::geteuid() != 0) {  // root reads a file without read permission
      config.initrd = dir.write("secret.cpio", "ramdisk");
      std::filesystem::permissions(config.initrd, std::filesystem::perms::none);
      CHECK(validate_error(config) ==
            "config: field \"initrd\": " + config.initrd.string() + ": Permission denied");
    }
  }
}

TEST_CASE("load_config_file resolves relative paths against the file's directory", "[config]") {
  ScratchDir dir;
  std::filesystem::path kernel = dir.write("kernels/vmlinux", "kernel");
  std::filesystem::path initrd = dir.write("kernels/initrd.img", "ramdisk");
  std::filesystem::create_directories(dir.path() / "logs");
  std::filesystem::path file =
      dir.write("vm/demo.json",
                R"({"kernel": "../kernels/vmlinux", "initrd": "../kernels/initrd.img",
          "serial": "file:../logs/console.log", "vcpus": 3})");

  auto loaded = petrel::load_config_file(file);
  REQUIRE(loaded.ok());
  CHECK(loaded->kernel == dir.path() / "vm" / "../kernels/vmlinux");
  CHECK(std::filesystem::equivalent(loaded->kernel, kernel));
  CHECK(loaded->initrd == dir.path() / "vm" / "../kernels/initrd.img");
  CHECK(std::filesystem::equivalent(loaded->initrd, initrd));
  CHECK(loaded->serial.path == dir.path() / "vm" / "../logs/console.log");
  CHECK(loaded->vcpus == 3);
  CHECK(petrel::validate_config(*loaded).ok());

  std::filesystem::path absolute =
      dir.write("abs.json", R"({"kernel": ")" + kernel.string() + R"(", "initrd": ")" +
                                initrd.string() + R"("})");
  CHECK(petrel::load_config_file(absolute)->kernel == kernel);
  CHECK(petrel::load_config_file(absolute)->initrd == initrd);
  CHECK(petrel::load_config_file(dir.write("none.json", "{}"))->initrd.empty());
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
