// MigrationSource: what MigrationSender needs from the VM being migrated away. The real VM
// implements it (KVM's dirty log via DirtyTracker, vCPU pause via the VcpuGate, device
// quiesce); tests implement it over a bare GuestMemory.
//
// Threads: every method is called on the sender's thread, in this order: config_json,
// memory, skipped_pages, start_dirty_log, collect_dirty (repeatedly), pause, collect_dirty,
// final_state, then on success nothing more (the source stays paused; its owner ends it) or
// on failure stop_dirty_log and, if pause() succeeded, resume(). The guest and the VMM's
// device threads keep writing memory until pause() returns.
#pragma once

#include <string>
#include <vector>

#include "vmm/base/guest_memory.h"
#include "vmm/base/result.h"
#include "vmm/dirty_tracker.h"
#include "vmm/memory_file.h"
#include "vmm/snapshot_file.h"

namespace petrel {

struct MigrationSource {
  virtual ~MigrationSource() = default;

  // The VM's configuration as JSON text, enough for the destination to build the same VM.
  virtual std::string config_json() const = 0;
  // Guest RAM; the sender reads it through the regions' host mappings (no dirty marking).
  virtual const GuestMemory& memory() const = 0;
  // Pages not worth sending (they read as zeros to the guest, e.g. given to the balloon).
  virtual PageSkip skipped_pages() const = 0;

  // Dirty logging on (KVM's and the VMM's); collect_dirty returns the pages written since
  // start or the previous collect, one entry per region in memory() order.
  virtual Result<void> start_dirty_log() = 0;
  virtual Result<std::vector<RegionDirtyPages>> collect_dirty() = 0;
  virtual void stop_dirty_log() = 0;

  // vCPUs parked and devices quiesced: no more writes to guest memory until resume().
  virtual Result<void> pause() = 0;
  // Every state section of the paused VM (vCPUs, irqchip, clock, devices).
  virtual Result<std::vector<StateSection>> final_state() = 0;
  // After a failed migration: the VM runs on as if nothing happened.
  virtual void resume() = 0;
};

}  // namespace petrel
