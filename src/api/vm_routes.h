// The VM's control API routes (docs/api.md): every endpoint of /v1/vm and /v1/events, as
// handlers over a VmControl.
//
//   GET /v1/vm, /v1/vm/state, /v1/vm/config
//   PUT /v1/vm/{start,pause,resume,reboot,stop}  body empty or {}          -> 200 {"state"}
//   PUT /v1/vm/shutdown  body empty or {"timeout_ms": 1..3600000}          -> 202 {"state"}
//   GET /v1/events[?after=N]  application/x-ndjson stream, one event per chunk and line
//
// Request bodies and query strings are client-controlled: anything but the documented shape
// answers 400 "invalid_argument". An action the lifecycle refuses answers 409 "state" with the
// current state in error.state.
//
// Lifetime: `control` must outlive the router and every session using it (the server closes
// its event streams, and with them their subscriptions, when it is destroyed). Handlers run
// on the thread that dispatches (the API loop thread) and may block there while an action
// completes.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "api/router.h"
#include "vmm/base/result.h"
#include "vmm/vm_control.h"

namespace petrel {

// Registers the routes above. Errors: those of Router::add (e.g. a route registered twice).
Result<void> add_vm_routes(Router& router, VmControl& control);

// "2024-05-01T12:00:03.250Z": RFC 3339, UTC, milliseconds.
std::string rfc3339_utc_ms(std::chrono::system_clock::time_point time);

// One line of the event stream: {"seq":N,"time":"...","type":"...","data":{...}} and '\n'.
// Strings that are not valid UTF-8 are repaired, never rejected.
std::string event_line(const VmEvent& event);

// The error response of a refused or failed action; a 409 (kState) also carries the VM's
// current state in error.state.
ApiResponse action_error_response(const Error& error, const VmControl& control);

// A response with `status` and `json` as its body (invalid UTF-8 in strings repaired).
ApiResponse json_response(unsigned status, const nlohmann::ordered_json& json);

// The JSON of GET /v1/vm.
nlohmann::json vm_info_json(const VmInfo& info);

}  // namespace petrel
