// petrel: one guest per process. `petrel run ...` builds the VM from flags or a JSON config,
// runs it to its end and exits with the status docs/config.md describes.
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <string_view>
#include <vector>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "vmm/base/logging.h"
#include "vmm/cli.h"
#include "vmm/vm.h"

namespace {

int run_vm(const petrel::VmConfig& config) {
  if (auto r =
          petrel::setup_logging(config.log_level, config.log_format == petrel::LogFormat::kJson);
      !r) {
    fmt::print(stderr, "petrel: {}\n", r.error().to_string());
    return petrel::kExitUsage;
  }
  auto vm = petrel::Vm::create(config);
  if (!vm) {
    spdlog::error("cannot start VM '{}': {}", config.name, vm.error().to_string());
    return petrel::kExitError;
  }
  petrel::StopReason reason = (*vm)->run(STDIN_FILENO);
  int status = petrel::exit_status_for(reason);
  switch (reason.kind) {
    case petrel::StopKind::kPowerOff:
    case petrel::StopKind::kReset:
    case petrel::StopKind::kGuestExit:
    case petrel::StopKind::kSignal:
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
  // UART sees EPIPE and drops the output instead.
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
  }
  return petrel::kExitError;
}
