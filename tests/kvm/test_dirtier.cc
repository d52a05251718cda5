// Dirty memory: the `dirtier` test guest through the real petrel binary (it will be the guest
// of the snapshot and migration tests), and DirtyTracker on the real /dev/kvm without the
// petrel binary (a hand-assembled vCPU loop writes known pages, the VMM writes others).
#include <signal.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <regex>
#include <set>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "petrel_process.h"
#include "vmm/base/guest_memory.h"
#include "vmm/base/kvm_system.h"
#include "vmm/base/kvm_vcpu.h"
#include "vmm/base/kvm_vm.h"
#include "vmm/base/vcpu_exit.h"
#include "vmm/cpuid.h"
#include "vmm/dirty_tracker.h"
#include "vmm/layout.h"
#include "vmm/long_mode.h"
#include "vmm/pvm_host.h"

using Catch::Matchers::Contains;
using petrel::test::guest_image;
using petrel::test::petrel_binary;
using petrel::test::run_process;

namespace {

struct Report {
  uint64_t pass, counter, verified, bad;
};

// Every "dirtier pass=P counter=C verified=N bad=B" line of the console, in order.
std::vector<Report> reports(const std::string& out) {
  static const std::regex line(R"(dirtier pass=(\d+) counter=(\d+) verified=(\d+) bad=(\d+)\n)");
  std::vector<Report> found;
  for (std::sregex_iterator it(out.begin(), out.end(), line), end; it != end; ++it) {
    found.push_back({std::stoull((*it)[1]), std::stoull((*it)[2]), std::stoull((*it)[3]),
                     std::stoull((*it)[4])});
  }
  return found;
}

petrel::test::ProcessResult run_dirtier(const std::string& cmdline,
                                        const petrel::test::RunOptions& options = {}) {
  auto r = run_process(petrel_binary(),
                       {"run", "--kernel", guest_image("dirtier"), "--cmdline", cmdline}, options);
  INFO("stdout:\n" << r.out << "\nstderr:\n" << r.err);
  REQUIRE_FALSE(r.timed_out);
  return r;
}

}  // namespace

TEST_CASE("dirtier: the guest rewrites and verifies its pages until stopped", "[dirty]") {
  constexpr uint64_t kEvery = 2000;
  constexpr uint64_t kReports = 8;  // pass 0 and 7 more: about 2 s natively
  petrel::test::RunOptions options;
  // The signal may cut the line it follows: wait for the start of the one after.
  options.signal_after = "dirtier pass=" + std::to_string(kEvery * kReports) + " ";
  options.signal = SIGTERM;
  auto r = run_dirtier("pages=2048 rate=64 every=" + std::to_string(kEvery), options);
  INFO("stdout:\n" << r.out << "\nstderr:\n" << r.err);
  CHECK(r.exit_code == 128 + SIGTERM);
  CHECK_THAT(r.out, Contains("dirtier ready pages=2048 rate=64 every=2000 base=0x"));
  CHECK_FALSE(Catch::Contains("MISMATCH").match(r.out));
  auto found = reports(r.out);
  REQUIRE(found.size() >= kReports);
  for (size_t i = 0; i < found.size(); ++i) {
    INFO("report " << i);
    CHECK(found[i].pass == i * kEvery);
    CHECK(found[i].counter == found[i].pass * 64);
    CHECK(found[i].verified == 2048);
    CHECK(found[i].bad == 0);
    if (i > 0) {
      CHECK(found[i].counter > found[i - 1].counter);
    }
  }
}

TEST_CASE("dirtier: its checker reports a corrupted and a stale page", "[dirty]") {
  // pages=1000: the broken page is page 500 in both modes.
  auto corrupt = run_dirtier("pages=1000 selftest=corrupt");
  {
    INFO("stdout:\n" << corrupt.out << "\nstderr:\n" << corrupt.err);
    CHECK(corrupt.exit_code == 0x30);
    CHECK_THAT(corrupt.out, Contains("dirtier MISMATCH page=500 gen=0\n"));
    CHECK_THAT(corrupt.out, Contains("dirtier pass=0 counter=0 verified=999 bad=1\n"));
  }
  // A lost write, as a migration that missed a dirty page would leave it: the page is
  // self-consistent but one generation behind the table.
  auto stale = run_dirtier("pages=1000 selftest=stale");
  {
    INFO("stdout:\n" << stale.out << "\nstderr:\n" << stale.err);
    CHECK(stale.exit_code == 0x30);
    CHECK_THAT(stale.out, Contains("dirtier MISMATCH page=500 gen=1\n"));
    CHECK_THAT(stale.out, Contains("verified=999 bad=1\n"));
  }
  auto bad_args = run_dirtier("pages=0");
  CHECK(bad_args.exit_code == 0x31);
}

