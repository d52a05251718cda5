// The balloon routes (docs/api.md, "Balloon"), as handlers over a VmControl:
//
//   GET /v1/balloon                                              -> 200 balloon_info_json
//   PUT /v1/balloon  {"target_bytes": N} | {"guest_memory_bytes": M}  -> 200 balloon_info_json
//   GET /v1/balloon/stats                                        -> 200 balloon_stats_json
//
// PUT takes exactly one of the two fields: target_bytes is what the balloon should hold,
// guest_memory_bytes what the guest should keep (target = guest RAM - M). Both are bytes, a
// multiple of 4 KiB (virtio 1.2 5.5.6: the balloon counts 4096-byte pages); anything else in
// the body, or a query string, answers 400 before VmControl is called. VmControl's errors map
// as everywhere: kInvalidArgument 400 (a target not below guest RAM), kNotFound 404 (no
// balloon), kState 409 with the VM's state in error.state.
//
// Lifetime and threads: as vm_routes.h (`control` outlives the router; handlers run on the
// dispatching thread).
#pragma once

#include <chrono>

#include <nlohmann/json.hpp>

#include "api/router.h"
#include "vmm/base/result.h"
#include "vmm/vm_control.h"

namespace petrel {

// Registers the routes above. Errors: those of Router::add (e.g. a route registered twice).
Result<void> add_balloon_routes(Router& router, VmControl& control);

// {"target_bytes", "actual_bytes", "memory_bytes", "guest_memory_bytes" (memory - actual,
// what the guest has left), "deflate_on_oom", "stats_interval_s", "free_page_reporting"}.
nlohmann::ordered_json balloon_info_json(const BalloonInfo& info);

// {"swap_in", "swap_out", "major_faults", "minor_faults", "free_memory", "total_memory",
//  "available_memory", "disk_caches", "hugetlb_allocations", "hugetlb_failures" (each a
//  number or null), "updated_at" (RFC 3339 or null), "age_seconds" (now - updated_at, a
//  number, or null), "unknown_tags"}. `now` is a parameter for tests.
nlohmann::ordered_json balloon_stats_json(const BalloonStats& stats,
                                          std::chrono::system_clock::time_point now);

}  // namespace petrel
