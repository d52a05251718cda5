#include "vmm/stop_latch.h"

namespace petrel {

bool StopLatch::request(StopReason reason) {
  {
    std::lock_guard lock(mutex_);
    if (reason_) {
      return false;
    }
    reason_ = std::move(reason);
  }
  cv_.notify_all();
  return true;
}

bool StopLatch::stopped() const {
  std::lock_guard lock(mutex_);
  return reason_.has_value();
}

StopReason StopLatch::wait() const {
  std::unique_lock lock(mutex_);
  cv_.wait(lock, [this] { return reason_.has_value(); });
  return *reason_;
}

std::optional<StopReason> StopLatch::peek() const {
  std::lock_guard lock(mutex_);
  return reason_;
}

int exit_status_for(const StopReason& reason) {
  switch (reason.kind) {
    case StopKind::kPowerOff:
    case StopKind::kReset:
    case StopKind::kStopped:
      return 0;
    case StopKind::kGuestExit:
      return reason.status;
    case StopKind::kSignal:
      return 128 + reason.status;
    case StopKind::kTripleFault:
    case StopKind::kGuestError:
    case StopKind::kHostError:
    case StopKind::kPanic:
      return 1;
  }
  return 1;
}

}  // namespace petrel
