#include "api/api_counters.h"

namespace petrel {

void ApiCounters::connection_opened() {
  std::lock_guard lock(mutex_);
  ++connections_total_;
  ++connections_active_;
}

void ApiCounters::connection_closed() {
  std::lock_guard lock(mutex_);
  if (connections_active_ > 0) {
    --connections_active_;
  }
}

void ApiCounters::response(unsigned status) {
  std::lock_guard lock(mutex_);
  ++requests_total_;
  ++by_status_[status];
}

void ApiCounters::stream_opened() {
  std::lock_guard lock(mutex_);
  ++streams_active_;
}

void ApiCounters::stream_closed() {
  std::lock_guard lock(mutex_);
  if (streams_active_ > 0) {
    --streams_active_;
  }
}

ApiMetrics ApiCounters::snapshot() const {
  std::lock_guard lock(mutex_);
  ApiMetrics m;
  m.requests_total = requests_total_;
  m.responses_by_status.assign(by_status_.begin(), by_status_.end());
  m.connections_total = connections_total_;
  m.connections_active = connections_active_;
  m.event_streams_active = streams_active_;
  return m;
}

}  // namespace petrel
