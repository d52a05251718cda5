// The snapshot, restore and migration routes (docs/api.md), as handlers over a VmControl:
//
//   PUT /v1/vm/snapshot        {"path": "/abs/dir"}                        -> 200 result
//   PUT /v1/vm/restore         {"path": "/abs/dir", "paused": false}       -> 200 {"state"}
//   PUT /v1/migration/send     {"destination", "downtime_ms", "timeout_ms", "max_rounds"}
//                                                                          -> 202 status
//   PUT /v1/migration/receive  {"listen", "timeout_ms"}                    -> 202 status
//   GET /v1/migration                                                      -> 200 status
//   PUT /v1/migration/cancel   body empty or {}                            -> 200 status
//
// Bodies are client-controlled and strict: an unknown field, a wrong type, a value out of
// range, a relative or empty path, or an address not of the form "unix:/abs/path" or
// "tcp:HOST:PORT" answers 400 "invalid_argument" before VmControl is called. A kState error
// from VmControl answers 409 with the VM's current state in error.state.
//
// Lifetime and threads: as vm_routes.h (`control` outlives the router; handlers run on the
// dispatching thread and may block there while a snapshot is written).
#pragma once

#include <chrono>
#include <cstdint>
#include <string_view>

#include <nlohmann/json.hpp>

#include "api/router.h"
#include "vmm/base/result.h"
#include "vmm/vm_control.h"

namespace petrel {

// Field ranges of the request bodies (milliseconds unless named otherwise).
inline constexpr int64_t kMinMigrationDowntimeMs = 1;
inline constexpr int64_t kMaxMigrationDowntimeMs = 60000;
inline constexpr int64_t kMinMigrationTimeoutMs = 1000;
inline constexpr int64_t kMaxMigrationTimeoutMs = 24LL * 3600 * 1000;
inline constexpr int64_t kMinMigrationRounds = 1;
inline constexpr int64_t kMaxMigrationRounds = 1000;

// Registers the routes above. Errors: those of Router::add (e.g. a route registered twice).
Result<void> add_migration_routes(Router& router, VmControl& control);

// Checks a client-given migration address: "unix:" + an absolute path that fits a Unix
// socket address (at most 107 bytes), or "tcp:" + HOST + ":" + PORT where HOST is a name or
// IPv4 address ([A-Za-z0-9.-]+) or a bracketed IPv6 address ("[::1]") and PORT is 1..65535 in
// decimal. `field` names the field in the error (kInvalidArgument).
Result<void> check_migration_address(std::string_view field, std::string_view address);

// Checks a client-given directory path: non-empty, absolute, no NUL byte, shorter than
// PATH_MAX. `field` names the field in the error (kInvalidArgument).
Result<void> check_absolute_path(std::string_view field, std::string_view path);

// The JSON of GET /v1/migration: role, phase, peer, round, bytes, pages, remaining_bytes,
// dirty_rate_bytes_per_s, bandwidth_bytes_per_s, expected_downtime_ms, elapsed_ms, total_ms
// and downtime_ms (null unless set), error (null unless non-empty).
nlohmann::ordered_json migration_status_json(const MigrationStatus& status);

// The JSON of a snapshot: path, memory_bytes_written, state_bytes, duration_ms.
nlohmann::ordered_json snapshot_result_json(const SnapshotResult& result);

}  // namespace petrel
