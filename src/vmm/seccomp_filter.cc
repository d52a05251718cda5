#include "vmm/seccomp_filter.h"

#include <linux/seccomp.h>
#include <pthread.h>
#include <seccomp.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <mutex>
#include <set>
#include <string>

#include <fmt/format.h>

#include "vmm/base/unique_fd.h"

namespace petrel {

namespace {

// Syscall names for the SIGSYS handler. Written once by publish_seccomp_syscall_names() on
// the main thread before any filter is installed (so before any SIGSYS can come from one),
// read-only afterwards: the handler may read it without synchronisation.
constexpr size_t kNameTableSize = 512;
constexpr size_t kNameLength = 32;
char g_syscall_names[kNameTableSize][kNameLength];
std::atomic<bool> g_names_published{false};

// The kind of filter the calling thread loaded (-1: none of its own; a migration thread runs
// under the control filter it inherited). A plain int: read by the SIGSYS handler.
thread_local int t_thread_kind = -1;

// Async-signal-safe helpers for the handler: no allocation, no locale, write(2) only.
size_t append(char* buf, size_t at, size_t cap, const char* text) {
  while (*text != '\0' && at + 1 < cap) {
    buf[at++] = *text++;
  }
  return at;
}

size_t append_number(char* buf, size_t at, size_t cap, long value) {
  char digits[24];
  size_t n = 0;
  unsigned long v = value < 0 ? 0UL - static_cast<unsigned long>(value) : value;
  do {
    digits[n++] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v != 0 && n < sizeof(digits));
  if (value < 0 && at + 1 < cap) {
    buf[at++] = '-';
  }
  while (n > 0 && at + 1 < cap) {
    buf[at++] = digits[--n];
  }
  return at;
}

// SIGSYS from a trapping filter: report and end the process. Async-signal-safe (write(2),
// _exit(2), reads of the published table and the thread-local kind; both calls are on every
// list).
void sigsys_handler(int, siginfo_t* info, void*) {
  char line[256];
  size_t at = append(line, 0, sizeof(line), "petrel: seccomp: the ");
  const int kind = t_thread_kind;
  if (kind >= 0 && static_cast<size_t>(kind) < std::size(kThreadKinds)) {
    const std::string_view name = to_string(static_cast<ThreadKind>(kind));
    for (char c : name) {  // a literal: always NUL-free and short
      if (at + 1 < sizeof(line)) {
        line[at++] = c;
      }
    }
    at = append(line, at, sizeof(line), " thread");
  } else {
    at = append(line, at, sizeof(line), "thread without its own filter (migration)");
  }
  const long nr = info != nullptr ? info->si_syscall : -1;
  at = append(line, at, sizeof(line), " made a denied system call ");
  at = append_number(line, at, sizeof(line), nr);
  at = append(line, at, sizeof(line), " (");
  at = append(line, at, sizeof(line), seccomp_syscall_name(nr));
  at = append(line, at, sizeof(line), "); stopping\n");
  ssize_t ignored = ::write(STDERR_FILENO, line, at);
  (void)ignored;
  ::_exit(kSeccompExitStatus);
}

Error seccomp_error(std::string what, int rc) {
  return Error(ErrorCode::kInternal, fmt::format("seccomp: {}: {}", what, std::strerror(-rc)), -rc);
}

// Compiles the filter of `kind` with `default_action` and returns its BPF program.
Result<std::vector<sock_filter>> compile(ThreadKind kind, uint32_t default_action) {
  scmp_filter_ctx ctx = seccomp_init(default_action);
  if (ctx == nullptr) {
    return Error(ErrorCode::kInternal, "seccomp: seccomp_init failed");
  }
  std::unique_ptr<void, void (*)(void*)> guard(ctx, [](void* c) { seccomp_release(c); });
  // Calls of another architecture (int 0x80, x32) get the same treatment as unlisted ones.
  if (int rc = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, default_action); rc < 0) {
    return seccomp_error("setting the bad-architecture action", rc);
  }
  std::set<std::string_view> unconditional;
  for (const AllowedSyscall& allowed : seccomp_allowlist(kind)) {
    const std::string name(allowed.name);
    const int nr = seccomp_syscall_resolve_name(name.c_str());
    if (nr == __NR_SCMP_ERROR) {
      return Error(ErrorCode::kInternal,
                   fmt::format("seccomp: the {} list names an unknown system call '{}'",
                               to_string(kind), name));
    }
    int rc = 0;
    if (allowed.arg) {
      const ArgCheck& a = *allowed.arg;
      rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 1,
                            SCMP_CMP(a.index, SCMP_CMP_MASKED_EQ, a.mask, a.value));
    } else if (unconditional.insert(allowed.name).second) {
      rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0);
    }
    if (rc < 0) {
      return seccomp_error(fmt::format("allowing {} on the {} list", name, to_string(kind)), rc);
    }
  }
  // libseccomp 2.5 exports only to a file descriptor: go through a memfd.
  UniqueFd fd(::memfd_create("petrel-seccomp", MFD_CLOEXEC));
  if (!fd.valid()) {
    return Error::from_errno("seccomp: memfd_create", errno);
  }
  if (int rc = seccomp_export_bpf(ctx, fd.get()); rc < 0) {
    return seccomp_error("exporting the BPF program", rc);
  }
  const off_t size = ::lseek(fd.get(), 0, SEEK_CUR);
  if (size <= 0 || size % sizeof(sock_filter) != 0) {
    return Error(ErrorCode::kInternal, "seccomp: the exported BPF program has a bad size");
  }
  std::vector<sock_filter> program(static_cast<size_t>(size) / sizeof(sock_filter));
  if (::pread(fd.get(), program.data(), static_cast<size_t>(size), 0) != size) {
    return Error::from_errno("seccomp: reading the BPF program back", errno);
  }
  return program;
}

}  // namespace

