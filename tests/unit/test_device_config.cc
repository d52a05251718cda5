// The virtio device settings: --disk/--net/--rng option strings, their JSON forms, the
// command line and the whole-config checks.
#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "scratch_dir.h"
#include "vmm/cli.h"
#include "vmm/device_config.h"
#include "vmm/vm_config.h"

using petrel::DiskEngine;
using petrel::VirtioTransport;
using petrel::testing::ScratchDir;

namespace {

std::string error_of(const petrel::Result<petrel::DiskSpec>& r) {
  REQUIRE_FALSE(r.ok());
  return r.error().to_string();
}

petrel::Result<petrel::CliCommand> parse(const std::vector<std::string>& args) {
  std::vector<std::string_view> views(args.begin(), args.end());
  return petrel::parse_command_line(views);
}

}  // namespace

TEST_CASE("--disk option strings", "[config][virtio]") {
  auto disk =
      petrel::parse_disk_option("path=a.img,readonly=on,serial=ABC-1,engine=sync,transport=pci");
  REQUIRE(disk.ok());
  CHECK(disk->path == "a.img");
  CHECK(disk->read_only);
  CHECK(disk->serial == "ABC-1");
  CHECK(disk->engine == DiskEngine::kSync);
  CHECK(disk->transport == VirtioTransport::kPci);

  auto bare = petrel::parse_disk_option("b.img,readonly=off");
  REQUIRE(bare.ok());
  CHECK(bare->path == "b.img");
  CHECK_FALSE(bare->read_only);
  CHECK_FALSE(bare->transport.has_value());
  CHECK(bare->engine == DiskEngine::kAuto);

  CHECK(error_of(petrel::parse_disk_option("")) == "path is required, e.g. path=disk.img");
  CHECK(error_of(petrel::parse_disk_option("readonly=on")) ==
        "path is required, e.g. path=disk.img");
  CHECK(error_of(petrel::parse_disk_option("path=a,raedonly=on")) ==
        "unknown key \"raedonly\" (did you mean \"readonly\"?)");
  CHECK(error_of(petrel::parse_disk_option("path=a,path=b")) ==
        "key \"path\" is given more than once");
  CHECK(error_of(petrel::parse_disk_option("path=a,readonly=maybe")) ==
        "readonly: expected on or off, got \"maybe\"");
  CHECK(error_of(petrel::parse_disk_option("path=a,serial=012345678901234567890")) ==
        "serial: at most 20 characters, got \"012345678901234567890\"");
  CHECK(error_of(petrel::parse_disk_option("path=a,serial=a b")).find("printable ASCII") !=
        std::string::npos);
  CHECK(error_of(petrel::parse_disk_option("path=a,engine=aio")) ==
        "engine: expected one of auto, uring, sync, got \"aio\"");
  CHECK(error_of(petrel::parse_disk_option("path=a,transport=isa")) ==
        "transport: expected mmio or pci, got \"isa\"");
  CHECK(error_of(petrel::parse_disk_option("path=")) == "path: must not be empty");
  CHECK(error_of(petrel::parse_disk_option("path=a,,")) == "expected key=value, got \"\"");
}

TEST_CASE("--net and --rng option strings", "[config][virtio]") {
  auto net = petrel::parse_net_option("tap=tap0,mac=52:54:00:AB:cd:01,mtu=9000,transport=mmio");
  REQUIRE(net.ok());
  CHECK(net->tap == "tap0");
  CHECK(net->mac == "52:54:00:ab:cd:01");
  CHECK(net->mtu == 9000u);
  CHECK(net->transport == VirtioTransport::kMmio);
  auto empty = petrel::parse_net_option("");
  REQUIRE(empty.ok());
  CHECK(empty->tap.empty());
  CHECK(empty->mac.empty());

  auto net_error = [](std::string_view text) {
    auto r = petrel::parse_net_option(text);
    REQUIRE_FALSE(r.ok());
    return r.error().to_string();
  };
  CHECK(net_error("mac=01:00:5e:00:00:01") ==
        "mac: a multicast MAC address cannot be a NIC's address: \"01:00:5e:00:00:01\"");
  CHECK(net_error("mac=52:54:00:12:34").find("expected a MAC address") != std::string::npos);
  CHECK(net_error("mac=52-54-00-12-34-56").find("expected a MAC address") != std::string::npos);
  CHECK(net_error("mtu=67") == "mtu: expected an integer from 68 to 65535, got \"67\"");
  CHECK(net_error("mtu=65536") == "mtu: expected an integer from 68 to 65535, got \"65536\"");
  CHECK(net_error("tap=a/b").find("expected an interface name") != std::string::npos);
  CHECK(net_error("tap=0123456789abcdef").find("expected an interface name") != std::string::npos);
  CHECK(net_error("tap0") == "expected key=value, got \"tap0\"");

  auto rng = petrel::parse_rng_option("");
  REQUIRE(rng.ok());
  CHECK_FALSE(rng->transport.has_value());
  auto rng_pci = petrel::parse_rng_option("transport=pci");
  REQUIRE(rng_pci.ok());
  CHECK(rng_pci->transport == VirtioTransport::kPci);
  CHECK_FALSE(petrel::parse_rng_option("speed=fast").ok());
}

