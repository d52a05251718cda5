#include "api/metrics_routes.h"

#include <utility>

#include "api/api_error.h"
#include "api/metrics_format.h"
#include "api/request_body.h"

namespace petrel {
namespace {

constexpr const char* kPrometheusType = "text/plain; version=0.0.4; charset=utf-8";

}  // namespace

Result<void> add_metrics_routes(Router& router, VmControl& control,
                                std::shared_ptr<const ApiCounters> counters) {
  if (!counters) {
    return Error(ErrorCode::kInvalidArgument, "metrics routes: no API counters");
  }
  PETREL_TRY(router.add("GET", "/v1/metrics", [&control, counters](const ApiRequest& req) {
    if (auto q = parse_query(req.query, {}); !q.ok()) {
      return error_response(q.error());
    }
    ApiResponse res;
    res.body = metrics_to_json(control.metrics(), counters->snapshot())
                   .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    return res;
  }));
  PETREL_TRY(
      router.add("GET", "/v1/metrics/prometheus", [&control, counters](const ApiRequest& req) {
        if (auto q = parse_query(req.query, {}); !q.ok()) {
          return error_response(q.error());
        }
        ApiResponse res;
        res.content_type = kPrometheusType;
        res.body = metrics_to_prometheus(control.metrics(), counters->snapshot());
        return res;
      }));
  return ok();
}

}  // namespace petrel
