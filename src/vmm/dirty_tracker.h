// DirtyTracker: which guest pages changed since the last look, for pre-copy live migration
// and diff snapshots. It unites the two sources of writes to guest RAM: KVM's dirty log
// (pages vCPUs wrote, KVM_GET_DIRTY_LOG, api.rst 4.8) and GuestMemory's own DirtyBitmap
// (pages the VMM wrote through GuestMemory::write / slice_mut on the guest's behalf).
//
// Slots: region i of the GuestMemory must be KVM memory slot i, registered at the region's
// address and host mapping with no flags (as Vm::create does). start() re-registers each slot
// with KVM_MEM_LOG_DIRTY_PAGES, stop() (or the destructor) without it.
//
// Ownership and threads: the tracker borrows the KvmVm and the GuestMemory, which must
// outlive it. start/collect/stop run on one thread (the migration or snapshot thread); vCPUs
// and device threads may keep writing meanwhile: a write is then reported by this collect()
// or by the next one, never lost (KVM write-protects a page again when it reports it, and
// DirtyBitmap::take() clears atomically). Only one tracker per VM at a time.
#pragma once

#include <cstdint>
#include <vector>

#include "vmm/base/guest_address.h"
#include "vmm/base/guest_memory.h"
#include "vmm/base/kvm_vm.h"
#include "vmm/base/result.h"

namespace petrel {

// The dirty pages of one guest RAM region.
struct RegionDirtyPages {
  GuestAddress start;            // the region's first guest-physical byte
  uint64_t pages = 0;            // the region's size in 4 KiB pages
  std::vector<uint64_t> bitmap;  // bit i of word w: page 64*w + i of the region is dirty
  uint64_t count() const;        // dirty pages
  std::vector<uint64_t> page_indices() const;  // the dirty pages, region-relative, ascending
};

class DirtyTracker {
 public:
  // Turns logging on in KVM for every region's slot and in `memory`; VMM-side bits left
  // over from before are dropped, so the first collect() reports what was written since.
  // On failure, slots already switched are switched back.
  static Result<DirtyTracker> start(const KvmVm& vm, const GuestMemory& memory);

  DirtyTracker(DirtyTracker&& other) noexcept;
  DirtyTracker& operator=(DirtyTracker&&) = delete;
  DirtyTracker(const DirtyTracker&) = delete;
  DirtyTracker& operator=(const DirtyTracker&) = delete;
  // Stops logging if still running (an error is logged, not returned).
  ~DirtyTracker();

  // The pages written since start() or the previous collect(), one entry per region in
  // GuestMemory's order; both logs are cleared. kState after stop(). On an error the
  // regions already read have lost their bits: the round is void (a migration aborts, a
  // diff snapshot falls back to a full one).
  Result<std::vector<RegionDirtyPages>> collect();

  // Ends logging in KVM and in GuestMemory. Idempotent.
  Result<void> stop();

  bool running() const { return running_; }

 private:
  DirtyTracker(const KvmVm& vm, const GuestMemory& memory) : vm_(&vm), memory_(&memory) {}
  // Registers slots [0, count) with or without KVM_MEM_LOG_DIRTY_PAGES.
  Result<void> set_logging(size_t count, bool on) const;

  const KvmVm* vm_;
  const GuestMemory* memory_;
  bool running_ = false;
};

}  // namespace petrel
