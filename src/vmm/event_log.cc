#include "vmm/event_log.h"

#include <list>
#include <utility>

namespace petrel {

struct EventLog::Shared {
  std::mutex mutex;
  uint64_t next_seq = 1;                                 // guarded by mutex
  std::deque<VmEvent> kept;                              // guarded by mutex
  std::list<std::pair<uint64_t, Callback>> subscribers;  // guarded by mutex; id -> callback
  uint64_t next_id = 1;                                  // guarded by mutex
};

class EventLog::Subscription final : public EventSubscription {
 public:
  Subscription(std::weak_ptr<Shared> shared, uint64_t id) : shared_(std::move(shared)), id_(id) {}
  ~Subscription() override {
    if (auto shared = shared_.lock()) {
      std::lock_guard lock(shared->mutex);
      shared->subscribers.remove_if([this](const auto& entry) { return entry.first == id_; });
    }
  }

 private:
  std::weak_ptr<Shared> shared_;
  uint64_t id_;
};

EventLog::EventLog() : shared_(std::make_shared<Shared>()) {}

uint64_t EventLog::publish(std::string type, nlohmann::json data) {
  std::lock_guard lock(shared_->mutex);
  VmEvent event{shared_->next_seq++, std::chrono::system_clock::now(), std::move(type),
                std::move(data)};
  for (const auto& [id, callback] : shared_->subscribers) {
    callback(event);
  }
  shared_->kept.push_back(std::move(event));
  if (shared_->kept.size() > VmControl::kEventHistory) {
    shared_->kept.pop_front();
  }
  return shared_->kept.back().seq;
}

std::unique_ptr<EventSubscription> EventLog::subscribe(uint64_t after, Callback callback) {
  std::lock_guard lock(shared_->mutex);
  for (const auto& event : shared_->kept) {
    if (event.seq > after) {
      callback(event);
    }
  }
  const uint64_t id = shared_->next_id++;
  shared_->subscribers.emplace_back(id, std::move(callback));
  return std::make_unique<Subscription>(shared_, id);
}

std::vector<VmEvent> EventLog::history(uint64_t after) const {
  std::lock_guard lock(shared_->mutex);
  std::vector<VmEvent> out;
  for (const auto& event : shared_->kept) {
    if (event.seq > after) {
      out.push_back(event);
    }
  }
  return out;
}

uint64_t EventLog::last_seq() const {
  std::lock_guard lock(shared_->mutex);
  return shared_->next_seq - 1;
}

}  // namespace petrel
