#include "vmm/systemd_notifier.h"

#include <systemd/sd-daemon.h>

#include <unistd.h>

#include <cstdlib>
#include <cstring>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <boost/asio/post.hpp>

namespace petrel {

SystemdNotifier::SystemdNotifier(boost::asio::io_context& io, std::string name)
    : io_(io), name_(std::move(name)), timer_(io) {
  const char* socket = std::getenv("NOTIFY_SOCKET");
  active_ = socket != nullptr && socket[0] != '\0';
  if (!active_) {
    return;
  }
  uint64_t usec = 0;
  // > 0: WATCHDOG_USEC is set (and WATCHDOG_PID, if set, is this process).
  if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
    watchdog_ = std::chrono::microseconds(usec);
    spdlog::info("systemd watchdog: every {} ms", usec / 2000);
    boost::asio::post(io_, [this] { arm_watchdog(); });
  }
}

SystemdNotifier::~SystemdNotifier() = default;

void SystemdNotifier::send(const std::string& message) {
  if (!active_) {
    return;
  }
  // unset_environment = 0: the variables stay for a reboot of the VM in the same process.
  if (int r = sd_notify(0, message.c_str()); r < 0) {
    spdlog::warn("sd_notify: {}", std::strerror(-r));
  }
}

void SystemdNotifier::ready(std::string_view status) {
  if (ready_sent_.exchange(true)) {
    this->status(status);
    return;
  }
  send(fmt::format("READY=1\nSTATUS={}\nMAINPID={}", status, ::getpid()));
}

void SystemdNotifier::status(std::string_view status) {
  send(fmt::format("STATUS={}", status));
}

void SystemdNotifier::stopping(std::string_view status) {
  if (stopping_sent_.exchange(true)) {
    this->status(status);
    return;
  }
  send(fmt::format("STOPPING=1\nSTATUS={}", status));
}

void SystemdNotifier::on_event(const VmEvent& event) {
  if (!active_ || event.type != "state" || !event.data.contains("to") ||
      !event.data["to"].is_string()) {
    return;
  }
  const std::string to = event.data["to"].get<std::string>();
  std::string text = fmt::format("VM '{}' {}", name_, to);
  if (event.data.contains("action") && event.data["action"].is_string()) {
    text += fmt::format(" ({})", event.data["action"].get<std::string>());
  }
  if (to == "running" || to == "paused") {
    ready(text);
  } else if (to == "shutting-down" || to == "shut-off" || to == "crashed" || to == "migrated") {
    stopping(text);
  } else {
    status(text);
  }
}

void SystemdNotifier::arm_watchdog() {
  if (!watchdog_) {
    return;
  }
  timer_.expires_after(*watchdog_ / 2);
  timer_.async_wait([this](boost::system::error_code ec) {
    if (ec) {
      return;
    }
    send("WATCHDOG=1");
    arm_watchdog();
  });
}

void SystemdNotifier::close() {
  watchdog_.reset();
  timer_.cancel();
}

}  // namespace petrel
