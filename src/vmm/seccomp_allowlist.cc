#include "vmm/seccomp_allowlist.h"

#include <sys/mman.h>
#include <sys/socket.h>

#include <array>

namespace petrel {

namespace {

// Why each group is there: docs/security.md (keep the two in step).

// Every filtered thread: logging (spdlog: write, futex for its mutex, the clock), malloc
// (brk, mmap, munmap, mremap, madvise), signals (the vCPU kick and SIGSYS handlers return
// through rt_sigreturn; abort() and sanitizers use tgkill/sigaltstack), waiting on mutexes
// and condition variables, posting work to an Asio io_context from any thread (its reactor is
// woken with epoll_ctl(EPOLL_CTL_MOD) and re-armed with timerfd_settime), and ending the
// thread or the process.
constexpr std::array<std::string_view, 28> kCommon{
    "read",
    "write",
    "writev",
    "close",
    "futex",
    "sched_yield",
    "clock_gettime",
    "clock_nanosleep",
    "nanosleep",
    "gettimeofday",
    "getpid",
    "gettid",
    "tgkill",
    "rt_sigreturn",
    "rt_sigprocmask",
    "rt_sigaction",
    "sigaltstack",
    "restart_syscall",
    "brk",
    "munmap",
    "mremap",
    "madvise",
    "exit",
    "exit_group",
    "sched_getaffinity",
    "getrandom",
    "epoll_ctl",
    "timerfd_settime",
};

// vCPU threads: KVM_RUN and the other vCPU/VM ioctls device emulation makes on the exit path
// (register reads for reports, KVM_IRQ_LINE, GSI routing and ioeventfds when the guest
// programs MSI-X or moves a BAR), eventfd signals (write, in kCommon), the thread CPU clock.
constexpr std::array<std::string_view, 2> kVcpu{"ioctl", "clock_getres"};

// The event-loop thread: Asio's reactor (epoll, eventfd, timerfd), the console socket
// (accept, send/receive, non-blocking ioctl/fcntl; when it closes, lstat (newfstatat) to
// check the path is still its socket, then unlink), disk backends
// (positional reads and writes, flushes, hole punching, io_uring), TAP I/O and offload
// ioctls, the balloon's discards (madvise, MAP_FIXED anonymous mmap: in the mmap rule).
constexpr std::array<std::string_view, 39> kEventLoop{
    "ioctl",         "fcntl",          "epoll_wait",     "epoll_pwait",     "epoll_ctl",
    "epoll_create1", "eventfd2",       "timerfd_create", "timerfd_settime", "timerfd_gettime",
    "poll",          "ppoll",          "accept",         "accept4",         "recvfrom",
    "recvmsg",       "sendto",         "sendmsg",        "shutdown",        "getsockopt",
    "setsockopt",    "readv",          "pread64",        "pwrite64",        "preadv",
    "pwritev",       "preadv2",        "pwritev2",       "fsync",           "fdatasync",
    "fallocate",     "io_uring_enter", "unlink",         "unlinkat",        "dup",
    "pipe2",         "clock_getres",   "newfstatat",     "lstat",
};

// The control thread and migration threads, on top of the two lists above: the API's Unix
// socket and migrations' sockets (socket, bind, listen, connect, ...), snapshot files and
// directories (open, stat, truncate, sync, rename, mkdir, ...), building a VM for a restore
// or a received migration (/dev/kvm, images, TAPs, memfd, io_uring, flock), starting
// threads (clone3, and for each new vCPU or loop thread prctl + seccomp to load its filter).
constexpr std::array<std::string_view, 64> kControl{
    "socket",
    "socketpair",
    "bind",
    "listen",
    "connect",
    "getsockname",
    "getpeername",
    "open",
    "openat",
    "creat",
    "stat",
    "fstat",
    "lstat",
    "newfstatat",
    "statx",
    "statfs",
    "fstatfs",
    "lseek",
    "ftruncate",
    "fsync",
    "fdatasync",
    "fallocate",
    "rename",
    "renameat",
    "renameat2",
    "mkdir",
    "mkdirat",
    "rmdir",
    "getdents64",
    "readlink",
    "readlinkat",
    "access",
    "faccessat",
    "faccessat2",
    "chmod",
    "fchmod",
    "fchmodat",
    "umask",
    "getcwd",
    "flock",
    "dup3",
    "memfd_create",
    "io_uring_setup",
    "io_uring_register",
    "clone",
    "clone3",
    "set_robust_list",
    "rseq",
    "prctl",
    "seccomp",
    "uname",
    "getuid",
    "geteuid",
    "getgid",
    "getegid",
    "sysinfo",
    "sendfile",
    "copy_file_range",
    "mincore",
    "getrusage",
    "prlimit64",
    // --user (privileges.h): glibc makes every thread that exists when petrel drops root run
    // these itself (its set*id broadcast); the control thread and migration threads exist
    // then. Once the ids are dropped no capability is left to use them again.
    "setresuid",
    "setresgid",
    "setgroups",
};

void add(std::vector<AllowedSyscall>& out, std::span<const std::string_view> names) {
  for (std::string_view name : names) {
    out.push_back({name, std::nullopt});
  }
}

}  // namespace

std::string_view to_string(ThreadKind kind) {
  switch (kind) {
    case ThreadKind::kVcpu:
      return "vcpu";
    case ThreadKind::kEventLoop:
      return "loop";
    case ThreadKind::kControl:
      return "control";
  }
  return "unknown";
}

std::optional<ThreadKind> parse_thread_kind(std::string_view name) {
  for (ThreadKind kind : kThreadKinds) {
    if (to_string(kind) == name) {
      return kind;
    }
  }
  return std::nullopt;
}

std::vector<AllowedSyscall> seccomp_allowlist(ThreadKind kind) {
  std::vector<AllowedSyscall> out;
  add(out, kCommon);
  // vCPU and event-loop threads never map executable memory; the control thread may (a
  // migration's name lookup can load an NSS module), so mmap/mprotect are free there.
  const ArgCheck no_exec{2, PROT_EXEC, 0};
  switch (kind) {
    case ThreadKind::kVcpu:
      add(out, kVcpu);
      out.push_back({"mmap", no_exec});
      out.push_back({"mprotect", no_exec});
      break;
    case ThreadKind::kEventLoop:
      add(out, kEventLoop);
      out.push_back({"mmap", no_exec});
      out.push_back({"mprotect", no_exec});
      break;
    case ThreadKind::kControl:
      add(out, kVcpu);
      add(out, kEventLoop);
      add(out, kControl);
      out.push_back({"mmap", std::nullopt});
      out.push_back({"mprotect", std::nullopt});
      break;
  }
  return out;
}

}  // namespace petrel
