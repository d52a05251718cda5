// VcpuGate: parks the VM's vCPU threads outside KVM_RUN for a pause and lets them go again.
//
// Protocol: the controller calls close(), kicks every vCPU (immediate_exit + signal, so each
// leaves KVM_RUN at its next entry at the latest), then wait_parked(). A vCPU thread calls
// park() after KVM_RUN returned because it was kicked; while the gate is closed it blocks
// there (counted as parked) until open() or release_all() (a stop: the thread then returns and
// sees the stop latch). A vCPU whose thread has ended counts as parked for the wait.
//
// Thread affinity: close/open/wait_parked/release_all on the controlling thread (one at a
// time); park and leave on vCPU threads.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <mutex>

namespace petrel {

class VcpuGate {
 public:
  explicit VcpuGate(size_t vcpus) : vcpus_(vcpus) {}
  VcpuGate(const VcpuGate&) = delete;
  VcpuGate& operator=(const VcpuGate&) = delete;

  void close();
  // True once every vCPU is parked or gone; false after `timeout` or when released.
  bool wait_parked(std::chrono::milliseconds timeout);
  void open();
  // For a stop: opens the gate for good, so parked and later-parking threads return at once.
  void release_all();

  // vCPU thread: blocks while the gate is closed. Returns at once when it is open.
  void park();
  // vCPU thread, as it ends: it counts as parked from now on.
  void leave();

  bool closed() const;

 private:
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  const size_t vcpus_;
  size_t parked_ = 0;  // threads inside park() or gone; guarded by mutex_
  size_t gone_ = 0;    // guarded by mutex_
  bool closed_ = false;
  bool released_ = false;
};

}  // namespace petrel
