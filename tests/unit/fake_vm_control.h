// FakeVmControl: a VmControl for API tests and the API fuzz target. The lifecycle is the real
// table (vmm/lifecycle.h); every action that succeeds publishes a "state" event; tests publish
// more events from any thread with publish(). No Catch2 here: the fuzz target includes it.
//
// Thread-safe like the real one: callbacks run under the fake's lock (on the publishing
// thread, or the subscribing one for the history), so a subscriber sees events in seq order
// with no gaps, and none after its subscription is destroyed.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>

#include "vmm/vm_control.h"

namespace petrel::testing {

class FakeVmControl final : public VmControl {
 public:
  FakeVmControl() : shared_(std::make_shared<Shared>()) {}

  VmInfo info() const override {
    VmInfo info;
    info.name = name;
    info.state = lifecycle_.state();
    info.vcpus = 2;
    info.memory_bytes = 256ULL << 20;
    std::lock_guard lock(shared_->mutex);
    info.boot_count = boot_count_;
    info.started_at = started_at_;
    if (started_at_) {
      info.uptime = std::chrono::system_clock::now() - *started_at_;
    }
    info.exec_mode = "hardware";
    info.version = "0.1.0-test";
    info.pid = 4242;
    return info;
  }

  nlohmann::json config() const override {
    return {{"name", name}, {"vcpus", 2}, {"memory_mib", 256}};
  }

  VmMetrics metrics() const override {
    VmMetrics m;
    m.name = name;
    m.state = lifecycle_.state();
    m.guest_memory_bytes = 256ULL << 20;
    return m;
  }

  Result<VmState> start() override { return act(VmAction::kStart); }
  Result<VmState> pause() override { return act(VmAction::kPause); }
  Result<VmState> resume() override { return act(VmAction::kResume); }
  Result<VmState> shutdown(const ShutdownOptions& options) override {
    last_shutdown_timeout_ms = options.timeout ? options.timeout->count() : -1;
    return act(VmAction::kShutdown);
  }
  Result<VmState> reboot() override { return act(VmAction::kReboot); }
  Result<VmState> stop() override { return act(VmAction::kStop); }

  std::unique_ptr<EventSubscription> subscribe(
      uint64_t after, std::function<void(const VmEvent&)> callback) override {
    std::lock_guard lock(shared_->mutex);
    for (const auto& e : shared_->history) {
      if (e.seq > after) {
        callback(e);
      }
    }
    shared_->subscribers.push_back(std::move(callback));
    return std::make_unique<Subscription>(shared_, std::prev(shared_->subscribers.end()));
  }

  // Records an event and delivers it to every subscriber; any thread. Returns its seq.
  uint64_t publish(std::string type, nlohmann::json data = nlohmann::json::object()) {
    std::lock_guard lock(shared_->mutex);
    VmEvent e;
    e.seq = ++shared_->last_seq;
    e.time = std::chrono::system_clock::now();
    e.type = std::move(type);
    e.data = std::move(data);
    shared_->history.push_back(e);
    if (shared_->history.size() > kEventHistory) {
      shared_->history.pop_front();
    }
    for (const auto& subscriber : shared_->subscribers) {
      subscriber(e);
    }
    return e.seq;
  }

  std::size_t subscriber_count() const {
    std::lock_guard lock(shared_->mutex);
    return shared_->subscribers.size();
  }

  // Snapshot: only while paused (as the contract says); records the request.
  Result<SnapshotResult> snapshot(const SnapshotRequest& request) override {
    PETREL_TRY(take_next_error());
    if (lifecycle_.state() != VmState::kPaused) {
      return Error(ErrorCode::kState,
                   "cannot snapshot: the VM is " + std::string(to_string(lifecycle_.state())));
    }
    std::lock_guard lock(shared_->mutex);
    last_snapshot_ = request;
    return SnapshotResult{.path = request.path,
                          .memory_bytes_written = 4096,
                          .state_bytes = 1234,
                          .duration = std::chrono::milliseconds(7)};
  }

  // Restore: refused unless `restorable` (a petrel started without a VM).
  Result<void> restore(const RestoreRequest& request) override {
    PETREL_TRY(take_next_error());
    if (!restorable) {
      return Error(ErrorCode::kState, "cannot restore: this petrel already has a VM");
    }
    std::lock_guard lock(shared_->mutex);
    last_restore_ = request;
    return ok();
  }

