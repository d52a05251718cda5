// petrelctl's readable output. Pure functions of the API's JSON; every value in it comes from
// the server and is untrusted: a missing field or one of the wrong type prints as "-", it never
// throws.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace petrel::ctl {

// Binary units, at most two decimals, trailing zeros dropped: "512 MiB", "1.5 GiB", "100 B".
std::string format_bytes(uint64_t bytes);

// Whole seconds (fractions dropped; negative, NaN: 0s) as "3s", "2m03s", "1h02m03s",
// "2d01h02m03s".
std::string format_duration(double seconds);

// GET /v1/vm as aligned "key: value" lines, each ending in '\n'.
std::string format_info(const nlohmann::json& info);

// One NDJSON event as one line without '\n':
// "2026-11-22T05:00:00.123Z state running -> paused (pause)"; other types list their data as
// key=value.
std::string format_event(const nlohmann::json& event);

// GET /v1/metrics as readable lines, each ending in '\n'.
std::string format_metrics(const nlohmann::json& metrics);

// One row of `list`; an unreachable socket has state "unreachable" and "-" elsewhere.
struct ListRow {
  std::string name;
  std::string state;
  std::string vcpus = "-";
  std::string memory = "-";
  std::string uptime = "-";
};

// A row from GET /v1/vm; `fallback_name` (the socket's stem) when the body has no name.
ListRow list_row(const nlohmann::json& info, std::string_view fallback_name);

// The table "NAME STATE VCPUS MEMORY UPTIME" with a header, columns aligned, each line
// ending in '\n'.
std::string format_list(const std::vector<ListRow>& rows);

// PUT /v1/vm/snapshot's answer as one line without '\n':
// "snapshot /srv/s1: 512 MiB of memory, 12.5 KiB of state, in 830 ms".
std::string format_snapshot(const nlohmann::json& result);

// GET /v1/migration as aligned "key: value" lines, each ending in '\n' (byte counts and
// rates in binary units, times in ms, "-" for null).
std::string format_migration(const nlohmann::json& status);

// One progress line of `migrate --wait`, without '\n': "precopy round 3: 1.5 GiB sent,
// 200 MiB remaining, 800 MiB/s, dirtying 100 MiB/s, expected downtime 120 ms".
std::string format_migration_progress(const nlohmann::json& status);

// GET/PUT /v1/balloon as aligned lines, each ending in '\n': target, actual, guest memory
// ("160 MiB of 256 MiB"), deflate on OOM, stats interval ("5s" or "off"), free page reporting.
std::string format_balloon(const nlohmann::json& info);

// GET /v1/balloon/stats as aligned lines, each ending in '\n': sizes in binary units, counts
// as numbers, "-" for what the guest has not reported, and when it last did ("<time> (4s
// ago)", or "never").
std::string format_balloon_stats(const nlohmann::json& stats);

// The message of an API error body ({"error":{"message":...}}), or "HTTP <status>" plus the
// start of the body when it has none. Control characters are replaced.
std::string api_error_message(unsigned status, std::string_view body);

}  // namespace petrel::ctl
