// SeccompFilters: one seccomp-BPF filter per thread kind (seccomp_allowlist.h), compiled
// with libseccomp once, loaded by each thread for itself (no TSYNC) after its set-up.
//
// Modes: kOn traps a call outside the list: the SIGSYS handler writes one line,
//   petrel: seccomp: the vcpu thread made a denied system call 165 (mount); stopping
// to stderr and ends the process with kSeccompExitStatus. kLog lets the call through and
// has the kernel log it (SCMP_ACT_LOG: the audit log / dmesg). kOff installs nothing.
//
// Test hook: with PETREL_SECCOMP_PROBE=vcpu|loop|control in the environment, a thread of
// that kind calls mount(2) (on no list; harmless with null arguments) right after loading
// its filter, so tests can watch a denial end to end.
#pragma once

#include <linux/filter.h>

#include <array>
#include <memory>
#include <optional>
#include <string_view>
#include <vector>

#include "vmm/base/result.h"
#include "vmm/seccomp_allowlist.h"
#include "vmm/vm_config.h"

namespace petrel {

// petrel's exit status after a denied call: 128 + SIGSYS.
inline constexpr int kSeccompExitStatus = 159;

class SeccompFilters {
 public:
  // Main thread, before any thread that will install a filter exists: compiles the three
  // filters (unless kOff), publishes the syscall name table and installs the SIGSYS handler
  // (kOn), reads PETREL_SECCOMP_PROBE. Errors: libseccomp or the kernel lacks what the mode
  // needs (kUnsupported), or a listed call is unknown to libseccomp (kInternal).
  static Result<std::unique_ptr<SeccompFilters>> create(SeccompMode mode);

  // The calling thread, once, as the last step of its set-up: names the thread
  // ("petrel-<kind>") and loads the filter of `kind` onto it alone. A no-op in kOff mode.
  // Thread-safe: reads only what create() built.
  Result<void> install(ThreadKind kind) const;

  SeccompMode mode() const { return mode_; }

 private:
  SeccompFilters(SeccompMode mode, std::optional<ThreadKind> probe) : mode_(mode), probe_(probe) {}

  SeccompMode mode_;
  std::optional<ThreadKind> probe_;
  std::array<std::vector<sock_filter>, std::size(kThreadKinds)> programs_;
};

// The name of system call `nr` of this architecture from the table create() published
// ("mount"), or "?" for a number outside it or before create(). Async-signal-safe.
const char* seccomp_syscall_name(long nr);

// Fills the name table (create() does it); idempotent, main thread before filters exist.
void publish_seccomp_syscall_names();

}  // namespace petrel