TEST_CASE("virtio devices in the JSON config round-trip", "[config][virtio]") {
  ScratchDir dir;
  auto kernel = dir.write("vmlinux", "x");
  auto image = dir.write("disk.img", std::string(4096, '\0'));
  std::string text = R"({"kernel": ")" + kernel.string() + R"(",
    "disks": [{"path": ")" +
                     image.string() + R"(", "readonly": true, "serial": "s1"}],
    "nets": [{"tap": "tap7", "mtu": 1400}, {"mac": "02:00:00:00:00:01", "transport": "pci"}],
    "rng": true, "virtio_transport": "pci"})";
  auto config = petrel::parse_config_json(text);
  REQUIRE(config.ok());
  REQUIRE(config->disks.size() == 1);
  CHECK(config->disks[0].read_only);
  CHECK(config->disks[0].serial == "s1");
  REQUIRE(config->nets.size() == 2);
  CHECK(config->nets[0].mtu == 1400u);
  CHECK(config->nets[1].transport == VirtioTransport::kPci);
  CHECK(config->rng.has_value());
  CHECK(config->virtio_transport == VirtioTransport::kPci);
  CHECK(petrel::validate_config(*config).ok());

  auto again = petrel::parse_config_json(petrel::config_to_json(*config).dump());
  REQUIRE(again.ok());
  CHECK(*again == *config);

  auto json_error = [](std::string_view doc) {
    auto r = petrel::parse_config_json(doc);
    REQUIRE_FALSE(r.ok());
    return r.error().to_string();
  };
  CHECK(json_error(R"({"disks": {}})") ==
        "config: field \"disks\": expected an array of disk objects, got {}");
  CHECK(json_error(R"({"disks": [{"readonly": true}]})") ==
        "config: field \"disks[0]\": path is required, e.g. path=disk.img");
  CHECK(json_error(R"({"disks": [{"path": "a", "size": 1}]})") ==
        "config: field \"disks[0]\": unknown key \"size\"");
  CHECK(json_error(R"({"nets": [{"mtu": -1}]})") ==
        "config: field \"nets[0].mtu\": expected a string, boolean or number, got -1");
  CHECK(json_error(R"({"rng": false})") ==
        "config: field \"rng\": false is not a device; leave \"rng\" out instead");
  CHECK(json_error(R"({"virtio_transport": "vmbus"})") ==
        "config: field \"virtio_transport\": expected mmio or pci, got \"vmbus\"");
}

TEST_CASE("validate_config checks disk files, duplicates and the MMIO interrupt budget",
          "[config][virtio]") {
  ScratchDir dir;
  petrel::VmConfig config;
  config.kernel = dir.write("vmlinux", "x");
  auto image = dir.write("disk.img", std::string(4096, '\0'));
  config.disks.push_back({image, false, "", DiskEngine::kAuto, std::nullopt});
  CHECK(petrel::validate_config(config).ok());

  config.disks.push_back({dir.path() / "missing.img", false, "", DiskEngine::kAuto, std::nullopt});
  auto missing = petrel::validate_config(config);
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().code() == petrel::ErrorCode::kNotFound);
  CHECK(missing.error().to_string().starts_with("config: field \"disks[1].path\""));

  config.disks[1].path = image;
  auto same = petrel::validate_config(config);
  REQUIRE_FALSE(same.ok());
  CHECK(same.error().to_string() == "config: field \"disks[1].path\": the same image as disks[0]");
  config.disks.pop_back();

  config.disks[0].path = dir.path();
  CHECK(petrel::validate_config(config).error().to_string().find("Is a directory") !=
        std::string::npos);
  config.disks[0].path = image;

  if (::geteuid() != 0) {  // root may write anything
    ::chmod(image.c_str(), 0444);
    auto ro = petrel::validate_config(config);
    REQUIRE_FALSE(ro.ok());
    CHECK(ro.error().to_string().find("readonly=on") != std::string::npos);
    config.disks[0].read_only = true;
    CHECK(petrel::validate_config(config).ok());
  }

  config.nets = {{"tap0", "", std::nullopt, std::nullopt},
                 {"tap0", "", std::nullopt, std::nullopt}};
  CHECK(petrel::validate_config(config).error().to_string() ==
        "config: field \"nets[1].tap\": the same TAP as nets[0]");
  config.nets = {{"", "02:00:00:00:00:01", std::nullopt, std::nullopt},
                 {"", "02:00:00:00:00:01", std::nullopt, std::nullopt}};
  CHECK(petrel::validate_config(config).error().to_string() ==
        "config: field \"nets[1].mac\": the same MAC as nets[0]");
  config.nets.clear();

  // 16 disks over MMIO + an rng needs 17 interrupt lines.
  config.disks.clear();
  for (int i = 0; i < 16; ++i) {
    auto path = dir.write("d" + std::to_string(i), std::string(512, '\0'));
    config.disks.push_back({path, false, "", DiskEngine::kAuto, std::nullopt});
  }
  CHECK(petrel::validate_config(config).ok());
  config.rng = petrel::RngSpec{};
  CHECK(petrel::validate_config(config).error().to_string().find("17 virtio-MMIO devices") !=
        std::string::npos);
  config.rng->transport = VirtioTransport::kPci;
  CHECK(petrel::validate_config(config).ok());
}