void publish_seccomp_syscall_names() {
  static std::once_flag once;
  std::call_once(once, [] {
    for (size_t nr = 0; nr < kNameTableSize; ++nr) {
      char* name = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, static_cast<int>(nr));
      if (name != nullptr) {
        std::strncpy(g_syscall_names[nr], name, kNameLength - 1);
        std::free(name);
      }
    }
    g_names_published.store(true, std::memory_order_release);
  });
}

const char* seccomp_syscall_name(long nr) {
  if (!g_names_published.load(std::memory_order_acquire) || nr < 0 ||
      static_cast<size_t>(nr) >= kNameTableSize || g_syscall_names[nr][0] == '\0') {
    return "?";
  }
  return g_syscall_names[nr];
}

Result<std::unique_ptr<SeccompFilters>> SeccompFilters::create(SeccompMode mode) {
  std::optional<ThreadKind> probe;
  if (const char* env = std::getenv("PETREL_SECCOMP_PROBE"); env != nullptr) {
    probe = parse_thread_kind(env);
  }
  std::unique_ptr<SeccompFilters> filters(new SeccompFilters(mode, probe));
  if (mode == SeccompMode::kOff) {
    return filters;
  }
  if (::prctl(PR_GET_SECCOMP, 0, 0, 0, 0) < 0) {
    return Error(ErrorCode::kUnsupported,
                 "seccomp: the kernel has no seccomp support; run with --seccomp off");
  }
  uint32_t action = SCMP_ACT_TRAP;
  if (mode == SeccompMode::kLog) {
    if (seccomp_api_get() < 3) {
      return Error(ErrorCode::kUnsupported,
                   "seccomp: this kernel or libseccomp cannot log (SCMP_ACT_LOG); use on or off");
    }
    action = SCMP_ACT_LOG;
  }
  publish_seccomp_syscall_names();
  // The first localtime_r (a log line's time stamp) reads /etc/localtime: do it here, so a
  // filtered thread that logs first does not open a file.
  ::tzset();
  for (ThreadKind kind : kThreadKinds) {
    PETREL_TRY_ASSIGN(filters->programs_[static_cast<size_t>(kind)], compile(kind, action));
  }
  if (mode == SeccompMode::kOn) {
    struct sigaction sa {};
    sa.sa_sigaction = sigsys_handler;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    if (::sigaction(SIGSYS, &sa, nullptr) != 0) {
      return Error::from_errno("seccomp: installing the SIGSYS handler", errno);
    }
  }
  return filters;
}

Result<void> SeccompFilters::install(ThreadKind kind) const {
  if (mode_ == SeccompMode::kOff) {
    return ok();
  }
  const std::string thread_name = fmt::format("petrel-{}", to_string(kind));
  ::pthread_setname_np(::pthread_self(), thread_name.c_str());
  // Filters need no_new_privs (or CAP_SYS_ADMIN); it is per thread and inherited.
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
    return Error::from_errno("seccomp: PR_SET_NO_NEW_PRIVS", errno);
  }
  const auto& program = programs_[static_cast<size_t>(kind)];
  sock_fprog fprog{static_cast<unsigned short>(program.size()),
                   const_cast<sock_filter*>(program.data())};
  t_thread_kind = static_cast<int>(kind);
  if (::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &fprog) != 0) {
    const int err = errno;
    t_thread_kind = -1;
    return Error::from_errno(fmt::format("seccomp: loading the {} filter", to_string(kind)), err);
  }
  if (probe_ == kind) {
    // The test hook (header comment): a call no list allows.
    ::syscall(SYS_mount, nullptr, nullptr, nullptr, 0, nullptr);
  }
  return ok();
}

}  // namespace petrel
