// The balloon's settings (balloon_config.h): the --balloon option string, the JSON "balloon"
// object, validate_config's check against guest RAM, config_to_json's round trip, and the
// --balloon flag overriding --config.
#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "scratch_dir.h"
#include "vmm/balloon_config.h"
#include "vmm/cli.h"
#include "vmm/vm_config.h"

using petrel::BalloonSpec;
using petrel::CliCommand;
using petrel::ErrorCode;
using petrel::Result;
using petrel::VirtioTransport;
using petrel::VmConfig;
using petrel::testing::ScratchDir;

namespace {

std::string option_error(std::string_view text) {
  auto parsed = petrel::parse_balloon_option(text);
  INFO(text);
  REQUIRE_FALSE(parsed.ok());
  CHECK(parsed.error().code() == ErrorCode::kInvalidArgument);
  return parsed.error().to_string();
}

std::string parse_error(std::string_view text) {
  auto parsed = petrel::parse_config_json(text);
  INFO(text);
  REQUIRE_FALSE(parsed.ok());
  CHECK(parsed.error().code() == ErrorCode::kInvalidArgument);
  return parsed.error().to_string();
}

VmConfig parse_ok(std::string_view text) {
  auto parsed = petrel::parse_config_json(text);
  INFO(text);
  if (!parsed.ok()) {
    FAIL(parsed.error().to_string());
  }
  return *parsed;
}

Result<CliCommand> parse_cli(const std::vector<std::string>& args) {
  std::vector<std::string_view> views(args.begin(), args.end());
  views.insert(views.begin(), "run");
  return petrel::parse_command_line(views);
}

VmConfig cli_ok(const std::vector<std::string>& args) {
  auto parsed = parse_cli(args);
  if (!parsed.ok()) {
    FAIL(parsed.error().to_string());
  }
  return parsed->config;
}

std::string cli_error(const std::vector<std::string>& args) {
  auto parsed = parse_cli(args);
  REQUIRE_FALSE(parsed.ok());
  return parsed.error().to_string();
}

// The default spec with `target_bytes` set.
BalloonSpec with_target(uint64_t target_bytes) {
  BalloonSpec spec;
  spec.target_bytes = target_bytes;
  return spec;
}

}  // namespace

TEST_CASE("parse_balloon_option reads every key and keeps the defaults", "[config][balloon]") {
  auto defaults = petrel::parse_balloon_option("");
  REQUIRE(defaults.ok());
  CHECK(*defaults == BalloonSpec{});
  CHECK(defaults->target_bytes == 0);
  CHECK(defaults->deflate_on_oom);
  CHECK(defaults->stats_interval_s == 5);
  CHECK_FALSE(defaults->free_page_reporting);
  CHECK_FALSE(defaults->transport.has_value());

  auto full = petrel::parse_balloon_option(
      "target=128M,deflate_on_oom=off,stats_interval=2m,free_page_reporting=on,transport=pci");
  REQUIRE(full.ok());
  CHECK(full->target_bytes == 128ull << 20);
  CHECK_FALSE(full->deflate_on_oom);
  CHECK(full->stats_interval_s == 120);
  CHECK(full->free_page_reporting);
  CHECK(full->transport == VirtioTransport::kPci);

  CHECK(petrel::parse_balloon_option("stats_interval=0")->stats_interval_s == 0);
  CHECK(petrel::parse_balloon_option("stats_interval=30")->stats_interval_s == 30);
  CHECK(petrel::parse_balloon_option("stats_interval=1h")->stats_interval_s == 3600);
  CHECK(petrel::parse_balloon_option("target=4096")->target_bytes == 4096);
}

TEST_CASE("parse_balloon_option refuses bad items naming the key", "[config][balloon]") {
  CHECK(option_error("target=4097") ==
        "target: expected a multiple of 4K (the balloon's page), got 4097");
  CHECK(option_error("target=lots").starts_with("target: invalid size \"lots\""));
  CHECK(option_error("deflate_on_oom=maybe") ==
        "deflate_on_oom: expected on or off, got \"maybe\"");
  CHECK(option_error("stats_interval=1500ms") ==
        "stats_interval: expected whole seconds, got \"1500ms\"");
  CHECK(option_error("stats_interval=2h") ==
        "stats_interval: expected 0 (off) to 3600 seconds, got 7200");
  CHECK(option_error("free_page_reporting=2") ==
        "free_page_reporting: expected on or off, got \"2\"");
  CHECK(option_error("transport=usb") == "transport: expected mmio or pci, got \"usb\"");
  CHECK(option_error("targt=1M") == "unknown key \"targt\" (did you mean \"target\"?)");
  CHECK(option_error("target=1M,target=2M") == "key \"target\" is given more than once");
  CHECK(option_error("128M") == "expected key=value, got \"128M\"");
  CHECK(option_error("target=1M,") == "expected key=value, got \"\"");
}