TEST_CASE("petrel run takes repeatable --disk/--net and an optional-value --rng",
          "[config][virtio][cli]") {
  ScratchDir dir;
  auto kernel = dir.write("vmlinux", "x");
  auto a = dir.write("a.img", std::string(512, '\0'));
  auto b = dir.write("b.img", std::string(512, '\0'));
  auto cmd = parse({"run", "--kernel", kernel.string(), "--disk", "path=" + a.string(),
                    "--disk=" + b.string() + ",readonly=on", "--net", "tap=t0", "--net",
                    "tap=t1,mtu=1280", "--rng", "--virtio-transport", "pci"});
  REQUIRE(cmd.ok());
  REQUIRE(cmd->config.disks.size() == 2);
  CHECK(cmd->config.disks[1].read_only);
  REQUIRE(cmd->config.nets.size() == 2);
  CHECK(cmd->config.nets[1].mtu == 1280u);
  REQUIRE(cmd->config.rng.has_value());
  CHECK_FALSE(cmd->config.rng->transport.has_value());
  CHECK(cmd->config.virtio_transport == VirtioTransport::kPci);

  auto rng_opts = parse({"run", "--kernel", kernel.string(), "--rng", "transport=pci"});
  REQUIRE(rng_opts.ok());
  CHECK(rng_opts->config.rng->transport == VirtioTransport::kPci);

  // Flags replace the config file's list.
  auto file = dir.write("vm.json", R"({"disks": [{"path": "a.img"}, {"path": "b.img"}]})");
  auto merged =
      parse({"run", "--config", file.string(), "--kernel", kernel.string(), "--disk", b.string()});
  REQUIRE(merged.ok());
  REQUIRE(merged->config.disks.size() == 1);
  CHECK(merged->config.disks[0].path == b);
  auto from_file = parse({"run", "--config", file.string(), "--kernel", kernel.string()});
  REQUIRE(from_file.ok());
  CHECK(from_file->config.disks.size() == 2);
  CHECK(from_file->config.disks[0].path == a);  // resolved against the file's directory

  auto bad = parse({"run", "--kernel", kernel.string(), "--disk", "path=/nonexistent/x.img"});
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().to_string().starts_with("--disk: /nonexistent/x.img"));
  auto bad_net = parse({"run", "--kernel", kernel.string(), "--net", "mac=ff:ff:ff:ff:ff:ff"});
  REQUIRE_FALSE(bad_net.ok());
  CHECK(bad_net.error().to_string().starts_with("--net: mac: a multicast MAC"));
  CHECK_FALSE(parse({"run", "--kernel", kernel.string(), "--disk"}).ok());
  CHECK_FALSE(parse({"run", "--kernel", kernel.string(), "--rng", "--rng"}).ok());
}

TEST_CASE("the example configs in configs/ parse", "[config][virtio]") {
  const std::filesystem::path dir = std::filesystem::path(PETREL_SOURCE_DIR) / "configs";
  int parsed = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().extension() != ".json") {
      continue;
    }
    INFO(entry.path().string());
    auto config = petrel::load_config_file(entry.path());
    CHECK(config.ok());
    ++parsed;
  }
  CHECK(parsed >= 3);
}
