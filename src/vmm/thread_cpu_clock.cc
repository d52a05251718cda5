#include "vmm/thread_cpu_clock.h"

#include <pthread.h>

namespace petrel {

namespace {

bool read_clock(clockid_t clock, uint64_t& ns) {
  timespec ts{};
  if (::clock_gettime(clock, &ts) != 0) {
    return false;
  }
  ns = static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000u + static_cast<uint64_t>(ts.tv_nsec);
  return true;
}

}  // namespace

void ThreadCpuClock::attach() {
  clockid_t clock{};
  if (::pthread_getcpuclockid(::pthread_self(), &clock) != 0) {
    return;  // readings stay 0 until finish()
  }
  clock_.store(clock, std::memory_order_relaxed);
  attached_.store(true, std::memory_order_release);
}

void ThreadCpuClock::finish() {
  uint64_t ns = 0;
  if (read_clock(CLOCK_THREAD_CPUTIME_ID, ns)) {
    final_ns_.store(ns, std::memory_order_relaxed);
  }
  finished_.store(true, std::memory_order_release);
}

uint64_t ThreadCpuClock::nanoseconds() const {
  if (finished_.load(std::memory_order_acquire)) {
    return final_ns_.load(std::memory_order_relaxed);
  }
  if (!attached_.load(std::memory_order_acquire)) {
    return 0;
  }
  uint64_t ns = 0;
  const bool ok = read_clock(clock_.load(std::memory_order_relaxed), ns);
  // The thread sets finished_ before it can exit, and its id can only be reused after it
  // exited: if finished_ is still clear now, the clock read above was the thread's own.
  if (finished_.load(std::memory_order_acquire)) {
    return final_ns_.load(std::memory_order_relaxed);
  }
  return ok ? ns : 0;
}

}  // namespace petrel
