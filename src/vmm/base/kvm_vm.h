// KvmVm: a KVM VM fd (api.rst section 4, "vm ioctls"). Owns the fd; creates vCPUs.
// Set-up calls happen on the thread building the VM; irq_line may be called from any thread.
#pragma once

#include "vmm/base/kvm_abi.h"

#include <cstdint>
#include <optional>
#include <span>

#include "vmm/base/event_fd.h"
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

  // KVM_IOEVENTFD (api.rst 4.59): a guest write of `len` bytes (1, 2, 4 or 8; 0 = any width,
  // MMIO without datamatch only) to `addr` signals `fd` inside KVM instead of exiting. With
  // `datamatch` only writes of that value match. `pio`: port I/O instead of MMIO. KVM keeps
  // its own reference to the eventfd; removing needs `fd` still open (KVM matches on it).
  // Any thread.
  Result<void> add_ioeventfd(const EventFd& fd, GuestAddress addr, uint32_t len,
                             std::optional<uint64_t> datamatch, bool pio = false) const;
  // Same arguments as the matching add_ioeventfd.
  Result<void> remove_ioeventfd(const EventFd& fd, GuestAddress addr, uint32_t len,
                                std::optional<uint64_t> datamatch, bool pio = false) const;
  // KVM_IRQFD (api.rst 4.75): signalling `fd` injects `gsi` (an edge on an IOAPIC pin, or the
  // MSI a GSI routing entry describes). Needs the in-kernel irqchip. Any thread.
  Result<void> add_irqfd(const EventFd& fd, uint32_t gsi) const;
  Result<void> remove_irqfd(const EventFd& fd, uint32_t gsi) const;
  // KVM_SET_GSI_ROUTING (api.rst 4.52): replaces the whole GSI routing table (so the caller
  // passes the irqchip entries it wants to keep along with its MSI entries). Any thread.
  Result<void> set_gsi_routing(std::span<const kvm_irq_routing_entry> entries) const;

  // The size of a vCPU's XSAVE area in bytes: KVM_CHECK_EXTENSION(KVM_CAP_XSAVE2) on this VM
  // (api.rst 4.134), or sizeof(kvm_xsave) (4 KiB) when KVM lacks XSAVE2. Never less than 4 KiB.
  size_t xsave_size() const;

  // KVM_GET_IRQCHIP / KVM_SET_IRQCHIP (api.rst 4.26, 4.27): the in-kernel PIC master
  // (KVM_IRQCHIP_PIC_MASTER), PIC slave or IOAPIC state; `chip_id` picks which.
  Result<kvm_irqchip> get_irqchip(uint32_t chip_id) const;
  Result<void> set_irqchip(const kvm_irqchip& chip) const;
  // KVM_GET_PIT2 / KVM_SET_PIT2 (api.rst 4.72, 4.73; KVM_CAP_PIT_STATE2).
  Result<kvm_pit_state2> get_pit2() const;
  Result<void> set_pit2(const kvm_pit_state2& pit) const;
  // KVM_GET_CLOCK / KVM_SET_CLOCK (api.rst 4.29, 4.30; KVM_CAP_ADJUST_CLOCK): kvmclock in ns.
  // With KVM_CLOCK_REALTIME in `clock.flags`, KVM_SET_CLOCK adds the host real time elapsed
  // since `clock.realtime`.
  Result<kvm_clock_data> get_clock() const;
  Result<void> set_clock(const kvm_clock_data& clock) const;

  int fd() const { return fd_.get(); }

 private:
  UniqueFd fd_;
  size_t vcpu_run_size_;

  // ---- Dirty logging (live migration, diff snapshots) ----
 public:
  // A slot logs the pages vCPUs write while it is registered with KVM_MEM_LOG_DIRTY_PAGES
  // (set_memory_region with that flag, same slot/address/size/host: api.rst 4.35 allows
  // changing only the flags of an existing slot).
  //
  // KVM_GET_DIRTY_LOG (api.rst 4.8): copies into `bitmap` one bit per page of the slot
  // (bit i of word w = page 64*w + i of the slot) for the pages written since logging began
  // or since the previous call, and clears KVM's copy: petrel does not enable
  // KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 (api.rst 7.18), so get-and-clear (with the pages
  // write-protected again) is one atomic step and KVM_CLEAR_DIRTY_LOG is never needed.
  // `slot_pages` is the slot's size in 4 KiB pages: KVM writes (slot_pages + 63) / 64 words
  // and cannot be told the buffer's length, so a shorter `bitmap` is refused here
  // (kInvalidArgument) before the ioctl. Fails with ENOENT when the slot does not log.
  // Any thread.
  Result<void> get_dirty_log(uint32_t slot, uint64_t slot_pages, std::span<uint64_t> bitmap) const;
};

}  // namespace petrel
