// VmController: the VM's lifecycle and the real VmControl (vm_control.h). It owns the current
// Vm, the Lifecycle table, the EventLog, and a control thread running an io_context on which
// the API server, signal handling (SIGINT/SIGTERM: graceful shutdown, then hard stop; SIGUSR1:
// register dump) and the graceful-shutdown timer run.
//
// Threads:
// - run() is called once on the owning (main) thread. It alone creates and destroys Vm
//   objects: it builds the VM, waits on its stop latch, rebuilds it for a reboot (the API's or,
//   with on_reboot=restart, the guest's), and returns when the VM is shut off or crashed.
// - The VmControl methods may be called from any thread (the API runs them on the control
//   thread); one mutex serialises them with each other and with run()'s state changes, so an
//   action sees a settled state and is either done completely or refused with kState.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>

#include "vmm/event_log.h"
#include "vmm/lifecycle.h"
#include "vmm/migration_receiver.h"
#include "vmm/migration_sender.h"
#include "vmm/seccomp_filter.h"
#include "vmm/stop_latch.h"
#include "vmm/vm.h"
#include "vmm/vm_config.h"
#include "vmm/vm_control.h"

namespace petrel {

// Where run() gets its VM from.
struct VmOrigin {
  enum class Kind {
    kBoot,      // build it from the config and boot the kernel (`petrel run`)
    kEmpty,     // none yet: the API restores one or receives a migration (`petrel serve`)
    kSnapshot,  // restore `snapshot` (`petrel restore DIR`)
    kReceive,   // receive a migration on `listen` (`petrel receive ADDR`)
  };
  Kind kind = Kind::kBoot;
  std::filesystem::path snapshot;
  bool paused = false;  // kSnapshot: leave it paused
  std::string listen;
};

class VmController final : public VmControl {
 public:
  // `config` must have passed validate_config for kBoot; for the other origins it holds the
  // host settings (api_socket, serial, name, logging) and the VM's own config arrives with
  // it. `console_fd` as for Vm::start. Starts the control thread; nothing is built until
  // run(). `seccomp` (main thread, SeccompFilters::create) filters the control thread and the
  // VM threads; null for none.
  VmController(VmConfig config, int console_fd, VmOrigin origin = {},
               std::unique_ptr<const SeccompFilters> seccomp = nullptr);
  ~VmController() override;
  VmController(const VmController&) = delete;
  VmController& operator=(const VmController&) = delete;

  // The control thread's io_context (for the API server).
  boost::asio::io_context& io() { return io_; }

  // Builds and (with autostart) starts the VM, serves until it is shut off or crashed, then
  // runs `on_control_thread_exit` on the control thread (to close the API server), stops the
  // control thread and returns why the VM ended. A VM that cannot be built returns kHostError
  // with the error (state: crashed).
  StopReason run(std::function<void()> on_control_thread_exit = {});

  VmInfo info() const override;
  nlohmann::json config() const override;
  VmMetrics metrics() const override;
  Result<VmState> start() override;
  Result<VmState> pause() override;
  Result<VmState> resume() override;
  Result<VmState> shutdown(const ShutdownOptions& options) override;
  Result<VmState> reboot() override;
  Result<VmState> stop() override;
  std::unique_ptr<EventSubscription> subscribe(
      uint64_t after, std::function<void(const VmEvent&)> callback) override;
  // Snapshot and restore (vm_controller_snapshot.cc); migration (vm_controller_migration.cc).
  Result<SnapshotResult> snapshot(const SnapshotRequest& request) override;
  Result<void> restore(const RestoreRequest& request) override;
  Result<void> migrate_send(const MigrateSendRequest& request) override;
  Result<void> migrate_receive(const MigrateReceiveRequest& request) override;
  MigrationStatus migration_status() const override;
  Result<void> migrate_cancel() override;
  Result<BalloonInfo> balloon() const override;
  Result<void> set_balloon_target(uint64_t target_bytes) override;
  Result<BalloonStats> balloon_stats() const override;

  EventLog& events() { return events_; }

 private:
  using Lock = std::unique_lock<std::mutex>;

