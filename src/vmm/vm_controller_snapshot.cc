// VmController: snapshot and restore (vm_controller.h; docs/snapshot.md).
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "vmm/snapshot.h"
#include "vmm/vm_controller.h"

namespace petrel {

Result<SnapshotResult> VmController::snapshot(const SnapshotRequest& request) {
  Lock lock(mutex_);
  const VmState state = lifecycle_.state();
  if (state != VmState::kPaused) {
    return Error(ErrorCode::kState,
                 fmt::format("cannot snapshot: the VM is {} (pause it first)", to_string(state)));
  }
  if (migration_active_locked()) {
    return Error(ErrorCode::kState, "cannot snapshot: a migration is in progress");
  }
  if (!vm_started_) {
    return Error(ErrorCode::kState,
                 "cannot snapshot: the VM was restored paused and has not run here yet (resume "
                 "it first, or keep the snapshot it came from)");
  }
  const PageSkip skip = vm_->page_skip();  // ballooned pages stay holes
  auto written = write_snapshot(request.path, config_, *vm_, &skip);
  if (!written) {
    return std::move(written).error().context(fmt::format("snapshot to {}", request.path.string()));
  }
  events_.publish("snapshot", {{"path", request.path.string()},
                               {"memory_bytes_written", written->memory_bytes_written},
                               {"duration_ms", written->duration.count()}});
  return SnapshotResult{request.path, written->memory_bytes_written, written->state_bytes,
                        written->duration};
}

Result<void> VmController::restore(const RestoreRequest& request) {
  Lock lock(mutex_);
  PETREL_TRY(lifecycle_.allowed(VmAction::kRestore));
  return restore_locked(request);
}

VmConfig VmController::with_host_settings(VmConfig vm_config) const {
  vm_config.api_socket = host_config_.api_socket;
  vm_config.serial = host_config_.serial;
  vm_config.log_level = host_config_.log_level;
  vm_config.log_format = host_config_.log_format;
  vm_config.run_as = host_config_.run_as;
  vm_config.seccomp = host_config_.seccomp;
  if (host_config_.name != VmConfig{}.name) {
    vm_config.name = host_config_.name;
  }
  return vm_config;
}

void VmController::adopt_locked(std::unique_ptr<Vm> vm, VmConfig vm_config) {
  config_ = std::move(vm_config);
  vm_ = std::move(vm);
  vm_started_ = false;
  vm_ready_.notify_all();
}

Result<void> VmController::restore_locked(const RestoreRequest& request) {
  const auto begin = std::chrono::steady_clock::now();
  auto loaded = read_snapshot(request.path);
  if (!loaded) {
    return std::move(loaded).error();
  }
  VmConfig vm_config = with_host_settings(std::move(loaded->config));
  auto built = Vm::create_restored(vm_config, std::move(loaded->memory), loaded->sections,
                                   ClockRestore::kResumeAtSaved, hooks());
  if (!built) {
    return std::move(built).error().context(
        fmt::format("restoring the snapshot {}", request.path.string()));
  }
  adopt_locked(std::move(built).value(), std::move(vm_config));
  (void)transition(VmAction::kRestore);
  spdlog::info("VM '{}' restored from {} in {} ms", config_.name, request.path.string(),
               std::chrono::duration_cast<std::chrono::milliseconds>(
                   std::chrono::steady_clock::now() - begin)
                   .count());
  if (!request.paused) {
    (void)transition(VmAction::kResume);
    start_locked();
  }
  return {};
}

}  // namespace petrel