  // Send: from running or paused, when no migration is active; phase kPrecopy.
  Result<void> migrate_send(const MigrateSendRequest& request) override {
    PETREL_TRY(take_next_error());
    auto state = lifecycle_.state();
    if (state != VmState::kRunning && state != VmState::kPaused) {
      return Error(ErrorCode::kState, "cannot migrate: the VM is " + std::string(to_string(state)));
    }
    std::lock_guard lock(shared_->mutex);
    if (migration_active()) {
      return Error(ErrorCode::kState, "cannot migrate: a migration is already active");
    }
    last_send_ = request;
    migration_ = MigrationStatus{};
    migration_.role = MigrationRole::kSend;
    migration_.phase = MigrationPhase::kPrecopy;
    migration_.peer = request.destination;
    migration_.round = 1;
    return ok();
  }

  // Receive: when no migration is active; phase kListening.
  Result<void> migrate_receive(const MigrateReceiveRequest& request) override {
    PETREL_TRY(take_next_error());
    std::lock_guard lock(shared_->mutex);
    if (migration_active()) {
      return Error(ErrorCode::kState, "cannot receive: a migration is already active");
    }
    last_receive_ = request;
    migration_ = MigrationStatus{};
    migration_.role = MigrationRole::kReceive;
    migration_.phase = MigrationPhase::kListening;
    migration_.peer = request.listen;
    return ok();
  }

  MigrationStatus migration_status() const override {
    std::lock_guard lock(shared_->mutex);
    return migration_;
  }

  Result<void> migrate_cancel() override {
    PETREL_TRY(take_next_error());
    std::lock_guard lock(shared_->mutex);
    if (!migration_active()) {
      return Error(ErrorCode::kState, "cannot cancel: no migration is active");
    }
    migration_.phase = MigrationPhase::kCancelled;
    migration_.error = "cancelled through the API";
    return ok();
  }

  // The balloon: kNotFound until set_balloon_present(); kState without a VM (kEmpty) and for
  // a new target once the VM is gone (shut-off, crashed, ...). A target must be a multiple of
  // 4 KiB and below the 256 MiB of RAM, as the real controller requires.
  Result<BalloonInfo> balloon() const override {
    std::lock_guard lock(shared_->mutex);
    PETREL_TRY(balloon_usable(false));
    return *balloon_;
  }

  Result<void> set_balloon_target(uint64_t target_bytes) override {
    PETREL_TRY(take_next_error());
    std::lock_guard lock(shared_->mutex);
    PETREL_TRY(balloon_usable(true));
    if (target_bytes % 4096 != 0 || target_bytes >= balloon_->memory_bytes) {
      return Error(ErrorCode::kInvalidArgument,
                   "the balloon target must be a multiple of 4 KiB below the guest's RAM");
    }
    balloon_->target_bytes = target_bytes;
    last_balloon_target_ = target_bytes;
    return ok();
  }

  Result<BalloonStats> balloon_stats() const override {
    std::lock_guard lock(shared_->mutex);
    PETREL_TRY(balloon_usable(false));
    return balloon_stats_;
  }

  // Gives the VM a balloon (the fake's RAM: 256 MiB) or takes it away.
  void set_balloon_present(bool present) {
    std::lock_guard lock(shared_->mutex);
    if (!present) {
      balloon_.reset();
      return;
    }
    balloon_ = BalloonInfo{.present = true,
                           .target_bytes = 0,
                           .actual_bytes = 0,
                           .memory_bytes = 256ULL << 20,
                           .deflate_on_oom = true,
                           .stats_interval_s = 5,
                           .free_page_reporting = false};
  }
  // What the guest "did": its actual size, and the stats it sent.
  void set_balloon_actual(uint64_t bytes) {
    std::lock_guard lock(shared_->mutex);
    if (balloon_) {
      balloon_->actual_bytes = bytes;
    }
  }
  void set_balloon_stats(BalloonStats stats) {
    std::lock_guard lock(shared_->mutex);
    balloon_stats_ = std::move(stats);
  }
  std::optional<uint64_t> last_balloon_target() const {
    std::lock_guard lock(shared_->mutex);
    return last_balloon_target_;
  }

