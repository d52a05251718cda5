// End-to-end virtio: the test guests' own drivers (tests/guest/kit/virtio.c) drive petrel's
// virtio-blk, virtio-net and virtio-rng devices over virtio-MMIO and virtio-PCI, booted
// through the real `petrel run` binary; the host side is checked too (the disk file holds
// what the guest wrote, the TAP in a private network namespace saw the guest's frames).
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "netns.h"
#include "petrel_process.h"
#include "scratch_dir.h"

using Catch::Matchers::Contains;
using petrel::test::guest_image;
using petrel::test::petrel_binary;
using petrel::test::run_process;
using petrel::test::ScratchDir;
using petrel::test::skip;

namespace {

constexpr uint64_t kSector = 512;
constexpr uint64_t kDiskSectors = 2048;  // a 1 MiB disk
constexpr const char* kSerial = "petrel-test-disk";

// A private temporary directory, removed with its contents.

// Byte i of sector s as tests/guest/virtio_blk.c writes it.
uint8_t pattern(uint64_t sector, uint64_t i) {
  return static_cast<uint8_t>((sector * 157 + i * 59 + 23) ^ (i >> 8));
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  REQUIRE(out.good());
}

// A disk image of kDiskSectors sectors: the pattern in sectors [0, patterned), zeros after.
std::string make_disk(const std::string& path, uint64_t patterned) {
  std::string bytes(kDiskSectors * kSector, '\0');
  for (uint64_t s = 0; s < patterned; ++s) {
    for (uint64_t i = 0; i < kSector; ++i) {
      bytes[s * kSector + i] = static_cast<char>(pattern(s, i));
    }
  }
  write_file(path, bytes);
  return bytes;
}

// The first sector in [first, first + count) that does (want_pattern) or does not hold the
// pattern / zeros, or -1.
int64_t first_bad_sector(const std::string& disk, uint64_t first, uint64_t count,
                         bool want_pattern) {
  for (uint64_t s = first; s < first + count; ++s) {
    for (uint64_t i = 0; i < kSector; ++i) {
      auto want = want_pattern ? pattern(s, i) : uint8_t{0};
      if (static_cast<uint8_t>(disk[s * kSector + i]) != want) {
        return static_cast<int64_t>(s);
      }
    }
  }
  return -1;
}

petrel::test::ProcessResult run_guest(const std::string& guest,
                                      const std::vector<std::string>& extra) {
  std::vector<std::string> args{"run", "--kernel", guest_image(guest)};
  args.insert(args.end(), extra.begin(), extra.end());
  auto r = run_process(petrel_binary(), args);
  INFO("stdout:\n" << r.out << "\nstderr:\n" << r.err);
  REQUIRE_FALSE(r.timed_out);
  return r;
}

// After virtio_blk's read-write mode on a zeroed disk: the pattern in sectors 0-11 and the
// last one, zeros elsewhere.
void check_disk_written(const std::string& disk) {
  std::string after = read_file(disk);
  REQUIRE(after.size() == kDiskSectors * kSector);
  CHECK(first_bad_sector(after, 0, 12, true) == -1);
  CHECK(first_bad_sector(after, kDiskSectors - 1, 1, true) == -1);
  CHECK(first_bad_sector(after, 12, kDiskSectors - 13, false) == -1);
}

// virtio_blk in read-write mode on a fresh disk; then the file must hold the pattern in
// sectors 0-11 and the last one, and zeros elsewhere. Returns petrel's log.
std::string blk_read_write(const std::string& transport,
                           const std::vector<std::string>& extra = {}) {
  ScratchDir dir;
  std::string disk = dir.path + "/disk.img";
  make_disk(disk, 0);
  std::vector<std::string> args{"--disk",
                                "path=" + disk + ",serial=" + kSerial + ",transport=" + transport,
                                "--cmdline", "transport=" + transport + " serial=" + kSerial};
  args.insert(args.end(), extra.begin(), extra.end());
  auto r = run_guest("virtio_blk", args);
  INFO("stdout:\n" << r.out << "\nstderr:\n" << r.err);
  CHECK(r.exit_code == 0);
  CHECK_THAT(r.out, Contains("virtio_blk ok transport=" + transport +
                             " capacity=2048 serial=" + kSerial + "\n"));
  CHECK_THAT(r.out, Contains("virtio_blk flushed"));
  check_disk_written(disk);
  return r.err;
}

// virtio_blk in read-only mode: the pattern is already there, writes fail, the file stays
// as it was.
void blk_read_only(const std::string& transport) {
  ScratchDir dir;
  std::string disk = dir.path + "/disk.img";
  std::string before = make_disk(disk, 8);
  auto r =
      run_guest("virtio_blk", {"--disk", "path=" + disk + ",readonly=on,transport=" + transport,
                               "--cmdline", "mode=readonly transport=" + transport});
  INFO("stdout:\n" << r.out << "\nstderr:\n" << r.err);
  CHECK(r.exit_code == 0);
  CHECK_THAT(r.out, Contains("virtio_blk readonly ok"));
  CHECK_THAT(r.out, Contains("virtio_blk ok transport=" + transport + " capacity=2048"));
  CHECK(read_file(disk) == before);
}

void rng(const std::string& transport, const std::vector<std::string>& device_args) {
  std::vector<std::string> args = device_args;
  args.insert(args.end(), {"--cmdline", "transport=" + transport});
  auto r = run_guest("virtio_rng", args);
  INFO("stdout:\n" << r.out << "\nstderr:\n" << r.err);
  CHECK(r.exit_code == 0);
  CHECK_THAT(r.out, Contains("virtio_rng ok transport=" + transport + " bytes=128"));
}

// virtio_net against the host kernel behind a TAP in a fresh network namespace.
void net(const std::string& transport) {
  if (auto why = petrel::test::netns_unavailable()) {
    skip(*why);
  }
  const std::string mac = "52:54:00:12:34:56";
  petrel::test::NetNamespace ns("petrel-t" + std::to_string(::getpid()), "pt0", "10.0.2.1/24");
  auto before = ns.tap_counters();
  petrel::test::RunOptions options;
  options.timeout = std::chrono::seconds(90);
  auto r = ns.run(petrel_binary(),
                  {"run", "--kernel", guest_image("virtio_net"), "--net",
                   "tap=" + ns.tap() + ",mac=" + mac + ",transport=" + transport, "--cmdline",
                   "transport=" + transport + " pings=4"},
                  options);
  INFO("stdout:\n" << r.out << "\nstderr:\n" << r.err);
  REQUIRE_FALSE(r.timed_out);
  CHECK(r.exit_code == 0);
  CHECK_THAT(r.out,
             Contains("virtio_net ok transport=" + transport + " mac=" + mac + " replies=4\n"));
  auto after = ns.tap_counters();
  INFO("TAP rx " << before.rx_packets << " -> " << after.rx_packets << ", tx " << before.tx_packets
                 << " -> " << after.tx_packets);
  // At least the ARP request and the 4 echo requests came from the guest, and the ARP reply
  // and 4 echo replies went to it.
  CHECK(after.rx_packets - before.rx_packets >= 5);
  CHECK(after.tx_packets - before.tx_packets >= 5);
}

// virtio_evil: broken chains must set DEVICE_NEEDS_RESET, and the device must work again
// after a reset.
void evil(const std::string& device, const std::string& transport) {
  ScratchDir dir;
  std::vector<std::string> args;
  if (device == "blk") {
    std::string disk = dir.path + "/disk.img";
    make_disk(disk, 1);
    args = {"--disk", "path=" + disk + ",transport=" + transport};
  } else {
    args = {"--rng", "transport=" + transport};
  }
  args.insert(args.end(), {"--cmdline", "device=" + device + " transport=" + transport});
  auto r = run_guest("virtio_evil", args);
  INFO("stdout:\n" << r.out << "\nstderr:\n" << r.err);
  CHECK(r.exit_code == 0);
  CHECK_THAT(r.out,
             Contains("virtio_evil ok transport=" + transport + " device=" + device + " cases=5"));
}

// virtio_blk writes and FLUSHes, then halts; petrel is killed with SIGKILL right after the
// guest saw the flush complete. What the guest wrote before the flush must be in the file.
void blk_flush_then_kill(const std::string& engine) {
  ScratchDir dir;
  std::string disk = dir.path + "/disk.img";
  make_disk(disk, 0);
  petrel::test::RunOptions options;
  options.signal_after = "virtio_blk flushed";
  options.signal = SIGKILL;
  auto r = run_process(petrel_binary(),
                       {"run", "--kernel", guest_image("virtio_blk"), "--disk",
                        "path=" + disk + ",engine=" + engine, "--cmdline", "mode=flushwait"},
                       options);
  INFO("stdout:\n" << r.out << "\nstderr:\n" << r.err);
  REQUIRE_FALSE(r.timed_out);
  REQUIRE_THAT(r.out, Contains("virtio_blk flushed"));
  CHECK(r.term_signal == SIGKILL);
  std::string after = read_file(disk);
  REQUIRE(after.size() == kDiskSectors * kSector);
  CHECK(first_bad_sector(after, 0, 12, true) == -1);
  CHECK(first_bad_sector(after, kDiskSectors - 1, 1, true) == -1);
}

// Two disks (one per transport) and the guest drives the second: only its file changes.
void blk_second_disk() {
  ScratchDir dir;
  std::string first = dir.path + "/first.img";
  std::string second = dir.path + "/second.img";
  make_disk(first, 0);
  make_disk(second, 0);
  std::string untouched = read_file(first);
  auto r = run_guest("virtio_blk",
                     {"--disk", "path=" + first + ",transport=mmio", "--disk",
                      "path=" + second + ",serial=" + kSerial + ",transport=pci", "--cmdline",
                      std::string("index=1 transport=pci serial=") + kSerial});
  INFO("stdout:\n" << r.out << "\nstderr:\n" << r.err);
  CHECK(r.exit_code == 0);
  CHECK_THAT(r.out, Contains("virtio_blk ok transport=pci"));
  check_disk_written(second);
  CHECK(read_file(first) == untouched);
}

// Queue notifications must reach the device through KVM's ioeventfd, not through a VM exit
// the transport has to handle (petrel logs the first such exit at debug level).
void kicks_use_ioeventfd(const std::string& transport) {
  ScratchDir dir;
  std::string disk = dir.path + "/disk.img";
  make_disk(disk, 0);
  auto r = run_guest("virtio_blk",
                     {"--log-level", "debug", "--disk", "path=" + disk + ",transport=" + transport,
                      "--rng", "transport=" + transport, "--cmdline", "transport=" + transport});
  INFO("stdout:\n" << r.out << "\nstderr:\n" << r.err);
  CHECK(r.exit_code == 0);
  CHECK_THAT(r.out, Contains("virtio_blk ok"));
  CHECK_THAT(r.err, !Contains("notified through a VM exit"));
}

}  // namespace

