#include "api/petrelctl/ctl_format.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <optional>
#include <utility>

#include <fmt/format.h>

namespace petrel::ctl {
namespace {

using nlohmann::json;

// Server text on the user's terminal: control characters (escape sequences) become '?'.
std::string sanitize(std::string_view text) {
  std::string out(text);
  for (char& c : out) {
    auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) {
      c = '?';
    }
  }
  return out;
}

// A scalar as text: strings unquoted, numbers and booleans as JSON, null and the rest "-".
std::string scalar_text(const json& value) {
  if (value.is_string()) {
    return sanitize(value.get_ref<const std::string&>());
  }
  if (value.is_number() || value.is_boolean()) {
    return value.dump();
  }
  return "-";
}

const json& field(const json& object, std::string_view key) {
  static const json kNull;
  if (!object.is_object()) {
    return kNull;
  }
  auto it = object.find(key);
  return it == object.end() ? kNull : *it;
}

std::string text_of(const json& object, std::string_view key) {
  return scalar_text(field(object, key));
}

// A JSON integer >= 0 (parsed as unsigned or, from a literal, as signed), else nullopt.
std::optional<uint64_t> non_negative(const json& value) {
  if (value.is_number_unsigned()) {
    return value.get<uint64_t>();
  }
  if (value.is_number_integer() && value.get<int64_t>() >= 0) {
    return static_cast<uint64_t>(value.get<int64_t>());
  }
  return std::nullopt;
}

std::string bytes_of(const json& object, std::string_view key) {
  const json& value = field(object, key);
  auto bytes = non_negative(value);
  return bytes ? format_bytes(*bytes) : scalar_text(value);
}

std::string duration_of(const json& object, std::string_view key) {
  const json& value = field(object, key);
  return value.is_number() ? format_duration(value.get<double>()) : scalar_text(value);
}

std::string aligned(const std::vector<std::pair<std::string, std::string>>& lines) {
  size_t width = 0;
  for (const auto& [key, value] : lines) {
    width = std::max(width, key.size() + 1);
  }
  std::string out;
  for (const auto& [key, value] : lines) {
    out += fmt::format("{:<{}} {}\n", key + ":", width, value);
  }
  return out;
}

// Nested objects and arrays flattened to "a.b=1 c.0=2" (depth-capped: the server's JSON is
// untrusted).
void flatten(const json& value, const std::string& prefix, std::string& out, int depth) {
  if ((value.is_object() || value.is_array()) && depth < 8) {
    size_t index = 0;
    for (auto it = value.begin(); it != value.end(); ++it, ++index) {
      std::string key = value.is_object() ? sanitize(it.key()) : std::to_string(index);
      flatten(*it, prefix.empty() ? key : prefix + "." + key, out, depth + 1);
    }
    return;
  }
  if (!out.empty()) {
    out += ' ';
  }
  out += fmt::format("{}={}", prefix, value.is_structured() ? "..." : scalar_text(value));
}

}  // namespace