  VmHooks hooks();
  // The following require mutex_.
  Result<VmTransition> transition(VmAction action);
  // Starts vm_; the first time, drops to config_.run_as first (a failure stops the VM with
  // kHostError instead of starting it).
  void start_locked();
  // Replaces the VM with a fresh one built from the config (not started yet) and publishes
  // the "reset" event; the caller publishes the transition, then starts it, so that no guest
  // event can come before them.
  Result<void> rebuild_locked(std::string_view initiator);
  VmAction action_for_stop(const StopReason& reason) const;
  // Builds the VM of the snapshot at request.path (state empty -> paused, and on to running
  // unless request.paused).
  Result<void> restore_locked(const RestoreRequest& request);
  // The VM's config with this petrel's host settings (api_socket, serial, logging, seccomp;
  // the name unless it is the default).
  VmConfig with_host_settings(VmConfig vm_config) const;
  // Installs a VM built from saved state (not started) and wakes run().
  void adopt_locked(std::unique_ptr<Vm> vm, VmConfig vm_config);
  // Migration (vm_controller_migration.cc). receive_locked listens (errors come back at
  // once) and receives on the migration thread (state empty -> receiving).
  Result<void> receive_locked(const MigrateReceiveRequest& request);
  bool migration_active_locked() const { return migration_active_; }
  MigrationStatus migration_status_locked() const;
  // The VM's balloon (vm_controller_balloon.cc): kNotFound without one in the config,
  // kState while there is no VM.
  Result<virtio::BalloonDevice*> balloon_locked() const;
  Result<void> refuse_while_migrating_locked(VmAction action) const;
  // Without mutex_: cancels a migration in progress and joins the migration thread.
  void end_migration();
  // `left_paused`: the source could not take its disks back (the destination has them).
  void finish_send(Result<MigrationResult> result, bool left_paused);
  void finish_receive(Result<MigrationReceiveResult> result, std::unique_ptr<Vm> vm,
                      std::optional<VmConfig> vm_config);
  // Signals and graceful shutdown (vm_controller_signals.cc), on the control thread.
  // SIGINT/SIGTERM while running: a graceful shutdown with shutdown_timeout_ms, after which
  // (or at a second signal, or when there is no running guest to ask) the VM stops hard
  // with StopKind::kSignal (exit status 128+N). A guest that powers off in time ends with
  // its own status (0).
  Result<VmState> shutdown_locked(std::chrono::milliseconds timeout);
  void on_shutdown_timer(uint32_t boot, std::chrono::milliseconds timeout);
  void on_stop_signal(int signo);
  void watch_signals();
  void watch_stop_signals();
  void watch_dump_signal();

  VmConfig config_;  // guarded by mutex_ (replaced by a restore or an incoming migration)
  const VmConfig host_config_;
  const VmOrigin origin_;
  const int console_fd_;
  // The control thread loads its filter as it starts; VM threads through hooks(). Null: none.
  const std::unique_ptr<const SeccompFilters> seccomp_;
  EventLog events_;

  boost::asio::io_context io_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_;
  boost::asio::signal_set stop_signals_{io_, SIGINT, SIGTERM};
  boost::asio::signal_set dump_signal_{io_, SIGUSR1};
  boost::asio::steady_timer shutdown_timer_{io_};  // control thread only

  mutable std::mutex mutex_;
  std::condition_variable reboot_done_;  // with mutex_
  std::condition_variable vm_ready_;     // with mutex_: a VM was adopted, or empty -> stopped
  Lifecycle lifecycle_;
  // Replaced only by run() (with mutex_ held); run() reads it without the lock.
  std::unique_ptr<Vm> vm_;
  uint32_t boot_count_ = 0;                  // guarded by mutex_
  bool vm_started_ = false;                  // vm_->start() was called; guarded by mutex_
  bool privileges_dropped_ = false;          // config_.run_as applied (once, first start); mutex_
  std::optional<StopReason> signal_reason_;  // a signal stopped petrel without a VM; mutex_
  std::optional<int> signal_shutdown_;  // the signal that asked for a graceful shutdown; mutex_
  bool reboot_requested_ = false;       // guarded by mutex_
  std::optional<Error> reboot_error_;   // guarded by mutex_
  std::chrono::steady_clock::time_point started_;                    // guarded by mutex_
  std::optional<std::chrono::system_clock::time_point> started_at_;  // guarded by mutex_

  // The current or last migration; guarded by mutex_ (the sender and receiver objects are
  // themselves thread-safe and live until the next migration replaces them).
  bool migration_active_ = false;
  MigrationRole migration_role_ = MigrationRole::kNone;
  std::string migration_peer_;
  std::unique_ptr<MigrationSender> sender_;
  std::unique_ptr<MigrationReceiver> receiver_;
  std::optional<MigrationPhase> migration_end_;  // completed, failed or cancelled
  std::optional<MigrationStatus> migration_final_;
  std::condition_variable migration_done_;  // with mutex_: migration_active_ went false
  std::jthread migration_thread_;           // joined by end_migration() (run()) and the destructor

  std::jthread control_thread_;  // last: joined before the rest goes
};

}  // namespace petrel