TEST_CASE("virtio over MMIO: queue kicks arrive by ioeventfd", "[virtio]") {
  kicks_use_ioeventfd("mmio");
}

TEST_CASE("virtio over PCI: queue kicks arrive by ioeventfd", "[virtio]") {
  kicks_use_ioeventfd("pci");
}

TEST_CASE("virtio-blk: two disks, the guest writes only the second", "[virtio]") {
  blk_second_disk();
}

TEST_CASE("virtio-blk: a flushed write survives SIGKILL of petrel (io_uring)", "[virtio]") {
  blk_flush_then_kill("uring");
}

TEST_CASE("virtio-blk: a flushed write survives SIGKILL of petrel (sync engine)", "[virtio]") {
  blk_flush_then_kill("sync");
}

TEST_CASE("virtio-blk over MMIO: the guest's writes reach the file", "[virtio]") {
  blk_read_write("mmio");
}

TEST_CASE("virtio-blk over PCI: the guest's writes reach the file", "[virtio]") {
  blk_read_write("pci");
}

TEST_CASE("virtio devices from a JSON config use its default transport", "[virtio]") {
  ScratchDir dir;
  std::string disk = dir.path + "/disk.img";
  make_disk(disk, 0);
  {
    std::ofstream cfg(dir.path + "/vm.json");
    cfg << nlohmann::json{{"kernel", guest_image("virtio_blk")},
                          {"cmdline", "transport=pci serial=json-disk"},
                          {"disks", nlohmann::json::array(
                                        {nlohmann::json{{"path", disk}, {"serial", "json-disk"}}})},
                          {"rng", true},
                          {"virtio_transport", "pci"}}
               .dump();
  }
  auto r = run_process(petrel_binary(), {"run", "--config", dir.path + "/vm.json"});
  INFO("stdout:\n" << r.out << "\nstderr:\n" << r.err);
  REQUIRE_FALSE(r.timed_out);
  CHECK(r.exit_code == 0);
  CHECK_THAT(r.out, Contains("virtio_blk ok transport=pci capacity=2048 serial=json-disk\n"));
  check_disk_written(disk);
}

