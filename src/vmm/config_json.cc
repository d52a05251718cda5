// parse_config_json and load_config_file (declared in vm_config.h).
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <set>
#include <utility>
#include <vector>

#include "vmm/base/unique_fd.h"
#include "vmm/config_checks.h"
#include "vmm/vm_config.h"

namespace petrel {
namespace {

using nlohmann::json;
using namespace config_detail;

constexpr size_t kMaxConfigFileBytes = 1 << 20;

Result<std::string> get_string(const json& value, std::string_view field) {
  if (!value.is_string()) {
    return field_error(field, "expected a string, got " + describe(value));
  }
  return value.get<std::string>();
}

Result<std::filesystem::path> get_path(const json& value, std::string_view field) {
  PETREL_TRY_ASSIGN(std::string text, get_string(value, field));
  if (text.empty()) {
    return field_error(field, "must not be empty");
  }
  if (text.find('\0') != std::string::npos) {
    return field_error(field, "must not contain a NUL byte");
  }
  return std::filesystem::path(std::move(text));
}

// Refuses keys of `object` (at `prefix`, "" for the top level) that are not in `known`.
Result<void> reject_unknown(const json& object, std::string_view prefix,
                            std::span<const std::string_view> known) {
  auto full = [&](std::string_view key) {
    return prefix.empty() ? std::string(key) : std::string(prefix) + "." + std::string(key);
  };
  for (const auto& [key, value] : object.items()) {
    if (std::find(known.begin(), known.end(), key) != known.end()) {
      continue;
    }
    std::string message = "config: unknown field " + json_quoted(full(key));
    std::string_view suggestion = closest_match(key, known);
    if (!suggestion.empty()) {
      message += " (did you mean " + json_quoted(full(suggestion)) + "?)";
    }
    return Error(ErrorCode::kInvalidArgument, std::move(message));
  }
  return ok();
}

Result<void> set_name(const json& value, VmConfig& config) {
  PETREL_TRY_ASSIGN(std::string name, get_string(value, "name"));
  PETREL_TRY(in_field("name", check_name(name)));
  config.name = std::move(name);
  return ok();
}

Result<void> set_kernel(const json& value, VmConfig& config) {
  PETREL_TRY_ASSIGN(config.kernel, get_path(value, "kernel"));
  return ok();
}

Result<void> set_initrd(const json& value, VmConfig& config) {
  PETREL_TRY_ASSIGN(config.initrd, get_path(value, "initrd"));
  return ok();
}

Result<void> set_cmdline(const json& value, VmConfig& config) {
  PETREL_TRY_ASSIGN(std::string cmdline, get_string(value, "cmdline"));
  PETREL_TRY(in_field("cmdline", check_cmdline(cmdline)));
  config.cmdline = std::move(cmdline);
  return ok();
}

Result<void> set_memory(const json& value, VmConfig& config) {
  uint64_t bytes = 0;
  if (value.is_string()) {
    auto parsed = parse_size(value.get_ref<const std::string&>());
    if (!parsed.ok()) {
      return field_error("memory", parsed.error());
    }
    bytes = *parsed;
  } else if (value.is_number_unsigned()) {
    bytes = value.get<uint64_t>();
  } else {
    return field_error("memory", "expected a size string like \"256M\" or an integer number of " +
                                     std::string("bytes, got ") + describe(value));
  }
  PETREL_TRY(in_field("memory", check_memory(bytes)));
  config.memory_bytes = bytes;
  return ok();
}

Result<void> set_vcpus(const json& value, VmConfig& config) {
  if (!value.is_number_unsigned() || value.get<uint64_t>() < kMinVcpus ||
      value.get<uint64_t>() > kMaxVcpus) {
    return field_error("vcpus", vcpus_expectation() + ", got " + describe(value));
  }
  config.vcpus = value.get<uint32_t>();
  return ok();
}

// Whether serial.mode `mode` takes a serial.path.
bool serial_mode_has_path(SerialMode mode) {
  return mode == SerialMode::kFile || mode == SerialMode::kSocket;
}

Result<void> set_serial(const json& value, VmConfig& config) {
  if (value.is_string()) {
    auto parsed = parse_serial_spec(value.get_ref<const std::string&>());
    if (!parsed.ok()) {
      return field_error("serial", parsed.error());
    }
    config.serial = std::move(parsed).value();
    return ok();
  }
  if (!value.is_object()) {
    return field_error("serial",
                       "expected \"stdio\", \"none\", \"file:PATH\", \"socket:PATH\" or an "
                       "object, got " +
                           describe(value));
  }
  constexpr std::array<std::string_view, 2> kKeys{"mode", "path"};
  PETREL_TRY(reject_unknown(value, "serial", kKeys));
  auto mode_it = value.find("mode");
  if (mode_it == value.end()) {
    return field_error("serial.mode", "required: one of stdio, file, none, socket");
  }
  PETREL_TRY_ASSIGN(std::string mode_name, get_string(*mode_it, "serial.mode"));
  auto mode = parse_serial_mode(mode_name);
  if (!mode.ok()) {
    return field_error("serial.mode", mode.error());
  }
  SerialConfig serial{*mode, {}};
  auto path_it = value.find("path");
  if (serial_mode_has_path(serial.mode)) {
    if (path_it == value.end()) {
      return field_error("serial.path", "required when serial.mode is \"" + mode_name + "\"");
    }
    PETREL_TRY_ASSIGN(serial.path, get_path(*path_it, "serial.path"));
    if (serial.mode == SerialMode::kSocket) {
      PETREL_TRY(in_field("serial.path", check_socket_path_syntax(serial.path)));
    }
  } else if (path_it != value.end()) {
    return field_error("serial.path", "only allowed when serial.mode is \"file\" or \"socket\"");
  }
  config.serial = std::move(serial);
  return ok();
}

Result<void> set_log(const json& value, VmConfig& config) {
  if (!value.is_object()) {
    return field_error(
        "log", "expected an object with \"level\" and/or \"format\", got " + describe(value));
  }
  constexpr std::array<std::string_view, 2> kKeys{"level", "format"};
  PETREL_TRY(reject_unknown(value, "log", kKeys));
  if (auto it = value.find("level"); it != value.end()) {
    PETREL_TRY_ASSIGN(std::string level, get_string(*it, "log.level"));
    PETREL_TRY(in_field("log.level", check_log_level(level)));
    config.log_level = std::move(level);
  }
  if (auto it = value.find("format"); it != value.end()) {
    PETREL_TRY_ASSIGN(std::string name, get_string(*it, "log.format"));
    auto format = parse_log_format(name);
    if (!format.ok()) {
      return field_error("log.format", format.error());
    }
    config.log_format = *format;
  }
  return ok();
}

Result<void> set_pvm_mode(const json& value, VmConfig& config) {
  PETREL_TRY_ASSIGN(std::string name, get_string(value, "pvm_mode"));
  auto mode = parse_pvm_mode(name);
  if (!mode.ok()) {
    return field_error("pvm_mode", mode.error());
  }
  config.pvm_mode = *mode;
  return ok();
}

Result<void> set_seccomp(const json& value, VmConfig& config) {
  PETREL_TRY_ASSIGN(std::string name, get_string(value, "seccomp"));
  auto mode = parse_seccomp_mode(name);
  if (!mode.ok()) {
    return field_error("seccomp", mode.error());
  }
  config.seccomp = *mode;
  return ok();
}

Result<void> set_disks(const json& value, VmConfig& config) {
  if (!value.is_array()) {
    return field_error("disks", "expected an array of disk objects, got " + describe(value));
  }
  config.disks.clear();
  for (size_t i = 0; i < value.size(); ++i) {
    PETREL_TRY_ASSIGN(DiskSpec disk, disk_from_json(value[i], "disks[" + std::to_string(i) + "]"));
    config.disks.push_back(std::move(disk));
  }
  return ok();
}

Result<void> set_nets(const json& value, VmConfig& config) {
  if (!value.is_array()) {
    return field_error("nets", "expected an array of NIC objects, got " + describe(value));
  }
  config.nets.clear();
  for (size_t i = 0; i < value.size(); ++i) {
    PETREL_TRY_ASSIGN(NetSpec net, net_from_json(value[i], "nets[" + std::to_string(i) + "]"));
    config.nets.push_back(std::move(net));
  }
  return ok();
}

Result<void> set_rng(const json& value, VmConfig& config) {
  PETREL_TRY_ASSIGN(config.rng, rng_from_json(value, "rng"));
  return ok();
}

Result<void> set_balloon(const json& value, VmConfig& config) {
  PETREL_TRY_ASSIGN(config.balloon, balloon_from_json(value, "balloon"));
  return ok();
}

Result<void> set_virtio_transport(const json& value, VmConfig& config) {
  PETREL_TRY_ASSIGN(std::string name, get_string(value, "virtio_transport"));
  auto transport = parse_virtio_transport(name);
  if (!transport.ok()) {
    return field_error("virtio_transport", transport.error());
  }
  config.virtio_transport = *transport;
  return ok();
}

Result<void> set_api_socket(const json& value, VmConfig& config) {
  PETREL_TRY_ASSIGN(std::filesystem::path path, get_path(value, "api_socket"));
  PETREL_TRY(in_field("api_socket", check_socket_path_syntax(path)));
  config.api_socket = std::move(path);
  return ok();
}

Result<void> set_autostart(const json& value, VmConfig& config) {
  if (!value.is_boolean()) {
    return field_error("autostart", "expected true or false, got " + describe(value));
  }
  config.autostart = value.get<bool>();
  return ok();
}

Result<void> set_on_reboot(const json& value, VmConfig& config) {
  PETREL_TRY_ASSIGN(std::string name, get_string(value, "on_reboot"));
  auto action = parse_reboot_action(name);
  if (!action.ok()) {
    return field_error("on_reboot", action.error());
  }
  config.on_reboot = *action;
  return ok();
}

Result<void> set_shutdown_timeout_ms(const json& value, VmConfig& config) {
  // Only a JSON integer: 1.5, "30s", negatives and anything out of range are refused.
  if (!value.is_number_unsigned() || !check_shutdown_timeout_ms(value.get<uint64_t>()).ok()) {
    return field_error("shutdown_timeout_ms",
                       shutdown_timeout_expectation() + ", got " + describe(value));
  }
  config.shutdown_timeout_ms = value.get<uint32_t>();
  return ok();
}

Result<void> set_user(const json& value, VmConfig& config) {
  PETREL_TRY_ASSIGN(std::string spec, get_string(value, "user"));
  auto who = resolve_run_as(spec);
  if (!who.ok()) {
    return field_error("user", who.error());
  }
  config.run_as = *who;
  return ok();
}

struct TopLevelField {
  std::string_view key;
  Result<void> (*set)(const json& value, VmConfig& config);
};

constexpr std::array<TopLevelField, 20> kTopLevelFields{{
    {"name", set_name},
    {"kernel", set_kernel},
    {"initrd", set_initrd},
    {"cmdline", set_cmdline},
    {"memory", set_memory},
    {"vcpus", set_vcpus},
    {"serial", set_serial},
    {"log", set_log},
    {"pvm_mode", set_pvm_mode},
    {"seccomp", set_seccomp},
    {"disks", set_disks},
    {"nets", set_nets},
    {"rng", set_rng},
    {"balloon", set_balloon},
    {"virtio_transport", set_virtio_transport},
    {"api_socket", set_api_socket},
    {"autostart", set_autostart},
    {"on_reboot", set_on_reboot},
    {"shutdown_timeout_ms", set_shutdown_timeout_ms},
    {"user", set_user},
}};

constexpr std::array<std::string_view, kTopLevelFields.size()> top_level_keys() {
  std::array<std::string_view, kTopLevelFields.size()> keys{};
  for (size_t i = 0; i < keys.size(); ++i) {
    keys[i] = kTopLevelFields[i].key;
  }
  return keys;
}

// Records the first key that repeats within one object (nlohmann keeps the last silently).
class DuplicateKeyFinder {
 public:
  bool operator()(int /*depth*/, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
      case json::parse_event_t::array_start:
        levels_.emplace_back();
        break;
      case json::parse_event_t::object_end:
      case json::parse_event_t::array_end:
        levels_.pop_back();
        break;
      case json::parse_event_t::key:
        if (!levels_.empty()) {
          levels_.back().key = parsed.get<std::string>();
          if (!levels_.back().seen.insert(levels_.back().key).second && duplicate_.empty()) {
            duplicate_ = current_path();
          }
        }
        break;
      case json::parse_event_t::value:
        break;
    }
    return true;
  }

