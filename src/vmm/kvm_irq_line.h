// KvmIrqLine: an ISA interrupt line (GSI) of KVM's in-kernel PIC/IOAPIC, driven with
// KVM_IRQ_LINE. The KvmVm must outlive it.
#pragma once

#include <cstdint>

#include <spdlog/spdlog.h>

#include "devices/interrupt_line.h"
#include "vmm/base/kvm_vm.h"

namespace petrel {

class KvmIrqLine final : public InterruptLine {
 public:
  KvmIrqLine(const KvmVm& vm, uint32_t gsi) : vm_(vm), gsi_(gsi) {}
  void set_level(bool asserted) override {
    if (auto r = vm_.irq_line(gsi_, asserted); !r) {
      spdlog::error("{}", r.error().to_string());
    }
  }

 private:
  const KvmVm& vm_;
  uint32_t gsi_;
};

}  // namespace petrel