TEST_CASE("virtio-blk over MMIO works in forced PVM emulated mode", "[virtio][pvm]") {
  CHECK_THAT(blk_read_write("mmio", {"--pvm-mode", "emulated"}), Contains("PVM emulated mode"));
}

TEST_CASE("virtio-blk over MMIO: a read-only disk refuses writes", "[virtio]") {
  blk_read_only("mmio");
}

TEST_CASE("virtio-blk over PCI: a read-only disk refuses writes", "[virtio]") {
  blk_read_only("pci");
}

TEST_CASE("virtio-rng over MMIO gives entropy", "[virtio]") {
  rng("mmio", {"--rng"});
}

TEST_CASE("virtio-rng over PCI gives entropy", "[virtio]") {
  // Through the default transport rather than the device's own option.
  rng("pci", {"--virtio-transport", "pci", "--rng"});
}

TEST_CASE("virtio-net over MMIO: ARP and ping through a TAP", "[virtio][net]") {
  net("mmio");
}

TEST_CASE("virtio-net over PCI: ARP and ping through a TAP", "[virtio][net]") {
  net("pci");
}

TEST_CASE("virtio-rng over MMIO: broken descriptor chains set DEVICE_NEEDS_RESET",
          "[virtio][hostile]") {
  evil("rng", "mmio");
}

TEST_CASE("virtio-rng over PCI: broken descriptor chains set DEVICE_NEEDS_RESET",
          "[virtio][hostile]") {
  evil("rng", "pci");
}

TEST_CASE("virtio-blk over MMIO: broken descriptor chains set DEVICE_NEEDS_RESET",
          "[virtio][hostile]") {
  evil("blk", "mmio");
}

TEST_CASE("virtio-blk over PCI: broken descriptor chains set DEVICE_NEEDS_RESET",
          "[virtio][hostile]") {
  evil("blk", "pci");
}