// ---- DirtyTracker on the real /dev/kvm ----

namespace {

using petrel::GuestAddress;

constexpr GuestAddress kCode{0x100000};
constexpr GuestAddress kSecondRegion{0x1000000};  // 16 MiB
constexpr uint64_t kRegionBytes = 4ull << 20;
// Pages the vCPU writes (region, page within the region) and where.
constexpr uint64_t kVcpuWrites[] = {0x200010, 0x305000, 0x1002008};
constexpr uint8_t kDonePort = 0xf4;

// 64-bit code: a qword store to each of kVcpuWrites, `out kDonePort, al`, then a jump back to
// the start, so every KVM_RUN after the first does the same writes again. With `popcnt` the
// loop starts with `popcnt rax, rax`, which PVM's emulator cannot run (PVM-HOST-NOTES.md):
// reaching the `out` then proves the vCPU ran natively.
std::vector<uint8_t> vcpu_loop(bool popcnt) {
  std::vector<uint8_t> code;
  if (popcnt) {
    code.insert(code.end(), {0xf3, 0x48, 0x0f, 0xb8, 0xc0});
  }
  auto imm = [&](uint64_t v, int bytes) {
    for (int i = 0; i < bytes; ++i) {
      code.push_back(static_cast<uint8_t>(v >> (8 * i)));
    }
  };
  for (uint64_t addr : kVcpuWrites) {
    code.insert(code.end(), {0x48, 0xb8});  // mov rax, imm64
    imm(addr, 8);
    code.insert(code.end(), {0x48, 0xc7, 0x00});  // mov qword [rax], imm32
    imm(0x5a5a0000u + (addr & 0xffff), 4);
  }
  code.insert(code.end(), {0xe6, kDonePort});  // out kDonePort, al
  code.push_back(0xe9);                        // jmp rel32 back to the start
  imm(static_cast<uint32_t>(-static_cast<int32_t>(code.size() + 4)), 4);
  return code;
}

struct TestVm {
  petrel::KvmSystem kvm;
  petrel::KvmVm vm;
  petrel::GuestMemory memory;
  petrel::KvmVcpu vcpu;
};

template <typename T>
T must(petrel::Result<T> r) {
  INFO((r.ok() ? std::string() : r.error().to_string()));
  REQUIRE(r.ok());
  return std::move(r).value();
}

void must(petrel::Result<void> r) {
  INFO((r.ok() ? std::string() : r.error().to_string()));
  REQUIRE(r.ok());
}

// Two RAM regions (slots 0 and 1), 64-bit page tables, the loop at kCode, one vCPU about to
// run it: on a PVM host emulated, or with `pvm_native` natively (user pages and the VIF page).
TestVm make_vm(bool pvm_native) {
  auto kvm = must(petrel::KvmSystem::open());
  auto vm = must(kvm.create_vm());
  must(vm.set_tss_address(petrel::layout::kKvmTss));
  must(vm.set_identity_map_address(petrel::layout::kKvmIdentityMap));
  petrel::GuestRegionSpec specs[] = {{GuestAddress{0}, kRegionBytes},
                                     {kSecondRegion, kRegionBytes}};
  auto memory = must(petrel::GuestMemory::create_anonymous(specs));
  uint32_t slot = 0;
  for (const auto& region : memory.regions()) {
    must(vm.set_memory_region(slot++, region.start(), region.size(), region.host_base()));
  }
  must(petrel::write_long_mode_tables(memory, 1ull << 30, pvm_native));
  auto code = vcpu_loop(pvm_native);
  must(memory.write(kCode, std::as_bytes(std::span(code))));
  auto vcpu = must(vm.create_vcpu(0));
  auto supported = must(kvm.supported_cpuid());
  auto pvm = must(petrel::PvmHost::detect(kvm));
  auto mode = !pvm.is_pvm() ? petrel::ExecMode::kHardware
              : pvm_native  ? petrel::ExecMode::kPvmNative
                            : petrel::ExecMode::kPvmEmulated;
  pvm.adjust_cpuid(supported, mode);
  must(vcpu.set_cpuid(petrel::vcpu_cpuid(supported, 0, 1)));
  if (mode == petrel::ExecMode::kPvmNative) {
    must(pvm.enable_native(vcpu, petrel::layout::kPvmVifPage));
  }
  must(petrel::setup_long_mode_vcpu(vcpu, {kCode, GuestAddress{0}, petrel::layout::kBootStackTop}));
  return TestVm{std::move(kvm), std::move(vm), std::move(memory), std::move(vcpu)};
}

// Runs the vCPU until it reaches `out kDonePort` once.
void run_one_pass(const TestVm& t) {
  for (int i = 0; i < 10; ++i) {
    bool exited = must(t.vcpu.run());
    if (!exited) {
      continue;
    }
    auto exit = petrel::decode_exit(t.vcpu.run_data(), t.vcpu.run_size());
    auto* io = std::get_if<petrel::IoExit>(&exit);
    INFO("exit reason " << petrel::exit_reason_name(t.vcpu.run_data()->exit_reason));
    REQUIRE(io != nullptr);
    REQUIRE(io->port == kDonePort);
    return;
  }
  FAIL("the vCPU did not reach its out instruction");
}

// The dirty pages as guest-physical page addresses.
std::set<uint64_t> dirty_addresses(const std::vector<petrel::RegionDirtyPages>& dirty) {
  std::set<uint64_t> out;
  for (const auto& region : dirty) {
    for (uint64_t page : region.page_indices()) {
      out.insert(region.start.value() + page * 4096);
    }
  }
  return out;
}

// Runs the vCPU loop under a DirtyTracker and checks every round of collect().
void check_tracker(bool pvm_native) {
  TestVm t = make_vm(pvm_native);
  auto tracker = must(petrel::DirtyTracker::start(t.vm, t.memory));

  run_one_pass(t);
  for (uint64_t addr : kVcpuWrites) {  // the vCPU really ran the stores
    CHECK(must(t.memory.read_obj<uint64_t>(GuestAddress{addr})) == 0x5a5a0000u + (addr & 0xffff));
  }
  const uint64_t kVmmWrites[] = {0x250000, kSecondRegion.value() + kRegionBytes - 8};
  for (uint64_t addr : kVmmWrites) {
    must(t.memory.write_obj<uint64_t>(GuestAddress{addr}, 0x1234));
  }

  auto first = must(tracker.collect());
  REQUIRE(first.size() == 2);
  CHECK(first[0].start == GuestAddress{0});
  CHECK(first[1].start == kSecondRegion);
  CHECK(first[0].pages == kRegionBytes / 4096);
  auto dirty = dirty_addresses(first);
  INFO("dirty pages: " << [&] {
    std::string s;
    for (uint64_t a : dirty) {
      s += " " + std::to_string(a / 4096);
    }
    return s;
  }());
  for (uint64_t addr : kVcpuWrites) {
    CHECK(dirty.count(addr & ~0xfffull) == 1);
  }
  for (uint64_t addr : kVmmWrites) {
    CHECK(dirty.count(addr & ~0xfffull) == 1);
  }
  // Besides those, at most the page tables (KVM sets accessed/dirty bits in them).
  CHECK(dirty.size() <= std::size(kVcpuWrites) + std::size(kVmmWrites) + 4);

  // Nothing written since: an empty round.
  auto second = must(tracker.collect());
  CHECK(dirty_addresses(second).empty());

  // KVM write-protects a page again when it reports it: the same stores are logged again.
  run_one_pass(t);
  auto third = dirty_addresses(must(tracker.collect()));
  for (uint64_t addr : kVcpuWrites) {
    CHECK(third.count(addr & ~0xfffull) == 1);
  }
  CHECK(third.count(0x250000) == 0);

  // After stop(): no log in KVM, no VMM-side marks, collect() refused.
  must(tracker.stop());
  CHECK_FALSE(t.memory.dirty_logging());
  auto after = tracker.collect();
  REQUIRE_FALSE(after.ok());
  CHECK(after.error().code() == petrel::ErrorCode::kState);
  std::vector<uint64_t> bitmap(kRegionBytes / 4096 / 64);
  auto not_logging = t.vm.get_dirty_log(0, kRegionBytes / 4096, bitmap);
  REQUIRE_FALSE(not_logging.ok());
  CHECK(not_logging.error().sys_errno() == ENOENT);
  // A bitmap too short for the slot is refused before KVM could write past it.
  std::vector<uint64_t> short_bitmap(1);
  auto too_short = t.vm.get_dirty_log(0, kRegionBytes / 4096, short_bitmap);
  REQUIRE_FALSE(too_short.ok());
  CHECK(too_short.error().code() == petrel::ErrorCode::kInvalidArgument);
}

}  // namespace

TEST_CASE("dirty tracker: vCPU and VMM writes are collected once per round", "[dirty]") {
  check_tracker(false);
}

TEST_CASE("dirty tracker: vCPU writes in PVM native mode are logged", "[dirty]") {
  check_tracker(true);
}
