// Linux guests booted through the real petrel binary: the project's own minimal kernel
// (scripts/build-guest-kernel.sh, scripts/build-initramfs.sh) and Debian's stock cloud
// kernel (scripts/prepare-stock-kernel.sh). Images come from PETREL_GUEST_CACHE; a missing
// image fails the test (never a silent pass): scripts/test.sh builds them first.
//
// On a PVM host the kernel runs under KVM's instruction emulator: it reaches "Run /init" in
// about a minute, and user space cannot run at all, so user-space tests are registered with
// --require=hw (they skip here, by name, with the reason).
#include <signal.h>
#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <string>

#include "petrel_process.h"

using Catch::Matchers::Contains;
using petrel::test::petrel_binary;
using petrel::test::run_process;

namespace {

std::string cache_file(const std::string& rel) {
  const char* dir = std::getenv("PETREL_GUEST_CACHE");
  REQUIRE(dir != nullptr);
  std::string path = std::string(dir) + "/" + rel;
  struct stat st {};
  INFO("missing " << path << ": run scripts/build-guest-kernel.sh and scripts/build-initramfs.sh");
  REQUIRE(::stat(path.c_str(), &st) == 0);
  return path;
}

// Boots until the kernel logs `stop_at` (then petrel is stopped with SIGTERM) or the guest
// ends by itself.
petrel::test::ProcessResult boot_linux(std::vector<std::string> args, const std::string& stop_at,
                                       std::chrono::seconds timeout = std::chrono::seconds(400)) {
  args.insert(args.begin(), "run");
  petrel::test::RunOptions options;
  options.timeout = timeout;
  options.signal_after = stop_at;
  options.signal = SIGTERM;
  auto r = run_process(petrel_binary(), args, options);
  INFO("console:\n" << r.out << "\npetrel log:\n" << r.err);
  REQUIRE_FALSE(r.timed_out);
  return r;
}

constexpr const char* kConsole = "console=ttyS0 ";
// The last kernel line before user space; the test stops petrel once it has arrived whole.
constexpr const char* kRunInit = "Run /init as init process";
// Kernel-space tests use the tiny uncompressed initramfs: unpacking the busybox one takes
// over a minute under PVM's instruction emulator.
constexpr const char* kTinyInitrd = "initramfs-tiny.cpio";

}  // namespace

TEST_CASE("vmlinux boots via PVH with a command line and an initrd to Run /init", "[linux]") {
  auto r = boot_linux(
      {"--kernel", cache_file("linux/vmlinux"), "--initrd", cache_file(kTinyInitrd), "--memory",
       "256M", "--cmdline", std::string(kConsole) + "petrel.test=cmdline-marker"},
      kRunInit);
  CHECK_THAT(r.err, Contains("PVH"));
  CHECK_THAT(r.out, Contains("petrel.test=cmdline-marker"));
  CHECK_THAT(r.out, Contains("Command line: console=ttyS0"));
  CHECK_THAT(r.out, Contains("RAMDISK: [mem "));
  CHECK_THAT(r.out, Contains("Freeing initrd memory"));
  CHECK_THAT(r.out, Contains(kRunInit));
}

TEST_CASE("vmlinux boots with 2 vCPUs", "[linux]") {
  auto r = boot_linux({"--kernel", cache_file("linux/vmlinux"), "--initrd", cache_file(kTinyInitrd),
                       "--vcpus", "2", "--cmdline", kConsole},
                      kRunInit);
  CHECK_THAT(r.out, Contains("smp: Brought up 1 node, 2 CPUs"));
  CHECK_THAT(r.out, Contains(kRunInit));
}

TEST_CASE("vmlinux boots with more than 4 GiB of memory", "[linux]") {
  // Under PVM's emulator the kernel spends about 45 s per GiB initialising struct pages.
  auto r = boot_linux({"--kernel", cache_file("linux/vmlinux"), "--initrd", cache_file(kTinyInitrd),
                       "--memory", "4608M", "--cmdline", kConsole},
                      kRunInit, std::chrono::seconds(1100));
  // The e820 map the kernel prints includes the RAM that continues at 4 GiB.
  CHECK_THAT(r.out, Contains("[mem 0x0000000100000000-0x000000015fffffff] usable"));
  CHECK_THAT(r.out, Contains(kRunInit));
}

TEST_CASE("vmlinux boots through the 64-bit entry with boot_params", "[linux]") {
  auto r = boot_linux({"--kernel", cache_file("linux/vmlinux-nopvh"), "--initrd",
                       cache_file(kTinyInitrd), "--cmdline", kConsole},
                      kRunInit);
  CHECK_THAT(r.err, Contains("Linux 64-bit boot protocol"));
  CHECK_THAT(r.out, Contains(kRunInit));
}

TEST_CASE("bzImage boots via the Linux boot protocol to Run /init", "[linux]") {
  auto r = boot_linux({"--kernel", cache_file("linux/bzImage"), "--initrd", cache_file(kTinyInitrd),
                       "--cmdline", kConsole},
                      kRunInit, std::chrono::seconds(900));
  CHECK_THAT(r.err, Contains("Linux 64-bit boot protocol"));
  CHECK_THAT(r.out, Contains(kRunInit));
}

TEST_CASE("the busybox initramfs runs its /init in user space", "[linux][userspace]") {
  auto r = boot_linux({"--kernel", cache_file("linux/vmlinux"), "--initrd",
                       cache_file("initramfs.cpio.gz"), "--vcpus", "2", "--cmdline", kConsole},
                      "PETREL-INIT-OK");
  CHECK_THAT(r.out, Contains("PETREL-INIT-OK"));
}

TEST_CASE("Debian's stock cloud kernel boots and loads its virtio modules", "[linux][userspace]") {
  auto r = boot_linux(
      {"--kernel", cache_file("stock/vmlinuz"), "--initrd", cache_file("stock/initramfs.cpio.gz"),
       "--memory", "512M", "--cmdline", std::string(kConsole) + "nokaslr"},
      "PETREL-STOCK-INIT-OK");
  CHECK_THAT(r.out, Contains("PETREL-STOCK-INIT-OK"));
  CHECK_THAT(r.out, Contains("virtio_pci"));
  CHECK_THAT(r.out, Contains("virtio_blk"));
}
