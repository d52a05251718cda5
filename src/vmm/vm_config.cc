#include "vmm/vm_config.h"

#include <array>
#include <utility>

#include <fmt/format.h>

#include "vmm/base/byte_size.h"
#include "vmm/config_checks.h"

namespace petrel {
namespace {

using config_detail::field_error;
using config_detail::in_field;

}  // namespace

Result<uint64_t> parse_size(std::string_view text) {
  auto bytes = parse_byte_size(text);
  if (!bytes.ok()) {
    return Error(ErrorCode::kInvalidArgument, "invalid size " + config_detail::json_quoted(text) +
                                                  ": " + bytes.error().message());
  }
  return *bytes;
}

std::string format_size(uint64_t bytes) {
  return format_byte_size(bytes);
}

namespace {

// The virtio devices: counts, files, duplicates, and the MMIO interrupt budget.
Result<void> validate_devices(const VmConfig& config) {
  using namespace config_detail;
  if (config.disks.size() > kMaxDisks) {
    return field_error("disks", "at most " + std::to_string(kMaxDisks) + " disks, got " +
                                    std::to_string(config.disks.size()));
  }
  if (config.nets.size() > kMaxNets) {
    return field_error("nets", "at most " + std::to_string(kMaxNets) + " NICs, got " +
                                   std::to_string(config.nets.size()));
  }
  size_t mmio_devices = 0;
  auto count_transport = [&](const std::optional<VirtioTransport>& t) {
    if (t.value_or(config.virtio_transport) == VirtioTransport::kMmio) {
      ++mmio_devices;
    }
  };
  for (size_t i = 0; i < config.disks.size(); ++i) {
    const DiskSpec& disk = config.disks[i];
    std::string field = "disks[" + std::to_string(i) + "].path";
    PETREL_TRY(in_field(field, check_disk_file(disk.path, disk.read_only)));
    for (size_t j = 0; j < i; ++j) {
      std::error_code ec;
      if (std::filesystem::equivalent(config.disks[j].path, disk.path, ec)) {
        return field_error(field, "the same image as disks[" + std::to_string(j) + "]");
      }
    }
    count_transport(disk.transport);
  }
  for (size_t i = 0; i < config.nets.size(); ++i) {
    const NetSpec& net = config.nets[i];
    for (size_t j = 0; j < i; ++j) {
      if (!net.tap.empty() && net.tap == config.nets[j].tap) {
        return field_error("nets[" + std::to_string(i) + "].tap",
                           "the same TAP as nets[" + std::to_string(j) + "]");
      }
      if (!net.mac.empty() && net.mac == config.nets[j].mac) {
        return field_error("nets[" + std::to_string(i) + "].mac",
                           "the same MAC as nets[" + std::to_string(j) + "]");
      }
    }
    count_transport(net.transport);
  }
  if (config.rng) {
    count_transport(config.rng->transport);
  }
  if (config.balloon) {
    count_transport(config.balloon->transport);
    PETREL_TRY(in_field("balloon.target",
                        check_balloon_target(config.balloon->target_bytes, config.memory_bytes)));
  }
  if (mmio_devices > kMaxVirtioMmioDevices) {
    return field_error("virtio_transport",
                       std::to_string(mmio_devices) + " virtio-MMIO devices; at most " +
                           std::to_string(kMaxVirtioMmioDevices) +
                           " have an interrupt line (use transport=pci for the rest)");
  }
  return ok();
}

// Two spellings of one file system path (relative ones against the current directory).
bool same_path(const std::filesystem::path& a, const std::filesystem::path& b) {
  std::error_code ec_a;
  std::error_code ec_b;
  std::filesystem::path abs_a = std::filesystem::absolute(a, ec_a).lexically_normal();
  std::filesystem::path abs_b = std::filesystem::absolute(b, ec_b).lexically_normal();
  return ec_a || ec_b ? a == b : abs_a == abs_b;
}

// api_socket, autostart, on_reboot and shutdown_timeout_ms.
Result<void> validate_control_plane(const VmConfig& config) {
  using namespace config_detail;
  if (!config.autostart && config.api_socket.empty()) {
    return field_error("autostart",
                       "false (--no-autostart) needs api_socket (--api-socket): only the API "
                       "can start the VM");
  }
  if (!config.api_socket.empty()) {
    PETREL_TRY(in_field("api_socket", check_listen_socket(config.api_socket)));
    if (config.serial.mode == SerialMode::kSocket &&
        same_path(config.api_socket, config.serial.path)) {
      return field_error("api_socket", "the same path as the console socket (serial.path)");
    }
  }
  if (config.on_reboot != RebootAction::kRestart && config.on_reboot != RebootAction::kExit) {
    return field_error("on_reboot", "expected one of restart, exit");
  }
  if (!check_shutdown_timeout_ms(config.shutdown_timeout_ms).ok()) {
    return field_error("shutdown_timeout_ms", shutdown_timeout_expectation() + ", got " +
                                                  std::to_string(config.shutdown_timeout_ms));
  }
  return ok();
}

}  // namespace

Result<void> validate_config(const VmConfig& config) {
  using namespace config_detail;
  PETREL_TRY(in_field("name", check_name(config.name)));
  if (config.kernel.empty()) {
    return field_error("kernel", "required: the guest kernel image");
  }
  PETREL_TRY(in_field("kernel", check_input_file(config.kernel)));
  if (!config.initrd.empty()) {
    PETREL_TRY(in_field("initrd", check_input_file(config.initrd)));
  }
  PETREL_TRY(in_field("cmdline", check_cmdline(config.cmdline)));
  PETREL_TRY(in_field("memory", check_memory(config.memory_bytes)));
  if (config.vcpus < kMinVcpus || config.vcpus > kMaxVcpus) {
    return field_error("vcpus", vcpus_expectation() + ", got " + std::to_string(config.vcpus));
  }
  if (config.serial.mode == SerialMode::kFile) {
    PETREL_TRY(in_field("serial.path", check_serial_file(config.serial.path)));
  } else if (config.serial.mode == SerialMode::kSocket) {
    PETREL_TRY(in_field("serial.path", check_serial_socket(config.serial.path)));
  } else if (!config.serial.path.empty()) {
    return field_error("serial.path", "only allowed when serial.mode is \"file\" or \"socket\"");
  }
  PETREL_TRY(in_field("log.level", check_log_level(config.log_level)));
  PETREL_TRY(validate_control_plane(config));
  return validate_devices(config);
}

nlohmann::json config_to_json(const VmConfig& config) {
  nlohmann::json serial = {{"mode", to_string(config.serial.mode)}};
  if (config.serial.mode == SerialMode::kFile || config.serial.mode == SerialMode::kSocket) {
    serial["path"] = config.serial.path.string();
  }
  nlohmann::json out = {
      {"name", config.name},
      {"cmdline", config.cmdline},
      {"memory", format_size(config.memory_bytes)},
      {"vcpus", config.vcpus},
      {"serial", std::move(serial)},
      {"log", {{"level", config.log_level}, {"format", to_string(config.log_format)}}},
      {"pvm_mode", to_string(config.pvm_mode)},
      {"seccomp", to_string(config.seccomp)},
  };
  if (!config.kernel.empty()) {
    out["kernel"] = config.kernel.string();
  }
  if (!config.initrd.empty()) {
    out["initrd"] = config.initrd.string();
  }
  out["virtio_transport"] = to_string(config.virtio_transport);
  if (!config.disks.empty()) {
    out["disks"] = nlohmann::json::array();
    for (const auto& disk : config.disks) {
      out["disks"].push_back(to_json(disk));
    }
  }
  if (!config.nets.empty()) {
    out["nets"] = nlohmann::json::array();
    for (const auto& net : config.nets) {
      out["nets"].push_back(to_json(net));
    }
  }
  if (config.rng) {
    out["rng"] = to_json(*config.rng);
  }
  if (config.balloon) {
    out["balloon"] = to_json(*config.balloon);
  }
  if (!config.api_socket.empty()) {
    out["api_socket"] = config.api_socket.string();
  }
  out["autostart"] = config.autostart;
  out["on_reboot"] = to_string(config.on_reboot);
  out["shutdown_timeout_ms"] = config.shutdown_timeout_ms;
  if (config.run_as) {
    out["user"] = fmt::format("{}:{}", config.run_as->user, config.run_as->gid);
  }
  return out;
}

}  // namespace petrel
