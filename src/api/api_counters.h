// ApiCounters: the control API's counts about itself (connections, responses by status,
// event streams), updated by the sessions and read as an ApiMetrics snapshot by the metrics
// routes.
//
// Thread-safe: every method may be called from any thread. Shared (std::shared_ptr) between
// the ApiServer, its sessions and the metrics routes, so it outlives whichever ends last.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>

#include "api/api_metrics.h"

namespace petrel {

class ApiCounters {
 public:
  void connection_opened();
  void connection_closed();
  // One response written (or started, for a stream) with HTTP `status`.
  void response(unsigned status);
  void stream_opened();
  void stream_closed();

  ApiMetrics snapshot() const;

 private:
  mutable std::mutex mutex_;
  // All guarded by mutex_.
  uint64_t requests_total_ = 0;
  std::map<unsigned, uint64_t> by_status_;
  uint64_t connections_total_ = 0;
  uint64_t connections_active_ = 0;
  uint64_t streams_active_ = 0;
};

}  // namespace petrel
