#include "vmm/device_config.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <utility>

#include <fmt/format.h>

#include "vmm/config_checks.h"

namespace petrel {
namespace {

using nlohmann::json;
using namespace config_detail;

Error invalid(std::string message) {
  return Error(ErrorCode::kInvalidArgument, std::move(message));
}

struct OptionItem {
  std::string_view key;
  std::string_view value;
};

// Splits "a=1,b=2" into items; `bare_key` names a first item given without "key=".
Result<std::vector<OptionItem>> split_options(std::string_view text, std::string_view bare_key,
                                              std::span<const std::string_view> known) {
  std::vector<OptionItem> items;
  if (text.empty()) {
    return items;
  }
  size_t start = 0;
  while (start <= text.size()) {
    size_t comma = text.find(',', start);
    std::string_view item = text.substr(
        start, comma == std::string_view::npos ? std::string_view::npos : comma - start);
    OptionItem parsed;
    if (size_t eq = item.find('='); eq != std::string_view::npos) {
      parsed = {item.substr(0, eq), item.substr(eq + 1)};
    } else if (items.empty() && !bare_key.empty() && !item.empty()) {
      parsed = {bare_key, item};
    } else {
      return invalid("expected key=value, got " + json_quoted(item));
    }
    if (std::find(known.begin(), known.end(), parsed.key) == known.end()) {
      std::string message = "unknown key " + json_quoted(parsed.key);
      if (auto guess = closest_match(parsed.key, known); !guess.empty()) {
        message += " (did you mean " + json_quoted(guess) + "?)";
      }
      return invalid(message);
    }
    if (std::any_of(items.begin(), items.end(),
                    [&](const OptionItem& o) { return o.key == parsed.key; })) {
      return invalid("key " + json_quoted(parsed.key) + " is given more than once");
    }
    items.push_back(parsed);
    if (comma == std::string_view::npos) {
      break;
    }
    start = comma + 1;
  }
  return items;
}

Result<bool> parse_switch(std::string_view value) {
  if (value == "on" || value == "true" || value == "yes" || value == "1") {
    return true;
  }
  if (value == "off" || value == "false" || value == "no" || value == "0") {
    return false;
  }
  return invalid("expected on or off, got " + json_quoted(value));
}

Result<DiskEngine> parse_engine(std::string_view text) {
  constexpr std::array<std::pair<std::string_view, DiskEngine>, 3> kEngines{
      {{"auto", DiskEngine::kAuto}, {"uring", DiskEngine::kUring}, {"sync", DiskEngine::kSync}}};
  for (const auto& [name, engine] : kEngines) {
    if (name == text) {
      return engine;
    }
  }
  return invalid("expected one of auto, uring, sync, got " + json_quoted(text));
}

Result<void> check_serial(std::string_view serial) {
  if (serial.size() > kMaxDiskSerialLength) {
    return invalid("at most 20 characters, got " + json_quoted(serial));
  }
  for (char ch : serial) {
    if (ch < 0x21 || ch > 0x7e) {
      return invalid("printable ASCII without spaces expected, got " + json_quoted(serial));
    }
  }
  return ok();
}

Result<void> check_tap_name(std::string_view name) {
  bool valid = !name.empty() && name.size() <= kMaxTapNameLength;
  for (char ch : name) {
    valid = valid && ch > 0x20 && ch < 0x7f && ch != '/' && ch != ':' && ch != ',';
  }
  if (!valid || name == "." || name == "..") {
    return invalid(
        "expected an interface name of 1 to 15 printable characters (no / : , or "
        "spaces), got " +
        json_quoted(name));
  }
  return ok();
}

Result<std::string> check_mac(std::string_view text) {
  auto mac = parse_mac(text);
  if (!mac) {
    return invalid("expected a MAC address like 52:54:00:12:34:56, got " + json_quoted(text));
  }
  if (((*mac)[0] & 1) != 0) {
    return invalid("a multicast MAC address cannot be a NIC's address: " + json_quoted(text));
  }
  const auto& b = *mac;
  return fmt::format("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2], b[3], b[4],
                     b[5]);
}

Result<uint32_t> parse_mtu(std::string_view text) {
  uint32_t mtu = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), mtu);
  if (ec != std::errc() || end != text.data() + text.size() || mtu < kMinMtu || mtu > kMaxMtu) {
    return invalid("expected an integer from 68 to 65535, got " + json_quoted(text));
  }
  return mtu;
}