TEST_CASE("parse_config_json reads the balloon object and true", "[config][balloon]") {
  CHECK_FALSE(parse_ok("{}").balloon.has_value());
  CHECK(parse_ok(R"({"balloon": true})").balloon == BalloonSpec{});
  CHECK(parse_ok(R"({"balloon": {}})").balloon == BalloonSpec{});
  VmConfig config = parse_ok(
      R"({"memory": "1G", "balloon": {"target": "256M", "deflate_on_oom": false,
          "stats_interval_s": 0, "free_page_reporting": true, "transport": "mmio"}})");
  REQUIRE(config.balloon);
  CHECK(config.balloon->target_bytes == 256ull << 20);
  CHECK_FALSE(config.balloon->deflate_on_oom);
  CHECK(config.balloon->stats_interval_s == 0);
  CHECK(config.balloon->free_page_reporting);
  CHECK(config.balloon->transport == VirtioTransport::kMmio);
  CHECK(parse_ok(R"({"balloon": {"target": 8192}})").balloon->target_bytes == 8192);
}

TEST_CASE("parse_config_json refuses bad balloon values naming the field", "[config][balloon]") {
  CHECK(parse_error(R"({"balloon": false})") ==
        "config: field \"balloon\": false is not a device; leave \"balloon\" out instead");
  CHECK(parse_error(R"({"balloon": "128M"})") ==
        "config: field \"balloon\": expected true or an object, got \"128M\"");
  CHECK(parse_error(R"({"balloon": {"target": "1M", "extra": 1}})") ==
        "config: field \"balloon\": unknown key \"extra\"");
  CHECK(parse_error(R"({"balloon": {"stats_interval": 5}})") ==
        "config: field \"balloon\": unknown key \"stats_interval\" (did you mean "
        "\"stats_interval_s\"?)");
  CHECK(parse_error(R"({"balloon": {"target": 4097}})") ==
        "config: field \"balloon.target\": expected a multiple of 4K (the balloon's page), got "
        "4097");
  CHECK(parse_error(R"({"balloon": {"target": -4096}})") ==
        "config: field \"balloon.target\": expected a size string like \"128M\" or an integer "
        "number of bytes, got -4096");
  CHECK(parse_error(R"({"balloon": {"target": "big"}})")
            .starts_with("config: field \"balloon.target\": invalid size \"big\""));
  CHECK(parse_error(R"({"balloon": {"deflate_on_oom": "on"}})") ==
        "config: field \"balloon.deflate_on_oom\": expected true or false, got \"on\"");
  CHECK(parse_error(R"({"balloon": {"free_page_reporting": 1}})") ==
        "config: field \"balloon.free_page_reporting\": expected true or false, got 1");
  CHECK(parse_error(R"({"balloon": {"stats_interval_s": 3601}})") ==
        "config: field \"balloon.stats_interval_s\": expected 0 (off) to 3600 seconds, got 3601");
  CHECK(parse_error(R"({"balloon": {"stats_interval_s": "5s"}})") ==
        "config: field \"balloon.stats_interval_s\": expected an integer number of seconds, 0 "
        "(off) to 3600, got \"5s\"");
  CHECK(parse_error(R"({"balloon": {"transport": "isa"}})") ==
        "config: field \"balloon.transport\": expected mmio or pci, got \"isa\"");
  CHECK(parse_error(R"({"baloon": true})") ==
        "config: unknown field \"baloon\" (did you mean \"balloon\"?)");
}

TEST_CASE("validate_config keeps the balloon target below guest RAM", "[config][balloon]") {
  ScratchDir dir;
  VmConfig config;
  config.kernel = dir.write("vmlinux", "kernel");
  config.memory_bytes = 256ull << 20;
  config.balloon = BalloonSpec{};
  CHECK(petrel::validate_config(config).ok());
  config.balloon->target_bytes = (256ull << 20) - 4096;
  CHECK(petrel::validate_config(config).ok());
  config.balloon->target_bytes = 256ull << 20;
  auto refused = petrel::validate_config(config);
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().code() == ErrorCode::kInvalidArgument);
  CHECK(refused.error().to_string() ==
        "config: field \"balloon.target\": the target (256M) must be less than the guest's "
        "memory (256M)");
  config.balloon->target_bytes = 12345;  // set in code, bypassing the parsers
  CHECK_FALSE(petrel::validate_config(config).ok());

  CHECK(petrel::check_balloon_target(0, 4096).ok());
  CHECK_FALSE(petrel::check_balloon_target(4096, 4096).ok());
  CHECK_FALSE(petrel::check_balloon_target(1, 1ull << 30).ok());
}

