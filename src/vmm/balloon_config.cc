#include "vmm/balloon_config.h"

#include <algorithm>
#include <array>
#include <string>
#include <utility>
#include <vector>

#include "vmm/config_checks.h"
#include "vmm/vm_config.h"

namespace petrel {
namespace {

using nlohmann::json;
using namespace config_detail;

constexpr std::array<std::string_view, 5> kOptionKeys{"target", "deflate_on_oom", "stats_interval",
                                                      "free_page_reporting", "transport"};
constexpr std::array<std::string_view, 5> kJsonKeys{"target", "deflate_on_oom", "stats_interval_s",
                                                    "free_page_reporting", "transport"};

Error invalid(std::string message) {
  return Error(ErrorCode::kInvalidArgument, std::move(message));
}

std::string unknown_key(std::string_view key, std::span<const std::string_view> known) {
  std::string message = "unknown key " + json_quoted(key);
  if (auto guess = closest_match(key, known); !guess.empty()) {
    message += " (did you mean " + json_quoted(guess) + "?)";
  }
  return message;
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

Result<uint64_t> check_target_shape(uint64_t bytes) {
  if (bytes % kBalloonPageBytes != 0) {
    return invalid("expected a multiple of 4K (the balloon's page), got " + std::to_string(bytes));
  }
  return bytes;
}

Result<uint32_t> check_interval(uint64_t seconds) {
  if (seconds > kMaxBalloonStatsIntervalS) {
    return invalid("expected 0 (off) to " + std::to_string(kMaxBalloonStatsIntervalS) +
                   " seconds, got " + std::to_string(seconds));
  }
  return static_cast<uint32_t>(seconds);
}

Result<uint32_t> parse_interval(std::string_view text) {
  PETREL_TRY_ASSIGN(uint64_t ms, parse_duration_ms(text));
  if (ms % 1000 != 0) {
    return invalid("expected whole seconds, got " + json_quoted(text));
  }
  return check_interval(ms / 1000);
}

// Applies one "key=value" item of the option string.
Result<void> apply_item(std::string_view key, std::string_view value, BalloonSpec& spec) {
  if (key == "target") {
    PETREL_TRY_ASSIGN(uint64_t bytes, parse_size(value));
    PETREL_TRY_ASSIGN(spec.target_bytes, check_target_shape(bytes));
  } else if (key == "deflate_on_oom") {
    PETREL_TRY_ASSIGN(spec.deflate_on_oom, parse_switch(value));
  } else if (key == "stats_interval") {
    PETREL_TRY_ASSIGN(spec.stats_interval_s, parse_interval(value));
  } else if (key == "free_page_reporting") {
    PETREL_TRY_ASSIGN(spec.free_page_reporting, parse_switch(value));
  } else {
    PETREL_TRY_ASSIGN(spec.transport, parse_virtio_transport(value));
  }
  return ok();
}

Result<bool> json_bool(const json& value, const std::string& field) {
  if (!value.is_boolean()) {
    return field_error(field, "expected true or false, got " + describe(value));
  }
  return value.get<bool>();
}

// One key of the JSON object; `field` is "balloon.<key>".
Result<void> apply_json(std::string_view key, const json& value, const std::string& field,
                        BalloonSpec& spec) {
  if (key == "target") {
    uint64_t bytes = 0;
    if (value.is_string()) {
      auto parsed = parse_size(value.get_ref<const std::string&>());
      if (!parsed.ok()) {
        return field_error(field, parsed.error());
      }
      bytes = *parsed;
    } else if (value.is_number_unsigned()) {
      bytes = value.get<uint64_t>();
    } else {
      return field_error(field,
                         "expected a size string like \"128M\" or an integer number of "
                         "bytes, got " +
                             describe(value));
    }
    auto shaped = check_target_shape(bytes);
    if (!shaped.ok()) {
      return field_error(field, shaped.error());
    }
    spec.target_bytes = bytes;
  } else if (key == "deflate_on_oom") {
    PETREL_TRY_ASSIGN(spec.deflate_on_oom, json_bool(value, field));
  } else if (key == "free_page_reporting") {
    PETREL_TRY_ASSIGN(spec.free_page_reporting, json_bool(value, field));
  } else if (key == "stats_interval_s") {
    if (!value.is_number_unsigned()) {
      return field_error(field, "expected an integer number of seconds, 0 (off) to " +
                                    std::to_string(kMaxBalloonStatsIntervalS) + ", got " +
                                    describe(value));
    }
    auto interval = check_interval(value.get<uint64_t>());
    if (!interval.ok()) {
      return field_error(field, interval.error());
    }
    spec.stats_interval_s = *interval;
  } else {
    if (!value.is_string()) {
      return field_error(field, "expected \"mmio\" or \"pci\", got " + describe(value));
    }
    auto transport = parse_virtio_transport(value.get_ref<const std::string&>());
    if (!transport.ok()) {
      return field_error(field, transport.error());
    }
    spec.transport = *transport;
  }
  return ok();
}

}  // namespace

Result<BalloonSpec> parse_balloon_option(std::string_view text) {
  BalloonSpec spec;
  std::vector<std::string_view> seen;
  size_t start = 0;
  while (!text.empty() && start <= text.size()) {
    size_t comma = text.find(',', start);
    std::string_view item = text.substr(
        start, comma == std::string_view::npos ? std::string_view::npos : comma - start);
    size_t eq = item.find('=');
    if (eq == std::string_view::npos) {
      return invalid("expected key=value, got " + json_quoted(item));
    }
    std::string_view key = item.substr(0, eq);
    if (std::find(kOptionKeys.begin(), kOptionKeys.end(), key) == kOptionKeys.end()) {
      return invalid(unknown_key(key, kOptionKeys));
    }
    if (std::find(seen.begin(), seen.end(), key) != seen.end()) {
      return invalid("key " + json_quoted(key) + " is given more than once");
    }
    seen.push_back(key);
    if (auto applied = apply_item(key, item.substr(eq + 1), spec); !applied.ok()) {
      return with_prefix(key, applied.error());
    }
    if (comma == std::string_view::npos) {
      break;
    }
    start = comma + 1;
  }
  return spec;
}

Result<BalloonSpec> balloon_from_json(const json& value, std::string_view field) {
  if (value.is_boolean()) {
    if (!value.get<bool>()) {
      return field_error(field, "false is not a device; leave \"balloon\" out instead");
    }
    return BalloonSpec{};
  }
  if (!value.is_object()) {
    return field_error(field, "expected true or an object, got " + describe(value));
  }
  BalloonSpec spec;
  for (const auto& [key, v] : value.items()) {
    if (std::find(kJsonKeys.begin(), kJsonKeys.end(), key) == kJsonKeys.end()) {
      return field_error(field, unknown_key(key, kJsonKeys));
    }
    PETREL_TRY(apply_json(key, v, std::string(field) + "." + key, spec));
  }
  return spec;
}

json to_json(const BalloonSpec& balloon) {
  json out = {{"target", format_size(balloon.target_bytes)},
              {"deflate_on_oom", balloon.deflate_on_oom},
              {"stats_interval_s", balloon.stats_interval_s},
              {"free_page_reporting", balloon.free_page_reporting}};
  if (balloon.transport) {
    out["transport"] = to_string(*balloon.transport);
  }
  return out;
}

Result<void> check_balloon_target(uint64_t target_bytes, uint64_t memory_bytes) {
  PETREL_TRY(check_target_shape(target_bytes));
  if (target_bytes >= memory_bytes) {
    return invalid("the target (" + format_size(target_bytes) +
                   ") must be less than the guest's memory (" + format_size(memory_bytes) + ")");
  }
  return ok();
}

}  // namespace petrel
