#include "vmm/vcpu.h"

#include <signal.h>

#include <array>
#include <mutex>
#include <type_traits>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace petrel {

namespace {

void kick_handler(int) {}

std::string hex_bytes(std::span<const uint8_t> bytes) {
  std::string out;
  for (uint8_t b : bytes) {
    out += fmt::format("{}{:02x}", out.empty() ? "" : " ", b);
  }
  return out;
}

}  // namespace

int Vcpu::kick_signal() {
  return SIGRTMIN;
}

void Vcpu::install_kick_handler() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction sa {};
    sa.sa_handler = kick_handler;
    sigemptyset(&sa.sa_mask);
    sigaction(kick_signal(), &sa, nullptr);
  });
}

void Vcpu::start() {
  thread_ = std::jthread([this] {
    if (ctx_.on_thread_start) {
      if (auto started = ctx_.on_thread_start(); !started) {
        ctx_.stop->request({StopKind::kHostError, 0,
                            fmt::format("vCPU {}: {}", vcpu_.id(), started.error().to_string())});
        ctx_.gate->leave();
        return;
      }
    }
    run_loop();
    ctx_.gate->leave();
  });
  started_ = true;
}

void Vcpu::kick() {
  vcpu_.set_immediate_exit(true);
  if (started_.load() && thread_.joinable()) {
    pthread_kill(thread_.native_handle(), kick_signal());
  }
}

void Vcpu::request_dump() {
  dump_requested_.store(true);
  kick();
}

void Vcpu::log_state() const {
  auto sregs = vcpu_.get_sregs();
  auto mp = vcpu_.get_mp_state();
  spdlog::info("vCPU {}: {} cr0={:#x} cr3={:#x} cr4={:#x} efer={:#x} mp_state={} exits={}",
               vcpu_.id(), describe_rip({}), sregs ? sregs->cr0 : 0, sregs ? sregs->cr3 : 0,
               sregs ? sregs->cr4 : 0, sregs ? sregs->efer : 0, mp ? mp->mp_state : -1u,
               exit_count());
}

size_t Vcpu::exit_reason_index(const VcpuExit& exit) {
  return std::visit(
      [](const auto& e) -> size_t {
        using T = std::decay_t<decltype(e)>;
        if constexpr (std::is_same_v<T, IoExit>) {
          return 0;
        } else if constexpr (std::is_same_v<T, MmioExit>) {
          return 1;
        } else if constexpr (std::is_same_v<T, HltExit>) {
          return 2;
        } else if constexpr (std::is_same_v<T, IntrExit>) {
          return 3;
        } else if constexpr (std::is_same_v<T, SystemEventExit>) {
          return 4;
        } else if constexpr (std::is_same_v<T, ShutdownExit>) {
          return 5;
        } else if constexpr (std::is_same_v<T, InternalErrorExit>) {
          return 6;
        } else if constexpr (std::is_same_v<T, FailEntryExit>) {
          return 7;
        } else {
          static_assert(std::is_same_v<T, UnknownExit>, "a new exit type needs a reason");
          return 8;
        }
      },
      exit);
}

uint64_t Vcpu::exit_count() const {
  uint64_t total = 0;
  for (const auto& count : exits_by_reason_) {
    total += count.load(std::memory_order_relaxed);
  }
  return total;
}

VcpuMetrics Vcpu::metrics() const {
  VcpuMetrics m;
  m.id = vcpu_.id();
  m.cpu_time_ns = cpu_clock_.nanoseconds();
  m.exits.reserve(kExitReasons.size());
  for (size_t i = 0; i < kExitReasons.size(); ++i) {
    m.exits.emplace_back(std::string(kExitReasons[i]),
                         exits_by_reason_[i].load(std::memory_order_relaxed));
  }
  return m;
}

void Vcpu::join() {
  if (thread_.joinable()) {
    thread_.join();
  }
}

void Vcpu::run_loop() {
  cpu_clock_.attach();
  struct Finish {
    ThreadCpuClock& clock;
    ~Finish() { clock.finish(); }
  } finish{cpu_clock_};
  constexpr size_t kIntr = 3;
  static_assert(kExitReasons[kIntr] == "intr");
  while (!ctx_.stop->stopped()) {
    auto ran = vcpu_.run();
    if (!ran) {
      ctx_.stop->request({StopKind::kHostError, 0, ran.error().to_string()});
      return;
    }
    if (!*ran) {
      exits_by_reason_[kIntr].fetch_add(1, std::memory_order_relaxed);
      // Kicked: a stop (the loop condition looks at the latch), a pause or a state dump.
      // A stop sets the latch before it kicks, so clearing immediate_exit here loses none.
      vcpu_.set_immediate_exit(false);
      if (dump_requested_.exchange(false)) {
        log_state();
      }
      ctx_.gate->park();
      continue;
    }
    const VcpuExit exit = decode_exit(vcpu_.run_data(), vcpu_.run_size());
    exits_by_reason_[exit_reason_index(exit)].fetch_add(1, std::memory_order_relaxed);
    if (!handle(exit)) {
      return;
    }
  }
}

