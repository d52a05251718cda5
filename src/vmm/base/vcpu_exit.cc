#include "vmm/base/vcpu_exit.h"

#include <fmt/format.h>

namespace petrel {

VcpuExit decode_exit(kvm_run* run, size_t run_size) {
  switch (run->exit_reason) {
    case KVM_EXIT_IO: {
      uint64_t len = uint64_t{run->io.size} * run->io.count;
      if (run->io.data_offset > run_size || len > run_size - run->io.data_offset) {
        return UnknownExit{run->exit_reason};
      }
      auto* base = reinterpret_cast<std::byte*>(run) + run->io.data_offset;
      return IoExit{run->io.port, run->io.size, run->io.count, run->io.direction == KVM_EXIT_IO_OUT,
                    std::span<std::byte>(base, len)};
    }
    case KVM_EXIT_MMIO: {
      uint32_t len = run->mmio.len > sizeof(run->mmio.data) ? 8 : run->mmio.len;
      return MmioExit{run->mmio.phys_addr, run->mmio.is_write != 0,
                      std::as_writable_bytes(std::span(run->mmio.data, len))};
    }
    case KVM_EXIT_HLT:
      return HltExit{};
    case KVM_EXIT_SHUTDOWN:
      return ShutdownExit{};
    case KVM_EXIT_INTR:
      return IntrExit{};
    case KVM_EXIT_SYSTEM_EVENT:
      return SystemEventExit{run->system_event.type};
    case KVM_EXIT_INTERNAL_ERROR: {
      InternalErrorExit exit{run->internal.suberror, {}};
      const auto& ef = run->emulation_failure;
      if (ef.suberror == KVM_INTERNAL_ERROR_EMULATION && ef.ndata >= 3 &&
          (ef.flags & KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES) != 0) {
        size_t n = ef.insn_size > sizeof(ef.insn_bytes) ? sizeof(ef.insn_bytes) : ef.insn_size;
        exit.insn_bytes = std::span<const uint8_t>(ef.insn_bytes, n);
      }
      return exit;
    }
    case KVM_EXIT_FAIL_ENTRY:
      return FailEntryExit{run->fail_entry.hardware_entry_failure_reason};
    default:
      return UnknownExit{run->exit_reason};
  }
}

std::string exit_reason_name(uint32_t reason) {
  switch (reason) {
    case KVM_EXIT_UNKNOWN:
      return "unknown";
    case KVM_EXIT_EXCEPTION:
      return "exception";
    case KVM_EXIT_IO:
      return "io";
    case KVM_EXIT_HYPERCALL:
      return "hypercall";
    case KVM_EXIT_DEBUG:
      return "debug";
    case KVM_EXIT_HLT:
      return "hlt";
    case KVM_EXIT_MMIO:
      return "mmio";
    case KVM_EXIT_IRQ_WINDOW_OPEN:
      return "irq_window_open";
    case KVM_EXIT_SHUTDOWN:
      return "shutdown";
    case KVM_EXIT_FAIL_ENTRY:
      return "fail_entry";
    case KVM_EXIT_INTR:
      return "intr";
    case KVM_EXIT_SET_TPR:
      return "set_tpr";
    case KVM_EXIT_TPR_ACCESS:
      return "tpr_access";
    case KVM_EXIT_NMI:
      return "nmi";
    case KVM_EXIT_INTERNAL_ERROR:
      return "internal_error";
    case KVM_EXIT_SYSTEM_EVENT:
      return "system_event";
    case KVM_EXIT_IOAPIC_EOI:
      return "ioapic_eoi";
    case KVM_EXIT_X86_RDMSR:
      return "x86_rdmsr";
    case KVM_EXIT_X86_WRMSR:
      return "x86_wrmsr";
    default:
      return fmt::format("exit_{}", reason);
  }
}

}  // namespace petrel
