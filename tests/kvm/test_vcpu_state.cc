// vCPU and VM-level KVM state (src/vmm/vcpu_state.h, src/vmm/vm_kvm_state.h) on the real
// /dev/kvm, without the petrel binary: a VM built as Vm::create builds one (in-kernel
// irqchip and PIT, TSS, identity map, RAM at 0), one vCPU in 64-bit mode running a few
// instructions, then capture, clobber, restore, and the vCPU goes on where it was. On a PVM
// host the vCPU runs in native mode (VIF page registered), so the VIF MSR is part of the test.
// A KVM call this host refuses fails the test with the ioctl's name and errno.
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include <array>
#include <catch2/catch.hpp>
#include <cstring>
#include <string>
#include <vector>

#include "vmm/base/kvm_system.h"
#include "vmm/base/kvm_vcpu.h"
#include "vmm/base/kvm_vm.h"
#include "vmm/boot_msrs.h"
#include "vmm/cpuid.h"
#include "vmm/layout.h"
#include "vmm/long_mode.h"
#include "vmm/pvm_host.h"
#include "vmm/vcpu_state.h"
#include "vmm/vm_kvm_state.h"

using namespace petrel;

namespace {

#define REQUIRE_OK(expr)                                                               \
  do {                                                                                 \
    auto&& require_ok_result_ = (expr);                                                \
    INFO(#expr << ": "                                                                 \
               << (require_ok_result_.ok() ? std::string("ok")                         \
                                           : require_ok_result_.error().to_string())); \
    REQUIRE(require_ok_result_.ok());                                                  \
  } while (false)

template <typename T>
T take(Result<T> r, const char* what) {
  INFO(what << ": " << (r.ok() ? std::string("ok") : r.error().to_string()));
  REQUIRE(r.ok());
  return std::move(r).value();
}

constexpr uint64_t kRamBytes = 64ull << 20;
constexpr uint64_t kCode = 0x100000;
// Not 0x80: PVM's native mode completes OUTs to port 0x80 in the kernel.
constexpr uint16_t kPort = 0xe9;
constexpr uint32_t kMsrStar = 0xc0000081;
constexpr uint32_t kMsrTsc = 0x10;
// mov eax, 0x11; then three times: out 0xe9, al; inc eax; and a final jmp $.
constexpr std::array<uint8_t, 20> kProgram = {0xb8, 0x11, 0x00, 0x00, 0x00, 0xe6, 0xe9,
                                              0xff, 0xc0, 0xe6, 0xe9, 0xff, 0xc0, 0xe6,
                                              0xe9, 0xff, 0xc0, 0xeb, 0xfe, 0x90};

struct TestVm {
  KvmSystem kvm;
  PvmHost pvm;
  KvmVm vm;
  GuestMemory mem;
  KvmVcpu vcpu;
  std::vector<uint32_t> msrs;
};

// As Vm::create and Vm::load_guest do it, for one vCPU.
TestVm make_vm(bool load_program) {
  auto kvm = take(KvmSystem::open(), "open /dev/kvm");
  auto pvm = take(PvmHost::detect(kvm), "PvmHost::detect");
  auto vm = take(kvm.create_vm(), "KVM_CREATE_VM");
  REQUIRE_OK(vm.set_tss_address(layout::kKvmTss));
  REQUIRE_OK(vm.set_identity_map_address(layout::kKvmIdentityMap));
  REQUIRE_OK(vm.create_irqchip());
  REQUIRE_OK(vm.create_pit());
  auto specs = layout::ram_regions(kRamBytes);
  auto mem = take(GuestMemory::create_anonymous(specs), "guest memory");
  uint32_t slot = 0;
  for (const auto& region : mem.regions()) {
    REQUIRE_OK(vm.set_memory_region(slot++, region.start(), region.size(), region.host_base()));
  }
  auto vcpu = take(vm.create_vcpu(0), "KVM_CREATE_VCPU");
  const ExecMode mode = pvm.choose_mode(true, false);
  auto supported = take(kvm.supported_cpuid(), "KVM_GET_SUPPORTED_CPUID");
  pvm.adjust_cpuid(supported, mode);
  REQUIRE_OK(vcpu.set_cpuid(vcpu_cpuid(supported, 0, 1)));
  auto index_list = take(kvm.msr_index_list(), "KVM_GET_MSR_INDEX_LIST");
  REQUIRE_OK(set_boot_msrs(vcpu, index_list));
  auto msrs = take(vcpu_state_msrs(vcpu, index_list, pvm), "vcpu_state_msrs");
  if (load_program) {
    REQUIRE_OK(write_long_mode_tables(mem, kRamBytes, mode == ExecMode::kPvmNative));
    REQUIRE_OK(mem.write(GuestAddress(kCode), std::as_bytes(std::span(kProgram))));
    REQUIRE_OK(setup_long_mode_vcpu(
        vcpu, LongModeEntry{GuestAddress(kCode), GuestAddress(0), layout::kBootStackTop}));
    if (mode == ExecMode::kPvmNative) {
      REQUIRE_OK(pvm.enable_native(vcpu, layout::kPvmVifPage));
    }
  }
  return TestVm{std::move(kvm), pvm, std::move(vm), std::move(mem), std::move(vcpu),
                std::move(msrs)};
}

volatile sig_atomic_t g_alarm = 0;

// Runs until the next exit that is not a signal kick; requires an OUT of `al` to kPort
// within 10 s (SIGALRM, without SA_RESTART, ends a KVM_RUN that never exits).
void run_to_out(const KvmVcpu& vcpu, uint8_t al) {
  struct sigaction sa {};
  sa.sa_handler = [](int) { g_alarm = 1; };
  REQUIRE(::sigaction(SIGALRM, &sa, nullptr) == 0);
  g_alarm = 0;
  ::alarm(10);
  while (!take(vcpu.run(), "KVM_RUN")) {
    if (g_alarm != 0) {
      auto regs = take(vcpu.get_regs(), "KVM_GET_REGS");
      FAIL("no exit within 10 s; RIP " << std::hex << regs.rip << " RAX " << regs.rax);
    }
  }
  ::alarm(0);
  const kvm_run* run = vcpu.run_data();
  INFO("exit reason " << run->exit_reason);
  REQUIRE(run->exit_reason == KVM_EXIT_IO);
  REQUIRE(run->io.direction == KVM_EXIT_IO_OUT);
  REQUIRE(run->io.port == kPort);
  const auto* data = reinterpret_cast<const uint8_t*>(run) + run->io.data_offset;
  REQUIRE(static_cast<int>(data[0]) == al);
}

template <typename T>
bool same_bytes(const T& a, const T& b) {
  return std::memcmp(&a, &b, sizeof(T)) == 0;
}

uint64_t msr_value(std::span<const MsrValue> msrs, uint32_t index) {
  for (const auto& m : msrs) {
    if (m.index == index) {
      return m.value;
    }
  }
  FAIL("MSR " << std::hex << index << " not in the state");
  return 0;
}

// Every MSR as saved, but IA32_TSC, which runs on: not behind, not more than 10 s ahead.
void check_vcpu(const KvmVcpu& vcpu, const TestVm& t, const VcpuState& want) {
  auto got = take(capture_vcpu(vcpu, t.msrs, t.vm.xsave_size()), "capture_vcpu");
  CHECK(same_bytes(got.regs, want.regs));
  CHECK(same_bytes(got.sregs, want.sregs));
  CHECK(same_bytes(got.lapic, want.lapic));
  CHECK(same_bytes(got.xcrs, want.xcrs));
  CHECK(same_bytes(got.debugregs, want.debugregs));
  CHECK(same_bytes(got.mp_state, want.mp_state));
  CHECK(got.xsave == want.xsave);
  REQUIRE(got.msrs.size() == want.msrs.size());
  for (size_t i = 0; i < got.msrs.size(); ++i) {
    INFO("MSR " << std::hex << want.msrs[i].index << ": saved " << want.msrs[i].value
                << ", restored " << got.msrs[i].value);
    REQUIRE(got.msrs[i].index == want.msrs[i].index);
    if (want.msrs[i].index == kMsrTsc) {
      CHECK(got.msrs[i].value >= want.msrs[i].value);
      CHECK(got.msrs[i].value - want.msrs[i].value < uint64_t{want.tsc_khz} * 1000 * 10);
    } else {
      CHECK(got.msrs[i].value == want.msrs[i].value);
    }
  }
}

}  // namespace

