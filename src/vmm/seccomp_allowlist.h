// The system calls each kind of petrel thread may make once its seccomp filter is installed
// (seccomp_filter.h installs them; docs/security.md explains every entry and how the lists
// were measured). Pure data: no libseccomp here, so the lists can be checked without it.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

namespace petrel {

// The kinds of thread that get a filter of their own. The main thread has none (it rebuilds
// the VM on a reboot: /dev/kvm, images, TAPs), nor do the threads it starts before theirs.
enum class ThreadKind : uint8_t {
  kVcpu,       // Vcpu::start's thread: KVM_RUN and the exits it dispatches
  kEventLoop,  // the Vm's io_context: virtio queues, backends, console, device timers
  kControl,    // VmController's io_context: API, signals, snapshots; starts migration threads
};

inline constexpr ThreadKind kThreadKinds[] = {ThreadKind::kVcpu, ThreadKind::kEventLoop,
                                              ThreadKind::kControl};

// "vcpu", "loop", "control": the names of the log line and of PETREL_SECCOMP_PROBE.
std::string_view to_string(ThreadKind kind);
std::optional<ThreadKind> parse_thread_kind(std::string_view name);

// A condition on one argument: (arg[index] & mask) == value.
struct ArgCheck {
  uint8_t index;
  uint64_t mask;
  uint64_t value;
};

// One allowed call: the syscall's name as libseccomp knows it, and optionally a condition
// on one argument. Several entries with the same name allow the call when any one matches.
struct AllowedSyscall {
  std::string_view name;
  std::optional<ArgCheck> arg;
};

// The allowlist of `kind`. Filters stack: a thread started by a filtered thread keeps its
// parent's filter under its own, so the control list includes the vCPU and event-loop lists
// (the control thread starts VMs restored through the API) and everything a migration
// thread (started there, no filter of its own) needs, building a received VM included.
std::vector<AllowedSyscall> seccomp_allowlist(ThreadKind kind);

}  // namespace petrel
