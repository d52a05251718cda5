// seccomp without /dev/kvm: the --seccomp option and "seccomp" config key, the syscall name
// table, the allowlists' shape, and a filtered child process reporting a denied call.
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "vmm/cli.h"
#include "vmm/seccomp_allowlist.h"
#include "vmm/seccomp_filter.h"
#include "vmm/vm_config.h"

using Catch::Matchers::Contains;
using petrel::SeccompMode;
using petrel::ThreadKind;

namespace {

petrel::Result<petrel::CliCommand> parse(std::vector<std::string_view> args) {
  return petrel::parse_command_line(args);
}

std::set<std::string_view> names(ThreadKind kind) {
  std::set<std::string_view> out;
  for (const auto& allowed : petrel::seccomp_allowlist(kind)) {
    out.insert(allowed.name);
  }
  return out;
}

}  // namespace

TEST_CASE("--seccomp and the seccomp config key take on, off and log", "[seccomp][cli]") {
  CHECK(petrel::VmConfig{}.seccomp == petrel::kDefaultSeccompMode);
  for (auto [text, mode] : {std::pair{"on", SeccompMode::kOn}, std::pair{"off", SeccompMode::kOff},
                            std::pair{"log", SeccompMode::kLog}}) {
    auto json = petrel::parse_config_json(std::string(R"({"seccomp": ")") + text + "\"}");
    REQUIRE(json.ok());
    CHECK(json->seccomp == mode);
    CHECK(petrel::to_string(mode) == text);
    auto serve = parse({"serve", "--api-socket", "/tmp/x.sock", "--seccomp", text});
    REQUIRE(serve.ok());
    CHECK(serve->config.seccomp == mode);
  }
  auto bad = parse({"serve", "--api-socket", "/tmp/x.sock", "--seccomp", "strict"});
  REQUIRE_FALSE(bad.ok());
  CHECK_THAT(bad.error().to_string(), Contains("--seccomp"));
  auto bad_json = petrel::parse_config_json(R"({"seccomp": true})");
  REQUIRE_FALSE(bad_json.ok());
  CHECK_THAT(bad_json.error().to_string(), Contains("seccomp"));

  petrel::VmConfig config;
  config.seccomp = SeccompMode::kLog;
  auto round = petrel::parse_config_json(petrel::config_to_json(config).dump());
  REQUIRE(round.ok());
  CHECK(*round == config);
  CHECK_THAT(petrel::usage_text(), Contains("--seccomp MODE"));
  CHECK_THAT(petrel::usage_text(), Contains("159"));
}

TEST_CASE("the syscall name table the SIGSYS handler reads", "[seccomp]") {
  petrel::publish_seccomp_syscall_names();
  CHECK(std::string(petrel::seccomp_syscall_name(SYS_mount)) == "mount");
  CHECK(std::string(petrel::seccomp_syscall_name(SYS_read)) == "read");
  CHECK(std::string(petrel::seccomp_syscall_name(SYS_ioctl)) == "ioctl");
  CHECK(std::string(petrel::seccomp_syscall_name(-1)) == "?");
  CHECK(std::string(petrel::seccomp_syscall_name(100000)) == "?");
}

TEST_CASE("the allowlists: control covers the threads it starts, none allows the dangerous",
          "[seccomp]") {
  const auto vcpu = names(ThreadKind::kVcpu);
  const auto loop = names(ThreadKind::kEventLoop);
  const auto control = names(ThreadKind::kControl);
  CHECK(std::includes(control.begin(), control.end(), vcpu.begin(), vcpu.end()));
  CHECK(std::includes(control.begin(), control.end(), loop.begin(), loop.end()));
  for (std::string_view never :
       {"execve", "execveat", "mount", "ptrace", "kexec_load", "init_module", "finit_module", "bpf",
        "setuid", "chroot", "process_vm_writev", "acct", "reboot", "swapon"}) {
    INFO(never);
    CHECK_FALSE(control.contains(never));
  }
  for (std::string_view not_vm_thread : {"socket", "connect", "openat", "clone", "clone3",
                                         "seccomp", "prctl", "memfd_create", "io_uring_setup"}) {
    INFO(not_vm_thread);
    CHECK_FALSE(vcpu.contains(not_vm_thread));
    CHECK_FALSE(loop.contains(not_vm_thread));
  }
  // Every name is known to libseccomp: create() compiles all three filters.
  auto filters = petrel::SeccompFilters::create(SeccompMode::kLog);
  REQUIRE(filters.ok());
}

TEST_CASE("a denied call in a filtered process is reported on stderr and exits 159", "[seccomp]") {
  int err_pipe[2];
  REQUIRE(::pipe(err_pipe) == 0);
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    ::dup2(err_pipe[1], STDERR_FILENO);
    auto filters = petrel::SeccompFilters::create(SeccompMode::kOn);
    if (!filters.ok() || !(*filters)->install(ThreadKind::kVcpu).ok()) {
      ::_exit(3);
    }
    ::syscall(SYS_mount, nullptr, nullptr, nullptr, 0, nullptr);
    ::_exit(4);  // not reached: the filter traps mount
  }
  ::close(err_pipe[1]);
  std::string err;
  char buf[256];
  for (ssize_t n; (n = ::read(err_pipe[0], buf, sizeof(buf))) > 0;) {
    err.append(buf, static_cast<size_t>(n));
  }
  ::close(err_pipe[0]);
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == petrel::kSeccompExitStatus);
  CHECK(err ==
        "petrel: seccomp: the vcpu thread made a denied system call 165 (mount); "
        "stopping\n");
}
