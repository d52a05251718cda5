// The `petrel` command line: `petrel run [flags]`, `petrel help`, `petrel version`
// (docs/config.md lists every flag).
#pragma once

#include <span>
#include <string>
#include <string_view>

#include "vmm/base/result.h"
#include "vmm/vm_config.h"

namespace petrel {

// Exit statuses of the petrel binary. An error from parse_command_line means kExitUsage.
// `petrel run` otherwise exits kExitOk when the guest powers off or resets, with the status the
// guest writes to the exit device (I/O port 0xf4), or kExitError after a runtime error.
inline constexpr int kExitOk = 0;
inline constexpr int kExitError = 1;
inline constexpr int kExitUsage = 2;

enum class CliCommandKind {
  kRun,      // boot a VM from `config`
  kHelp,     // print usage_text() to stdout, exit kExitOk
  kVersion,  // print the version to stdout, exit kExitOk
};

struct CliCommand {
  CliCommandKind kind = CliCommandKind::kHelp;
  VmConfig config;  // for kRun: passed validate_config; otherwise defaults
};

// Parses the arguments after argv[0]. For `run`, flags override the values read from
// --config FILE regardless of their order, and the merged config is validated. Errors
// (kInvalidArgument, kNotFound) name the flag or config field at fault; never throws.
Result<CliCommand> parse_command_line(std::span<const std::string_view> args);

// The text printed by `petrel help` / `petrel run --help`: every command and flag.
std::string usage_text();

}  // namespace petrel
