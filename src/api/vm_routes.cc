#include "api/vm_routes.h"

#include <time.h>

#include <atomic>
#include <functional>
#include <limits>
#include <memory>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "api/api_error.h"
#include "api/request_body.h"

namespace petrel {
namespace {

using Json = nlohmann::ordered_json;

constexpr std::string_view kNdjson = "application/x-ndjson";

template <typename J>
std::string dump(const J& json) {
  return json.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

ApiResponse state_response(unsigned status, VmState state) {
  return json_response(status, Json{{"state", std::string(to_string(state))}});
}

// GET requests take no query parameters (the ones that do check theirs themselves).
Result<void> no_query(const ApiRequest& req) {
  PETREL_TRY(parse_query(req.query, {}));
  return ok();
}

using Action = std::function<Result<VmState>(VmControl&, const RequestBody&)>;

ApiHandler action_handler(VmControl& control, unsigned success_status,
                          std::vector<std::string_view> known, Action action) {
  // `known` holds string literals.
  return [&control, success_status, known, action = std::move(action)](const ApiRequest& req) {
    if (auto q = no_query(req); !q.ok()) {
      return error_response(q.error());
    }
    Result<RequestBody> body = RequestBody::parse(req.body, known);
    if (!body.ok()) {
      return error_response(body.error());
    }
    Result<VmState> state = action(control, *body);
    if (!state.ok()) {
      return action_error_response(state.error(), control);
    }
    return state_response(success_status, *state);
  };
}

// The producer of one /v1/events response: a subscription pushing one line per event.
class EventStream final : public ApiStream {
 public:
  EventStream(VmControl& control, uint64_t after) : control_(control), after_(after) {}
  ~EventStream() override { subscription_.reset(); }

  void start(std::shared_ptr<ApiStreamSink> sink) override {
    auto last = last_seq_;
    subscription_ = control_.subscribe(after_, [sink = std::move(sink), last](const VmEvent& e) {
      if (sink->push(event_line(e))) {
        last->store(e.seq, std::memory_order_relaxed);
      }
    });
  }

  // Tells the client where to resume: GET /v1/events?after=<last_seq>.
  std::string overflow_chunk() const override {
    Json line{{"type", "overflow"},
              {"time", rfc3339_utc_ms(std::chrono::system_clock::now())},
              {"data", {{"last_seq", last_seq_->load(std::memory_order_relaxed)}}}};
    return dump(line) + "\n";
  }

 private:
  VmControl& control_;
  const uint64_t after_;
  // Written by the publishing thread, read on the session's thread.
  std::shared_ptr<std::atomic<uint64_t>> last_seq_ = std::make_shared<std::atomic<uint64_t>>(0);
  std::unique_ptr<EventSubscription> subscription_;
};

ApiResponse events(VmControl& control, const ApiRequest& req) {
  auto params = parse_query(req.query, {"after"});
  if (!params.ok()) {
    return error_response(params.error());
  }
  uint64_t after = std::numeric_limits<uint64_t>::max();  // only new events
  if (auto it = params->find("after"); it != params->end()) {
    auto parsed = parse_uint_param("after", it->second);
    if (!parsed.ok()) {
      return error_response(parsed.error());
    }
    after = *parsed;
  }
  ApiResponse res;
  res.content_type = std::string(kNdjson);
  res.stream = std::make_shared<EventStream>(control, after);
  return res;
}

}  // namespace

std::string rfc3339_utc_ms(std::chrono::system_clock::time_point time) {
  using namespace std::chrono;
  auto ms = floor<milliseconds>(time.time_since_epoch()).count();
  auto secs = static_cast<time_t>(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
  auto millis = static_cast<int>(ms - static_cast<int64_t>(secs) * 1000);
  tm t{};
  if (::gmtime_r(&secs, &t) == nullptr) {
    return "1970-01-01T00:00:00.000Z";  // out of gmtime's range: never a real clock
  }
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", t.tm_year + 1900, t.tm_mon + 1,
                     t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec, millis);
}

std::string event_line(const VmEvent& event) {
  return fmt::format(R"({{"seq":{},"time":"{}","type":{},"data":{}}})", event.seq,
                     rfc3339_utc_ms(event.time), dump(nlohmann::json(event.type)),
                     dump(event.data)) +
         "\n";
}

ApiResponse action_error_response(const Error& error, const VmControl& control) {
  ApiResponse res = error_response(error);
  if (error.code() == ErrorCode::kState) {
    auto body = nlohmann::json::parse(res.body);
    body["error"]["state"] = std::string(to_string(control.info().state));
    res.body = dump(body);
  }
  return res;
}

nlohmann::json vm_info_json(const VmInfo& info) {
  nlohmann::json j;
  j["name"] = info.name;
  j["state"] = std::string(to_string(info.state));
  j["vcpus"] = info.vcpus;
  j["memory_bytes"] = info.memory_bytes;
  j["uptime_seconds"] = std::chrono::duration<double>(info.uptime).count();
  j["started_at"] =
      info.started_at ? nlohmann::json(rfc3339_utc_ms(*info.started_at)) : nlohmann::json();
  j["boot_count"] = info.boot_count;
  j["exec_mode"] = info.exec_mode;
  j["version"] = info.version;
  j["pid"] = info.pid;
  return j;
}

Result<void> add_vm_routes(Router& router, VmControl& control) {
  PETREL_TRY(router.add("GET", "/v1/vm", [&control](const ApiRequest& req) {
    if (auto q = no_query(req); !q.ok()) {
      return error_response(q.error());
    }
    ApiResponse res;
    res.body = dump(vm_info_json(control.info()));
    return res;
  }));
  PETREL_TRY(router.add("GET", "/v1/vm/state", [&control](const ApiRequest& req) {
    if (auto q = no_query(req); !q.ok()) {
      return error_response(q.error());
    }
    return state_response(200, control.info().state);
  }));
  PETREL_TRY(router.add("GET", "/v1/vm/config", [&control](const ApiRequest& req) {
    if (auto q = no_query(req); !q.ok()) {
      return error_response(q.error());
    }
    ApiResponse res;
    res.body = dump(control.config());
    return res;
  }));

  struct Simple {
    const char* path;
    Result<VmState> (VmControl::*call)();
  };
  for (auto [path, call] :
       {Simple{"/v1/vm/start", &VmControl::start}, Simple{"/v1/vm/pause", &VmControl::pause},
        Simple{"/v1/vm/resume", &VmControl::resume}, Simple{"/v1/vm/reboot", &VmControl::reboot},
        Simple{"/v1/vm/stop", &VmControl::stop}}) {
    // Init-capture, not [call]: clang < 16 cannot capture a structured binding.
    PETREL_TRY(router.add(
        "PUT", path,
        action_handler(control, 200, {},
                       [fn = call](VmControl& c, const RequestBody&) { return (c.*fn)(); })));
  }
  PETREL_TRY(router.add(
      "PUT", "/v1/vm/shutdown",
      action_handler(control, 202, {"timeout_ms"},
                     [](VmControl& c, const RequestBody& body) -> Result<VmState> {
                       PETREL_TRY_ASSIGN(
                           auto timeout,
                           body.get_int("timeout_ms", 1, int64_t{kMaxShutdownTimeoutMs}));
                       ShutdownOptions options;
                       if (timeout) {
                         options.timeout = std::chrono::milliseconds(*timeout);
                       }
                       return c.shutdown(options);
                     })));
  PETREL_TRY(router.add("GET", "/v1/events",
                        [&control](const ApiRequest& req) { return events(control, req); }));
  return ok();
}

ApiResponse json_response(unsigned status, const nlohmann::ordered_json& json) {
  ApiResponse res;
  res.status = status;
  res.body = json.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return res;
}

}  // namespace petrel