  // What the test wants GET /v1/migration to report next.
  void set_migration(MigrationStatus status) {
    std::lock_guard lock(shared_->mutex);
    migration_ = std::move(status);
  }

  std::optional<SnapshotRequest> last_snapshot() const {
    std::lock_guard lock(shared_->mutex);
    return last_snapshot_;
  }
  std::optional<RestoreRequest> last_restore() const {
    std::lock_guard lock(shared_->mutex);
    return last_restore_;
  }
  std::optional<MigrateSendRequest> last_send() const {
    std::lock_guard lock(shared_->mutex);
    return last_send_;
  }
  std::optional<MigrateReceiveRequest> last_receive() const {
    std::lock_guard lock(shared_->mutex);
    return last_receive_;
  }

  // The next action fails with this error (once).
  void fail_next_action(Error error) {
    std::lock_guard lock(shared_->mutex);
    next_error_ = std::move(error);
  }

  std::string name = "test-vm";
  std::atomic<int64_t> last_shutdown_timeout_ms{0};
  std::atomic<bool> restorable{false};

 private:
  using Callback = std::function<void(const VmEvent&)>;
  struct Shared {
    mutable std::mutex mutex;
    std::deque<VmEvent> history;
    std::list<Callback> subscribers;
    uint64_t last_seq = 0;
  };

  class Subscription final : public EventSubscription {
   public:
    Subscription(std::shared_ptr<Shared> shared, std::list<Callback>::iterator it)
        : shared_(std::move(shared)), it_(it) {}
    ~Subscription() override {
      std::lock_guard lock(shared_->mutex);
      shared_->subscribers.erase(it_);
    }

   private:
    std::shared_ptr<Shared> shared_;
    std::list<Callback>::iterator it_;
  };

  Result<void> take_next_error() {
    std::lock_guard lock(shared_->mutex);
    if (next_error_) {
      Error e = std::move(*next_error_);
      next_error_.reset();
      return e;
    }
    return ok();
  }

  // Guarded by shared_->mutex.
  Result<void> balloon_usable(bool for_change) const {
    VmState state = lifecycle_.state();
    if (state == VmState::kEmpty) {
      return Error(ErrorCode::kState, "cannot use the balloon: this petrel has no VM");
    }
    if (!balloon_) {
      return Error(ErrorCode::kNotFound, "the VM has no balloon device");
    }
    if (for_change && state != VmState::kCreated && state != VmState::kRunning &&
        state != VmState::kPaused) {
      return Error(ErrorCode::kState,
                   "cannot set the balloon target: the VM is " + std::string(to_string(state)));
    }
    return ok();
  }

  // Guarded by shared_->mutex.
  bool migration_active() const {
    switch (migration_.phase) {
      case MigrationPhase::kListening:
      case MigrationPhase::kConnecting:
      case MigrationPhase::kPrecopy:
      case MigrationPhase::kStopAndCopy:
        return true;
      default:
        return false;
    }
  }

  Result<VmState> act(VmAction action) {
    PETREL_TRY(take_next_error());
    auto applied = lifecycle_.apply(action);
    if (!applied.ok()) {
      return std::move(applied).error();
    }
    if (action == VmAction::kStart || action == VmAction::kReboot) {
      std::lock_guard lock(shared_->mutex);
      ++boot_count_;
      started_at_ = std::chrono::system_clock::now();
    }
    publish("state", {{"from", std::string(to_string(applied->from))},
                      {"to", std::string(to_string(applied->to))},
                      {"action", std::string(to_string(action))}});
    return applied->to;
  }

  Lifecycle lifecycle_;
  std::shared_ptr<Shared> shared_;
  // Guarded by shared_->mutex.
  uint32_t boot_count_ = 0;
  std::optional<std::chrono::system_clock::time_point> started_at_;
  std::optional<Error> next_error_;
  MigrationStatus migration_;
  std::optional<SnapshotRequest> last_snapshot_;
  std::optional<RestoreRequest> last_restore_;
  std::optional<MigrateSendRequest> last_send_;
  std::optional<MigrateReceiveRequest> last_receive_;
  std::optional<BalloonInfo> balloon_;
  BalloonStats balloon_stats_;
  std::optional<uint64_t> last_balloon_target_;
};

}  // namespace petrel::testing
