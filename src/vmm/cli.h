// The `petrel` command line: `petrel run [flags]`, `serve`, `restore DIR`, `receive ADDR`,
// `petrel help`, `petrel version`
// (docs/config.md lists every flag).
#pragma once

#include <filesystem>
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
  kServe,    // no VM: wait for the API to restore one or receive a migration
  kRestore,  // build the VM saved in `snapshot` and run it (paused with `paused`)
  kReceive,  // listen on `listen` for an incoming migration and run the VM it brings
};

struct CliCommand {
  CliCommandKind kind = CliCommandKind::kHelp;
  // kRun: passed validate_config. kServe/kRestore/kReceive: defaults plus the host flags
  // (api_socket, serial, name, log_level, log_format); the rest comes with the VM.
  VmConfig config;
  std::filesystem::path snapshot;  // kRestore
  bool paused = false;             // kRestore: --paused
  std::string listen;              // kReceive: "unix:PATH" or "tcp:HOST:PORT"
};

// Parses the arguments after argv[0]. For `run`, flags override the values read from
// --config FILE regardless of their order, and the merged config is validated. Errors
// (kInvalidArgument, kNotFound) name the flag or config field at fault; never throws.
Result<CliCommand> parse_command_line(std::span<const std::string_view> args);

// The text printed by `petrel help` / `petrel run --help`: every command and flag.
std::string usage_text();

}  // namespace petrel
