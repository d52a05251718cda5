// ApiMetrics: what the control API counts about itself, as plain values (a snapshot).
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

namespace petrel {

struct ApiMetrics {
  uint64_t requests_total = 0;  // every request answered, whatever its status
  // Responses by HTTP status (200, 202, 400, ...), ascending by status.
  std::vector<std::pair<unsigned, uint64_t>> responses_by_status;
  uint64_t connections_total = 0;   // accepted connections
  uint64_t connections_active = 0;  // open right now
  uint64_t event_streams_active = 0;
};

}  // namespace petrel
