// StopLatch: how a running VM comes to an end. Any thread (a vCPU on a guest power-off, the
// exit device, a signal handler thread, an internal error) may request a stop; the first
// request wins and later ones are ignored. The VM's owner waits for it.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>

namespace petrel {

enum class StopKind {
  kPowerOff,     // the guest powered off (ACPI / KVM_SYSTEM_EVENT_SHUTDOWN)
  kReset,        // the guest asked for a reset (i8042 0xFE, KVM_SYSTEM_EVENT_RESET)
  kGuestExit,    // a test guest wrote the exit device; `status` is its value
  kTripleFault,  // KVM_EXIT_SHUTDOWN
  kGuestError,   // the guest did something petrel cannot continue from
  kSignal,       // the operator sent SIGINT/SIGTERM; `status` is the signal number
  kHostError,    // a KVM or host failure
  kStopped,      // the operator stopped the VM hard (API stop, or a shutdown that timed out)
  kPanic,        // the guest announced a panic (pvpanic)
};

struct StopReason {
  StopKind kind;
  uint8_t status = 0;
  std::string message;
};

class StopLatch {
 public:
  // Returns true when this request is the one that stops the VM.
  bool request(StopReason reason);
  bool stopped() const;
  StopReason wait() const;
  std::optional<StopReason> peek() const;

 private:
  mutable std::mutex mutex_;
  mutable std::condition_variable cv_;
  std::optional<StopReason> reason_;
};

// The exit status `petrel run` reports for a stop (docs/config.md, "Exit status").
int exit_status_for(const StopReason& reason);

}  // namespace petrel
