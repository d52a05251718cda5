// VmController: live migration, both directions (vm_controller.h; docs/migration.md).
// The migration thread runs MigrationSender / MigrationReceiver; while it runs, actions that
// would pause, resume or rebuild the VM are refused (the sender pauses it for stop-and-copy).
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "vmm/migration_address.h"
#include "vmm/vm_controller.h"
#include "vmm/vm_migration_sink.h"
#include "vmm/vm_migration_source.h"

namespace petrel {

namespace {

// How long a cancel waits for the migration to wind down before answering.
constexpr std::chrono::seconds kCancelWait{10};

MigrationPhase end_phase(const Error& error) {
  return is_migration_cancelled(error) ? MigrationPhase::kCancelled : MigrationPhase::kFailed;
}

}  // namespace

Result<void> VmController::refuse_while_migrating_locked(VmAction action) const {
  if (migration_active_) {
    return Error(ErrorCode::kState,
                 fmt::format("cannot {}: a migration is in progress", to_string(action)));
  }
  return {};
}

Result<void> VmController::migrate_send(const MigrateSendRequest& request) {
  Lock lock(mutex_);
  const VmState state = lifecycle_.state();
  PETREL_TRY(lifecycle_.allowed(VmAction::kMigrated));
  PETREL_TRY(refuse_while_migrating_locked(VmAction::kMigrated));
  if (!vm_started_) {
    return Error(ErrorCode::kState,
                 "cannot migrate: the VM was restored paused and has not run here yet (resume it "
                 "first)");
  }
  PETREL_TRY_ASSIGN(MigrationAddress address, parse_migration_address(request.destination));
  MigrationOptions options;
  options.downtime = request.downtime;
  options.max_rounds = request.max_rounds;
  options.timeout = request.timeout;

  if (migration_thread_.joinable()) {
    migration_thread_.join();  // the previous migration's thread, already past its end
  }
  sender_ = std::make_unique<MigrationSender>();
  receiver_.reset();
  migration_role_ = MigrationRole::kSend;
  migration_peer_ = request.destination;
  migration_end_.reset();
  migration_final_.reset();
  migration_active_ = true;
  // The config the destination builds the VM from: the guest's, without this host's
  // settings (it has its own).
  auto source = std::make_unique<VmMigrationSource>(*vm_, config_to_json(config_).dump(),
                                                    state == VmState::kRunning && vm_started_);
  events_.publish("migration",
                  {{"role", "send"}, {"phase", "connecting"}, {"peer", request.destination}});
  spdlog::info("VM '{}': migrating to {}", config_.name, request.destination);
  migration_thread_ = std::jthread([this, source = std::move(source), address, options]() mutable {
    auto result = sender_->run(*source, address, options);
    finish_send(std::move(result), source->disk_conflict());
  });
  return {};
}

void VmController::finish_send(Result<MigrationResult> result, bool left_paused) {
  Lock lock(mutex_);
  migration_active_ = false;
  MigrationStatus final_status;
  final_status.role = MigrationRole::kSend;
  final_status.peer = migration_peer_;
  const MigrationProgress progress = sender_->progress();
  final_status.round = progress.round;
  final_status.bytes_sent = progress.bytes_sent;
  final_status.pages = progress.pages_sent;
  final_status.elapsed = progress.elapsed;
  if (result) {
    final_status.phase = MigrationPhase::kCompleted;
    final_status.total = result->total;
    final_status.downtime = result->downtime;
    final_status.bytes_sent = result->bytes_sent;
    final_status.pages = result->pages_sent;
    final_status.round = result->rounds;
    events_.publish("migration", {{"role", "send"},
                                  {"phase", "completed"},
                                  {"total_ms", result->total.count()},
                                  {"downtime_ms", result->downtime.count()},
                                  {"rounds", result->rounds},
                                  {"bytes", result->bytes_sent}});
    spdlog::info("VM '{}' migrated to {}: {} ms, downtime {} ms, {} rounds, {} bytes", config_.name,
                 migration_peer_, result->total.count(), result->downtime.count(), result->rounds,
                 result->bytes_sent);
    (void)transition(VmAction::kMigrated);
    vm_->stop_latch().request(
        {StopKind::kStopped, 0, fmt::format("migrated to {}", migration_peer_)});
  } else {
    final_status.phase = end_phase(result.error());
    final_status.error = result.error().to_string();
    events_.publish("migration", {{"role", "send"},
                                  {"phase", to_string(final_status.phase)},
                                  {"error", final_status.error}});
    spdlog::warn("VM '{}': migration to {} {}: {}; the VM stays here", config_.name,
                 migration_peer_, to_string(final_status.phase), final_status.error);
    if (left_paused && lifecycle_.state() == VmState::kRunning) {
      (void)transition(VmAction::kPause);
    }
  }
  migration_end_ = final_status.phase;
  migration_final_ = std::move(final_status);
  migration_done_.notify_all();
}

Result<void> VmController::migrate_receive(const MigrateReceiveRequest& request) {
  Lock lock(mutex_);
  PETREL_TRY(lifecycle_.allowed(VmAction::kReceive));
  return receive_locked(request);
}

Result<void> VmController::receive_locked(const MigrateReceiveRequest& request) {
  PETREL_TRY(refuse_while_migrating_locked(VmAction::kReceive));
  PETREL_TRY_ASSIGN(MigrationAddress address, parse_migration_address(request.listen));
  PETREL_TRY_ASSIGN(MigrationListener listener, MigrationListener::listen(address));
  if (migration_thread_.joinable()) {
    migration_thread_.join();
  }
  receiver_ = std::make_unique<MigrationReceiver>();
  sender_.reset();
  migration_role_ = MigrationRole::kReceive;
  migration_peer_ = listener.address().to_string();
  migration_end_.reset();
  migration_final_.reset();
  migration_active_ = true;
  (void)transition(VmAction::kReceive);
  events_.publish("migration",
                  {{"role", "receive"}, {"phase", "listening"}, {"listen", migration_peer_}});
  spdlog::info("petrel '{}': waiting for a migration on {}", config_.name, migration_peer_);
  migration_thread_ = std::jthread([this, listener = std::move(listener),
                                    timeout = request.timeout]() mutable {
    VmMigrationSink sink([this](VmConfig c) { return with_host_settings(std::move(c)); }, hooks());
    auto result = receiver_->run(sink, listener, timeout);
    std::unique_ptr<Vm> vm;
    std::optional<VmConfig> vm_config;
    if (result) {
      vm = sink.take_vm();
      vm_config = sink.config();
    }
    finish_receive(std::move(result), std::move(vm), std::move(vm_config));
  });
  return {};
}

void VmController::finish_receive(Result<MigrationReceiveResult> result, std::unique_ptr<Vm> vm,
                                  std::optional<VmConfig> vm_config) {
  Lock lock(mutex_);
  migration_active_ = false;
  MigrationStatus final_status;
  final_status.role = MigrationRole::kReceive;
  final_status.peer = migration_peer_;
  const MigrationReceiveProgress progress = receiver_->progress();
  final_status.round = progress.round;
  final_status.bytes_sent = progress.bytes_received;
  final_status.pages = progress.pages_received;
  final_status.elapsed = progress.elapsed;
  if (result && vm && lifecycle_.state() == VmState::kReceiving) {
    final_status.phase = MigrationPhase::kCompleted;
    final_status.total = result->total;
    final_status.elapsed = result->total;
    events_.publish("migration", {{"role", "receive"},
                                  {"phase", "completed"},
                                  {"total_ms", result->total.count()},
                                  {"bytes", result->bytes_received}});
    adopt_locked(std::move(vm), std::move(*vm_config));
    (void)transition(VmAction::kReceived);
    start_locked();
    spdlog::info("VM '{}' received ({} bytes in {} ms) and running", config_.name,
                 result->bytes_received, result->total.count());
  } else {
    final_status.phase = result ? MigrationPhase::kCancelled : end_phase(result.error());
    final_status.error = result ? "stopped while receiving" : result.error().to_string();
    events_.publish("migration", {{"role", "receive"},
                                  {"phase", to_string(final_status.phase)},
                                  {"error", final_status.error}});
    spdlog::warn("petrel '{}': incoming migration {}: {}", config_.name,
                 to_string(final_status.phase), final_status.error);
    if (lifecycle_.state() == VmState::kReceiving) {
      (void)transition(VmAction::kReceiveFailed);
    }
  }
  migration_end_ = final_status.phase;
  migration_final_ = std::move(final_status);
  migration_done_.notify_all();
}

MigrationStatus VmController::migration_status() const {
  Lock lock(mutex_);
  return migration_status_locked();
}

MigrationStatus VmController::migration_status_locked() const {
  if (migration_final_) {
    return *migration_final_;
  }
  MigrationStatus status;
  status.role = migration_role_;
  status.peer = migration_peer_;
  if (sender_) {
    const MigrationProgress p = sender_->progress();
    // Between migrate_send() and the thread's first step the sender is still idle.
    status.phase = p.phase == MigrationPhase::kIdle ? MigrationPhase::kConnecting : p.phase;
    status.round = p.round;
    status.bytes_sent = p.bytes_sent;
    status.pages = p.pages_sent;
    status.remaining_bytes = p.remaining_dirty_bytes;
    status.dirty_rate_bytes_per_s = p.dirty_rate_bytes_per_s;
    status.bandwidth_bytes_per_s = p.bandwidth_bytes_per_s;
    status.expected_downtime_ms = p.expected_downtime_ms;
    status.elapsed = p.elapsed;
  } else if (receiver_) {
    const MigrationReceiveProgress p = receiver_->progress();
    status.phase = p.phase == MigrationPhase::kIdle ? MigrationPhase::kListening : p.phase;
    status.round = p.round;
    status.bytes_sent = p.bytes_received;
    status.pages = p.pages_received;
    status.elapsed = p.elapsed;
  }
  // The sender or receiver has ended but the controller has not recorded the outcome yet:
  // still the last phase until the final status (with its totals or error) is complete.
  if (status.phase == MigrationPhase::kCompleted || status.phase == MigrationPhase::kFailed ||
      status.phase == MigrationPhase::kCancelled) {
    status.phase = migration_role_ == MigrationRole::kSend ? MigrationPhase::kStopAndCopy
                                                           : MigrationPhase::kPrecopy;
  }
  return status;
}

Result<void> VmController::migrate_cancel() {
  Lock lock(mutex_);
  if (!migration_active_) {
    return Error(ErrorCode::kState, "cannot cancel: no migration is in progress");
  }
  if (sender_) {
    sender_->cancel();
  }
  if (receiver_) {
    receiver_->cancel();
  }
  // Answer with the outcome: cancelled, or what came first (completed, failed).
  migration_done_.wait_for(lock, kCancelWait, [this] { return !migration_active_; });
  return {};
}

void VmController::end_migration() {
  {
    Lock lock(mutex_);
    if (migration_active_) {
      if (sender_) {
        sender_->cancel();
      }
      if (receiver_) {
        receiver_->cancel();
      }
    }
  }
  if (migration_thread_.joinable()) {
    migration_thread_.join();
  }
}

}  // namespace petrel
