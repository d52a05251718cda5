// The per-thread seccomp filters (src/vmm/seccomp_filter.h) through the real petrel: a call
// outside a thread's allowlist stops petrel with a line naming the thread and the call, and
// guests that use the vCPU, event-loop and control paths run with every filter on.
#include <stdlib.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "petrel_process.h"
#include "scratch_dir.h"

using Catch::Matchers::Contains;
using petrel::test::guest_image;
using petrel::test::petrel_binary;
using petrel::test::run_process;
using petrel::test::ScratchDir;

namespace {

constexpr int kSeccompExit = 159;  // 128 + SIGSYS

// Sanitizer builds default seccomp to off (docs/security.md); their runtime's calls were
// not measured, so the filters are not tried there.
void skip_under_sanitizers() {
#if defined(__SANITIZE_ADDRESS__)
  petrel::test::skip("an AddressSanitizer build: seccomp is off by default and not measured");
#endif
}

// PETREL_SECCOMP_PROBE for the petrel started while it lives (each meson test is its own
// process, so the environment is this test's alone).
struct ProbeEnv {
  explicit ProbeEnv(const std::string& kind) { ::setenv("PETREL_SECCOMP_PROBE", kind.c_str(), 1); }
  ~ProbeEnv() { ::unsetenv("PETREL_SECCOMP_PROBE"); }
};

petrel::test::ProcessResult run_guest(const std::string& guest,
                                      const std::vector<std::string>& extra) {
  std::vector<std::string> args{"run", "--kernel", guest_image(guest)};
  args.insert(args.end(), extra.begin(), extra.end());
  auto r = run_process(petrel_binary(), args);
  INFO("stdout:\n" << r.out << "\nstderr:\n" << r.err);
  REQUIRE_FALSE(r.timed_out);
  return r;
}

// A thread of `kind` makes a denied call (the probe): petrel reports it and exits 159.
void denied(const std::string& kind, const std::vector<std::string>& extra = {}) {
  skip_under_sanitizers();
  ProbeEnv probe(kind);
  std::vector<std::string> args{"--seccomp", "on"};
  args.insert(args.end(), extra.begin(), extra.end());
  auto r = run_guest("hello", args);
  INFO("stdout:\n" << r.out << "\nstderr:\n" << r.err);
  CHECK(r.exit_code == kSeccompExit);
  CHECK_THAT(r.err, Contains("petrel: seccomp: the " + kind +
                             " thread made a denied system call 165 (mount); stopping\n"));
}

}  // namespace

TEST_CASE("seccomp: a denied call on a vCPU thread stops petrel and names the thread and call",
          "[seccomp]") {
  denied("vcpu");
}

TEST_CASE("seccomp: a denied call on the event-loop thread stops petrel and names it",
          "[seccomp]") {
  denied("loop");
}

TEST_CASE("seccomp: a denied call on the control thread stops petrel and names it", "[seccomp]") {
  denied("control");
}

TEST_CASE("seccomp: in log mode a denied call is let through and the guest runs on", "[seccomp]") {
  skip_under_sanitizers();
  ProbeEnv probe("vcpu");
  auto r = run_guest("hello", {"--seccomp", "log"});
  CHECK(r.exit_code == 0);
  CHECK(r.out == "Hello from petrel guest\n");
  CHECK_THAT(r.err, !Contains("denied"));
}

TEST_CASE("seccomp: off installs no filter and the probe is not made", "[seccomp]") {
  ProbeEnv probe("vcpu");
  auto r = run_guest("hello", {"--seccomp", "off"});
  CHECK(r.exit_code == 0);
  CHECK(r.out == "Hello from petrel guest\n");
}

TEST_CASE("seccomp: guests boot and use their devices with every filter on", "[seccomp]") {
  skip_under_sanitizers();
  SECTION("hello") {
    auto r = run_guest("hello", {"--seccomp", "on"});
    CHECK(r.exit_code == 0);
    CHECK(r.out == "Hello from petrel guest\n");
  }
  SECTION("sysinfo on two vCPUs") {
    auto r = run_guest("sysinfo", {"--seccomp", "on", "--memory", "128M", "--vcpus", "2",
                                   "--cmdline", "expect_mem=134217728"});
    CHECK(r.exit_code == 0);
    CHECK_THAT(r.out, Contains("memcheck ok"));
  }
  SECTION("virtio-rng over PCI") {
    auto r = run_guest("virtio_rng",
                       {"--seccomp", "on", "--rng", "transport=pci", "--cmdline", "transport=pci"});
    CHECK(r.exit_code == 0);
    CHECK_THAT(r.out, Contains("virtio_rng ok transport=pci bytes=128"));
  }
  SECTION("virtio-blk over MMIO, io_uring and sync engines") {
    for (const std::string engine : {"uring", "sync"}) {
      ScratchDir dir;
      const std::string disk = dir.path + "/disk.img";
      std::ofstream(disk).close();
      std::filesystem::resize_file(disk, 2048 * 512);
      auto r =
          run_guest("virtio_blk", {"--seccomp", "on", "--disk",
                                   "path=" + disk + ",serial=sc,transport=mmio,engine=" + engine,
                                   "--cmdline", "transport=mmio serial=sc"});
      CHECK(r.exit_code == 0);
      CHECK_THAT(r.out, Contains("virtio_blk ok transport=mmio capacity=2048 serial=sc\n"));
      CHECK_THAT(r.out, Contains("virtio_blk flushed"));
    }
  }
}
