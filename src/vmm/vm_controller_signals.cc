// VmController: graceful shutdown, signals and their timer (vm_controller.h). All of it runs on
// the control thread (the signal sets and the timer belong to io_) or under mutex_.
#include <signal.h>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "vmm/vm_controller.h"

namespace petrel {

namespace {

const char* signal_name(int signo) {
  return signo == SIGINT ? "SIGINT" : signo == SIGTERM ? "SIGTERM" : "a signal";
}

}  // namespace

void VmController::watch_signals() {
  watch_stop_signals();
  watch_dump_signal();
}

void VmController::watch_stop_signals() {
  stop_signals_.async_wait([this](boost::system::error_code ec, int signo) {
    if (ec) {
      return;
    }
    on_stop_signal(signo);
    watch_stop_signals();
  });
}

void VmController::on_stop_signal(int signo) {
  Lock lock(mutex_);
  const auto timeout = std::chrono::milliseconds(config_.shutdown_timeout_ms);
  if (!signal_shutdown_ && lifecycle_.state() == VmState::kRunning && !migration_active_ &&
      timeout.count() > 0) {
    if (auto r = shutdown_locked(timeout); r.ok()) {
      signal_shutdown_ = signo;
      spdlog::info(
          "{}: asking the guest to shut down; stopping it hard after {} ms or at a "
          "second signal",
          signal_name(signo), timeout.count());
      return;
    }
  }
  // Hard stop: a second signal, a VM that is not running (nothing to ask), or no timeout.
  const StopReason reason{StopKind::kSignal, static_cast<uint8_t>(signo),
                          fmt::format("stopped by signal {} ({})", signo, signal_name(signo))};
  if (transition(VmAction::kStop)) {
    spdlog::info("stopping the VM: signal {}", signo);
  }
  if (migration_active_ && sender_) {
    sender_->cancel();
  }
  if (migration_active_ && receiver_) {
    receiver_->cancel();
  }
  if (vm_) {
    vm_->stop_latch().request(reason);
  } else {
    signal_reason_ = reason;
    vm_ready_.notify_all();
  }
}

void VmController::watch_dump_signal() {
  dump_signal_.async_wait([this](boost::system::error_code ec, int) {
    if (ec) {
      return;
    }
    {
      Lock lock(mutex_);
      if (vm_) {
        vm_->request_dump();
      }
    }
    watch_dump_signal();
  });
}

Result<VmState> VmController::shutdown(const ShutdownOptions& options) {
  Lock lock(mutex_);
  return shutdown_locked(
      options.timeout.value_or(std::chrono::milliseconds(config_.shutdown_timeout_ms)));
}

Result<VmState> VmController::shutdown_locked(std::chrono::milliseconds timeout) {
  PETREL_TRY(lifecycle_.allowed(VmAction::kShutdown));
  PETREL_TRY(refuse_while_migrating_locked(VmAction::kShutdown));
  vm_->send_ctrl_alt_del();
  PETREL_TRY_ASSIGN(VmTransition t, transition(VmAction::kShutdown));
  const uint32_t boot = boot_count_;
  boost::asio::post(io_, [this, boot, timeout] {
    shutdown_timer_.expires_after(timeout);
    shutdown_timer_.async_wait([this, boot, timeout](boost::system::error_code ec) {
      if (!ec) {
        on_shutdown_timer(boot, timeout);
      }
    });
  });
  return t.to;
}

void VmController::on_shutdown_timer(uint32_t boot, std::chrono::milliseconds timeout) {
  Lock lock(mutex_);
  if (boot != boot_count_ || lifecycle_.state() != VmState::kShuttingDown) {
    return;
  }
  events_.publish("shutdown_timeout", {{"timeout_ms", timeout.count()}});
  (void)transition(VmAction::kShutdownTimeout);
  if (signal_shutdown_) {
    // Asked by a signal: petrel's exit status says the guest was stopped hard (128+N).
    vm_->stop_latch().request(
        {StopKind::kSignal, static_cast<uint8_t>(*signal_shutdown_),
         fmt::format("the guest did not shut down within {} ms of {}; stopped hard",
                     timeout.count(), signal_name(*signal_shutdown_))});
    return;
  }
  vm_->stop_latch().request(
      {StopKind::kStopped, 0,
       fmt::format("the guest did not shut down within {} ms; stopped hard", timeout.count())});
}

}  // namespace petrel
