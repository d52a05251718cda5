// petrel: one guest per process. `petrel run ...` builds the VM from flags or a JSON config,
// serves the control API if asked (--api-socket), runs the guest to its end and exits with
// the status docs/config.md describes.
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <optional>
#include <string_view>
#include <vector>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "api/api_counters.h"
#include "api/api_server.h"
#include "api/balloon_routes.h"
#include "api/metrics_routes.h"
#include "api/migration_routes.h"
#include "api/router.h"
#include "api/vm_routes.h"
#include "vmm/base/logging.h"
#include "vmm/cli.h"
#include "vmm/systemd_activation.h"
#include "vmm/systemd_notifier.h"
#include "vmm/vm_controller.h"

namespace {

// Builds the API's routing table over `controller` and serves it on `activated` (the socket
// systemd passed) or else on a new socket at `path`.
petrel::Result<std::unique_ptr<petrel::ApiServer>> open_api(
    petrel::VmController& controller, const std::filesystem::path& path,
    std::optional<petrel::UniqueFd> activated) {
  auto counters = std::make_shared<petrel::ApiCounters>();
  auto router = std::make_shared<petrel::Router>();
  PETREL_TRY(petrel::add_vm_routes(*router, controller));
  PETREL_TRY(petrel::add_metrics_routes(*router, controller, counters));
  PETREL_TRY(petrel::add_migration_routes(*router, controller));
  PETREL_TRY(petrel::add_balloon_routes(*router, controller));
  std::unique_ptr<petrel::ApiServer> server;
  if (activated) {
    PETREL_TRY_ASSIGN(server, petrel::ApiServer::adopt(controller.io(), std::move(*activated),
                                                       router, {}, counters));
  } else {
    PETREL_TRY_ASSIGN(server,
                      petrel::ApiServer::create(controller.io(), path, router, {}, counters));
  }
  server->start();
  return server;
}

petrel::LogStyle log_style(petrel::LogFormat format) {
  switch (format) {
    case petrel::LogFormat::kJson:
      return petrel::LogStyle::kJson;
    case petrel::LogFormat::kJournal:
      return petrel::LogStyle::kJournal;
    case petrel::LogFormat::kText:
      break;
  }
  return petrel::stderr_is_journal() ? petrel::LogStyle::kJournal : petrel::LogStyle::kText;
}

// True when run() will wait for the API (nothing to boot by itself): READY=1 goes out as
// soon as the API serves.
bool waits_for_api(const petrel::VmConfig& config, const petrel::VmOrigin& origin) {
  return origin.kind == petrel::VmOrigin::Kind::kEmpty ||
         origin.kind == petrel::VmOrigin::Kind::kReceive ||
         (origin.kind == petrel::VmOrigin::Kind::kBoot && !config.autostart);
}

int run_vm(const petrel::VmConfig& config, petrel::VmOrigin origin = {}) {
  if (auto r = petrel::setup_logging(config.log_level, log_style(config.log_format)); !r) {
    fmt::print(stderr, "petrel: {}\n", r.error().to_string());
    return petrel::kExitUsage;
  }
  if (config.run_as && ::geteuid() != 0) {
    spdlog::error(
        "--user {}: petrel must start as root to drop to another user (it runs as "
        "uid {})",
        config.run_as->user, ::geteuid());
    return petrel::kExitUsage;
  }
  auto activated = petrel::take_activated_socket();
  if (!activated) {
    spdlog::error("cannot start VM '{}': {}", config.name, activated.error().to_string());
    return petrel::kExitError;
  }
  const bool idle_start = waits_for_api(config, origin);
  // Before the controller starts any thread (the filters are per thread, never synchronised).
  auto seccomp = petrel::SeccompFilters::create(config.seccomp);
  if (!seccomp) {
    spdlog::error("cannot start VM '{}': {}", config.name, seccomp.error().to_string());
    return petrel::kExitError;
  }
  petrel::VmController controller(config, STDIN_FILENO, std::move(origin),
                                  std::move(seccomp).value());
  petrel::SystemdNotifier notifier(controller.io(), config.name);
  auto notify_states =
      controller.subscribe(0, [&notifier](const petrel::VmEvent& e) { notifier.on_event(e); });
  std::unique_ptr<petrel::ApiServer> api;
  if (!config.api_socket.empty() || *activated) {
    // Created on this thread before the control loop serves it; closed on the loop thread.
    auto opened = open_api(controller, config.api_socket, std::move(*activated));
    if (!opened) {
      spdlog::error("cannot start VM '{}': API socket: {}", config.name,
                    opened.error().to_string());
      return petrel::kExitError;
    }
    api = std::move(opened).value();
  }
  if (idle_start) {
    notifier.ready(fmt::format("VM '{}' waiting for the API", config.name));
  }
  petrel::StopReason reason = controller.run([&api, &notifier] {
    api.reset();
    notifier.close();
  });
  int status = petrel::exit_status_for(reason);
  notifier.stopping(
      fmt::format("VM '{}' ended: {}; exit status {}", config.name, reason.message, status));
  switch (reason.kind) {
    case petrel::StopKind::kPowerOff:
    case petrel::StopKind::kReset:
    case petrel::StopKind::kGuestExit:
    case petrel::StopKind::kSignal:
    case petrel::StopKind::kStopped:
      spdlog::info("{}; exit status {}", reason.message, status);
      break;
    default:
      spdlog::error("VM '{}' stopped: {}", config.name, reason.message);
      break;
  }
  return status;
}

}  // namespace

int main(int argc, char** argv) {
  // A console reader that goes away (petrel run ... | head) must not kill the VMM: the
  // UART sees EPIPE and drops the output instead. API clients that hang up likewise.
  ::signal(SIGPIPE, SIG_IGN);
  std::vector<std::string_view> args(argv + 1, argv + argc);
  auto command = petrel::parse_command_line(args);
  if (!command) {
    fmt::print(stderr, "petrel: {}\nTry 'petrel help'.\n", command.error().to_string());
    return petrel::kExitUsage;
  }
  switch (command->kind) {
    case petrel::CliCommandKind::kHelp:
      fmt::print("{}", petrel::usage_text());
      return petrel::kExitOk;
    case petrel::CliCommandKind::kVersion:
      fmt::print("petrel {}\n", PETREL_VERSION);
      return petrel::kExitOk;
    case petrel::CliCommandKind::kRun:
      return run_vm(command->config);
    case petrel::CliCommandKind::kServe:
      return run_vm(command->config, {petrel::VmOrigin::Kind::kEmpty, {}, false, {}});
    case petrel::CliCommandKind::kRestore:
      return run_vm(command->config,
                    {petrel::VmOrigin::Kind::kSnapshot, command->snapshot, command->paused, {}});
    case petrel::CliCommandKind::kReceive:
      return run_vm(command->config,
                    {petrel::VmOrigin::Kind::kReceive, {}, false, command->listen});
  }
  return petrel::kExitError;
}
