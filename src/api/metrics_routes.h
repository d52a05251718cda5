// The metrics routes (docs/api.md):
//   GET /v1/metrics             200 application/json: VmMetrics + "api" (metrics_format.h)
//   GET /v1/metrics/prometheus  200 text/plain; version=0.0.4 (Prometheus text format)
// Neither takes a query parameter or reads the body.
//
// Lifetime: `control` must outlive the router; `counters` is shared with the ApiServer that
// counts into it. Handlers run on the dispatching thread (the API loop thread).
#pragma once

#include <memory>

#include "api/api_counters.h"
#include "api/router.h"
#include "vmm/base/result.h"
#include "vmm/vm_control.h"

namespace petrel {

// Errors: those of Router::add (e.g. a route registered twice).
Result<void> add_metrics_routes(Router& router, VmControl& control,
                                std::shared_ptr<const ApiCounters> counters);

}  // namespace petrel