  const std::string& duplicate() const { return duplicate_; }

 private:
  struct Level {
    std::set<std::string> seen;
    std::string key;  // the latest key of this object
  };

  std::string current_path() const {
    std::string path;
    for (const auto& level : levels_) {
      if (!level.key.empty()) {
        path += path.empty() ? "" : ".";
        path += level.key;
      }
    }
    return path;
  }

  std::vector<Level> levels_;
  std::string duplicate_;
};

Result<VmConfig> parse_document(std::string_view text) {
  DuplicateKeyFinder finder;
  json document = json::parse(text, [&finder](int depth, json::parse_event_t event, json& parsed) {
    return finder(depth, event, parsed);
  });
  if (!finder.duplicate().empty()) {
    return Error(ErrorCode::kInvalidArgument,
                 "config: field " + json_quoted(finder.duplicate()) + " is given more than once");
  }
  if (!document.is_object()) {
    return Error(ErrorCode::kInvalidArgument,
                 "config: expected a JSON object at the top level, got " +
                     std::string(document.type_name()));
  }
  constexpr auto kKeys = top_level_keys();
  PETREL_TRY(reject_unknown(document, "", kKeys));
  VmConfig config;
  for (const auto& field : kTopLevelFields) {
    if (auto it = document.find(field.key); it != document.end()) {
      PETREL_TRY(field.set(*it, config));
    }
  }
  return config;
}

Error read_error(const std::filesystem::path& path, int err) {
  ErrorCode code = (err == ENOENT || err == ENOTDIR) ? ErrorCode::kNotFound : ErrorCode::kIo;
  return Error(code, "config: " + path.string() + ": " + std::strerror(err), err);
}

Result<std::string> read_config_text(const std::filesystem::path& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    return read_error(path, errno);
  }
  std::string text;
  std::array<char, 16384> buffer{};
  while (true) {
    ssize_t n = ::read(fd.get(), buffer.data(), buffer.size());
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      return read_error(path, errno);
    }
    if (n == 0) {
      return text;
    }
    text.append(buffer.data(), static_cast<size_t>(n));
    if (text.size() > kMaxConfigFileBytes) {
      return Error(ErrorCode::kInvalidArgument, "config: " + path.string() +
                                                    ": larger than the limit of " +
                                                    format_size(kMaxConfigFileBytes));
    }
  }
}

}  // namespace

