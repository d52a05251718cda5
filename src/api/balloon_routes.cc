#include "api/balloon_routes.h"

#include <cstdint>
#include <optional>
#include <string>
#include <utility>

#include <fmt/format.h>

#include "api/api_error.h"
#include "api/request_body.h"
#include "api/vm_routes.h"

namespace petrel {
namespace {

using Json = nlohmann::ordered_json;

// virtio 1.2 5.5.6: the balloon counts 4096-byte pages.
constexpr uint64_t kBalloonPage = 4096;

Error invalid(std::string message) {
  return Error(ErrorCode::kInvalidArgument, std::move(message));
}

Json optional_number(const std::optional<uint64_t>& value) {
  return value ? Json(*value) : Json();
}

// The present balloon, or the error to answer: VmControl's, or 404 when it says "absent".
Result<BalloonInfo> present_balloon(const VmControl& control) {
  PETREL_TRY_ASSIGN(BalloonInfo info, control.balloon());
  if (!info.present) {
    return Error(ErrorCode::kNotFound, "the VM has no balloon device");
  }
  return info;
}

// The target the PUT body asks for. `control` is asked for the guest's RAM only for
// guest_memory_bytes.
Result<uint64_t> requested_target(const RequestBody& body, const VmControl& control) {
  PETREL_TRY_ASSIGN(auto target, body.get_int("target_bytes", 0, INT64_MAX));
  PETREL_TRY_ASSIGN(auto keep, body.get_int("guest_memory_bytes", 1, INT64_MAX));
  if (target.has_value() == keep.has_value()) {
    return invalid(
        "give exactly one of the fields \"target_bytes\" (what the balloon holds) and "
        "\"guest_memory_bytes\" (what the guest keeps)");
  }
  std::string_view field = target ? "target_bytes" : "guest_memory_bytes";
  auto bytes = static_cast<uint64_t>(target ? *target : *keep);
  if (bytes % kBalloonPage != 0) {
    return invalid(
        fmt::format("field \"{}\" must be a multiple of 4096 (the balloon's page)", field));
  }
  if (target) {
    return bytes;
  }
  PETREL_TRY_ASSIGN(BalloonInfo info, present_balloon(control));
  if (bytes > info.memory_bytes) {
    return invalid(
        fmt::format("field \"guest_memory_bytes\" ({}) is more than the guest's RAM ({})", bytes,
                    info.memory_bytes));
  }
  return info.memory_bytes - bytes;
}

ApiResponse get_info(VmControl& control) {
  auto info = present_balloon(control);
  if (!info.ok()) {
    return action_error_response(info.error(), control);
  }
  return json_response(200, balloon_info_json(*info));
}

ApiResponse put_target(VmControl& control, const RequestBody& body) {
  auto target = requested_target(body, control);
  if (!target.ok()) {
    // A 404 or 409 from looking up the guest's RAM is VmControl's, not the body's.
    return action_error_response(target.error(), control);
  }
  if (auto set = control.set_balloon_target(*target); !set.ok()) {
    return action_error_response(set.error(), control);
  }
  return get_info(control);
}

ApiResponse get_stats(VmControl& control) {
  if (auto info = present_balloon(control); !info.ok()) {
    return action_error_response(info.error(), control);
  }
  auto stats = control.balloon_stats();
  if (!stats.ok()) {
    return action_error_response(stats.error(), control);
  }
  return json_response(200, balloon_stats_json(*stats, std::chrono::system_clock::now()));
}

}  // namespace

nlohmann::ordered_json balloon_info_json(const BalloonInfo& info) {
  Json j;
  j["target_bytes"] = info.target_bytes;
  j["actual_bytes"] = info.actual_bytes;
  j["memory_bytes"] = info.memory_bytes;
  j["guest_memory_bytes"] =
      info.actual_bytes < info.memory_bytes ? info.memory_bytes - info.actual_bytes : 0;
  j["deflate_on_oom"] = info.deflate_on_oom;
  j["stats_interval_s"] = info.stats_interval_s;
  j["free_page_reporting"] = info.free_page_reporting;
  return j;
}

nlohmann::ordered_json balloon_stats_json(const BalloonStats& stats,
                                          std::chrono::system_clock::time_point now) {
  Json j;
  j["swap_in"] = optional_number(stats.swap_in);
  j["swap_out"] = optional_number(stats.swap_out);
  j["major_faults"] = optional_number(stats.major_faults);
  j["minor_faults"] = optional_number(stats.minor_faults);
  j["free_memory"] = optional_number(stats.free_memory);
  j["total_memory"] = optional_number(stats.total_memory);
  j["available_memory"] = optional_number(stats.available_memory);
  j["disk_caches"] = optional_number(stats.disk_caches);
  j["hugetlb_allocations"] = optional_number(stats.hugetlb_allocations);
  j["hugetlb_failures"] = optional_number(stats.hugetlb_failures);
  if (stats.updated_at) {
    j["updated_at"] = rfc3339_utc_ms(*stats.updated_at);
    // A clock step backwards would make the age negative: report 0 instead.
    double age = std::chrono::duration<double>(now - *stats.updated_at).count();
    j["age_seconds"] = age > 0 ? age : 0.0;
  } else {
    j["updated_at"] = nullptr;
    j["age_seconds"] = nullptr;
  }
  j["unknown_tags"] = stats.unknown_tags;
  return j;
}

Result<void> add_balloon_routes(Router& router, VmControl& control) {
  PETREL_TRY(router.add("GET", "/v1/balloon", [&control](const ApiRequest& req) {
    if (auto q = parse_query(req.query, {}); !q.ok()) {
      return error_response(q.error());
    }
    return get_info(control);
  }));
  PETREL_TRY(router.add("PUT", "/v1/balloon", [&control](const ApiRequest& req) {
    if (auto q = parse_query(req.query, {}); !q.ok()) {
      return error_response(q.error());
    }
    auto body = RequestBody::parse(req.body, {"target_bytes", "guest_memory_bytes"});
    if (!body.ok()) {
      return error_response(body.error());
    }
    return put_target(control, *body);
  }));
  PETREL_TRY(router.add("GET", "/v1/balloon/stats", [&control](const ApiRequest& req) {
    if (auto q = parse_query(req.query, {}); !q.ok()) {
      return error_response(q.error());
    }
    return get_stats(control);
  }));
  return ok();
}

}  // namespace petrel