TEST_CASE("vcpu state: a running vCPU captured, clobbered and restored goes on where it was") {
  TestVm t = make_vm(true);
  run_to_out(t.vcpu, 0x11);
  REQUIRE_OK(settle_vcpu(t.vcpu));
  const size_t xsave_bytes = t.vm.xsave_size();
  auto saved = take(capture_vcpu(t.vcpu, t.msrs, xsave_bytes), "capture_vcpu");
  if (t.pvm.is_pvm()) {
    CHECK(msr_value(saved.msrs, PvmHost::kMsrVifPage) ==
          (layout::kPvmVifPage.value() | PvmHost::kVifEnable));
  }

  // Clobber what restore must put back, and check that it took.
  kvm_regs regs = saved.regs;
  regs.rax = 0xdead;
  regs.rip = kCode;
  REQUIRE_OK(t.vcpu.set_regs(regs));
  kvm_lapic_state lapic = saved.lapic;
  lapic.regs[0x80] = 0x20;  // TPR
  REQUIRE_OK(t.vcpu.set_lapic(lapic));
  std::vector<std::byte> xsave = saved.xsave;
  xsave[160] = std::byte{0x5a};  // XMM0, byte 0 (legacy FXSAVE region)
  xsave[512] |= std::byte{0x2};  // XSTATE_BV.SSE: else KVM loads XMM0 in its init state (0)
  REQUIRE_OK(t.vcpu.set_xsave(xsave));
  std::vector<MsrValue> msrs = {{kMsrStar, 0x0023001000000000}};
  if (t.pvm.is_pvm()) {
    msrs.push_back({PvmHost::kMsrVifPage, 0});  // back to emulated mode
  }
  REQUIRE_OK(t.vcpu.set_msrs(msrs));
  auto clobbered = take(capture_vcpu(t.vcpu, t.msrs, xsave_bytes), "capture_vcpu");
  REQUIRE(clobbered.regs.rax == 0xdead);
  REQUIRE(clobbered.lapic.regs[0x80] == 0x20);
  REQUIRE(clobbered.xsave[160] == std::byte{0x5a});
  REQUIRE(msr_value(clobbered.msrs, kMsrStar) == 0x0023001000000000);
  if (t.pvm.is_pvm()) {
    REQUIRE(msr_value(clobbered.msrs, PvmHost::kMsrVifPage) == PvmHost::kVifEnable);
  }

  // Through the byte encoding, as a snapshot would store it.
  auto decoded = take(decode_vcpu_state(encode(saved)), "decode_vcpu_state");
  REQUIRE_OK(restore_vcpu(t.vcpu, decoded, xsave_bytes));
  check_vcpu(t.vcpu, t, saved);
  run_to_out(t.vcpu, 0x12);
}