TEST_CASE("a balloon on virtio-MMIO counts toward the interrupt budget", "[config][balloon]") {
  ScratchDir dir;
  VmConfig config;
  config.kernel = dir.write("vmlinux", "kernel");
  for (int i = 0; i < 16; ++i) {
    config.disks.push_back({dir.write("d" + std::to_string(i), "x"), false, "", {}, {}});
  }
  CHECK(petrel::validate_config(config).ok());
  config.balloon = BalloonSpec{};
  auto refused = petrel::validate_config(config);
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().to_string().find("17 virtio-MMIO devices") != std::string::npos);
  config.balloon->transport = VirtioTransport::kPci;
  CHECK(petrel::validate_config(config).ok());
}

TEST_CASE("config_to_json round-trips the balloon", "[config][balloon]") {
  for (const BalloonSpec& spec : {BalloonSpec{}, BalloonSpec{.target_bytes = 4096 * 3,
                                                 .deflate_on_oom = false,
                                                 .stats_interval_s = 0,
                                                 .free_page_reporting = true,
                                                 .transport = VirtioTransport::kPci}}) {
    VmConfig config;
    config.balloon = spec;
    nlohmann::json json = petrel::config_to_json(config);
    INFO(json.dump());
    REQUIRE(json.contains("balloon"));
    CHECK(parse_ok(json.dump()) == config);
  }
  VmConfig none;
  CHECK_FALSE(petrel::config_to_json(none).contains("balloon"));
  VmConfig sized;
  sized.balloon = with_target(128ull << 20);
  CHECK(petrel::config_to_json(sized)["balloon"]["target"] == "128M");
}

TEST_CASE("petrel run reads --balloon and lets it override --config", "[cli][balloon]") {
  ScratchDir dir;
  std::string kernel = dir.write("vmlinux", "kernel").string();
  CHECK_FALSE(cli_ok({"--kernel", kernel}).balloon.has_value());
  CHECK(cli_ok({"--kernel", kernel, "--balloon"}).balloon == BalloonSpec{});
  CHECK(cli_ok({"--balloon", "--kernel", kernel}).balloon == BalloonSpec{});
  VmConfig config = cli_ok({"--kernel", kernel, "--memory", "1G", "--balloon",
                            "target=512M,stats_interval=10s,free_page_reporting=on"});
  REQUIRE(config.balloon);
  CHECK(config.balloon->target_bytes == 512ull << 20);
  CHECK(config.balloon->stats_interval_s == 10);
  CHECK(config.balloon->free_page_reporting);
  CHECK(cli_ok({"--kernel", kernel, "--balloon=deflate_on_oom=off"}).balloon->deflate_on_oom ==
        false);

  std::string file = dir.write("vm.json", R"({"kernel": "vmlinux", "memory": "512M",
      "balloon": {"target": "64M", "stats_interval_s": 30}})")
                         .string();
  VmConfig from_file = cli_ok({"--config", file});
  REQUIRE(from_file.balloon);
  CHECK(from_file.balloon->target_bytes == 64ull << 20);
  CHECK(from_file.balloon->stats_interval_s == 30);
  // The flag replaces the file's balloon as a whole.
  VmConfig overridden = cli_ok({"--balloon", "target=128M", "--config", file});
  CHECK(overridden.balloon == with_target(128ull << 20));

  CHECK(cli_error({"--kernel", kernel, "--balloon", "target=1000"}) ==
        "--balloon: target: expected a multiple of 4K (the balloon's page), got 1000");
  CHECK(cli_error({"--kernel", kernel, "--balloon", "size=1M"}) ==
        "--balloon: unknown key \"size\"");
  CHECK(cli_error({"--kernel", kernel, "--balloon", "", "--balloon", ""}) ==
        "--balloon: given more than once");
  CHECK(cli_error({"--kernel", kernel, "--balloon", "target=256M"}) ==
        "config: field \"balloon.target\": the target (256M) must be less than the guest's "
        "memory (256M)");
  CHECK(petrel::usage_text().find("--balloon [OPTS]") != std::string::npos);
}