bool Vcpu::handle(const VcpuExit& exit) {
  const uint32_t id = vcpu_.id();
  if (const auto* io = std::get_if<IoExit>(&exit)) {
    handle_io(*io);
    return true;
  }
  if (const auto* mmio = std::get_if<MmioExit>(&exit)) {
    handle_mmio(*mmio);
    return true;
  }
  if (std::holds_alternative<IntrExit>(exit) || std::holds_alternative<HltExit>(exit)) {
    return true;
  }
  if (std::holds_alternative<ShutdownExit>(exit)) {
    ctx_.stop->request({StopKind::kTripleFault, 0,
                        fmt::format("vCPU {}: guest triple fault (KVM_EXIT_SHUTDOWN) at {}", id,
                                    describe_rip({}))});
    return false;
  }
  if (const auto* ev = std::get_if<SystemEventExit>(&exit)) {
    switch (ev->type) {
      case KVM_SYSTEM_EVENT_SHUTDOWN:
        ctx_.stop->request({StopKind::kPowerOff, 0, "guest powered off"});
        return false;
      case KVM_SYSTEM_EVENT_RESET:
        ctx_.stop->request({StopKind::kReset, 0, "guest requested a reset"});
        return false;
      case KVM_SYSTEM_EVENT_CRASH:
        ctx_.stop->request({StopKind::kGuestError, 0, fmt::format("vCPU {}: guest crashed", id)});
        return false;
      default:
        ctx_.stop->request({StopKind::kGuestError, 0,
                            fmt::format("vCPU {}: unhandled system event {}", id, ev->type)});
        return false;
    }
  }
  if (const auto* ie = std::get_if<InternalErrorExit>(&exit)) {
    return handle_internal_error(*ie);
  }
  if (const auto* fe = std::get_if<FailEntryExit>(&exit)) {
    ctx_.stop->request(
        {StopKind::kHostError, 0,
         fmt::format("vCPU {}: KVM failed to enter the guest (hardware reason {:#x}) at {}", id,
                     fe->reason, describe_rip({}))});
    return false;
  }
  const auto& unknown = std::get<UnknownExit>(exit);
  ctx_.stop->request({StopKind::kHostError, 0,
                      fmt::format("vCPU {}: unhandled KVM exit '{}' at {}", id,
                                  exit_reason_name(unknown.reason), describe_rip({}))});
  return false;
}

void Vcpu::handle_io(const IoExit& io) {
  for (uint32_t i = 0; i < io.count; ++i) {
    auto element = io.data.subspan(size_t{i} * io.size, io.size);
    bool handled =
        io.is_write ? ctx_.pio->write(io.port, element) : ctx_.pio->read(io.port, element);
    if (!handled) {
      if (!io.is_write) {
        std::fill(element.begin(), element.end(), std::byte{0xff});  // floating ISA bus
      }
      SPDLOG_DEBUG("vCPU {}: unhandled port {} {:#x} size {}", vcpu_.id(),
                   io.is_write ? "write" : "read", io.port, io.size);
    }
  }
}

void Vcpu::handle_mmio(const MmioExit& mmio) {
  bool handled = mmio.is_write ? ctx_.mmio->write(mmio.address, mmio.data)
                               : ctx_.mmio->read(mmio.address, mmio.data);
  if (!handled) {
    if (!mmio.is_write) {
      std::fill(mmio.data.begin(), mmio.data.end(), std::byte{0xff});
    }
    SPDLOG_DEBUG("vCPU {}: unhandled MMIO {} {:#x} size {}", vcpu_.id(),
                 mmio.is_write ? "write" : "read", mmio.address, mmio.data.size());
  }
}

bool Vcpu::handle_internal_error(const InternalErrorExit& exit) {
  auto repaired = ctx_.pvm->handle_emulation_failure(vcpu_, exit);
  if (repaired && *repaired) {
    return true;
  }
  std::string what = exit.suberror == KVM_INTERNAL_ERROR_EMULATION
                         ? "instruction emulation failed (an instruction KVM cannot emulate)"
                         : fmt::format("KVM internal error, suberror {}", exit.suberror);
  ctx_.stop->request(
      {StopKind::kGuestError, 0,
       fmt::format("vCPU {}: {} at {}", vcpu_.id(), what, describe_rip(exit.insn_bytes))});
  return false;
}

std::string Vcpu::describe_rip(std::span<const uint8_t> insn_bytes) const {
  auto regs = vcpu_.get_regs();
  if (!regs) {
    return "an unknown RIP";
  }
  std::array<uint8_t, 15> fetched{};
  if (insn_bytes.empty()) {
    // Without bytes from KVM, read them at RIP through the guest's page tables.
    auto gpa = vcpu_.translate(regs->rip);
    if (gpa && *gpa && ctx_.memory->read(**gpa, std::as_writable_bytes(std::span(fetched))).ok()) {
      insn_bytes = fetched;
    }
  }
  return fmt::format("RIP {:#x} (instruction bytes: {})", regs->rip,
                     insn_bytes.empty() ? "unavailable" : hex_bytes(insn_bytes));
}

}  // namespace petrel
