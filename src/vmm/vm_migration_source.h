// VmMigrationSource: a running (or paused) Vm as MigrationSender's source: its RAM, KVM's
// dirty log united with the VMM's writes (DirtyTracker), pause for the stop-and-copy phase,
// and the machine's state.
//
// Threads: the migration thread only, while the VmController refuses every other action on
// the VM (so this object alone pauses and resumes it). The Vm and the config text outlive it.
#pragma once

#include <optional>
#include <string>

#include "vmm/dirty_tracker.h"
#include "vmm/migration_source.h"
#include "vmm/vm.h"

namespace petrel {

class VmMigrationSource final : public MigrationSource {
 public:
  // `running`: the VM's vCPUs run (pause() parks them and resume() lets them go); false for
  // a VM the operator paused, which stays paused either way.
  VmMigrationSource(Vm& vm, std::string config_json, bool running)
      : vm_(vm), config_json_(std::move(config_json)), running_(running) {}

  std::string config_json() const override { return config_json_; }
  const GuestMemory& memory() const override { return vm_.memory(); }
  PageSkip skipped_pages() const override { return vm_.page_skip(); }
  Result<void> start_dirty_log() override;
  Result<std::vector<RegionDirtyPages>> collect_dirty() override;
  void stop_dirty_log() override;
  Result<void> pause() override;
  Result<std::vector<StateSection>> final_state() override;
  void resume() override;

  // resume() could not take a disk lock back: the VM stayed paused.
  bool disk_conflict() const { return disk_conflict_; }

 private:
  Vm& vm_;
  const std::string config_json_;
  const bool running_;
  bool paused_here_ = false;
  bool disks_handed_over_ = false;
  bool disk_conflict_ = false;
  std::optional<DirtyTracker> tracker_;
};

}  // namespace petrel