// `result`'s error prefixed with the option key.
template <typename T>
Result<T> keyed(std::string_view key, Result<T> result) {
  if (!result.ok()) {
    return with_prefix(key, result.error());
  }
  return result;
}

Result<DiskSpec> disk_from_items(std::span<const OptionItem> items) {
  DiskSpec disk;
  bool have_path = false;
  for (const auto& [key, value] : items) {
    if (key == "path") {
      if (value.empty()) {
        return invalid("path: must not be empty");
      }
      disk.path = std::filesystem::path(value);
      have_path = true;
    } else if (key == "readonly") {
      PETREL_TRY_ASSIGN(disk.read_only, keyed(key, parse_switch(value)));
    } else if (key == "serial") {
      PETREL_TRY(keyed(key, check_serial(value)));
      disk.serial = std::string(value);
    } else if (key == "engine") {
      PETREL_TRY_ASSIGN(disk.engine, keyed(key, parse_engine(value)));
    } else if (key == "transport") {
      PETREL_TRY_ASSIGN(disk.transport, keyed(key, parse_virtio_transport(value)));
    }
  }
  if (!have_path) {
    return invalid("path is required, e.g. path=disk.img");
  }
  return disk;
}

Result<NetSpec> net_from_items(std::span<const OptionItem> items) {
  NetSpec net;
  for (const auto& [key, value] : items) {
    if (key == "tap") {
      PETREL_TRY(keyed(key, check_tap_name(value)));
      net.tap = std::string(value);
    } else if (key == "mac") {
      PETREL_TRY_ASSIGN(net.mac, keyed(key, check_mac(value)));
    } else if (key == "mtu") {
      PETREL_TRY_ASSIGN(net.mtu, keyed(key, parse_mtu(value)));
    } else if (key == "transport") {
      PETREL_TRY_ASSIGN(net.transport, keyed(key, parse_virtio_transport(value)));
    }
  }
  return net;
}

constexpr std::array<std::string_view, 5> kDiskKeys{"path", "readonly", "serial", "engine",
                                                    "transport"};
constexpr std::array<std::string_view, 4> kNetKeys{"tap", "mac", "mtu", "transport"};
constexpr std::array<std::string_view, 1> kRngKeys{"transport"};

// Turns a JSON object into option items (strings as they are, booleans as on/off, unsigned
// numbers in decimal) so that the JSON form and the option string share one parser.
Result<std::vector<OptionItem>> items_from_json(const json& value, std::string_view field,
                                                std::span<const std::string_view> known,
                                                std::vector<std::string>& storage) {
  if (!value.is_object()) {
    return field_error(field, "expected an object, got " + describe(value));
  }
  storage.clear();
  storage.reserve(value.size());
  std::vector<OptionItem> items;
  for (const auto& [key, v] : value.items()) {
    auto k = std::find(known.begin(), known.end(), key);
    if (k == known.end()) {
      std::string message = "unknown key " + json_quoted(key);
      if (auto guess = closest_match(key, known); !guess.empty()) {
        message += " (did you mean " + json_quoted(guess) + "?)";
      }
      return field_error(field, message);
    }
    if (v.is_string()) {
      storage.push_back(v.get<std::string>());
    } else if (v.is_boolean()) {
      storage.emplace_back(v.get<bool>() ? "on" : "off");
    } else if (v.is_number_unsigned()) {
      storage.push_back(std::to_string(v.get<uint64_t>()));
    } else {
      return field_error(std::string(field) + "." + key,
                         "expected a string, boolean or number, got " + describe(v));
    }
    if (storage.back().find('\0') != std::string::npos) {
      return field_error(std::string(field) + "." + key, "must not contain a NUL byte");
    }
    items.push_back({*k, storage.back()});
  }
  return items;
}

}  // namespace

Result<VirtioTransport> parse_virtio_transport(std::string_view text) {
  if (text == "mmio") {
    return VirtioTransport::kMmio;
  }
  if (text == "pci") {
    return VirtioTransport::kPci;
  }
  return invalid("expected mmio or pci, got " + json_quoted(text));
}

