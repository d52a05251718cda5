// ThreadCpuClock: the CPU time one thread has used (user + system, the kernel's per-thread
// CPU clock), readable from any thread while the measured thread runs and after it ended.
// The measured thread calls attach() when it starts and finish() as the last thing it does;
// finish() records the final value, so a reading never depends on a thread that is gone
// (its clock id would be stale, or even name a newer thread that reused its id).
#pragma once

#include <time.h>

#include <atomic>
#include <cstdint>

namespace petrel {

class ThreadCpuClock {
 public:
  ThreadCpuClock() = default;
  ThreadCpuClock(const ThreadCpuClock&) = delete;
  ThreadCpuClock& operator=(const ThreadCpuClock&) = delete;

  // On the measured thread, before any reading is wanted. Once per clock.
  void attach();
  // On the measured thread, once it is done (no more CPU time counts after this).
  void finish();

  // Any thread: nanoseconds of CPU time; 0 before attach(), the final value after finish().
  uint64_t nanoseconds() const;

 private:
  std::atomic<bool> attached_{false};
  std::atomic<clockid_t> clock_{0};
  std::atomic<bool> finished_{false};
  std::atomic<uint64_t> final_ns_{0};
};

}  // namespace petrel
