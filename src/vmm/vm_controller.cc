#include "vmm/vm_controller.h"

#include "vmm/privileges.h"

#include <unistd.h>

#include <cstdlib>
#include <future>
#include <utility>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <boost/asio/post.hpp>

#include "vmm/host_rss.h"

namespace petrel {

namespace {

constexpr std::chrono::milliseconds kStreamDrainTime{200};
// A migrated source keeps answering a little longer, so that a client polling
// GET /v1/migration (petrelctl migrate --wait) sees "completed" before petrel exits.
constexpr std::chrono::milliseconds kMigratedLinger{2000};

nlohmann::json state_event(const VmTransition& t) {
  return {{"from", to_string(t.from)}, {"to", to_string(t.to)}, {"action", to_string(t.action)}};
}

bool terminal(VmState state) {
  return state == VmState::kShutOff || state == VmState::kCrashed || state == VmState::kMigrated;
}

}  // namespace

VmController::VmController(VmConfig config, int console_fd, VmOrigin origin,
                           std::unique_ptr<const SeccompFilters> seccomp)
    : config_(config),
      host_config_(std::move(config)),
      origin_(std::move(origin)),
      console_fd_(console_fd),
      seccomp_(std::move(seccomp)),
      work_(io_.get_executor()),
      lifecycle_(origin_.kind == VmOrigin::Kind::kBoot ? VmState::kCreated : VmState::kEmpty) {
  watch_signals();
  control_thread_ = std::jthread([this] {
    if (seccomp_) {
      if (auto installed = seccomp_->install(ThreadKind::kControl); !installed) {
        // Fail closed: the filter was asked for and this thread serves the API.
        spdlog::critical("{}", installed.error().to_string());
        std::_Exit(1);
      }
    }
    io_.run();
  });
}

VmController::~VmController() {
  end_migration();
  work_.reset();
  io_.stop();
  if (control_thread_.joinable()) {
    control_thread_.join();
  }
  vm_.reset();
}

VmHooks VmController::hooks() {
  VmHooks hooks;
  // Both run on VM threads without mutex_: they only publish (the Vm stops itself after a
  // panic).
  hooks.on_panic = [this](uint8_t events) {
    events_.publish("panic", {{"message", fmt::format("the guest reported a panic (pvpanic "
                                                      "events {:#x})",
                                                      events)}});
  };
  hooks.on_device_error = [this](std::string device, std::string message) {
    events_.publish("device_error", {{"device", std::move(device)}, {"message", message}});
  };
  hooks.on_thread_start = [this](ThreadKind kind) -> Result<void> {
    return seccomp_ ? seccomp_->install(kind) : ok();
  };
  return hooks;
}

Result<VmTransition> VmController::transition(VmAction action) {
  PETREL_TRY_ASSIGN(VmTransition t, lifecycle_.apply(action));
  events_.publish("state", state_event(t));
  spdlog::info("VM '{}': {} -> {} ({})", config_.name, to_string(t.from), to_string(t.to),
               to_string(t.action));
  return t;
}

void VmController::start_locked() {
  if (config_.run_as && !privileges_dropped_) {
    // Before the VM's threads exist: they start as the unprivileged user.
    if (auto dropped = drop_privileges(*config_.run_as, config_.api_socket); !dropped) {
      spdlog::error("VM '{}': {}", config_.name, dropped.error().to_string());
      vm_->stop_latch().request({StopKind::kHostError, 0, dropped.error().to_string()});
      return;
    }
    privileges_dropped_ = true;
  }
  vm_->start(console_fd_);
  vm_started_ = true;
  ++boot_count_;
  started_ = std::chrono::steady_clock::now();
  started_at_ = std::chrono::system_clock::now();
}

Result<void> VmController::rebuild_locked(std::string_view initiator) {
  vm_->finish();
  vm_.reset();  // the old VM releases its disks, sockets and memory before the new one
  auto fresh = Vm::create(config_, hooks());
  if (!fresh) {
    return std::move(fresh).error().context("rebuilding the VM for a reboot");
  }
  vm_ = std::move(fresh).value();
  vm_started_ = false;
  events_.publish("reset", {{"initiator", initiator}});
  return {};
}

VmAction VmController::action_for_stop(const StopReason& reason) const {
  switch (reason.kind) {
    case StopKind::kPowerOff:
    case StopKind::kReset:
    case StopKind::kGuestExit:
      return VmAction::kGuestStopped;
    case StopKind::kSignal:
    case StopKind::kStopped:
      return VmAction::kStop;
    case StopKind::kTripleFault:
    case StopKind::kGuestError:
    case StopKind::kHostError:
    case StopKind::kPanic:
      break;
  }
  return VmAction::kGuestCrashed;
}

StopReason VmController::run(std::function<void()> on_control_thread_exit) {
  StopReason final_reason{StopKind::kHostError, 0, ""};
  {
    Lock lock(mutex_);
    switch (origin_.kind) {
      case VmOrigin::Kind::kBoot: {
        auto built = Vm::create(config_, hooks());
        if (!built) {
          final_reason.message = built.error().to_string();
          (void)transition(VmAction::kGuestCrashed);
        } else {
          vm_ = std::move(built).value();
          if (config_.autostart) {
            (void)transition(VmAction::kStart);
            start_locked();
          } else {
            spdlog::info("VM '{}' created; waiting for the API to start it", config_.name);
          }
        }
        break;
      }
      case VmOrigin::Kind::kSnapshot:
        if (auto restored = restore_locked({origin_.snapshot, origin_.paused}); !restored) {
          final_reason.message = restored.error().to_string();
          (void)transition(VmAction::kStop);
        }
        break;
      case VmOrigin::Kind::kReceive:
        if (auto receiving = receive_locked({origin_.listen}); !receiving) {
          final_reason.message = receiving.error().to_string();
          (void)transition(VmAction::kStop);
        }
        break;
      case VmOrigin::Kind::kEmpty:
        spdlog::info("petrel '{}' serving without a VM; waiting for a restore or a migration",
                     config_.name);
        break;
    }
    // Without a VM yet: wait for one (a restore or a migration) or for a stop.
    if (final_reason.message.empty()) {  // nothing failed so far
      vm_ready_.wait(lock, [&] { return vm_ != nullptr || terminal(lifecycle_.state()); });
    }
    if (!vm_) {
      lock.unlock();
      end_migration();  // stopped while receiving
      lock.lock();
    }
    if (!vm_ && final_reason.message.empty()) {
      final_reason =
          signal_reason_.value_or(StopReason{StopKind::kStopped, 0, "stopped before a VM arrived"});
    }
  }
  while (vm_) {
    StopReason reason = vm_->wait();
    end_migration();  // a migration of this VM cannot go on without it
    Lock lock(mutex_);
    const VmState state = lifecycle_.state();
    const bool guest_reset = reason.kind == StopKind::kReset && state == VmState::kRunning &&
                             config_.on_reboot == RebootAction::kRestart;
    if (reboot_requested_ || guest_reset) {
      const bool by_api = reboot_requested_;
      reboot_requested_ = false;
      auto rebuilt = rebuild_locked(by_api ? "api" : "guest");
      if (rebuilt) {
        (void)transition(VmAction::kReboot);
        start_locked();
        reboot_done_.notify_all();
        continue;
      }
      spdlog::error("{}", rebuilt.error().to_string());
      reboot_error_ = rebuilt.error();
      reason = {StopKind::kHostError, 0, rebuilt.error().to_string()};
      (void)transition(VmAction::kGuestCrashed);
    } else if (!terminal(state)) {
      (void)transition(action_for_stop(reason));
    }
    final_reason = reason;
    if (vm_) {
      vm_->finish();
    }
    reboot_done_.notify_all();
    break;
  }
  // Give event streams a moment to write the last events, then close the API on its thread.
  std::this_thread::sleep_for(lifecycle_.state() == VmState::kMigrated ? kMigratedLinger
                                                                       : kStreamDrainTime);
  std::promise<void> closed;
  boost::asio::post(io_, [&] {
    shutdown_timer_.cancel();
    stop_signals_.cancel();
    dump_signal_.cancel();
    if (on_control_thread_exit) {
      on_control_thread_exit();
    }
    closed.set_value();
  });
  closed.get_future().wait();
  work_.reset();
  control_thread_.join();
  return final_reason;
}

VmInfo VmController::info() const {
  Lock lock(mutex_);
  VmInfo info;
  info.name = config_.name;
  info.state = lifecycle_.state();
  info.vcpus = config_.vcpus;
  info.memory_bytes = config_.memory_bytes;
  if (started_at_ && !terminal(info.state)) {
    info.uptime = std::chrono::duration_cast<std::chrono::nanoseconds>(
        std::chrono::steady_clock::now() - started_);
  }
  info.started_at = started_at_;
  info.boot_count = boot_count_;
  info.exec_mode = vm_ ? std::string(to_string(vm_->exec_mode())) : "";
  info.version = PETREL_VERSION;
  info.pid = static_cast<int>(::getpid());
  return info;
}

nlohmann::json VmController::config() const {
  Lock lock(mutex_);
  return config_to_json(config_);
}

VmMetrics VmController::metrics() const {
  VmMetrics out;
  {
    Lock lock(mutex_);
    out.name = config_.name;
    out.guest_memory_bytes = config_.memory_bytes;
    out.state = lifecycle_.state();
    if (started_at_ && !terminal(out.state)) {
      out.uptime = std::chrono::duration_cast<std::chrono::nanoseconds>(
          std::chrono::steady_clock::now() - started_);
    }
    if (vm_) {
      vm_->collect_metrics(out);
    }
  }
  if (auto rss = host_rss_bytes()) {
    out.host_rss_bytes = *rss;
  }
  return out;
}

Result<VmState> VmController::start() {
  Lock lock(mutex_);
  PETREL_TRY(lifecycle_.allowed(VmAction::kStart));
  PETREL_TRY_ASSIGN(VmTransition t, transition(VmAction::kStart));
  start_locked();
  return t.to;
}

Result<VmState> VmController::pause() {
  Lock lock(mutex_);
  PETREL_TRY(lifecycle_.allowed(VmAction::kPause));
  PETREL_TRY(refuse_while_migrating_locked(VmAction::kPause));
  PETREL_TRY(vm_->pause());
  PETREL_TRY_ASSIGN(VmTransition t, transition(VmAction::kPause));
  return t.to;
}

Result<VmState> VmController::resume() {
  Lock lock(mutex_);
  PETREL_TRY(lifecycle_.allowed(VmAction::kResume));
  PETREL_TRY(refuse_while_migrating_locked(VmAction::kResume));
  if (vm_started_) {
    vm_->resume();
  } else {  // restored paused: its vCPUs never ran here
    PETREL_TRY_ASSIGN(VmTransition t, transition(VmAction::kResume));
    start_locked();
    return t.to;
  }
  PETREL_TRY_ASSIGN(VmTransition t, transition(VmAction::kResume));
  return t.to;
}

Result<VmState> VmController::reboot() {
  Lock lock(mutex_);
  PETREL_TRY(lifecycle_.allowed(VmAction::kReboot));
  PETREL_TRY(refuse_while_migrating_locked(VmAction::kReboot));
  const uint32_t boot = boot_count_;
  reboot_requested_ = true;
  reboot_error_.reset();
  vm_->stop_latch().request({StopKind::kReset, 0, "reboot requested through the API"});
  reboot_done_.wait(lock, [&] { return boot_count_ != boot || terminal(lifecycle_.state()); });
  if (reboot_error_) {
    return *reboot_error_;
  }
  return lifecycle_.state();
}

Result<VmState> VmController::stop() {
  Lock lock(mutex_);
  PETREL_TRY_ASSIGN(VmTransition t, transition(VmAction::kStop));
  if (migration_active_ && sender_) {
    sender_->cancel();  // the source resumes, then stops
  }
  if (migration_active_ && receiver_) {
    receiver_->cancel();
  }
  if (vm_) {
    vm_->stop_latch().request({StopKind::kStopped, 0, "stopped through the API"});
  } else {
    vm_ready_.notify_all();
  }
  return t.to;
}

std::unique_ptr<EventSubscription> VmController::subscribe(
    uint64_t after, std::function<void(const VmEvent&)> callback) {
  return events_.subscribe(after, std::move(callback));
}

}  // namespace petrel