std::optional<std::array<uint8_t, 6>> parse_mac(std::string_view text) {
  if (text.size() != 17) {
    return std::nullopt;
  }
  std::array<uint8_t, 6> mac{};
  for (size_t i = 0; i < 6; ++i) {
    if (i > 0 && text[i * 3 - 1] != ':') {
      return std::nullopt;
    }
    auto [end, ec] = std::from_chars(text.data() + i * 3, text.data() + i * 3 + 2, mac[i], 16);
    if (ec != std::errc() || end != text.data() + i * 3 + 2) {
      return std::nullopt;
    }
  }
  return mac;
}

Result<DiskSpec> parse_disk_option(std::string_view text) {
  PETREL_TRY_ASSIGN(auto items, split_options(text, "path", kDiskKeys));
  return disk_from_items(items);
}

Result<NetSpec> parse_net_option(std::string_view text) {
  PETREL_TRY_ASSIGN(auto items, split_options(text, "", kNetKeys));
  return net_from_items(items);
}

Result<RngSpec> parse_rng_option(std::string_view text) {
  PETREL_TRY_ASSIGN(auto items, split_options(text, "", kRngKeys));
  RngSpec rng;
  for (const auto& [key, value] : items) {
    PETREL_TRY_ASSIGN(rng.transport, keyed(key, parse_virtio_transport(value)));
  }
  return rng;
}

Result<DiskSpec> disk_from_json(const json& value, std::string_view field) {
  std::vector<std::string> storage;
  PETREL_TRY_ASSIGN(auto items, items_from_json(value, field, kDiskKeys, storage));
  auto disk = disk_from_items(items);
  if (!disk.ok()) {
    return field_error(field, disk.error());
  }
  return disk;
}

Result<NetSpec> net_from_json(const json& value, std::string_view field) {
  std::vector<std::string> storage;
  PETREL_TRY_ASSIGN(auto items, items_from_json(value, field, kNetKeys, storage));
  auto net = net_from_items(items);
  if (!net.ok()) {
    return field_error(field, net.error());
  }
  return net;
}

Result<RngSpec> rng_from_json(const json& value, std::string_view field) {
  if (value.is_boolean()) {
    if (!value.get<bool>()) {
      return field_error(field, "false is not a device; leave \"rng\" out instead");
    }
    return RngSpec{};
  }
  std::vector<std::string> storage;
  PETREL_TRY_ASSIGN(auto items, items_from_json(value, field, kRngKeys, storage));
  RngSpec rng;
  for (const auto& [key, v] : items) {
    auto transport = parse_virtio_transport(v);
    if (!transport.ok()) {
      return field_error(std::string(field) + "." + std::string(key), transport.error());
    }
    rng.transport = *transport;
  }
  return rng;
}

json to_json(const DiskSpec& disk) {
  json out = {{"path", disk.path.string()},
              {"readonly", disk.read_only},
              {"engine", to_string(disk.engine)}};
  if (!disk.serial.empty()) {
    out["serial"] = disk.serial;
  }
  if (disk.transport) {
    out["transport"] = to_string(*disk.transport);
  }
  return out;
}

json to_json(const NetSpec& net) {
  json out = json::object();
  if (!net.tap.empty()) {
    out["tap"] = net.tap;
  }
  if (!net.mac.empty()) {
    out["mac"] = net.mac;
  }
  if (net.mtu) {
    out["mtu"] = *net.mtu;
  }
  if (net.transport) {
    out["transport"] = to_string(*net.transport);
  }
  return out;
}

json to_json(const RngSpec& rng) {
  json out = json::object();
  if (rng.transport) {
    out["transport"] = to_string(*rng.transport);
  }
  return out;
}

std::string_view to_string(VirtioTransport transport) {
  return transport == VirtioTransport::kPci ? "pci" : "mmio";
}

std::string_view to_string(DiskEngine engine) {
  switch (engine) {
    case DiskEngine::kUring:
      return "uring";
    case DiskEngine::kSync:
      return "sync";
    case DiskEngine::kAuto:
      break;
  }
  return "auto";
}

}  // namespace petrel
