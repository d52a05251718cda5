#include "api/migration_routes.h"

#include <limits.h>

#include <algorithm>
#include <charconv>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "api/api_error.h"
#include "api/request_body.h"
#include "api/vm_routes.h"

namespace petrel {
namespace {

using Json = nlohmann::ordered_json;

// sizeof(sockaddr_un::sun_path) minus the terminating NUL.
constexpr size_t kMaxUnixSocketPath = 107;

Error invalid(std::string message) {
  return Error(ErrorCode::kInvalidArgument, std::move(message));
}

bool is_host_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '-';
}

bool is_ipv6_char(char c) {
  return (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || (c >= '0' && c <= '9') || c == ':' ||
         c == '.';
}

Result<void> check_tcp_address(std::string_view field, std::string_view rest) {
  auto colon = rest.rfind(':');
  if (colon == std::string_view::npos) {
    return invalid(fmt::format("field \"{}\": a tcp address is tcp:HOST:PORT", field));
  }
  std::string_view host = rest.substr(0, colon);
  std::string_view port_text = rest.substr(colon + 1);
  bool host_ok = false;
  if (host.size() >= 3 && host.front() == '[' && host.back() == ']') {
    std::string_view inner = host.substr(1, host.size() - 2);
    host_ok = inner.size() <= 45 && std::all_of(inner.begin(), inner.end(), is_ipv6_char);
  } else {
    host_ok =
        !host.empty() && host.size() <= 253 && std::all_of(host.begin(), host.end(), is_host_char);
  }
  if (!host_ok) {
    return invalid(fmt::format(
        "field \"{}\": the host of a tcp address is a name, an IPv4 address or [IPv6]", field));
  }
  unsigned port = 0;
  const char* end = port_text.data() + port_text.size();
  auto [ptr, ec] = std::from_chars(port_text.data(), end, port);
  if (port_text.empty() || ec != std::errc() || ptr != end || port < 1 || port > 65535) {
    return invalid(fmt::format("field \"{}\": the port of a tcp address is 1 to 65535", field));
  }
  return ok();
}

// A required string field.
Result<std::string> required_string(const RequestBody& body, std::string_view field) {
  PETREL_TRY_ASSIGN(auto value, body.get_string(field));
  if (!value) {
    return invalid(fmt::format("field \"{}\" is required", field));
  }
  return std::move(*value);
}

using Handler = std::function<ApiResponse(VmControl&, const RequestBody&)>;

// Checks the query (none allowed) and the body (only `known` fields), then calls `handler`.
ApiHandler with_body(VmControl& control, std::vector<std::string_view> known, Handler handler) {
  // `known` holds string literals.
  return [&control, known, handler = std::move(handler)](const ApiRequest& req) {
    if (auto q = parse_query(req.query, {}); !q.ok()) {
      return error_response(q.error());
    }
    Result<RequestBody> body = RequestBody::parse(req.body, known);
    if (!body.ok()) {
      return error_response(body.error());
    }
    return handler(control, *body);
  };
}

ApiResponse snapshot(VmControl& control, const RequestBody& body) {
  auto path = required_string(body, "path");
  if (!path.ok()) {
    return error_response(path.error());
  }
  if (auto c = check_absolute_path("path", *path); !c.ok()) {
    return error_response(c.error());
  }
  auto result = control.snapshot(SnapshotRequest{.path = *path});
  if (!result.ok()) {
    return action_error_response(result.error(), control);
  }
  return json_response(200, snapshot_result_json(*result));
}

Result<RestoreRequest> restore_request(const RequestBody& body) {
  PETREL_TRY_ASSIGN(auto path, required_string(body, "path"));
  PETREL_TRY(check_absolute_path("path", path));
  PETREL_TRY_ASSIGN(auto paused, body.get_bool("paused"));
  return RestoreRequest{.path = path, .paused = paused.value_or(false)};
}

ApiResponse restore(VmControl& control, const RequestBody& body) {
  auto request = restore_request(body);
  if (!request.ok()) {
    return error_response(request.error());
  }
  if (auto r = control.restore(*request); !r.ok()) {
    return action_error_response(r.error(), control);
  }
  return json_response(200, Json{{"state", std::string(to_string(control.info().state))}});
}

Result<MigrateSendRequest> send_request(const RequestBody& body) {
  MigrateSendRequest request;
  PETREL_TRY_ASSIGN(request.destination, required_string(body, "destination"));
  PETREL_TRY(check_migration_address("destination", request.destination));
  PETREL_TRY_ASSIGN(auto downtime,
                    body.get_int("downtime_ms", kMinMigrationDowntimeMs, kMaxMigrationDowntimeMs));
  PETREL_TRY_ASSIGN(auto timeout,
                    body.get_int("timeout_ms", kMinMigrationTimeoutMs, kMaxMigrationTimeoutMs));
  PETREL_TRY_ASSIGN(auto rounds,
                    body.get_int("max_rounds", kMinMigrationRounds, kMaxMigrationRounds));
  if (downtime) {
    request.downtime = std::chrono::milliseconds(*downtime);
  }
  if (timeout) {
    request.timeout = std::chrono::milliseconds(*timeout);
  }
  if (rounds) {
    request.max_rounds = static_cast<uint32_t>(*rounds);
  }
  return request;
}

Result<MigrateReceiveRequest> receive_request(const RequestBody& body) {
  MigrateReceiveRequest request;
  PETREL_TRY_ASSIGN(request.listen, required_string(body, "listen"));
  PETREL_TRY(check_migration_address("listen", request.listen));
  PETREL_TRY_ASSIGN(auto timeout,
                    body.get_int("timeout_ms", kMinMigrationTimeoutMs, kMaxMigrationTimeoutMs));
  if (timeout) {
    request.timeout = std::chrono::milliseconds(*timeout);
  }
  return request;
}

// Answers `status` with the migration status once `started` succeeded.
ApiResponse status_after(VmControl& control, const Result<void>& started, unsigned status) {
  if (!started.ok()) {
    return action_error_response(started.error(), control);
  }
  return json_response(status, migration_status_json(control.migration_status()));
}

Json optional_ms(const std::optional<std::chrono::milliseconds>& ms) {
  return ms ? Json(ms->count()) : Json();
}

}  // namespace

Result<void> check_absolute_path(std::string_view field, std::string_view path) {
  if (path.empty()) {
    return invalid(fmt::format("field \"{}\" must not be empty", field));
  }
  if (path.front() != '/') {
    return invalid(fmt::format("field \"{}\" must be an absolute path", field));
  }
  if (path.find('\0') != std::string_view::npos) {
    return invalid(fmt::format("field \"{}\" must not contain a NUL character", field));
  }
  if (path.size() >= PATH_MAX) {
    return invalid(fmt::format("field \"{}\" is longer than {} bytes", field, PATH_MAX - 1));
  }
  return ok();
}

Result<void> check_migration_address(std::string_view field, std::string_view address) {
  constexpr std::string_view kUnix = "unix:";
  constexpr std::string_view kTcp = "tcp:";
  if (address.substr(0, kUnix.size()) == kUnix) {
    std::string_view path = address.substr(kUnix.size());
    PETREL_TRY(check_absolute_path(field, path));
    if (path.size() > kMaxUnixSocketPath) {
      return invalid(fmt::format("field \"{}\": a unix socket path is at most {} bytes", field,
                                 kMaxUnixSocketPath));
    }
    return ok();
  }
  if (address.substr(0, kTcp.size()) == kTcp) {
    return check_tcp_address(field, address.substr(kTcp.size()));
  }
  return invalid(
      fmt::format("field \"{}\" must be \"unix:/absolute/path\" or \"tcp:HOST:PORT\"", field));
}

nlohmann::ordered_json migration_status_json(const MigrationStatus& status) {
  Json j;
  j["role"] = std::string(to_string(status.role));
  j["phase"] = std::string(to_string(status.phase));
  j["peer"] = status.peer;
  j["round"] = status.round;
  j["bytes"] = status.bytes_sent;
  j["pages"] = status.pages;
  j["remaining_bytes"] = status.remaining_bytes;
  j["dirty_rate_bytes_per_s"] = status.dirty_rate_bytes_per_s;
  j["bandwidth_bytes_per_s"] = status.bandwidth_bytes_per_s;
  j["expected_downtime_ms"] = status.expected_downtime_ms;
  j["elapsed_ms"] = status.elapsed.count();
  j["total_ms"] = optional_ms(status.total);
  j["downtime_ms"] = optional_ms(status.downtime);
  j["error"] = status.error.empty() ? Json() : Json(status.error);
  return j;
}

nlohmann::ordered_json snapshot_result_json(const SnapshotResult& result) {
  Json j;
  j["path"] = result.path.string();
  j["memory_bytes_written"] = result.memory_bytes_written;
  j["state_bytes"] = result.state_bytes;
  j["duration_ms"] = result.duration.count();
  return j;
}

Result<void> add_migration_routes(Router& router, VmControl& control) {
  PETREL_TRY(router.add("PUT", "/v1/vm/snapshot", with_body(control, {"path"}, snapshot)));
  PETREL_TRY(router.add("PUT", "/v1/vm/restore", with_body(control, {"path", "paused"}, restore)));
  PETREL_TRY(
      router.add("PUT", "/v1/migration/send",
                 with_body(control, {"destination", "downtime_ms", "timeout_ms", "max_rounds"},
                           [](VmControl& c, const RequestBody& body) {
                             auto request = send_request(body);
                             if (!request.ok()) {
                               return error_response(request.error());
                             }
                             return status_after(c, c.migrate_send(*request), 202);
                           })));
  PETREL_TRY(router.add(
      "PUT", "/v1/migration/receive",
      with_body(control, {"listen", "timeout_ms"}, [](VmControl& c, const RequestBody& body) {
        auto request = receive_request(body);
        if (!request.ok()) {
          return error_response(request.error());
        }
        return status_after(c, c.migrate_receive(*request), 202);
      })));
  PETREL_TRY(router.add("GET", "/v1/migration", [&control](const ApiRequest& req) {
    if (auto q = parse_query(req.query, {}); !q.ok()) {
      return error_response(q.error());
    }
    return json_response(200, migration_status_json(control.migration_status()));
  }));
  PETREL_TRY(router.add("PUT", "/v1/migration/cancel",
                        with_body(control, {}, [](VmControl& c, const RequestBody&) {
                          return status_after(c, c.migrate_cancel(), 200);
                        })));
  return ok();
}

}  // namespace petrel