Result<VmConfig> parse_config_json(std::string_view text) {
  try {
    return parse_document(text);
  } catch (const json::parse_error& e) {
    // e.what() is "[json.exception.parse_error.101] parse error at line 1, column 2: ...".
    std::string_view what = e.what();
    if (auto end_of_id = what.find("] "); end_of_id != std::string_view::npos) {
      what.remove_prefix(end_of_id + 2);
    }
    return Error(
        ErrorCode::kInvalidArgument,
        "config: malformed JSON at byte " + std::to_string(e.byte) + ": " + std::string(what));
  } catch (const std::exception& e) {
    return Error(ErrorCode::kInternal, std::string("config: ") + e.what());
  }
}

Result<VmConfig> load_config_file(const std::filesystem::path& path) {
  PETREL_TRY_ASSIGN(std::string text, read_config_text(path));
  auto parsed = parse_config_json(text);
  if (!parsed.ok()) {
    return std::move(parsed).context(path.string());
  }
  VmConfig config = std::move(parsed).value();
  std::error_code ec;
  std::filesystem::path dir = std::filesystem::absolute(path, ec).parent_path();
  if (ec) {
    return Error(ErrorCode::kIo, "config: " + path.string() + ": " + ec.message(), ec.value());
  }
  if (config.kernel.is_relative() && !config.kernel.empty()) {
    config.kernel = dir / config.kernel;
  }
  if (config.initrd.is_relative() && !config.initrd.empty()) {
    config.initrd = dir / config.initrd;
  }
  for (auto& disk : config.disks) {
    if (disk.path.is_relative()) {
      disk.path = dir / disk.path;
    }
  }
  if (serial_mode_has_path(config.serial.mode) && config.serial.path.is_relative()) {
    config.serial.path = dir / config.serial.path;
  }
  if (!config.api_socket.empty() && config.api_socket.is_relative()) {
    config.api_socket = dir / config.api_socket;
  }
  return config;
}

}  // namespace petrel
