#include "vmm/lifecycle.h"

#include <string>
#include <utility>

namespace petrel {
namespace {

constexpr bool table_is_deterministic() {
  for (std::size_t i = 0; i < kVmTransitions.size(); ++i) {
    for (std::size_t j = i + 1; j < kVmTransitions.size(); ++j) {
      if (kVmTransitions[i].from == kVmTransitions[j].from &&
          kVmTransitions[i].action == kVmTransitions[j].action) {
        return false;
      }
    }
  }
  return true;
}
static_assert(table_is_deterministic(), "two transitions for one (state, action)");

}  // namespace

std::string_view to_string(VmState state) {
  switch (state) {
    case VmState::kCreated:
      return "created";
    case VmState::kRunning:
      return "running";
    case VmState::kPaused:
      return "paused";
    case VmState::kShuttingDown:
      return "shutting-down";
    case VmState::kShutOff:
      return "shut-off";
    case VmState::kCrashed:
      return "crashed";
    case VmState::kEmpty:
      return "empty";
    case VmState::kReceiving:
      return "receiving";
    case VmState::kMigrated:
      return "migrated";
  }
  return "unknown";
}

std::string_view to_string(VmAction action) {
  switch (action) {
    case VmAction::kStart:
      return "start";
    case VmAction::kPause:
      return "pause";
    case VmAction::kResume:
      return "resume";
    case VmAction::kShutdown:
      return "shutdown";
    case VmAction::kReboot:
      return "reboot";
    case VmAction::kStop:
      return "stop";
    case VmAction::kGuestStopped:
      return "guest-stopped";
    case VmAction::kGuestCrashed:
      return "guest-crashed";
    case VmAction::kShutdownTimeout:
      return "shutdown-timeout";
    case VmAction::kRestore:
      return "restore";
    case VmAction::kReceive:
      return "receive";
    case VmAction::kReceived:
      return "received";
    case VmAction::kReceiveFailed:
      return "receive-failed";
    case VmAction::kMigrated:
      return "migrated";
  }
  return "unknown";
}

VmState Lifecycle::state() const {
  std::lock_guard lock(mutex_);
  return state_;
}

namespace {

Error refusal(VmAction action, VmState from) {
  return Error(ErrorCode::kState, "cannot " + std::string(to_string(action)) + ": the VM is " +
                                      std::string(to_string(from)));
}

}  // namespace

Result<VmState> Lifecycle::allowed(VmAction action) const {
  std::lock_guard lock(mutex_);
  if (auto to = next_vm_state(state_, action)) {
    return *to;
  }
  return refusal(action, state_);
}

Result<VmTransition> Lifecycle::apply(VmAction action) {
  std::lock_guard lock(mutex_);
  const VmState from = state_;
  const std::optional<VmState> to = next_vm_state(from, action);
  if (!to) {
    return refusal(action, from);
  }
  state_ = *to;
  return VmTransition{from, action, *to};
}

}  // namespace petrel
