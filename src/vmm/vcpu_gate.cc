#include "vmm/vcpu_gate.h"

namespace petrel {

void VcpuGate::close() {
  std::lock_guard lock(mutex_);
  if (!released_) {
    closed_ = true;
  }
}

bool VcpuGate::wait_parked(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  cv_.wait_for(lock, timeout, [&] { return released_ || parked_ + gone_ >= vcpus_; });
  return !released_ && parked_ + gone_ >= vcpus_;
}

void VcpuGate::open() {
  std::lock_guard lock(mutex_);
  closed_ = false;
  cv_.notify_all();
}

void VcpuGate::release_all() {
  std::lock_guard lock(mutex_);
  released_ = true;
  closed_ = false;
  cv_.notify_all();
}

void VcpuGate::park() {
  std::unique_lock lock(mutex_);
  if (!closed_) {
    return;
  }
  ++parked_;
  cv_.notify_all();
  cv_.wait(lock, [&] { return !closed_; });
  --parked_;
}

void VcpuGate::leave() {
  std::lock_guard lock(mutex_);
  ++gone_;
  cv_.notify_all();
}

bool VcpuGate::closed() const {
  std::lock_guard lock(mutex_);
  return closed_;
}

}  // namespace petrel
