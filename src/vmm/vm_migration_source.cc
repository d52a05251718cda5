#include "vmm/vm_migration_source.h"

#include <spdlog/spdlog.h>

namespace petrel {

Result<void> VmMigrationSource::start_dirty_log() {
  PETREL_TRY_ASSIGN(DirtyTracker tracker, DirtyTracker::start(vm_.kvm_vm(), vm_.memory()));
  tracker_.emplace(std::move(tracker));
  return {};
}

Result<std::vector<RegionDirtyPages>> VmMigrationSource::collect_dirty() {
  if (!tracker_) {
    return Error(ErrorCode::kInternal, "dirty logging is not on");
  }
  return tracker_->collect();
}

void VmMigrationSource::stop_dirty_log() {
  if (tracker_) {
    if (auto stopped = tracker_->stop(); !stopped) {
      spdlog::warn("ending dirty logging: {}", stopped.error().to_string());
    }
    tracker_.reset();
  }
}

Result<void> VmMigrationSource::pause() {
  if (running_ && !paused_here_) {
    PETREL_TRY(vm_.pause());
    paused_here_ = true;
  }
  return {};
}

Result<std::vector<StateSection>> VmMigrationSource::final_state() {
  PETREL_TRY_ASSIGN(auto sections, vm_.save_state());
  // The destination opens the disks when it restores this state: on the same host it needs
  // their locks. From here on the source must not write them (it stays paused).
  PETREL_TRY(vm_.set_disk_locks(false));
  disks_handed_over_ = true;
  return sections;
}

void VmMigrationSource::resume() {
  if (disks_handed_over_) {
    if (auto retaken = vm_.set_disk_locks(true); !retaken) {
      // The destination took a disk: it may run the guest now (its ACK was lost). Two
      // guests must never write one disk, so this one stays paused.
      spdlog::error("after the failed migration: {}; the VM stays paused",
                    retaken.error().to_string());
      disk_conflict_ = true;
      return;
    }
    disks_handed_over_ = false;
  }
  if (paused_here_) {
    vm_.resume();
    paused_here_ = false;
  }
}

}  // namespace petrel
