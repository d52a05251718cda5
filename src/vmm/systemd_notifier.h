// SystemdNotifier: tells the service manager how the VM is doing (sd_notify(3), "Type=notify"
// services, systemd.service(5)): READY=1 once petrel serves (the API socket is up and the
// guest runs, or petrel waits for the API to start, restore or receive one), STATUS= on every
// state change, STOPPING=1 once the VM is on its way out, and WATCHDOG=1 every half
// WatchdogSec while the control thread runs. Inactive (every call a no-op) without
// NOTIFY_SOCKET in the environment.
//
// Thread affinity: the constructor on the main thread before the VM runs; on_event from the
// EventLog's publishing thread (quick: one datagram); the watchdog timer on `io`'s thread;
// close() on `io`'s thread or after it stopped. Messages are sent by libsystemd on a fresh
// datagram socket each time, so calls from different threads do not interfere.
#pragma once

#include <atomic>
#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include "vmm/event_log.h"

namespace petrel {

class SystemdNotifier {
 public:
  // `name`: the VM's name in STATUS lines. Reads NOTIFY_SOCKET and WATCHDOG_USEC/WATCHDOG_PID
  // (sd_watchdog_enabled) once and starts the watchdog timer on `io` when asked for.
  SystemdNotifier(boost::asio::io_context& io, std::string name);
  ~SystemdNotifier();
  SystemdNotifier(const SystemdNotifier&) = delete;
  SystemdNotifier& operator=(const SystemdNotifier&) = delete;

  bool active() const { return active_; }
  std::optional<std::chrono::microseconds> watchdog_interval() const { return watchdog_; }

  // READY=1 with `status` (once; later calls only set STATUS).
  void ready(std::string_view status);
  void status(std::string_view status);
  // STOPPING=1 with `status` (once).
  void stopping(std::string_view status);
  // A "state" event: STATUS=, and READY=1 the first time the VM is running or paused, and
  // STOPPING=1 when it is shutting down, shut off, crashed or migrated.
  void on_event(const VmEvent& event);
  // Stops the watchdog timer.
  void close();

 private:
  void send(const std::string& message);
  void arm_watchdog();

  boost::asio::io_context& io_;
  const std::string name_;
  bool active_ = false;
  std::optional<std::chrono::microseconds> watchdog_;
  boost::asio::steady_timer timer_;
  std::atomic<bool> ready_sent_{false};
  std::atomic<bool> stopping_sent_{false};
};

}  // namespace petrel
