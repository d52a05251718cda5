// Lifecycle: the VM's lifecycle state and the table of its legal transitions
// (docs/architecture.md, "Lifecycle"). An action that the table does not allow in the current
// state is refused with ErrorCode::kState and leaves the state unchanged; the API answers it
// with 409 and the current state.
#pragma once

#include <array>
#include <cstddef>
#include <mutex>
#include <optional>
#include <span>
#include <string_view>

#include "vmm/base/result.h"

namespace petrel {

enum class VmState {
  kCreated,       // built, vCPUs not started
  kRunning,       // vCPUs running
  kPaused,        // vCPUs parked; devices quiet
  kShuttingDown,  // a graceful shutdown was requested; waiting for the guest
  kShutOff,       // the guest is gone (powered off, stopped hard); terminal
  kCrashed,       // the guest or KVM failed; terminal, kept for inspection
  // Without a VM yet (`petrel serve`): waiting for a restore or an incoming migration.
  kEmpty,
  kReceiving,  // an incoming migration is being received
  kMigrated,   // the VM moved to another petrel (the destination acknowledged); terminal
};

enum class VmAction {
  // Operator actions (the API).
  kStart,
  kPause,
  kResume,
  kShutdown,  // graceful: Ctrl-Alt-Del to the guest; it decides when to stop
  kReboot,
  kStop,  // hard: the VMM stops the vCPUs at once
  // Events from the VM: facts to record, not requests.
  kGuestStopped,     // the guest powered off or the VM stopped on its own
  kGuestCrashed,     // triple fault, emulation failure, KVM error
  kShutdownTimeout,  // a graceful shutdown took too long; the VMM stops the VM hard
  // Snapshot and migration.
  kRestore,        // a VM built from a snapshot, not running yet
  kReceive,        // an incoming migration started
  kReceived,       // the incoming migration completed: the VM runs here now
  kReceiveFailed,  // the incoming migration failed or was cancelled; nothing was kept
  kMigrated,       // the destination acknowledged an outgoing migration: the VM ends here
};

inline constexpr std::size_t kVmStateCount = 9;
inline constexpr std::size_t kVmActionCount = 14;

// The operator names: "created", "running", "paused", "shutting-down", "shut-off", "crashed",
// "empty", "receiving", "migrated".
std::string_view to_string(VmState state);
// "start", "pause", "resume", "shutdown", "reboot", "stop", "guest-stopped", "guest-crashed",
// "shutdown-timeout", "restore", "receive", "received", "receive-failed", "migrated".
std::string_view to_string(VmAction action);

struct VmTransition {
  VmState from;
  VmAction action;
  VmState to;

  friend constexpr bool operator==(const VmTransition&, const VmTransition&) = default;
};

// Every legal transition; any (state, action) pair not listed is illegal. At most one entry
// per (from, action), so the table is deterministic (checked at compile time in lifecycle.cc).
inline constexpr std::array kVmTransitions{
    VmTransition{VmState::kCreated, VmAction::kStart, VmState::kRunning},
    VmTransition{VmState::kCreated, VmAction::kStop, VmState::kShutOff},

    VmTransition{VmState::kRunning, VmAction::kPause, VmState::kPaused},
    VmTransition{VmState::kRunning, VmAction::kShutdown, VmState::kShuttingDown},
    VmTransition{VmState::kRunning, VmAction::kReboot, VmState::kRunning},
    VmTransition{VmState::kRunning, VmAction::kStop, VmState::kShutOff},
    VmTransition{VmState::kRunning, VmAction::kGuestStopped, VmState::kShutOff},
    VmTransition{VmState::kRunning, VmAction::kGuestCrashed, VmState::kCrashed},

    VmTransition{VmState::kPaused, VmAction::kResume, VmState::kRunning},
    VmTransition{VmState::kPaused, VmAction::kStop, VmState::kShutOff},
    VmTransition{VmState::kPaused, VmAction::kGuestStopped, VmState::kShutOff},
    VmTransition{VmState::kPaused, VmAction::kGuestCrashed, VmState::kCrashed},

    VmTransition{VmState::kShuttingDown, VmAction::kStop, VmState::kShutOff},
    VmTransition{VmState::kShuttingDown, VmAction::kGuestStopped, VmState::kShutOff},
    VmTransition{VmState::kShuttingDown, VmAction::kShutdownTimeout, VmState::kShutOff},
    VmTransition{VmState::kShuttingDown, VmAction::kGuestCrashed, VmState::kCrashed},

    VmTransition{VmState::kRunning, VmAction::kMigrated, VmState::kMigrated},
    VmTransition{VmState::kPaused, VmAction::kMigrated, VmState::kMigrated},

    VmTransition{VmState::kEmpty, VmAction::kRestore, VmState::kPaused},
    VmTransition{VmState::kEmpty, VmAction::kReceive, VmState::kReceiving},
    VmTransition{VmState::kEmpty, VmAction::kStop, VmState::kShutOff},
    VmTransition{VmState::kReceiving, VmAction::kReceived, VmState::kRunning},
    VmTransition{VmState::kReceiving, VmAction::kReceiveFailed, VmState::kEmpty},
    VmTransition{VmState::kReceiving, VmAction::kStop, VmState::kShutOff},
};

// The table's target for `action` in `from`, or nullopt when the action is illegal there.
constexpr std::optional<VmState> next_vm_state(VmState from, VmAction action) {
  for (const auto& t : kVmTransitions) {
    if (t.from == from && t.action == action) {
      return t.to;
    }
  }
  return std::nullopt;
}

// The current state, guarded by a mutex: any thread may read it or apply an action. Callers
// that must do work between checking and committing a transition (VmController) serialise
// their actions themselves and use allowed() before the work and apply() after it.
class Lifecycle {
 public:
  explicit Lifecycle(VmState initial = VmState::kCreated) : state_(initial) {}
  Lifecycle(const Lifecycle&) = delete;
  Lifecycle& operator=(const Lifecycle&) = delete;

  VmState state() const;

  // The target state if `action` is legal now, else kState ("cannot pause: the VM is
  // shut-off"). Changes nothing.
  Result<VmState> allowed(VmAction action) const;

  // Moves to the table's target state and returns the transition, or returns kState with
  // the state unchanged.
  Result<VmTransition> apply(VmAction action);

  static std::span<const VmTransition> transitions() { return kVmTransitions; }

 private:
  mutable std::mutex mutex_;
  VmState state_;  // guarded by mutex_
};

}  // namespace petrel
