// EventLog: the VM's event stream (vm_control.h VmEvent): numbered events, the last
// VmControl::kEventHistory kept for late subscribers, and live subscriptions.
//
// Thread affinity: any thread may publish or subscribe. Callbacks run on the publishing
// thread (or, for the history replayed by subscribe(), on the subscribing thread) with the
// log's lock held, which keeps every subscriber's view in seq order with no gaps; so a
// callback must be quick, must not block and must not publish or subscribe (post the event
// to its own thread instead). A subscription may be destroyed on any thread, also after the
// log itself.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "vmm/vm_control.h"

namespace petrel {

class EventLog {
 public:
  using Callback = std::function<void(const VmEvent&)>;

  EventLog();
  EventLog(const EventLog&) = delete;
  EventLog& operator=(const EventLog&) = delete;

  // Records an event stamped with the next seq and the current time; returns its seq.
  uint64_t publish(std::string type, nlohmann::json data);

  // Replays the kept events with seq > `after`, then delivers new ones until the returned
  // subscription is destroyed.
  std::unique_ptr<EventSubscription> subscribe(uint64_t after, Callback callback);

  // The kept events with seq > `after`, oldest first.
  std::vector<VmEvent> history(uint64_t after) const;

  uint64_t last_seq() const;

 private:
  struct Shared;
  class Subscription;
  std::shared_ptr<Shared> shared_;
};

}  // namespace petrel