TEST_CASE("vcpu state: vCPU and VM KVM state restored into a second VM") {
  TestVm a = make_vm(true);
  run_to_out(a.vcpu, 0x11);
  REQUIRE_OK(settle_vcpu(a.vcpu));

  // VM-level state worth carrying: an IOAPIC route, a PIC mask, a PIT channel, the clock.
  auto ioapic = take(a.vm.get_irqchip(KVM_IRQCHIP_IOAPIC), "KVM_GET_IRQCHIP ioapic");
  ioapic.chip.ioapic.redirtbl[4].bits = 0x34;  // vector 0x34, fixed, edge, unmasked
  REQUIRE_OK(a.vm.set_irqchip(ioapic));
  auto pic = take(a.vm.get_irqchip(KVM_IRQCHIP_PIC_MASTER), "KVM_GET_IRQCHIP pic master");
  pic.chip.pic.imr = 0xe5;
  pic.chip.pic.irq_base = 0x20;
  REQUIRE_OK(a.vm.set_irqchip(pic));
  auto pit = take(a.vm.get_pit2(), "KVM_GET_PIT2");
  pit.channels[0].count = 0x1234;
  pit.channels[0].mode = 2;
  REQUIRE_OK(a.vm.set_pit2(pit));
  kvm_clock_data clock{};
  clock.clock = 5'000'000'000;
  REQUIRE_OK(a.vm.set_clock(clock));

  auto vm_saved = take(capture_vm_kvm_state(a.vm), "capture_vm_kvm_state");
  auto vcpu_saved = take(capture_vcpu(a.vcpu, a.msrs, a.vm.xsave_size()), "capture_vcpu");
  CHECK(vm_saved.ioapic.chip.ioapic.redirtbl[4].bits == 0x34);
  CHECK(vm_saved.clock.clock >= 5'000'000'000);
  auto vm_bytes = encode(vm_saved);
  auto vcpu_bytes = encode(vcpu_saved);

  TestVm b = make_vm(false);
  for (size_t i = 0; i < a.mem.regions().size(); ++i) {
    const auto& from = a.mem.regions()[i];
    std::memcpy(b.mem.regions()[i].host_base(), from.host_base(), from.size());
  }
  auto vm_state = take(decode_vm_kvm_state(vm_bytes), "decode_vm_kvm_state");
  auto vcpu_state = take(decode_vcpu_state(vcpu_bytes), "decode_vcpu_state");
  REQUIRE_OK(restore_vm_kvm_state(b.vm, vm_state));
  REQUIRE_OK(restore_vcpu(b.vcpu, vcpu_state, b.vm.xsave_size()));

  auto got = take(capture_vm_kvm_state(b.vm), "capture_vm_kvm_state");
  CHECK(same_bytes(got.pic_master, vm_saved.pic_master));
  CHECK(same_bytes(got.pic_slave, vm_saved.pic_slave));
  CHECK(same_bytes(got.ioapic, vm_saved.ioapic));
  for (int i = 0; i < 3; ++i) {
    INFO("PIT channel " << i);
    const auto& g = got.pit.channels[i];
    const auto& w = vm_saved.pit.channels[i];
    CHECK(g.count == w.count);
    CHECK(g.mode == w.mode);
    CHECK(g.rw_mode == w.rw_mode);
    CHECK(g.gate == w.gate);
    CHECK(g.bcd == w.bcd);
  }
  // kvmclock goes on from the saved value: not behind it, and not by the wall time since.
  CHECK(got.clock.clock >= vm_saved.clock.clock);
  CHECK(got.clock.clock - vm_saved.clock.clock < 10'000'000'000);
  check_vcpu(b.vcpu, b, vcpu_saved);
  run_to_out(b.vcpu, 0x12);
}

TEST_CASE("vcpu state: kvmclock resumes at the saved value or advances by the real time since") {
  TestVm t = make_vm(false);
  auto saved = take(capture_vm_kvm_state(t.vm), "capture_vm_kvm_state");
  saved.clock.clock = 7'000'000'000;
  timespec now{};
  REQUIRE(::clock_gettime(CLOCK_REALTIME, &now) == 0);
  // As if captured a minute ago on a host whose KVM reports real time.
  saved.clock.flags = KVM_CLOCK_REALTIME;
  saved.clock.realtime =
      static_cast<uint64_t>(now.tv_sec - 60) * 1'000'000'000 + static_cast<uint64_t>(now.tv_nsec);

  REQUIRE_OK(restore_vm_kvm_state(t.vm, saved, ClockRestore::kResumeAtSaved));
  auto resumed = take(t.vm.get_clock(), "KVM_GET_CLOCK");
  CHECK(resumed.clock >= 7'000'000'000);
  CHECK(resumed.clock < 17'000'000'000);

  REQUIRE_OK(restore_vm_kvm_state(t.vm, saved, ClockRestore::kAdvanceByRealTime));
  auto advanced = take(t.vm.get_clock(), "KVM_GET_CLOCK");
  CHECK(advanced.clock >= 67'000'000'000);
  CHECK(advanced.clock < 77'000'000'000);
}