std::string format_bytes(uint64_t bytes) {
  static constexpr std::array<std::string_view, 6> kUnits{"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  size_t unit = 0;
  double value = static_cast<double>(bytes);
  while (value >= 1024.0 && unit + 1 < kUnits.size()) {
    value /= 1024.0;
    ++unit;
  }
  std::string number = fmt::format("{:.2f}", value);
  while (number.back() == '0') {
    number.pop_back();
  }
  if (number.back() == '.') {
    number.pop_back();
  }
  return fmt::format("{} {}", number, kUnits[unit]);
}

std::string format_duration(double seconds) {
  uint64_t total = 0;
  if (std::isfinite(seconds) && seconds > 0) {
    total = seconds >= 1e18 ? uint64_t{1000000000000000000} : static_cast<uint64_t>(seconds);
  }
  uint64_t days = total / 86400;
  uint64_t hours = total / 3600 % 24;
  uint64_t minutes = total / 60 % 60;
  uint64_t secs = total % 60;
  if (days > 0) {
    return fmt::format("{}d{:02}h{:02}m{:02}s", days, hours, minutes, secs);
  }
  if (hours > 0) {
    return fmt::format("{}h{:02}m{:02}s", hours, minutes, secs);
  }
  if (minutes > 0) {
    return fmt::format("{}m{:02}s", minutes, secs);
  }
  return fmt::format("{}s", secs);
}

std::string format_info(const json& info) {
  return aligned({
      {"name", text_of(info, "name")},
      {"state", text_of(info, "state")},
      {"vcpus", text_of(info, "vcpus")},
      {"memory", bytes_of(info, "memory_bytes")},
      {"uptime", duration_of(info, "uptime_seconds")},
      {"started at", text_of(info, "started_at")},
      {"boot count", text_of(info, "boot_count")},
      {"exec mode", text_of(info, "exec_mode")},
      {"version", text_of(info, "version")},
      {"pid", text_of(info, "pid")},
  });
}

std::string format_event(const json& event) {
  std::string head = fmt::format("{} {}", text_of(event, "time"), text_of(event, "type"));
  const json& data = field(event, "data");
  if (field(event, "type") == "state") {
    return fmt::format("{} {} -> {} ({})", head, text_of(data, "from"), text_of(data, "to"),
                       text_of(data, "action"));
  }
  std::string rest;
  if (data.is_structured()) {
    flatten(data, "", rest, 0);
  } else if (!data.is_null()) {
    rest = scalar_text(data);
  }
  return rest.empty() ? head : head + " " + rest;
}

std::string format_metrics(const json& metrics) {
  if (!metrics.is_object()) {
    return scalar_text(metrics) + "\n";
  }
  std::vector<std::pair<std::string, std::string>> lines;
  for (auto it = metrics.begin(); it != metrics.end(); ++it) {
    std::string key = sanitize(it.key());
    const json& value = *it;
    if (value.is_array()) {
      for (size_t i = 0; i < value.size(); ++i) {
        std::string flat;
        flatten(value[i], "", flat, 1);
        lines.emplace_back(fmt::format("{}[{}]", key, i), flat);
      }
    } else if (value.is_object()) {
      std::string flat;
      flatten(value, "", flat, 1);
      lines.emplace_back(key, flat);
    } else if (non_negative(value) && key.ends_with("_bytes")) {
      lines.emplace_back(key, format_bytes(*non_negative(value)));
    } else {
      lines.emplace_back(key, scalar_text(value));
    }
  }
  return aligned(lines);
}

ListRow list_row(const json& info, std::string_view fallback_name) {
  ListRow row;
  const json& name = field(info, "name");
  row.name = name.is_string() && !name.get_ref<const std::string&>().empty()
                 ? sanitize(name.get_ref<const std::string&>())
                 : sanitize(fallback_name);
  row.state = text_of(info, "state");
  row.vcpus = text_of(info, "vcpus");
  row.memory = bytes_of(info, "memory_bytes");
  row.uptime = duration_of(info, "uptime_seconds");
  return row;
}

std::string format_list(const std::vector<ListRow>& rows) {
  std::array<size_t, 4> width{4, 5, 5, 6};  // NAME STATE VCPUS MEMORY
  for (const auto& row : rows) {
    width[0] = std::max(width[0], row.name.size());
    width[1] = std::max(width[1], row.state.size());
    width[2] = std::max(width[2], row.vcpus.size());
    width[3] = std::max(width[3], row.memory.size());
  }
  auto line = [&](std::string_view a, std::string_view b, std::string_view c, std::string_view d,
                  std::string_view e) {
    return fmt::format("{:<{}}  {:<{}}  {:>{}}  {:>{}}  {}\n", a, width[0], b, width[1], c,
                       width[2], d, width[3], e);
  };
  std::string out = line("NAME", "STATE", "VCPUS", "MEMORY", "UPTIME");
  for (const auto& row : rows) {
    out += line(row.name, row.state, row.vcpus, row.memory, row.uptime);
  }
  return out;
}

namespace {

// true/false as yes/no; anything else "-".
std::string yes_no(const json& object, std::string_view key) {
  const json& value = field(object, key);
  return value.is_boolean() ? (value.get<bool>() ? "yes" : "no") : "-";
}

}  // namespace

std::string format_balloon(const json& info) {
  std::string guest = bytes_of(info, "guest_memory_bytes");
  if (auto ram = non_negative(field(info, "memory_bytes"))) {
    guest += " of " + format_bytes(*ram);
  }
  const json& interval = field(info, "stats_interval_s");
  std::string interval_text = scalar_text(interval);
  if (auto seconds = non_negative(interval)) {
    interval_text = *seconds == 0 ? "off" : format_duration(static_cast<double>(*seconds));
  }
  return aligned({
      {"target", bytes_of(info, "target_bytes")},
      {"actual", bytes_of(info, "actual_bytes")},
      {"guest memory", guest},
      {"deflate on OOM", yes_no(info, "deflate_on_oom")},
      {"stats interval", interval_text},
      {"free page reporting", yes_no(info, "free_page_reporting")},
  });
}

std::string format_balloon_stats(const json& stats) {
  // virtio 1.2 5.5.6.3: swap and memory tags are bytes, fault and hugetlb tags counts.
  std::string updated = "never";
  if (field(stats, "updated_at").is_string()) {
    updated = text_of(stats, "updated_at");
    if (field(stats, "age_seconds").is_number()) {
      updated += " (" + duration_of(stats, "age_seconds") + " ago)";
    }
  }
  return aligned({
      {"free memory", bytes_of(stats, "free_memory")},
      {"available memory", bytes_of(stats, "available_memory")},
      {"total memory", bytes_of(stats, "total_memory")},
      {"disk caches", bytes_of(stats, "disk_caches")},
      {"swapped in", bytes_of(stats, "swap_in")},
      {"swapped out", bytes_of(stats, "swap_out")},
      {"major faults", text_of(stats, "major_faults")},
      {"minor faults", text_of(stats, "minor_faults")},
      {"hugetlb allocations", text_of(stats, "hugetlb_allocations")},
      {"hugetlb failures", text_of(stats, "hugetlb_failures")},
      {"updated", updated},
      {"unknown tags", text_of(stats, "unknown_tags")},
  });
}

std::string api_error_message(unsigned status, std::string_view body) {
  json parsed = json::parse(body, nullptr, false);
  const json& message = field(field(parsed, "error"), "message");
  if (message.is_string() && !message.get_ref<const std::string&>().empty()) {
    return sanitize(message.get_ref<const std::string&>());
  }
  std::string_view start = body.substr(0, 200);
  while (!start.empty() && (start.back() == '\n' || start.back() == '\r')) {
    start.remove_suffix(1);
  }
  return start.empty() ? fmt::format("HTTP {}", status)
                       : fmt::format("HTTP {}: {}", status, sanitize(start));
}

std::string format_snapshot(const json& result) {
  return fmt::format("snapshot {}: {} of memory, {} of state, in {} ms", text_of(result, "path"),
                     bytes_of(result, "memory_bytes_written"), bytes_of(result, "state_bytes"),
                     text_of(result, "duration_ms"));
}

std::string format_migration(const json& status) {
  auto rate = [&](std::string_view key) {
    const json& value = field(status, key);
    return non_negative(value) ? bytes_of(status, key) + "/s" : scalar_text(value);
  };
  auto ms = [&](std::string_view key) {
    const json& value = field(status, key);
    return value.is_number() ? scalar_text(value) + " ms" : scalar_text(value);
  };
  bool receiving = text_of(status, "role") == "receive";
  std::vector<std::pair<std::string, std::string>> lines = {
      {"role", text_of(status, "role")},
      {"phase", text_of(status, "phase")},
      {"peer", text_of(status, "peer")},
      {"round", text_of(status, "round")},
      {receiving ? "received" : "sent", bytes_of(status, "bytes")},
      {"pages", text_of(status, "pages")},
      {"remaining", bytes_of(status, "remaining_bytes")},
      {"dirty rate", rate("dirty_rate_bytes_per_s")},
      {"bandwidth", rate("bandwidth_bytes_per_s")},
      {"expected downtime", ms("expected_downtime_ms")},
      {"elapsed", ms("elapsed_ms")},
      {"total", ms("total_ms")},
      {"downtime", ms("downtime_ms")},
  };
  if (!field(status, "error").is_null()) {
    lines.emplace_back("error", text_of(status, "error"));
  }
  return aligned(lines);
}

std::string format_migration_progress(const json& status) {
  std::string phase = text_of(status, "phase");
  if (phase != "precopy" && phase != "stop-and-copy") {
    return phase;
  }
  bool receiving = text_of(status, "role") == "receive";
  return fmt::format(
      "{} round {}: {} {}, {} remaining, {}/s, dirtying {}/s, expected downtime {} ms", phase,
      text_of(status, "round"), bytes_of(status, "bytes"), receiving ? "received" : "sent",
      bytes_of(status, "remaining_bytes"), bytes_of(status, "bandwidth_bytes_per_s"),
      bytes_of(status, "dirty_rate_bytes_per_s"), text_of(status, "expected_downtime_ms"));
}

}  // namespace petrel::ctl
