// KvmVm: a KVM VM fd (api.rst section 4, "vm ioctls"). Owns the fd; creates vCPUs.
// Set-up calls happen on the thread building the VM; irq_line may be called from any thread.
#pragma once

#include "vmm/base/kvm_abi.h"

#include <cstdint>

#include "vmm/base/guest_address.h"
#include "vmm/base/result.h"
#include "vmm/base/unique_fd.h"

namespace petrel {

class KvmVcpu;

class KvmVm {
 public:
  KvmVm(UniqueFd fd, size_t vcpu_run_size) : fd_(std::move(fd)), vcpu_run_size_(vcpu_run_size) {}

  int check_extension(int cap) const;
  Result<void> enable_cap(uint32_t cap, uint64_t arg0 = 0) const;
  // KVM_SET_USER_MEMORY_REGION: `host` must stay mapped while the slot exists.
  Result<void> set_memory_region(uint32_t slot, GuestAddress guest, uint64_t size, void* host,
                                 uint32_t flags = 0) const;
  Result<void> set_tss_address(GuestAddress addr) const;
  Result<void> set_identity_map_address(GuestAddress addr) const;
  // In-kernel PIC + IOAPIC + LAPICs (KVM_CREATE_IRQCHIP) and PIT (KVM_CREATE_PIT2).
  Result<void> create_irqchip() const;
  Result<void> create_pit() const;
  // KVM_IRQ_LINE: sets the level of a GSI on the in-kernel irqchip.
  Result<void> irq_line(uint32_t gsi, bool level) const;
  Result<KvmVcpu> create_vcpu(uint32_t id) const;

  int fd() const { return fd_.get(); }

 private:
  UniqueFd fd_;
  size_t vcpu_run_size_;
};

}  // namespace petrel
